//! The listening sockets: a socket the config no longer has is closed, a
//! listener a child shut down is brought back.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::Path;

use crate::harness::{client, example, get, temp_dir, Handoff};
use crate::wait::eventually;

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
