//! What the child gets, for servers that take their sockets another way
//! (issue 11, part 2): no LISTEN_* variables for a server that takes its fds
//! by `{fd:NAME}` (`listen_env = false`), no LISTEN_PID for a wrapper that
//! starts the real server as its own child (`listen_pid = "any"`), and
//! non-blocking sockets (`sockets_nonblocking`).

use crate::harness::{example, get, require, restart, temp_dir, write_executable, Handoff};
use crate::load::Load;

const GUNICORN: &str = "/usr/bin/gunicorn";

/// A `cargo run`-style wrapper: a shell that starts the server as its own
/// child (no exec) and waits for it.
fn wrapper(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("wrapper.sh");
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\n{}\necho wrapper: the server exited\n",
            example("hello").display()
        ),
    );
    script
}

/// The pid in hello's answer ("hello from pid N generation G ...").
fn answering_pid(addr: &str) -> u32 {
    let (status, body) = get(addr, "/").expect("the server answers");
    assert_eq!(status, 200, "{body}");
    body.split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
}

#[test]
fn a_wrapper_that_forks_the_server_gets_the_sockets_with_listen_pid_any() {
    let dir = temp_dir();
    let script = wrapper(dir.path());
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--listen-pid",
            "any",
            "--",
            script.to_str().expect("utf-8 path"),
        ],
    );
    // READY=1 comes from the grandchild, through NOTIFY_SOCKET.
    h.wait_generation(1);
    let addr = h.addr("http");
    let child = h.status().workers[0].pid.expect("a running worker");
    let server = answering_pid(&addr);
    assert_ne!(
        server, child,
        "the server is the wrapper's child, not handoff's"
    );
    let load = Load::start(&addr, 8);
    load.wait_for_more(50);
    for _ in 0..3 {
        let (code, out, err) = restart(&h);
        assert_eq!(code, 0, "{out}{err}");
        load.wait_for_more(50);
    }
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    assert_eq!(h.status().generation, 4);
}

#[test]
fn without_listen_pid_any_the_wrappers_server_refuses_the_sockets() {
    let dir = temp_dir();
    let script = wrapper(dir.path());
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--",
            script.to_str().expect("utf-8 path"),
        ],
    );
    // LISTEN_PID names the shell: the server's listenfd refuses the fds.
    h.wait_log("no listening socket passed");
    assert_eq!(h.status().generation, 0);
}

#[test]
fn gunicorn_takes_its_socket_by_fd_number_with_listen_env_off() {
    require(GUNICORN);
    let dir = temp_dir();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--no-listen-env",
            "--working-directory",
            fixtures,
            "--",
            GUNICORN,
            "--bind",
            "fd://{fd:http}",
            "--workers",
            "2",
            "wsgi_app:app",
        ],
    );
    h.wait_generation(1);
    let addr = h.addr("http");
    let load = Load::start(&addr, 8);
    load.wait_for_more(50);
    for _ in 0..3 {
        let (code, out, err) = restart(&h);
        assert_eq!(code, 0, "{out}{err}");
        load.wait_for_more(50);
    }
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
}

#[test]
fn gunicorn_given_its_fd_twice_fails_to_start() {
    // The README's recipe as it was: `--bind fd://` plus LISTEN_FDS makes
    // gunicorn take the fd twice; it closes it after the first and fails
    // on the second. This is what listen_env = false is for.
    require(GUNICORN);
    let dir = temp_dir();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--working-directory",
            fixtures,
            "--",
            GUNICORN,
            "--bind",
            "fd://{fd:http}",
            "wsgi_app:app",
        ],
    );
    h.wait_log("Bad file descriptor");
    assert_eq!(h.status().generation, 0);
}

#[test]
fn sockets_nonblocking_hands_the_sockets_over_non_blocking() {
    for (flag, expected) in [(true, "False"), (false, "True")] {
        let dir = temp_dir();
        let script = dir.path().join("check.py");
        write_executable(
            &script,
            &format!(
                "#!/usr/bin/python3\nimport os\nprint('fd 3 blocking:', os.get_blocking(3), flush=True)\n\
                 os.execv({hello:?}, [{hello:?}])\n",
                hello = example("hello").to_str().expect("utf-8 path")
            ),
        );
        let mut args = vec!["--listen", "http=tcp://127.0.0.1:0"];
        if flag {
            args.push("--sockets-nonblocking");
        }
        args.extend(["--", script.to_str().expect("utf-8 path")]);
        let mut h = Handoff::start(dir.path(), &args);
        let line = h.wait_log("fd 3 blocking:");
        h.wait_generation(1);
        assert!(
            line.contains(&format!("fd 3 blocking: {expected}")),
            "--sockets-nonblocking {flag}: {line}"
        );
    }
}
