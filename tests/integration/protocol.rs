//! The control socket, spoken by hand as a script would.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use crate::harness::{serve_hello, temp_dir};

#[test]
fn bad_requests_get_error_replies_and_the_supervisor_keeps_running() {
    let dir = temp_dir();
    let h = serve_hello(dir.path(), &[]);

    let stream = UnixStream::connect(&h.control).expect("connect");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    let mut ask = |line: &[u8]| {
        writer.write_all(line).expect("write");
        let mut answer = String::new();
        reader.read_line(&mut answer).expect("read");
        answer
    };
    assert!(ask(b"garbage\n").contains(r#""kind":"bad_request""#));
    assert!(ask(b"{\"command\":\"self_destruct\"}\n").contains(r#""kind":"bad_request""#));
    let status = ask(b"{\"command\":\"status\"}\n");
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    assert_eq!(status["result"], "status");
    assert_eq!(status["generation"], 1);
    assert_eq!(status["workers"][0]["state"], "ready");

    // An oversized request: an error, then the connection closes.
    let mut big = UnixStream::connect(&h.control).expect("connect");
    let _ = big.write_all(&vec![b'x'; 100_000]);
    let mut answer = String::new();
    BufReader::new(&big).read_line(&mut answer).expect("read");
    assert!(answer.contains("longer than"), "{answer}");

    // The supervisor is fine.
    assert_eq!(h.status().generation, 1);
    let (code, out, err) = crate::harness::restart(&h);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn status_json_is_stable_for_scripts() {
    let dir = temp_dir();
    let h = serve_hello(dir.path(), &[]);
    let (code, out, _) = crate::harness::client(&[
        "status",
        "--json",
        "--control",
        h.control.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    for key in [
        "version",
        "pid",
        "uptime_ms",
        "generation",
        "restarting",
        "shutting_down",
        "upgrades",
        "sockets",
        "workers",
    ] {
        assert!(v.get(key).is_some(), "status --json lacks {key}: {out}");
    }
    for key in ["name", "listen", "address", "fd", "backlog"] {
        assert!(
            v["sockets"][0].get(key).is_some(),
            "socket lacks {key}: {out}"
        );
    }
    for key in [
        "slot",
        "pid",
        "generation",
        "state",
        "since_unix_ms",
        "for_ms",
        "restarts",
        "status",
    ] {
        assert!(
            v["workers"][0].get(key).is_some(),
            "worker lacks {key}: {out}"
        );
    }
    assert_ne!(
        v["sockets"][0]["address"], "127.0.0.1:0",
        "the real port is shown"
    );
}
