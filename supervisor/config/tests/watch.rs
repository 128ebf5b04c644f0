//! `--watch` (issue 13): merged from the flags, checked before anything
//! starts, and the defaults it changes (any process may take the sockets,
//! a build has minutes to become ready).

use std::time::Duration;

use super::{parse, parse_with};
use crate::config::*;

const FILE: &str = "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\
                    [program]\ncommand = [\"x\"]\n";

fn watching(settings: WatchSettings) -> Result<Config, ConfigErrors> {
    parse_with(
        FILE,
        Overrides {
            watch: settings,
            ..Overrides::default()
        },
    )
}

fn here() -> std::path::PathBuf {
    std::env::current_dir().expect("a current dir")
}

#[test]
fn no_watch_unless_asked_and_the_defaults_stay() {
    let c = parse(FILE).unwrap();
    assert_eq!(c.watch, None);
    assert_eq!(c.program.listen_pid, ListenPid::Child);
    assert_eq!(c.program.ready_timeout, DEFAULT_READY_TIMEOUT);
}

#[test]
fn watch_makes_paths_absolute_and_changes_two_defaults() {
    let c = watching(WatchSettings {
        paths: vec![".".into()],
        ignore: vec!["*.log".into()],
        debounce: None,
    })
    .unwrap();
    let watch = c.watch.expect("watching");
    assert!(watch.paths[0].is_absolute());
    assert_eq!(
        std::fs::canonicalize(&watch.paths[0]).unwrap(),
        std::fs::canonicalize(here()).unwrap()
    );
    assert_eq!(watch.ignore, vec!["*.log".to_string()]);
    assert_eq!(watch.debounce, DEFAULT_DEBOUNCE);
    assert_eq!(c.program.listen_pid, ListenPid::Any);
    assert_eq!(c.program.ready_timeout, WATCH_READY_TIMEOUT);
}

#[test]
fn flags_given_win_over_the_watch_defaults() {
    let c = parse_with(
        FILE,
        Overrides {
            watch: WatchSettings {
                paths: vec![".".into()],
                ..Default::default()
            },
            program: ProgramSettings {
                listen_pid: Some(ListenPid::Child),
                ready_timeout: Some(Duration::from_secs(7)),
                ..Default::default()
            },
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(c.program.listen_pid, ListenPid::Child);
    assert_eq!(c.program.ready_timeout, Duration::from_secs(7));
}

#[test]
fn each_mistake_is_named() {
    let e = watching(WatchSettings {
        paths: vec!["no/such/dir".into()],
        ignore: vec!["[".into()],
        debounce: Some(Duration::from_secs(11)),
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--watch no/such/dir: No such file or directory"),
        "{e}"
    );
    assert!(e.contains("--watch-ignore `[`: "), "{e}");
    assert!(
        e.contains("--watch-debounce 11s is longer than the most, 10s"),
        "{e}"
    );
    let e = watching(WatchSettings {
        ignore: vec!["*.log".into()],
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("need a path to watch"), "{e}");
}

#[test]
fn the_file_watch_table_is_read_and_flags_replace_its_paths() {
    let file = format!("{FILE}[watch]\npaths = [\".\"]\nignore = [\"*.log\"]\ndebounce = \"1s\"\n");
    let c = parse(&file).unwrap();
    let watch = c.watch.expect("watching");
    assert_eq!(watch.ignore, vec!["*.log".to_string()]);
    assert_eq!(watch.debounce, Duration::from_secs(1));
    assert_eq!(c.program.listen_pid, ListenPid::Any);
    // --watch replaces the file's paths; both sides' globs apply.
    let c = parse_with(
        &file,
        Overrides {
            watch: WatchSettings {
                paths: vec!["supervisor".into()],
                ignore: vec!["*.tmp".into()],
                debounce: None,
            },
            ..Overrides::default()
        },
    )
    .unwrap();
    let watch = c.watch.expect("watching");
    assert_eq!(watch.paths, vec![here().join("supervisor")]);
    assert_eq!(watch.ignore, vec!["*.log".to_string(), "*.tmp".to_string()]);
}

#[test]
fn the_file_watch_table_reports_each_mistake_at_its_line() {
    let e = parse(&format!(
        "{FILE}[watch]\npaths = [\"nowhere\"]\nignore = [\"[\"]\ndebounce = \"soon\"\npath = \"x\"\n"
    ))
    .unwrap_err()
    .to_string();
    let lines: Vec<&str> = e.lines().collect();
    // Relative to the file's directory, and shown so.
    let nowhere = here().join("nowhere");
    assert!(
        lines[0].starts_with(&format!(
            "t.toml:7:10: watch.paths {}: No such file",
            nowhere.display()
        )),
        "{e}"
    );
    assert!(
        lines[1].starts_with("t.toml:8:11: watch.ignore `[`: "),
        "{e}"
    );
    assert!(lines[2].starts_with("t.toml:9:12: watch.debounce: "), "{e}");
    assert!(
        lines[3].starts_with("t.toml:10:1: unknown field `path` in [watch]"),
        "{e}"
    );
    let e = parse(&format!("{FILE}[watch]\npaths = \"src\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.toml:7:9: watch.paths: expected an array of strings"),
        "{e}"
    );
}
