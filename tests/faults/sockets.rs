//! The listening sockets: a socket the config no longer has is closed, a
//! listener a child shut down is brought back.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::Path;

use crate::harness::eventually;
use crate::harness::{client, example, get, temp_dir, Handoff};

fn write_config(path: &Path, sockets: &str) {
    let text = format!(
        "{sockets}\n[program]\ncommand = [{hello:?}]\n",
        hello = example("hello").display().to_string()
    );
    std::fs::write(path, text).expect("write config");
}

fn reload(h: &Handoff) -> (i32, String, String) {
    client(&["reload", "--control", h.control.to_str().expect("utf-8")])
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn refused(addr: &str) -> bool {
    matches!(TcpStream::connect(addr), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

const HTTP: &str = "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n";

/// Issue 7.2: a socket bound at start-up and removed by a reload stayed
/// LISTEN for the life of the supervisor (the first generation was kept
/// alive by the start-up code), so clients hung instead of being refused
/// and adding it back failed with "Address already in use".
#[test]
fn a_socket_removed_by_reload_closes_and_can_be_added_back() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    let extra = format!("127.0.0.1:{}", free_port());
    let with_extra = format!("{HTTP}[[socket]]\nname = \"extra\"\nlisten = \"tcp://{extra}\"\n");
    write_config(&file, &with_extra);
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    TcpStream::connect(&extra).expect("the extra socket listens");

    write_config(&file, HTTP);
    let (code, out, err) = reload(&h);
    assert_eq!(code, 0, "{out}{err}");
    eventually("the removed socket refuses connections", || refused(&extra));
    assert_eq!(h.status().sockets.len(), 1);
    assert_eq!(get(&h.addr("http"), "/").expect("serves").0, 200);

    write_config(&file, &with_extra);
    let (code, out, err) = reload(&h);
    assert_eq!(code, 0, "adding the socket back binds it again: {out}{err}");
    // (The example server serves only `http`; handoff holds `extra`.)
    TcpStream::connect(&extra).expect("the re-added socket listens");
    assert_eq!(h.status().sockets.len(), 2);
}

/// Issue 7.6: a child that calls shutdown() on the shared listener took
/// the service down for good, silently, while restart, scale and upgrade
/// reported success. handoff now notices and makes it listen again.
#[test]
fn a_listener_a_child_shut_down_listens_again() {
    let dir = temp_dir();
    let trigger = dir.path().join("shutdown-next");
    let script = dir.path().join("server.sh");
    crate::harness::write_executable(
        &script,
        &format!(
            "#!/bin/sh\nif [ -e {t} ]; then rm {t}; python3 -c 'import socket; socket.socket(fileno=3).shutdown(socket.SHUT_RDWR)'; fi\nexec {hello}\n",
            t = trigger.display(),
            hello = example("hello").display()
        ),
    );
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
    let addr = h.addr("http");
    std::fs::write(&trigger, "").expect("touch");
    let (code, out, err) = crate::harness::restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!trigger.exists(), "generation 2 shut the listener down");
    // At the latest, status notices it.
    let status = h.status();
    let socket = &status.sockets[0];
    assert!(socket.listening, "{status:?}");
    assert_eq!(socket.revived, 1, "{status:?}");
    h.wait_log("had stopped listening: a child called shutdown()");
    let mut served = false;
    eventually("the revived socket serves", || {
        served = matches!(get(&addr, "/"), Ok((200, _)));
        served
    });
    // And it stays so through another restart.
    let (code, out, err) = crate::harness::restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(get(&addr, "/").expect("serves").0, 200);
    assert_eq!(h.status().sockets[0].revived, 1);
}
