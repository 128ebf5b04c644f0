//! `preload` and `ready = "listen"` (issue 11 §1): parsed, merged with the
//! flag, and each mistake at its place.

use super::{errors, parse, parse_with};
use crate::config::*;

/// One socket and a program; `{keys}` are `[program]` lines from line 6 on.
fn preload_file(keys: &str) -> String {
    format!("[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [\"x\"]\n{keys}\n")
}

fn flag(preload: Option<bool>) -> Overrides {
    Overrides {
        program: ProgramSettings {
            preload,
            ..ProgramSettings::default()
        },
        ..Overrides::default()
    }
}

#[test]
fn off_unless_asked_by_the_file_or_the_flag() {
    assert!(!parse(&preload_file("")).unwrap().program.preload);
    assert!(
        parse(&preload_file("preload = true"))
            .unwrap()
            .program
            .preload
    );
    assert!(
        !parse(&preload_file("preload = false"))
            .unwrap()
            .program
            .preload
    );
    let c = parse_with(&preload_file(""), flag(Some(true))).unwrap();
    assert!(c.program.preload);
}

#[test]
fn ready_listen_is_read_and_needs_preload() {
    let c = parse(&preload_file("preload = true\nready = \"listen\"")).unwrap();
    assert_eq!(c.program.ready, Readiness::Listen);
    let e = errors(&preload_file("ready = \"listen\""));
    assert!(
        e.starts_with("t.toml:6:9: ready = \"listen\"") && e.contains("preload = true"),
        "{e}"
    );
    // The flag is enough.
    let c = parse_with(&preload_file("ready = \"listen\""), flag(Some(true))).unwrap();
    assert_eq!(c.program.ready, Readiness::Listen);
}

#[test]
fn a_mistyped_preload_is_refused_at_its_line_without_a_second_error() {
    let e = errors(&preload_file("preload = \"yes\"\nready = \"listen\""));
    assert!(e.starts_with("t.toml:6:11:"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn more_sockets_than_the_library_looks_after_are_refused() {
    let mut text = String::new();
    for i in 0..=crate::preload::MAX_SOCKETS {
        text += &format!("[[socket]]\nname = \"s{i}\"\nlisten = \"tcp://127.0.0.1:0\"\n");
    }
    text += "[program]\ncommand = [\"x\"]\npreload = true\n";
    let e = errors(&text);
    assert!(
        e.contains("preload looks after at most 64 sockets; this config has 65"),
        "{e}"
    );
    let ok = text.replace("preload = true", "preload = false");
    assert!(parse(&ok).is_ok());
}

#[test]
fn port_templates_name_a_socket_with_a_port() {
    let c = parse(&preload_file("").replace("[\"x\"]", "[\"x\", \"--port\", \"{port:http}\"]"));
    assert!(c.is_ok());
    let text = "[[socket]]\nname = \"u\"\nlisten = \"unix:///tmp/u.sock\"\n[program]\ncommand = [\"x\", \"{port:u}\"]\n";
    let e = errors(text);
    assert!(
        e.starts_with("t.toml:5:") && e.contains("socket `u` is a unix socket: it has no port"),
        "{e}"
    );
}
