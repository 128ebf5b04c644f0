//! The process controls (issue 12): `user`, `group`,
//! `supplementary_groups`, `umask`, `rlimits`, `env_file`, `clear_env`.
//! Parsed, resolved, merged with the flags, and each mistake at its place.

use std::path::Path;

use super::{errors, parse, parse_with};
use crate::config::*;

/// One socket and a program; `{keys}` are `[program]` lines from line 6 on.
fn file(keys: &str) -> String {
    format!("[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [\"x\"]\n{keys}\n")
}

fn controls(keys: &str) -> ProcessControls {
    parse(&file(keys)).unwrap().program.controls
}

fn flags(program: ProgramSettings) -> Overrides {
    Overrides {
        program,
        ..Overrides::default()
    }
}

/// The test machine's `nobody`, as the user database has it.
fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a `nobody` user");
    (u.uid.as_raw(), u.gid.as_raw())
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn nothing_asked_nothing_changed() {
    assert_eq!(controls(""), ProcessControls::default());
}

#[test]
fn a_user_brings_its_primary_group_and_its_groups() {
    if !root() {
        // As anyone else, another user is refused at load (tested below)
        // or, unchecked, dropped: there is nothing this process could do.
        return eprintln!("skipped: not root");
    }
    let (uid, gid) = nobody();
    let c = controls("user = \"nobody\"")
        .credentials
        .expect("credentials");
    assert_eq!((c.uid, c.gid), (uid, gid));
    assert!(c.groups.contains(&gid), "{:?}", c.groups);
    assert_eq!(c.user, "nobody");
    // By number, a group of its own, and groups named.
    let c = controls(&format!(
        "user = {uid}\ngroup = \"root\"\nsupplementary_groups = [\"root\", 4242]"
    ))
    .credentials
    .expect("credentials");
    assert_eq!((c.uid, c.gid, c.groups), (uid, 0, vec![0, 4242]));
    // A uid the database does not know is its own group.
    let c = controls("user = 54321").credentials.expect("credentials");
    assert_eq!((c.uid, c.gid, c.groups), (54321, 54321, vec![54321]));
    // A group alone keeps the uid and drops root's groups.
    let c = controls("group = 4242").credentials.expect("credentials");
    assert_eq!((c.uid, c.gid, c.groups), (0, 4242, vec![]));
}

#[test]
fn unknown_users_and_groups_are_refused_at_their_line() {
    let e = errors(&file("user = \"no-such-user-xyz\""));
    assert!(
        e.starts_with("t.toml:6:8: user: user `no-such-user-xyz`: no such user"),
        "{e}"
    );
    let e = errors(&file("user = 0\ngroup = \"no-such-group-xyz\""));
    assert!(
        e.starts_with("t.toml:7:9: group: group `no-such-group-xyz`: no such group"),
        "{e}"
    );
    let e = errors(&file(
        "user = 0\nsupplementary_groups = [\"root\", \"no-such-group-xyz\"]",
    ));
    assert!(
        e.starts_with("t.toml:7:24: supplementary_groups: group `no-such-group-xyz`"),
        "{e}"
    );
    let e = errors(&file("user = true"));
    assert!(
        e.starts_with("t.toml:6:8: user: expected a name or a number"),
        "{e}"
    );
    let e = errors(&file("user = -1"));
    assert!(e.contains("-1 is not a user or group id"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn the_flags_win_and_their_mistakes_are_the_flags() {
    let e = parse_with(
        &file("user = 0"),
        flags(ProgramSettings {
            user: Some(Id::Name("no-such-user-xyz".into())),
            ..ProgramSettings::default()
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("--user: user `no-such-user-xyz`"), "{e}");
    assert_eq!(Id::parse("65534"), Ok(Id::Number(65534)));
    assert_eq!(Id::parse("www-data"), Ok(Id::Name("www-data".into())));
    assert!(Id::parse("").is_err());
    assert!(Id::parse("99999999999").is_err());
}

#[test]
fn only_root_may_run_a_program_as_another_user() {
    let c = Credentials {
        user: "nobody".into(),
        uid: 65534,
        gid: 65534,
        groups: vec![65534],
    };
    assert_eq!(process::privilege_problem(&c, 0, 0), None);
    // Its own user: nothing to change.
    assert_eq!(process::privilege_problem(&c, 65534, 65534), None);
    let e = process::privilege_problem(&c, 1000, 1000).expect("refused");
    assert!(
        e.contains("handoff runs as uid 1000, not as root") && e.contains("user nobody"),
        "{e}"
    );
    // Another group is a change too.
    assert!(process::privilege_problem(&c, 65534, 1000).is_some());
}

#[test]
fn umask_octal_in_the_file_and_as_text() {
    assert_eq!(controls("umask = 0o027").umask, Some(0o027));
    assert_eq!(controls("umask = \"077\"").umask, Some(0o077));
    assert_eq!(parse_umask("027"), Ok(0o027));
    assert_eq!(parse_umask("0o7"), Ok(0o7));
    assert!(parse_umask("8").is_err());
    assert!(parse_umask("1777").is_err());
    let e = errors(&file("umask = 0o1000"));
    assert!(
        e.starts_with("t.toml:6:9: umask 1000 is not a umask"),
        "{e}"
    );
    let e = errors(&file("umask = -1"));
    assert!(e.starts_with("t.toml:6:9: umask -1"), "{e}");
}

#[test]
fn rlimits_by_name_number_infinity_or_soft_and_hard() {
    let limits = controls(
        "rlimits = { nofile = 65536, core = \"infinity\", stack = { soft = 8388608, hard = \"infinity\" } }",
    )
    .rlimits;
    assert_eq!(
        limits,
        vec![
            Rlimit {
                resource: Resource::Nofile,
                soft: 65536,
                hard: 65536
            },
            Rlimit {
                resource: Resource::Core,
                soft: u64::MAX,
                hard: u64::MAX
            },
            Rlimit {
                resource: Resource::Stack,
                soft: 8388608,
                hard: u64::MAX
            },
        ]
    );
    // Every name setrlimit knows.
    for r in Resource::ALL {
        let l = controls(&format!("rlimits = {{ {} = 0 }}", r.name())).rlimits;
        assert_eq!(l[0].resource, r);
    }
}

#[test]
fn rlimit_mistakes_each_at_their_place() {
    // An unknown name at the name; the good ones beside it are no error.
    let e = errors(&file("[program.rlimits]\nnofile = 10\nfiles = 10"));
    assert!(
        e.starts_with("t.toml:8:1: rlimits: `files` is not a resource setrlimit knows"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    // A bad value at the value.
    let cases = [
        ("core = -1", "t.toml:6:20: rlimits.core: -1 is not a limit"),
        ("core = \"unlimited\"", "t.toml:6:20: rlimits.core:"),
        (
            "core = true",
            "t.toml:6:20: rlimits.core: the boolean true is not a limit",
        ),
        (
            "core = { soft = 2, hard = 1 }",
            "t.toml:6:20: rlimits.core: the soft limit (2) is above the hard limit (1)",
        ),
        ("core = { soft = 2 }", "needs both `soft` and `hard`"),
        (
            "core = { soft = 2, hard = 3, max = 4 }",
            "unknown key `max`",
        ),
        ("core = { soft = \"x\", hard = 3 }", "rlimits.core.soft:"),
    ];
    for (entry, expected) in cases {
        let e = errors(&file(&format!("rlimits = {{ {entry} }}")));
        assert!(e.contains(expected), "{entry}: {e}");
    }
    let e = errors(&file("rlimits = 5"));
    assert!(e.starts_with("t.toml:6:11:"), "{e}");
}

#[test]
fn clear_env_from_the_file_or_the_flag() {
    assert!(controls("clear_env = true").clear_env);
    assert!(!controls("clear_env = false").clear_env);
    let c = parse_with(
        &file(""),
        flags(ProgramSettings {
            clear_env: Some(true),
            ..ProgramSettings::default()
        }),
    )
    .unwrap();
    assert!(c.program.controls.clear_env);
}

/// A config file and an env file in a temp dir, loaded as `load` does.
fn load_with_env_file(keys: &str, env_file: &str) -> (tempfile::TempDir, Result<Config, String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.env"), env_file).unwrap();
    let config = dir.path().join("handoff.toml");
    std::fs::write(&config, file(keys)).unwrap();
    let loaded = load(Some(&config), Overrides::default()).map_err(|e| e.to_string());
    (dir, loaded)
}

#[test]
fn the_env_file_is_relative_to_the_config_and_overrides_env() {
    let (dir, c) = load_with_env_file(
        "env = { A = \"from env\", B = \"kept\" }\nenv_file = \"app.env\"",
        "# secrets\nexport A='from file'\nC=\"{fd:nope}\"\n",
    );
    let c = c.unwrap();
    let env_file = c.program.controls.env_file.expect("read");
    assert_eq!(env_file.path, dir.path().join("app.env"));
    assert_eq!(
        env_file.vars,
        vec![
            ("A".to_string(), "from file".to_string()),
            ("C".to_string(), "{fd:nope}".to_string())
        ]
    );
    // `env` keeps its own; the child gets the file's over it (spawn.rs).
    assert_eq!(c.program.env["B"], "kept");
}

#[test]
fn env_file_mistakes_name_both_files_and_lines() {
    let (dir, c) = load_with_env_file("env_file = \"app.env\"", "A=1\n\nnot a line\n");
    let e = c.unwrap_err();
    let config = dir.path().join("handoff.toml");
    let env = dir.path().join("app.env");
    assert_eq!(
        e,
        format!(
            "{}:6:12: env_file: {}:3: `not a line` is not KEY=VALUE",
            config.display(),
            env.display()
        )
    );
    let (dir, c) = load_with_env_file("env_file = \"missing.env\"", "");
    let e = c.unwrap_err();
    assert!(
        e.contains(":6:12: env_file: cannot read")
            && e.contains(&dir.path().join("missing.env").display().to_string()),
        "{e}"
    );
    // The flag's is named as the flag.
    let e = parse_with(
        &file(""),
        flags(ProgramSettings {
            env_file: Some(Path::new("/nonexistent/app.env").into()),
            ..ProgramSettings::default()
        }),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("--env-file: cannot read /nonexistent/app.env"),
        "{e}"
    );
}

#[test]
fn the_env_file_counts_in_the_env_limit() {
    let big = "x".repeat(100 * 1024);
    let text: String = (0..MAX_ENV_BYTES / big.len() + 1)
        .map(|i| format!("V{i}={big}\n"))
        .collect();
    let (_dir, c) = load_with_env_file("env_file = \"app.env\"", &text);
    let e = c.unwrap_err();
    assert!(e.contains("at most 2097152 (2 MiB) is accepted"), "{e}");
    let (_dir, c) = load_with_env_file("env_file = \"app.env\"", &"x".repeat(200 * 1024));
    assert!(c.unwrap_err().contains("is not KEY=VALUE"));
    let line = format!("A={}", "x".repeat(MAX_ENV_ENTRY));
    let (_dir, c) = load_with_env_file("env_file = \"app.env\"", &line);
    assert!(c.unwrap_err().contains("at most 131072 per variable"));
}

#[test]
fn a_spec_from_before_the_controls_reads_as_none() {
    let c = parse(&file("umask = 0o027\nclear_env = true")).unwrap();
    let mut program = serde_json::to_value(&c.program).unwrap();
    let back: ProgramSpec = serde_json::from_value(program.clone()).unwrap();
    assert_eq!(back, c.program, "the controls survive an upgrade");
    program.as_object_mut().unwrap().remove("controls");
    let old: ProgramSpec = serde_json::from_value(program).unwrap();
    assert_eq!(old.controls, ProcessControls::default());
}
