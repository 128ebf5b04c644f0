//! handoff as the init of a pid namespace, as in a container.

use std::process::{Command, Stdio};

use crate::harness::{can_unshare, client, example, handoff_bin, temp_dir, Handoff};

/// `stop` waited for the pid the supervisor reported, its pid in its own
/// namespace (1), which is another process (the real init) from the
/// client's side: it reported "said it stopped but has not exited yet"
/// and exited 6.
#[test]
fn stop_works_when_handoff_is_the_init_of_a_pid_namespace() {
    if !can_unshare() {
        eprintln!("skipped: cannot create a pid namespace here (not root?)");
        return;
    }
    let dir = temp_dir();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child"])
        .arg(handoff_bin())
        .arg("run")
        .arg("--control")
        .arg(dir.path().join("control.sock"))
        .args(["--listen", "http=tcp://127.0.0.1:0", "--"])
        .arg(example("hello"))
        .env("HANDOFF_LOG", "debug")
        .stdin(Stdio::null());
    let mut h = Handoff::spawn(cmd, dir.path());
    h.wait_generation(1);
    assert_eq!(h.status().pid, 1, "handoff is the namespace's init");
    let addr = h.addr("http");

    let (code, out, err) = client(&["stop", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains("pid 1)"),
        "the pid as the client sees it: {out}"
    );
    std::net::TcpListener::bind(&addr).expect("the port is free after stop");
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.log());
}
