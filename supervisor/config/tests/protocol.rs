//! `listen_env`, `listen_pid` and `sockets_nonblocking` (issue 11): how the
//! child is handed its sockets. Parsed, defaulted, merged with the flags,
//! and each mistake at its place.

use super::{errors, parse, parse_with, GOOD};
use crate::config::*;

/// One socket and a program; `{keys}` are `[program]` lines from line 6 on.
fn protocol_file(keys: &str) -> String {
    format!("[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [\"x\"]\n{keys}\n")
}

fn flags(
    listen_env: Option<bool>,
    listen_pid: Option<ListenPid>,
    sockets_nonblocking: Option<bool>,
) -> Overrides {
    Overrides {
        program: ProgramSettings {
            listen_env,
            listen_pid,
            sockets_nonblocking,
            ..ProgramSettings::default()
        },
        ..Overrides::default()
    }
}

/// (listen_env, listen_pid, sockets_nonblocking) as the spec has them.
fn knobs(c: &Config) -> (bool, ListenPid, bool) {
    (
        c.program.listen_env,
        c.program.listen_pid,
        c.program.sockets_nonblocking,
    )
}

#[test]
fn unset_the_child_gets_the_variables_its_pid_and_blocking_sockets() {
    assert_eq!(
        knobs(&parse(GOOD).unwrap()),
        (true, ListenPid::Child, false)
    );
    assert_eq!(
        knobs(&parse(&protocol_file("")).unwrap()),
        (true, ListenPid::Child, false)
    );
}

#[test]
fn the_keys_are_read_from_the_file() {
    let c = parse(&protocol_file(
        "listen_env = false\nlisten_pid = \"child\"\nsockets_nonblocking = true",
    ))
    .unwrap();
    assert_eq!(knobs(&c), (false, ListenPid::Child, true));
    let c = parse(&protocol_file(
        "listen_env = true\nlisten_pid = \"any\"\nsockets_nonblocking = false",
    ))
    .unwrap();
    assert_eq!(knobs(&c), (true, ListenPid::Any, false));
}

#[test]
fn flags_win_over_the_file_and_leave_what_they_do_not_give() {
    let file =
        protocol_file("listen_env = true\nlisten_pid = \"any\"\nsockets_nonblocking = false");
    let c = parse_with(&file, flags(None, Some(ListenPid::Child), Some(true))).unwrap();
    assert_eq!(knobs(&c), (true, ListenPid::Child, true));
    // --no-listen-env over the file's true (with the file's "any" the pair
    // would be refused: --listen-pid child replaces it).
    let c = parse_with(&file, flags(Some(false), Some(ListenPid::Child), None)).unwrap();
    assert_eq!(knobs(&c), (false, ListenPid::Child, false));
    // No flag: the file's values stand.
    let c = parse_with(&file, Overrides::default()).unwrap();
    assert_eq!(knobs(&c), (true, ListenPid::Any, false));
    // No file keys: the flags' values.
    let c = parse_with(
        &protocol_file(""),
        flags(None, Some(ListenPid::Any), Some(true)),
    )
    .unwrap();
    assert_eq!(knobs(&c), (true, ListenPid::Any, true));
}

#[test]
fn an_unknown_listen_pid_names_its_line_and_the_valid_ones() {
    let e = errors(&protocol_file("\nlisten_pid = \"parent\""));
    assert_eq!(
        e,
        "t.toml:7:14: listen_pid = \"parent\": expected \"child\" or \"any\""
    );
    // Refused, it is no second mistake together with listen_env = false.
    let e = errors(&protocol_file("listen_env = false\nlisten_pid = \"Any\""));
    assert_eq!(
        e,
        "t.toml:7:14: listen_pid = \"Any\": expected \"child\" or \"any\""
    );
}

#[test]
fn listen_pid_any_without_the_variables_is_refused_where_it_was_said() {
    const WHY: &str = ": listen_pid chooses whether LISTEN_PID is set, and without listen_env the child gets no LISTEN_* variables at all; remove one of the two";
    let file = protocol_file("listen_env = false\n# why\nlisten_pid = \"any\"");
    // Both in the file: at listen_pid's line, the key that does nothing.
    assert_eq!(
        errors(&file),
        format!("t.toml:8:14: listen_pid = \"any\" does nothing with listen_env = false{WHY}")
    );
    // One from a flag: named as a flag, at the line of the file's one.
    let pid_in_file = protocol_file("\nlisten_pid = \"any\"");
    let e = parse_with(&pid_in_file, flags(Some(false), None, None))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("t.toml:7:14: listen_pid = \"any\" does nothing with --no-listen-env{WHY}")
    );
    let env_in_file = protocol_file("\n\nlisten_env = false");
    let e = parse_with(&env_in_file, flags(None, Some(ListenPid::Any), None))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("t.toml:8:14: --listen-pid any does nothing with listen_env = false{WHY}")
    );
    // A flag replaces the file's line: that line is not the mistake.
    let e = parse_with(&file, flags(Some(false), Some(ListenPid::Any), None))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!("--listen-pid any does nothing with --no-listen-env{WHY}")
    );
    // Both flags, no file.
    let e = load(
        None,
        Overrides {
            sockets: vec![crate::sockets::SocketSpec {
                name: "http".into(),
                listen: "tcp://127.0.0.1:0".parse().unwrap(),
                backlog: None,
                reuse_port: false,
                mode: None,
                handover: None,
                options: Default::default(),
            }],
            program: ProgramSettings {
                command: Some(vec!["x".into()]),
                listen_env: Some(false),
                listen_pid: Some(ListenPid::Any),
                ..ProgramSettings::default()
            },
            ..Overrides::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        format!("--listen-pid any does nothing with --no-listen-env{WHY}")
    );
    // "child", said or by default, goes with no variables; "any" with them.
    let c = parse(&protocol_file("listen_env = false\nlisten_pid = \"child\"")).unwrap();
    assert_eq!(knobs(&c), (false, ListenPid::Child, false));
    let c = parse_with(&file, flags(Some(true), None, None)).unwrap();
    assert_eq!(knobs(&c), (true, ListenPid::Any, false));
}

/// A value of the wrong type is reported once, at its place, and the pair
/// check does not report its consequence as a second error.
#[test]
fn protocol_keys_of_the_wrong_type_are_each_reported_once() {
    let e = errors(&protocol_file(
        "listen_env = \"false\"\nlisten_pid = \"any\"\nsockets_nonblocking = 1",
    ));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 2, "{e}");
    assert!(
        lines[0].starts_with(
            "t.toml:6:14: listen_env: expected true or false, not the string \"false\""
        ),
        "{e}"
    );
    assert!(
        lines[1].starts_with(
            "t.toml:8:23: sockets_nonblocking: expected true or false, not the integer 1"
        ),
        "{e}"
    );
    let e = errors(&protocol_file("listen_env = false\nlisten_pid = true"));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(
        lines[0].starts_with("t.toml:7:14: listen_pid: expected a string, not the boolean true"),
        "{e}"
    );
}

#[test]
fn a_misspelt_protocol_key_lists_the_new_keys() {
    let e = errors(&protocol_file("listen_envs = false"));
    assert!(
        e.starts_with("t.toml:6:1: unknown field `listen_envs` in [program]")
            && e.contains("`listen_env`, `listen_pid`, `sockets_nonblocking`"),
        "{e}"
    );
}

/// The upgrade state carries the running specs and the flags: one written
/// by a handoff from before these keys reads with the defaults, and the
/// value is written as the file spells it.
#[test]
fn an_older_upgrade_state_reads_without_the_protocol_keys() {
    let c = parse(GOOD).unwrap();
    let mut program = serde_json::to_value(&c.program).unwrap();
    let map = program.as_object_mut().unwrap();
    for key in ["listen_env", "listen_pid", "sockets_nonblocking"] {
        assert!(map.remove(key).is_some(), "{key}");
    }
    let program: ProgramSpec = serde_json::from_value(program).unwrap();
    assert_eq!(program, c.program);
    assert_eq!(
        (
            program.listen_env,
            program.listen_pid,
            program.sockets_nonblocking
        ),
        (true, ListenPid::Child, false)
    );
    let mut overrides = serde_json::to_value(Overrides::default()).unwrap();
    let map = overrides["program"].as_object_mut().unwrap();
    for key in ["listen_env", "listen_pid", "sockets_nonblocking"] {
        assert!(map.remove(key).is_some(), "{key}");
    }
    let overrides: Overrides = serde_json::from_value(overrides).unwrap();
    assert_eq!(overrides, Overrides::default());
    // Set values go through the state and come back.
    let c = parse(&protocol_file(
        "listen_env = true\nlisten_pid = \"any\"\nsockets_nonblocking = true",
    ))
    .unwrap();
    let json = serde_json::to_string(&c.program).unwrap();
    assert!(json.contains(r#""listen_pid":"any""#), "{json}");
    assert_eq!(
        serde_json::from_str::<ProgramSpec>(&json).unwrap(),
        c.program
    );
    let o = flags(Some(false), Some(ListenPid::Any), Some(true));
    let json = serde_json::to_string(&o).unwrap();
    assert_eq!(serde_json::from_str::<Overrides>(&json).unwrap(), o);
}
