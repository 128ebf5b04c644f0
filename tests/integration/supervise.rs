//! Running a child: the protocol it sees, respawning, readiness checks,
//! stopping, and failing to start.

use std::os::unix::net::UnixStream;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::{client, example, get, serve_hello, temp_dir, Handoff};
use crate::load::Load;

#[test]
fn the_child_gets_exactly_the_systemd_protocol_and_no_other_fd() {
    let dir = temp_dir();
    let admin = dir.path().join("admin.sock");
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[socket]]
name = "http"
listen = "tcp://127.0.0.1:0"

[[socket]]
name = "admin"
listen = "unix://admin.sock"
mode = "0660"

[program]
command = ["{hello}"]
"#,
            hello = example("hello").display()
        ),
    )
    .expect("write config");
    let mut h = Handoff::start(
        dir.path(),
        &["--config", config.to_str().expect("utf-8 path")],
    );
    h.wait_generation(1);
    let addr = h.addr("http");
    let (status, body) = get(&addr, "/env").expect("the example serves");
    assert_eq!(status, 200);
    let env: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let pid = h.pids("ready")[0];
    assert_eq!(env["pid"], pid);
    assert_eq!(
        env["listen_pid"],
        pid.to_string(),
        "LISTEN_PID is the child's own pid"
    );
    assert_eq!(env["listen_fds"], "2");
    assert_eq!(env["listen_fdnames"], "http:admin");
    assert_eq!(env["generation"], "1");
    assert_eq!(env["worker"], "0");
    assert_eq!(
        env["fds"],
        serde_json::json!([0, 1, 2, 3, 4]),
        "only stdio and the two sockets"
    );
    let notify = env["notify_socket"].as_str().expect("NOTIFY_SOCKET is set");
    assert!(std::path::Path::new(notify).exists(), "{notify}");

    // The unix socket: relative to the config file, with its mode, and
    // really the same socket (the supervisor holds it; connecting works).
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&admin)
            .expect("admin socket")
            .permissions()
            .mode()
            & 0o777,
        0o660
    );
    UnixStream::connect(&admin).expect("the admin socket accepts connections");
}

#[test]
fn a_killed_child_is_respawned_and_no_connection_is_refused() {
    let dir = temp_dir();
    let mut h = serve_hello(dir.path(), &[]);
    let addr = h.addr("http");
    let load = Load::start(&addr, 8);
    load.wait_for_more(100);
    let pid = h.pids("ready")[0];
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("the child is alive");
    h.wait_log(&format!(
        "(pid {pid}) was killed by SIGKILL; respawning in 100 ms"
    ));
    h.wait_log("respawned");
    h.wait_log_all(&["generation 1 worker 0", "ready in"]);
    load.wait_for_more(100);
    let tally = load.stop();
    // Requests the killed child had accepted die with it (reset); but the
    // socket never closed, so no connection was refused.
    let refused: u64 = tally
        .failed
        .iter()
        .filter(|(k, _)| k.contains("ConnectionRefused"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(refused, 0, "{:?}", tally.failed);
    let status = h.status();
    let w = &status.workers[0];
    assert_eq!((w.restarts, w.state.as_str()), (1, "ready"), "{status:?}");
    assert_ne!(w.pid, Some(pid));
    assert_eq!(get(&addr, "/").expect("serves").0, 200);
}

#[test]
fn sigterm_stops_gracefully_and_frees_the_port_and_the_socket_files() {
    let dir = temp_dir();
    let unix = dir.path().join("app.sock");
    let hello = example("hello");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--listen",
            &format!("app=unix://{}", unix.display()),
            "--",
            hello.to_str().expect("utf-8"),
        ],
    );
    h.wait_generation(1);
    let addr = h.addr("http");
    let child = h.pids("ready")[0];
    assert!(unix.exists() && h.control.exists());

    h.signal(Signal::SIGTERM);
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", h.log());
    assert!(
        h.log().contains("drained, exiting"),
        "the child drained: {}",
        h.log()
    );
    assert!(
        kill(Pid::from_raw(child as i32), None).is_err(),
        "the child is gone"
    );
    std::net::TcpListener::bind(&addr).expect("the port is free again");
    assert!(!unix.exists(), "the unix socket file is removed");
    assert!(!h.control.exists(), "the control socket file is removed");
}

#[test]
fn handoff_stop_returns_once_everything_is_down() {
    let dir = temp_dir();
    let mut h = serve_hello(dir.path(), &[]);
    let addr = h.addr("http");
    let (code, out, err) = client(&["stop", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    // `stop` waited for the supervisor to exit: the port is free right now.
    std::net::TcpListener::bind(&addr).expect("the port is free");
    assert_eq!(h.wait_exit().code(), Some(0));
}

#[test]
fn an_exec_probe_decides_readiness() {
    let dir = temp_dir();
    let go = dir.path().join("go");
    let probe = format!("test -e {} && kill -0 $HANDOFF_PID", go.display());
    let hello = example("hello");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--ready",
            "exec",
            "--ready-command",
            &probe,
            "--ready-interval",
            "50ms",
            "--",
            hello.to_str().expect("utf-8"),
        ],
    );
    h.wait_log("starting generation 1");
    // The child serves, but the probe says no: not ready yet.
    let s = h.status();
    assert_eq!(
        (s.generation, s.workers[0].state.as_str()),
        (0, "starting"),
        "{s:?}"
    );
    std::fs::write(&go, "").expect("touch");
    h.wait_generation(1);
    assert_eq!(h.status().workers[0].state, "ready");
}

#[test]
fn a_delay_makes_a_silent_server_ready() {
    let dir = temp_dir();
    let hello = example("hello");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--ready",
            "delay",
            "--ready-delay",
            "200ms",
            "--",
            hello.to_str().expect("utf-8"),
            "--never-ready",
        ],
    );
    h.wait_generation(1);
    let (code, out, err) = crate::harness::restart(&h);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn an_address_in_use_stops_the_start_naming_the_socket() {
    let dir = temp_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let hello = example("hello");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            &format!("web=tcp://{addr}"),
            "--",
            hello.to_str().expect("utf-8"),
        ],
    );
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(5), "{}", h.log());
    let log = h.log();
    assert!(
        log.contains(&format!("socket `web` (tcp://{addr}): cannot bind"))
            && log.contains("in use"),
        "{log}"
    );
}

#[test]
fn a_script_without_a_shebang_runs_with_sh_as_execvp_would() {
    let dir = temp_dir();
    let script = dir.path().join("server");
    crate::harness::write_executable(&script, &format!("exec {}\n", example("hello").display()));
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--",
            script.to_str().expect("utf-8"),
        ],
    );
    h.wait_generation(1);
    let (status, body) = get(&h.addr("http"), "/env").expect("serves");
    assert_eq!(status, 200);
    let env: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        env["listen_pid"],
        env["pid"].to_string(),
        "the shell exec'd, keeping the pid"
    );
}

/// The probe names the child's fds as the command does (`{fd:http}`), so a
/// probe that reads /proc/$HANDOFF_PID/fdinfo/N need not hard-code N. The
/// probe writes what it was given; the child is ready once it has run.
#[test]
fn an_exec_probe_gets_fd_templates_expanded() {
    let dir = temp_dir();
    let hello = example("hello");
    let seen = dir.path().join("seen");
    let probe = format!("echo {{fd:admin}} {{fd_count}} > {}", seen.display());
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--listen",
            "admin=tcp://127.0.0.1:0",
            "--ready",
            "exec",
            "--ready-command",
            &probe,
            "--",
            hello.to_str().expect("utf-8"),
        ],
    );
    h.wait_generation(1);
    let text = std::fs::read_to_string(&seen).expect("the probe ran");
    assert_eq!(text.trim(), "4 2");
}
