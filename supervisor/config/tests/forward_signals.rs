//! `forward_signals` (issue 12): top-level, like `sighup`, since the
//! signals are sent to handoff; each name checked where it stands.

use nix::sys::signal::Signal;

use super::{errors, parse, GOOD};

/// `forward_signals = {value}` on line 1, then a socket and a program.
fn with(value: &str) -> String {
    format!("forward_signals = {value}\n[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [\"x\"]\n")
}

#[test]
fn none_by_default() {
    assert!(parse(GOOD).unwrap().forward_signals.is_empty());
}

#[test]
fn names_in_any_spelling_once_each_in_order() {
    let c = parse(&with(r#"["SIGUSR1", "winch", "USR1", "TTIN"]"#)).unwrap();
    assert_eq!(
        c.forward_signals,
        vec![Signal::SIGUSR1, Signal::SIGWINCH, Signal::SIGTTIN]
    );
}

#[test]
fn handoffs_own_signals_are_refused_at_their_place() {
    let e = errors(&with(
        r#"["USR1", "SIGHUP", "TERM", "usr2", "QUIT", "KILL"]"#,
    ));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 5, "{e}");
    assert!(
        lines[0].starts_with(
            "t.toml:1:28: forward_signals: SIGHUP cannot be forwarded: handoff restarts (or reloads) on SIGHUP itself"
        ),
        "{e}"
    );
    assert!(
        lines[1].starts_with(
            "t.toml:1:38: forward_signals: SIGTERM cannot be forwarded: handoff stops gracefully"
        ),
        "{e}"
    );
    assert!(
        lines[2].starts_with(
            "t.toml:1:46: forward_signals: SIGUSR2 cannot be forwarded: handoff upgrades itself"
        ),
        "{e}"
    );
    assert!(
        lines[3].starts_with("t.toml:1:54: forward_signals: SIGQUIT cannot be forwarded: "),
        "{e}"
    );
    assert!(
        lines[4].starts_with(
            "t.toml:1:62: forward_signals: SIGKILL cannot be forwarded: it cannot be caught"
        ),
        "{e}"
    );
}

#[test]
fn an_unknown_name_or_a_wrong_type_is_an_error_at_its_line() {
    let e = errors(&with(r#"["SIGUSR1", "SIGNOPE"]"#));
    assert!(
        e.starts_with("t.toml:1:31: forward_signals: `SIGNOPE` is not a signal name"),
        "{e}"
    );
    let e = errors(&with(r#""SIGUSR1""#));
    assert!(
        e.starts_with("t.toml:1:19: forward_signals: expected an array of strings, not the string \"SIGUSR1\""),
        "{e}"
    );
}

#[test]
fn under_program_it_is_an_unknown_key() {
    let text = format!("{GOOD}forward_signals = [\"USR1\"]\n");
    let e = errors(&text);
    assert!(e.contains("forward_signals"), "{e}");
}
