//! systemd variables handoff inherited but that are not for it: stale
//! LISTEN_* meant for another pid (issue 7 item 4), and no watchdog asked
//! for, or one asked for another pid (item 12).

use std::os::fd::{AsFd, OwnedFd};

use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::Signal;

use crate::activator::{activate, NotifySocket};
use crate::harness::{
    client, example, get_from_generation, handoff_bin, run_command, temp_dir, Handoff,
};

/// "socket:[INODE]", as /proc/PID/fd/N names a socket.
fn socket_name(fd: impl AsFd) -> String {
    let stat = nix::sys::stat::fstat(fd).expect("fstat");
    format!("socket:[{}]", stat.st_ino)
}

#[test]
fn stale_listen_variables_for_another_pid_are_left_alone() {
    let dir = temp_dir();
    let stale = OwnedFd::from(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
    let stale_name = socket_name(&stale);
    let hello = example("hello");
    let mut cmd = run_command(handoff_bin(), dir.path());
    cmd.args(["--listen", "http=tcp://127.0.0.1:0", "--"])
        .arg(&hello)
        // Meant for pid 1, and naming a socket the config does not have.
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDNAMES", "x");
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: stale,
        child_fd: 3,
    }])
    .expect("distinct fds");
    let mut h = Handoff::spawn(cmd, dir.path());
    h.wait_log("socket http listening on 127.0.0.1:");
    h.wait_generation(1);

    // Not adopted, not closed: fd 3 is still the socket pid 1's was.
    let pid = h.child.id();
    let fd3 = std::fs::read_link(format!("/proc/{pid}/fd/3")).expect("fd 3 is still open");
    assert_eq!(fd3.to_string_lossy(), stale_name, "{}", h.log());

    // The child sees handoff's variables, not the stale ones, and no fd
    // but its own socket.
    let env = get_from_generation(&h.addr("http"), "/env", 1);
    let env: serde_json::Value = serde_json::from_str(&env).expect("JSON");
    assert_eq!(env["listen_fds"], "1", "{env}");
    assert_eq!(env["listen_fdnames"], "http", "{env}");
    assert_eq!(env["listen_pid"], env["pid"].to_string(), "{env}");
    assert_eq!(env["fds"], serde_json::json!([0, 1, 2, 3]), "{env}");

    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.log());
}

/// Runs hello under handoff with a NOTIFY_SOCKET and `env`, upgrades it
/// in place, stops it, and returns every datagram handoff sent.
fn notifications_around_an_upgrade(env: &[(&str, &str)]) -> Vec<String> {
    let dir = temp_dir();
    let notify = NotifySocket::bind(dir.path(), false);
    let hello = example("hello");
    let mut all_env = vec![("NOTIFY_SOCKET", notify.address.as_str())];
    all_env.extend_from_slice(env);
    let mut h = activate(
        dir.path(),
        vec![],
        &all_env,
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--",
            hello.to_str().expect("utf-8"),
        ],
    );
    h.wait_generation(1);
    let ready = notify.wait_for("READY=1", 0);

    let (code, out, err) = client(&["upgrade", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_log("upgraded from handoff");

    // The datagrams arrive in the order they were sent: once STOPPING=1
    // is here, so is everything the upgrade sent.
    h.signal(Signal::SIGTERM);
    notify.wait_for("STOPPING=1", ready + 1);
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.log());
    notify.texts()
}

#[test]
fn an_upgrade_does_not_ping_a_watchdog_nobody_asked_for() {
    let texts = notifications_around_an_upgrade(&[]);
    assert!(
        !texts.iter().any(|t| t.contains("WATCHDOG=1")),
        "no WATCHDOG_USEC, yet: {texts:?}"
    );
}

#[test]
fn an_upgrade_does_not_ping_a_watchdog_set_for_another_pid() {
    // pid 1 is never handoff: the watchdog is someone else's.
    let texts =
        notifications_around_an_upgrade(&[("WATCHDOG_USEC", "600000000"), ("WATCHDOG_PID", "1")]);
    assert!(
        !texts.iter().any(|t| t.contains("WATCHDOG=1")),
        "WATCHDOG_PID=1 is not handoff, yet: {texts:?}"
    );
}
