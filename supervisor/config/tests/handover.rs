//! `handover` (top-level and per socket), `handover_settle` and
//! `handover_timeout` (issue 10): parsed, defaulted, merged with the flags,
//! and each mistake at its place.

use std::time::Duration;

use super::{errors, parse, parse_with, GOOD};
use crate::config::*;
use crate::sockets::{Handover, SocketSpec};

/// Three sockets: one of each kind a handover can be refused for, none
/// with a `handover` of its own; `{top}` is put at the top of the file,
/// `{tcp}` in the TCP socket's table.
fn handover_file(top: &str, tcp: &str) -> String {
    format!(
        "{top}\n[[socket]]\nname = \"tcp\"\nlisten = \"tcp://127.0.0.1:0\"\n{tcp}\n\
         [[socket]]\nname = \"unix\"\nlisten = \"unix://u.sock\"\n\
         [[socket]]\nname = \"port\"\nlisten = \"tcp://127.0.0.1:0\"\nreuse_port = true\n\
         [program]\ncommand = [\"x\"]\n"
    )
}

fn handovers(c: &Config) -> Vec<(&str, Option<Handover>)> {
    c.sockets
        .iter()
        .map(|s| (s.name.as_str(), s.handover))
        .collect()
}

#[test]
fn handover_unset_is_none_and_the_waits_have_their_defaults() {
    let c = parse(&handover_file("", "")).unwrap();
    assert_eq!(
        handovers(&c),
        [("tcp", None), ("unix", None), ("port", None)]
    );
    assert_eq!(c.program.handover_settle, Duration::from_millis(100));
    assert_eq!(c.program.handover_timeout, Duration::from_secs(5));
    assert_eq!(c.program.handover_settle, DEFAULT_HANDOVER_SETTLE);
    assert_eq!(c.program.handover_timeout, DEFAULT_HANDOVER_TIMEOUT);
}

/// The top-level value is every socket's that has none of its own, even
/// those that cannot be steered (they fall back when bound): no error.
#[test]
fn a_global_handover_is_each_sockets_default_and_steer_is_no_error_anywhere() {
    let c = parse(&handover_file("handover = \"steer\"", "")).unwrap();
    let steer = Some(Handover::Steer);
    assert_eq!(
        handovers(&c),
        [("tcp", steer), ("unix", steer), ("port", steer)]
    );
    let c = parse(&handover_file("handover = \"shared\"", "")).unwrap();
    let shared = Some(Handover::Shared);
    assert_eq!(
        handovers(&c),
        [("tcp", shared), ("unix", shared), ("port", shared)]
    );
}

#[test]
fn a_sockets_own_handover_wins_over_the_global_one() {
    let c = parse(&handover_file(
        "handover = \"shared\"",
        "handover = \"steer\"",
    ))
    .unwrap();
    assert_eq!(c.sockets[0].handover, Some(Handover::Steer));
    assert_eq!(c.sockets[1].handover, Some(Handover::Shared));
    let c = parse(&handover_file(
        "handover = \"steer\"",
        "handover = \"shared\"",
    ))
    .unwrap();
    assert_eq!(c.sockets[0].handover, Some(Handover::Shared));
    assert_eq!(c.sockets[1].handover, Some(Handover::Steer));
}

/// `--handover` stands for the file's top-level key: it replaces it, and a
/// socket's own value still wins over it; a `--listen` socket, which has
/// none of its own, takes it.
#[test]
fn the_handover_flag_replaces_the_global_key_not_a_sockets_own() {
    let overrides = Overrides {
        handover: Some(Handover::Shared),
        sockets: vec![SocketSpec {
            name: "flag".into(),
            listen: "tcp://127.0.0.1:9".parse().unwrap(),
            backlog: None,
            reuse_port: false,
            mode: None,
            handover: None,
            options: Default::default(),
        }],
        ..Overrides::default()
    };
    let text = handover_file("handover = \"steer\"", "handover = \"steer\"");
    let c = parse_with(&text, overrides).unwrap();
    let (steer, shared) = (Some(Handover::Steer), Some(Handover::Shared));
    assert_eq!(
        handovers(&c),
        [
            ("tcp", steer),
            ("unix", shared),
            ("port", shared),
            ("flag", shared)
        ]
    );
}

#[test]
fn an_unknown_handover_names_its_line_and_the_valid_ones() {
    let e = errors(&handover_file(
        "handover = \"steering\"",
        "handover = \"SHARED\"",
    ));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(
        lines,
        [
            "t.toml:1:12: handover = \"steering\": expected \"steer\" or \"shared\"",
            "t.toml:5:12: handover = \"SHARED\": expected \"steer\" or \"shared\"",
        ],
        "{e}"
    );
}

#[test]
fn a_sockets_own_steer_is_refused_on_a_unix_socket() {
    for listen in ["unix://u.sock", "unix://@abstract"] {
        let e = errors(&format!(
            "[[socket]]\nname = \"a\"\nlisten = \"{listen}\"\nhandover = \"steer\"\n[program]\ncommand = [\"x\"]\n"
        ));
        assert_eq!(
            e,
            "t.toml:4:12: handover = \"steer\" on a unix:// socket: unix sockets have no SO_REUSEPORT: they are always shared; remove the line or set \"shared\"",
        );
    }
    // Said as it is, "shared" is no mistake.
    let c = parse("[[socket]]\nname = \"a\"\nlisten = \"unix://u.sock\"\nhandover = \"shared\"\n[program]\ncommand = [\"x\"]\n").unwrap();
    assert_eq!(c.sockets[0].handover, Some(Handover::Shared));
}

#[test]
fn a_sockets_own_steer_is_refused_with_reuse_port() {
    let text = "[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:0\"\nreuse_port = true\n\n# why\nhandover = \"steer\"\n[program]\ncommand = [\"x\"]\n";
    let e = errors(text);
    assert!(
        e.starts_with("t.toml:7:12: handover = \"steer\" with reuse_port = true: reuse_port lets other processes join the port's SO_REUSEPORT group, which steering cannot allow"),
        "{e}"
    );
    assert!(e.ends_with("pick one"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    let c = parse(&text.replace("\"steer\"", "\"shared\"")).unwrap();
    assert_eq!(c.sockets[0].handover, Some(Handover::Shared));
}

#[test]
fn handover_settle_must_be_at_most_handover_timeout() {
    let file = |settle: &str, timeout: &str| {
        format!(
            "[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [\"x\"]\n{settle}\n{timeout}\n"
        )
    };
    let e = errors(&file(
        "handover_settle = \"2s\"",
        "handover_timeout = \"1s\"",
    ));
    assert_eq!(
        e,
        "t.toml:6:19: handover_settle (2s) must be at most handover_timeout (1s): the old generation's queue must stay empty for handover_settle within handover_timeout"
    );
    // Against the default timeout, at the settle's line.
    let e = errors(&file("", "handover_settle = \"6s\""));
    assert!(
        e.starts_with("t.toml:7:19: handover_settle (6s) must be at most handover_timeout (5s)"),
        "{e}"
    );
    // Against the default settle, at the timeout's line.
    let e = errors(&file("handover_timeout = \"50ms\"", ""));
    assert!(
        e.starts_with(
            "t.toml:6:20: handover_settle (100ms) must be at most handover_timeout (50ms)"
        ),
        "{e}"
    );
    // A flag's value is the flag's: the line it replaced is not the mistake.
    let flags = |settle: Option<u64>, timeout: Option<u64>| Overrides {
        program: ProgramSettings {
            handover_settle: settle.map(Duration::from_millis),
            handover_timeout: timeout.map(Duration::from_millis),
            ..ProgramSettings::default()
        },
        ..Overrides::default()
    };
    let text = file("handover_settle = \"2s\"", "handover_timeout = \"3s\"");
    let e = parse_with(&text, flags(None, Some(1000)))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("t.toml:6:19: handover_settle (2s)"), "{e}");
    let e = parse_with(&text, flags(Some(4000), None))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("t.toml:7:20: handover_settle (4s)"), "{e}");
    let e = parse_with(&text, flags(Some(4000), Some(1000)))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("handover_settle (4s)"), "{e}");
    // Equal is allowed, and so is no wait at all.
    let c = parse(&file(
        "handover_settle = \"1s\"",
        "handover_timeout = \"1s\"",
    ))
    .unwrap();
    assert_eq!(c.program.handover_settle, c.program.handover_timeout);
    let c = parse(&file(
        "handover_settle = \"0s\"",
        "handover_timeout = \"0s\"",
    ))
    .unwrap();
    assert_eq!(c.program.handover_timeout, Duration::ZERO);
}

/// A value of the wrong type, or one that is no duration, is reported
/// once, at its place, and the check of the pair is not a second error.
#[test]
fn handover_keys_of_the_wrong_type_are_each_reported_once() {
    let e = errors(
        "handover = 1\n[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:0\"\nhandover = true\n[program]\ncommand = [\"x\"]\nhandover_settle = 9\nhandover_timeout = \"1\"\n",
    );
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 4, "{e}");
    assert!(
        lines[0].starts_with("t.toml:1:12: handover: expected a string, not the integer 1"),
        "{e}"
    );
    assert!(
        lines[1].starts_with("t.toml:5:12: handover: expected a string, not the boolean true"),
        "{e}"
    );
    assert!(
        lines[2].starts_with(
            "t.toml:8:19: handover_settle: expected a duration such as \"10s\", not the integer 9"
        ),
        "{e}"
    );
    assert!(
        lines[3].starts_with("t.toml:9:20: handover_timeout: `1` is not a duration"),
        "{e}"
    );
}

#[test]
fn a_misspelt_handover_key_lists_the_new_keys() {
    let e = errors("handovr = \"steer\"\n[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:0\"\nhand_over = \"steer\"\n[program]\ncommand = [\"x\"]\nhandover_setle = \"1s\"\n");
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(
        lines[0].starts_with("t.toml:1:1: unknown field `handovr`")
            && lines[0].contains("`handover`"),
        "{e}"
    );
    assert!(
        lines[1].starts_with("t.toml:5:1: unknown field `hand_over` in [[socket]]")
            && lines[1].contains("`handover`"),
        "{e}"
    );
    assert!(
        lines[2].starts_with("t.toml:8:1: unknown field `handover_setle` in [program]")
            && lines[2].contains("`handover_settle`, `handover_timeout`"),
        "{e}"
    );
}

/// The upgrade state carries specs and flags: one written by a handoff
/// from before these keys reads as if they were unset.
#[test]
fn an_older_upgrade_state_reads_without_the_new_keys() {
    let socket: SocketSpec = serde_json::from_str(
        r#"{"name":"a","listen":{"Tcp":"127.0.0.1:80"},"backlog":null,"reuse_port":false,"mode":null}"#,
    )
    .unwrap();
    assert_eq!(socket.handover, None);
    let c = parse(GOOD).unwrap();
    let mut program = serde_json::to_value(&c.program).unwrap();
    let map = program.as_object_mut().unwrap();
    assert!(map.remove("handover_settle").is_some());
    assert!(map.remove("handover_timeout").is_some());
    let program: ProgramSpec = serde_json::from_value(program).unwrap();
    assert_eq!(program, c.program);
    let mut overrides = serde_json::to_value(Overrides::default()).unwrap();
    let map = overrides.as_object_mut().unwrap();
    assert!(map.remove("handover").is_some());
    let map = map["program"].as_object_mut().unwrap();
    assert!(map.remove("handover_settle").is_some());
    assert!(map.remove("handover_timeout").is_some());
    let overrides: Overrides = serde_json::from_value(overrides).unwrap();
    assert_eq!(overrides, Overrides::default());
    // And the value is written as the file spells it.
    let spec = SocketSpec {
        handover: Some(Handover::Steer),
        ..socket
    };
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains(r#""handover":"steer""#), "{json}");
    assert_eq!(serde_json::from_str::<SocketSpec>(&json).unwrap(), spec);
    assert_eq!(Handover::Shared.to_string(), "shared");
}
