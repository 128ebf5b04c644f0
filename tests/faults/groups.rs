//! Processes a server forks stay in its process group and hold its
//! sockets: they must stop with it, and `stop` must not return while one
//! still holds a port.

use std::path::Path;

use crate::harness::eventually;
use crate::harness::{client, example, restart, temp_dir, write_executable, Handoff};

/// Whether `pid` runs (a zombie does not: it holds no fd).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// A server script that leaves a `sleep` behind in its group (as
/// `sh -c 'helper & exec server'` does), recording the sleep's pid in
/// DIR/helper-GENERATION.pid; `prefix` runs before the sleep, in its
/// subshell.
fn server_with_helper(dir: &Path, prefix: &str) -> String {
    let script = dir.join("server.sh");
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\n({prefix} exec sleep 301) &\necho $! > {dir}/helper-$HANDOFF_GENERATION.pid\nexec {hello}\n",
            dir = dir.display(),
            hello = example("hello").display()
        ),
    );
    script.display().to_string()
}

fn helper_pid(dir: &Path, generation: u64) -> u32 {
    let file = dir.join(format!("helper-{generation}.pid"));
    let mut pid = None;
    eventually("the server script recorded its helper", || {
        pid = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    pid.expect("checked above")
}

/// Issue 7.5: `stop` returned (exit 0) while a background helper of the
/// server still held fd 3: the port stayed LISTEN and clients hung.
#[test]
fn stop_returns_only_once_no_process_of_the_group_holds_the_port() {
    let dir = temp_dir();
    let server = server_with_helper(dir.path(), "");
    let mut h = Handoff::start(
        dir.path(),
        &["--listen", "http=tcp://127.0.0.1:0", "--", &server],
    );
    h.wait_generation(1);
    let addr = h.addr("http");
    let helper = helper_pid(dir.path(), 1);
    assert!(alive(helper));

    let (code, out, err) = client(&["stop", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    // `stop` answered once the supervisor was gone: right now, nothing
    // listens on the port and the helper is gone.
    assert!(!alive(helper), "the helper outlived stop");
    std::net::TcpListener::bind(&addr).expect("the port is free after stop");
    assert_eq!(h.wait_exit().code(), Some(0));
}

/// When a generation is replaced, a helper it left behind that ignores the
/// stop signal is SIGKILLed at the drain deadline.
#[test]
fn a_helper_that_ignores_its_stop_signal_is_killed_at_the_drain_deadline() {
    let dir = temp_dir();
    let server = server_with_helper(dir.path(), "trap '' TERM;");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--drain-timeout",
            "500ms",
            "--",
            &server,
        ],
    );
    h.wait_generation(1);
    let old_helper = helper_pid(dir.path(), 1);
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_log("process(es) of its process group live on");
    h.wait_log_all(&["process group", "sending SIGKILL"]);
    eventually("the old generation's helper is killed", || {
        !alive(old_helper)
    });
    h.wait_log_all(&["the rest of process group", "is gone"]);
    let new_helper = helper_pid(dir.path(), 2);
    assert!(
        alive(new_helper),
        "the serving generation's helper is left alone"
    );

    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.log());
    assert!(!alive(new_helper));
}
