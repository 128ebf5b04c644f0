//! handoff under systemd: sockets passed in, notifications out, fd store.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;

use nix::sys::signal::Signal;

use crate::activator::{activate, NotifySocket};
use crate::harness::{example, get, get_from_generation, require, restart, temp_dir, write_script};

fn tcp_listener() -> (OwnedFd, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    (OwnedFd::from(l), addr)
}

fn config(dir: &std::path::Path, server: &str, extra: &str) -> std::path::PathBuf {
    let file = dir.join("handoff.toml");
    std::fs::write(
        &file,
        format!(
            "{extra}\n[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\n\
             [[socket]]\nname = \"admin\"\nlisten = \"unix://admin.sock\"\n\n\
             [program]\ncommand = [{server:?}]\nready_timeout = \"5s\"\n"
        ),
    )
    .expect("write config");
    file
}

#[test]
fn sockets_are_adopted_by_name_and_nothing_is_bound_again() {
    let dir = temp_dir();
    let (http, addr) = tcp_listener();
    let admin_path = dir.path().join("admin.sock");
    let admin = OwnedFd::from(UnixListener::bind(&admin_path).expect("bind admin"));
    let file = config(dir.path(), &example("hello").display().to_string(), "");
    // Passed in the other order than the config's: names decide.
    let mut h = activate(
        dir.path(),
        vec![("admin", admin), ("http", http)],
        &[],
        &["--config", file.to_str().expect("utf-8")],
    );
    h.wait_log_each(&[&["socket http adopted", &addr], &["socket admin adopted"]]);
    h.wait_generation(1);
    assert!(
        !h.log().contains("listening on 127.0.0.1"),
        "nothing was bound: {}",
        h.log()
    );
    assert_eq!(h.addr("http"), addr, "the port the activator bound");

    // The child sees handoff's own LISTEN_* (config order), not the ones
    // handoff received.
    let env = get_from_generation(&addr, "/env", 1);
    let env: serde_json::Value = serde_json::from_str(&env).expect("JSON");
    assert_eq!(env["listen_fdnames"], "http:admin");
    assert_eq!(env["listen_pid"], env["pid"].to_string());
    assert_eq!(env["fds"], serde_json::json!([0, 1, 2, 3, 4]));

    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit().code(), Some(0));
    assert!(
        admin_path.exists(),
        "a socket file handoff did not create is never removed"
    );
}

#[test]
fn a_passed_socket_that_does_not_fit_the_config_stops_the_start() {
    let dir = temp_dir();
    let udp = OwnedFd::from(std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"));
    let admin = OwnedFd::from(UnixListener::bind(dir.path().join("admin.sock")).expect("bind"));
    let file = config(dir.path(), &example("hello").display().to_string(), "");
    let mut h = activate(
        dir.path(),
        vec![("http", udp), ("admin", admin)],
        &[],
        &["--config", file.to_str().expect("utf-8")],
    );
    assert_eq!(h.wait_exit().code(), Some(5), "{}", h.log());
    assert!(
        h.log()
            .contains("socket `http`: the activator passed fd 3, which is a Datagram socket"),
        "{}",
        h.log()
    );
}

#[test]
fn start_reload_and_stop_are_announced_in_order() {
    let dir = temp_dir();
    let (http, addr) = tcp_listener();
    let admin = OwnedFd::from(UnixListener::bind(dir.path().join("admin.sock")).expect("bind"));
    let script = dir.path().join("server.sh");
    write_script(&script, &example("hello").display().to_string());
    let file = config(dir.path(), &script.display().to_string(), "");
    // An abstract NOTIFY_SOCKET, as in a container.
    let notify = NotifySocket::bind(dir.path(), true);
    let mut h = activate(
        dir.path(),
        vec![("http", http), ("admin", admin)],
        &[("NOTIFY_SOCKET", &notify.address)],
        &[
            "--config",
            file.to_str().expect("utf-8"),
            "--sighup",
            "reload",
        ],
    );
    let ready = notify.wait_for("READY=1", 0);
    assert!(
        notify.texts()[ready].contains("STATUS=generation 1: 1/1 workers ready"),
        "{:?}",
        notify.texts()
    );

    // A reload that succeeds: RELOADING=1 with MONOTONIC_USEC= in one
    // datagram, then READY=1 once generation 2 serves.
    h.signal(Signal::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", ready + 1);
    assert!(
        notify.texts()[reloading].contains("MONOTONIC_USEC="),
        "{:?}",
        notify.texts()
    );
    let done = notify.wait_for("READY=1", reloading + 1);
    assert!(
        notify.texts()[done].contains("STATUS=generation 2: 1/1 workers ready"),
        "{:?}",
        notify.texts()
    );
    get_from_generation(&addr, "/", 2);

    // A reload whose new generation fails: READY=1 all the same, and the
    // status says it was rolled back.
    write_script(
        &script,
        &format!("{} --exit-at-start", example("hello").display()),
    );
    h.signal(Signal::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", done + 1);
    let done = notify.wait_for("READY=1", reloading + 1);
    let text = &notify.texts()[done];
    assert!(
        text.contains("STATUS=generation 2: 1/1 workers ready (generation 3 failed:"),
        "{text}"
    );
    assert_eq!(get(&addr, "/").expect("generation 2 serves").0, 200);

    h.signal(Signal::SIGTERM);
    notify.wait_for("STOPPING=1", done + 1);
    assert_eq!(h.wait_exit().code(), Some(0));
    let texts = notify.texts();
    assert!(
        texts.last().is_some_and(|t| t.contains("STOPPING=1")),
        "STOPPING=1 comes last: {texts:?}"
    );
}

#[test]
fn the_watchdog_is_pinged() {
    let dir = temp_dir();
    let hello = example("hello");
    let notify = NotifySocket::bind(dir.path(), false);
    let mut h = activate(
        dir.path(),
        vec![],
        &[
            ("NOTIFY_SOCKET", &notify.address),
            ("WATCHDOG_USEC", "200000"),
        ],
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--",
            hello.to_str().expect("utf-8"),
        ],
    );
    let first = notify.wait_for("WATCHDOG=1", 0);
    let second = notify.wait_for("WATCHDOG=1", first + 1);
    notify.wait_for("WATCHDOG=1", second + 1);
    h.wait_generation(1);
}

#[test]
fn the_fd_store_keeps_the_sockets_when_handoff_is_killed() {
    let dir = temp_dir();
    let hello = example("hello").display().to_string();
    let notify = NotifySocket::bind(dir.path(), false);
    let file = dir.path().join("handoff.toml");
    std::fs::write(
        &file,
        format!("fdstore = true\n[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [{hello:?}]\n"),
    )
    .expect("write");
    let args = ["--config", file.to_str().expect("utf-8")];
    let mut h = activate(
        dir.path(),
        vec![],
        &[("NOTIFY_SOCKET", &notify.address)],
        &args,
    );
    h.wait_generation(1);
    let addr = h.addr("http");
    let stored = notify.wait_for("FDSTORE=1", 0);
    assert!(
        notify.texts()[stored].contains("FDNAME=http"),
        "{:?}",
        notify.texts()
    );
    let mut fds = notify.take_fds(stored);
    assert_eq!(fds.len(), 1, "one fd per FDSTORE message");
    let kept = fds.remove(0);

    // handoff dies hard; its child follows (PR_SET_PDEATHSIG). The socket
    // lives on in the store: connections wait in its queue.
    h.signal(Signal::SIGKILL);
    assert!(h.wait_exit().code().is_none());
    let mut waiting = std::net::TcpStream::connect(&addr).expect("queued, not refused");
    std::io::Write::write_all(
        &mut waiting,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("send");

    // systemd starts it again with the stored socket, by name.
    let mut again = activate(
        dir.path(),
        vec![("http", kept)],
        &[("NOTIFY_SOCKET", &notify.address)],
        &args,
    );
    again.wait_log("socket http adopted");
    again.wait_generation(1);
    assert_eq!(again.addr("http"), addr);
    // The request sent while no handoff ran is answered by the new one.
    waiting
        .set_read_timeout(Some(crate::harness::DEADLINE))
        .expect("timeout");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut waiting, &mut answer).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(get(&addr, "/").expect("serves again").0, 200);
    let (code, out, err) = restart(&again);
    assert_eq!(code, 0, "{out}{err}");
}

/// One HTTP GET over a unix socket.
fn get_unix(path: &std::path::Path) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(crate::harness::DEADLINE))
        .expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn under_debians_systemd_socket_activate() {
    const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";
    require(ACTIVATE);
    let dir = temp_dir();
    let socket = dir.path().join("app.sock");
    let hello = example("hello");
    let mut cmd = std::process::Command::new(ACTIVATE);
    cmd.arg("-l")
        .arg(&socket)
        .arg("--fdname=app")
        .args(["-E", "HANDOFF_LOG=debug"])
        .arg(crate::harness::handoff_bin())
        .arg("run")
        .arg("--control")
        .arg(dir.path().join("control.sock"))
        .arg("--listen")
        .arg(format!("app=unix://{}", socket.display()))
        .arg("--")
        .arg(&hello)
        .stdin(std::process::Stdio::null());
    let mut h = crate::harness::Handoff::spawn(cmd, dir.path());
    // It starts handoff on the first connection; that one waits in the
    // queue and is answered.
    h.wait_log("Listening on");
    let answer = get_unix(&socket);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("generation 1"),
        "{answer}"
    );
    h.wait_log("socket app adopted from the service manager");
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit().code(), Some(0));
}
