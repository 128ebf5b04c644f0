//! The config as a whole: files parsed, merged with flags, and every
//! problem reported at its place.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::errors::sorted;
use super::file::parse_file;
use super::merge::finish;
use super::*;
use crate::sockets::ListenAddr;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_with(text, Overrides::default())
}

/// As `load` does it, with the file's text given.
fn parse_with(text: &str, overrides: Overrides) -> Result<Config, ConfigErrors> {
    let (parsed, mut errors) = parse_file(Path::new("t.toml"), text).map_err(sorted)?;
    match finish(Some(Path::new("t.toml")), parsed, overrides, false) {
        Ok(c) if errors.is_empty() => Ok(c),
        Ok(_) => Err(sorted(ConfigErrors(errors))),
        Err(more) => {
            errors.extend(more.0);
            Err(sorted(ConfigErrors(errors)))
        }
    }
}

const GOOD: &str = r#"
control = "/tmp/h.sock"

[[socket]]
name = "http"
listen = "tcp://127.0.0.1:0"
backlog = 512

[[socket]]
name = "admin"
listen = "unix://admin.sock"
mode = 0o600

[program]
command = ["./server", "--fd", "{fd:http}"]
env = { RUST_LOG = "info" }
ready = "exec"
ready_command = ["true"]
ready_timeout = "5s"
stop_signal = "QUIT"
drain_timeout = "500ms"
workers = 2
"#;

#[test]
fn a_good_file() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.sockets.len(), 2);
    assert_eq!(c.sockets[0].backlog, Some(512));
    let here = std::env::current_dir().unwrap();
    assert_eq!(
        c.sockets[1].listen,
        ListenAddr::Unix(here.join("admin.sock"))
    );
    assert_eq!(c.sockets[1].mode, Some(0o600));
    assert_eq!(Path::new(&c.program.command[0]), here.join("./server"));
    assert_eq!(c.program.stop_signal, Signal::SIGQUIT);
    assert_eq!(c.program.ready_timeout, Duration::from_secs(5));
    assert_eq!(c.program.drain_timeout, Duration::from_millis(500));
    assert_eq!(c.program.workers, 2);
    assert!(matches!(c.program.ready, Readiness::Exec { .. }));
}

fn errors(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn unknown_key_names_its_line() {
    let e = errors("[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\"]\nredy_timeout = \"1s\"\n");
    assert!(
        e.starts_with("t.toml:6:1: unknown field `redy_timeout`"),
        "{e}"
    );
}

#[test]
fn bad_values_each_name_their_line() {
    let e = errors(
        "[[socket]]\nname = \"a:b\"\nlisten = \"tcp://127.0.0.1\"\n[program]\ncommand = [\"x\"]\nready_timeout = \"soon\"\nstop_signal = \"SIGNOPE\"\n",
    );
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 4, "{e}");
    assert!(lines[0].starts_with("t.toml:2:8: socket name `a:b`"), "{e}");
    assert!(
        lines[1].starts_with("t.toml:3:10: `tcp://127.0.0.1`: no port"),
        "{e}"
    );
    assert!(
        lines[2].starts_with("t.toml:6:17: ready_timeout: `soon`"),
        "{e}"
    );
    assert!(
        lines[3].starts_with("t.toml:7:15: `SIGNOPE` is not a signal"),
        "{e}"
    );
}

#[test]
fn syntax_error_names_its_line() {
    let e = errors("[program]\ncommand = [\"x\"\nready = \"delay\"\n");
    assert!(
        e.starts_with("t.toml:3:1: missing comma between array elements, expected `,`"),
        "{e}"
    );
}

#[test]
fn exec_without_probe_is_refused_at_the_ready_key() {
    let e = errors("[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\"]\nready = \"exec\"\n");
    assert!(
        e.starts_with("t.toml:6:9: ready = \"exec\" needs a probe"),
        "{e}"
    );
}

#[test]
fn unknown_template_socket_is_refused() {
    let e = errors("[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\", \"--fd={fd:b}\"]\n");
    assert!(e.contains("t.toml:5:11:") && e.contains("`b`"), "{e}");
}

#[test]
fn duplicate_names_and_missing_parts() {
    let e = errors("[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:2\"\n");
    assert!(
        e.contains("t.toml:4:1: socket name `a` is used twice"),
        "{e}"
    );
    assert!(e.contains("no program"), "{e}");
}

#[test]
fn flags_override_the_file() {
    let overrides = Overrides {
        program: ProgramSettings {
            workers: Some(5),
            ready: Some(ReadyKind::Exec),
            ..ProgramSettings::default()
        },
        ..Overrides::default()
    };
    let c = parse_with(GOOD, overrides).unwrap();
    assert_eq!(c.program.workers, 5);
}

#[test]
fn a_flag_socket_replaces_the_file_socket_where_it_stood() {
    let overrides = Overrides {
        sockets: vec![SocketSpec {
            name: "http".into(),
            listen: "tcp://127.0.0.1:9".parse().unwrap(),
            backlog: None,
            reuse_port: false,
            mode: None,
            handover: None,
            options: Default::default(),
        }],
        ..Overrides::default()
    };
    let text = GOOD
        .replace("\"admin\"", "\"http\"")
        .replacen("\"http\"", "\"first\"", 1);
    let c = parse_with(&text, overrides).unwrap();
    let names: Vec<&str> = c.sockets.iter().map(|s| s.name.as_str()).collect();
    // Same place, so the same fd: the command's {fd:http} still holds.
    assert_eq!(names, ["first", "http"]);
    assert_eq!(c.sockets[1].listen.to_string(), "tcp://127.0.0.1:9");
}

#[test]
fn env_entries_are_checked_where_they_stand() {
    let e = errors(
        "[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\"]\n[program.env]\nGOOD = \"1\"\n\"A=B\" = \"2\"\n\"\" = \"3\"\nC = \"c\\u0000d\"\n",
    );
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(
        lines[0].starts_with("t.toml:8:1: env: `A=B`: a variable name cannot contain `=`"),
        "{e}"
    );
    assert!(
        lines[1].starts_with("t.toml:9:1: env: a variable needs a name"),
        "{e}"
    );
    assert!(
        lines[2].starts_with("t.toml:10:1: env: `C`: the value contains a NUL byte"),
        "{e}"
    );
}

#[test]
fn env_flags_are_checked_too() {
    let overrides = Overrides {
        program: ProgramSettings {
            env: [("X".to_string(), "a\0b".to_string())].into(),
            ..ProgramSettings::default()
        },
        ..Overrides::default()
    };
    let e = parse_with(GOOD, overrides).unwrap_err().to_string();
    assert!(
        e.starts_with("--env `X`: the value contains a NUL byte"),
        "{e}"
    );
}

#[test]
fn env_size_is_capped_at_the_table() {
    // Each entry costs 2,000 bytes of value plus its name, NUL, `=` and
    // pointer: 1,100 of them are over 2 MiB.
    let value = "v".repeat(2000);
    let mut text = String::from("[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\"]\n[program.env]\n");
    for i in 0..1100 {
        text.push_str(&format!("V{i} = \"{value}\"\n"));
    }
    let e = errors(&text);
    assert!(e.starts_with("t.toml:6:1: env: 1100 variables take"), "{e}");
    assert!(e.contains(&MAX_ENV_BYTES.to_string()), "{e}");
    // One string past MAX_ARG_STRLEN is refused on its own line.
    let text = format!(
        "[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\"]\nenv = {{ BIG = \"{}\" }}\n",
        "v".repeat(MAX_ENV_ENTRY)
    );
    let e = errors(&text);
    assert!(
        e.starts_with("t.toml:6:9: env: `BIG`: NAME=value is"),
        "{e}"
    );
}

#[test]
fn located_errors_far_into_a_file() {
    let lines = super::position::Lines::for_test("t.toml", "a\nbc\n\ndef");
    let at = |o| {
        let l = lines.at(o);
        (l.line, l.column)
    };
    assert_eq!(at(0), (1, 1));
    assert_eq!(at(1), (1, 2));
    assert_eq!(at(2), (2, 1));
    assert_eq!(at(5), (3, 1));
    assert_eq!(at(6), (4, 1));
    assert_eq!(at(8), (4, 3));
}

#[test]
fn durations_and_signals() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("10").is_err());
    assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
    assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::SIGUSR1);
    assert!(parse_signal("SIGFOO").is_err());
}

mod forward_signals;
mod handover;
mod preload;
mod process;
mod protocol;
mod reader;
mod respawn_limit;
mod socket_options;
mod watch;

#[test]
fn a_ready_command_naming_an_unknown_socket_is_an_error_at_its_line() {
    let text = "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\
                [program]\ncommand = [\"x\"]\nready = \"exec\"\n\
                ready_command = [\"probe\", \"{fd:htp}\"]\n";
    let e = errors(text);
    assert!(
        e.contains("t.toml:7:") && e.contains("ready_command") && e.contains("htp"),
        "{e}"
    );
    let ok = text.replace("{fd:htp}", "{fd:http}");
    parse(&ok).expect("a known socket is fine");
}
