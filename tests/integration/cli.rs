//! The command line as a person meets it: the help, what each command says
//! when it worked, and flags and variables meaning what they say.

use std::process::{Command, Stdio};

use crate::harness::{client, example, handoff_bin, serve_hello, temp_dir, Handoff};

/// Every subcommand's --help shows examples, and run's shows the default
/// of each flag whose default is not "nothing".
#[test]
fn help_shows_examples_and_defaults() {
    let (code, out, err) = client(&["--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("A graceful-restart supervisor"),
        "a one-line what-it-is first: {out}"
    );
    assert!(out.contains("Examples:"), "{out}");
    for cmd in [
        "run", "restart", "reload", "scale", "status", "stop", "upgrade", "check",
    ] {
        let (code, out, err) = client(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd}: {err}");
        assert!(
            out.contains("Examples:\n  ") && out.contains(&format!("handoff {cmd}")),
            "{cmd} --help has no example of itself:\n{out}"
        );
    }
    let (_, out, _) = client(&["run", "--help"]);
    // The flag, then its default, in the text that follows it (up to the
    // next flag).
    for (flag, default) in [
        ("--workers", "[default: 1]"),
        ("--strategy", "[default: all-at-once]"),
        ("--batch", "[default: 1]"),
        ("--sighup", "[default: restart]"),
        ("--ready", "[default: notify]"),
        ("--ready-delay", "[default: 1s]"),
        ("--ready-interval", "[default: 200ms]"),
        ("--ready-timeout", "[default: 30s]"),
        ("--min-ready-time", "[default: 250ms]"),
        ("--stop-signal", "[default: SIGTERM]"),
        ("--drain-timeout", "[default: 30s]"),
        ("--respawn-backoff", "[default: 100ms]"),
        ("--respawn-backoff-max", "[default: 30s]"),
        ("--handover-settle", "[default: 100ms]"),
        ("--handover-timeout", "[default: 5s]"),
        ("--listen-pid", "[default: child]"),
        ("--log-level", "[default: info]"),
    ] {
        let at = out
            .find(&format!("\n      {flag} <"))
            .unwrap_or_else(|| panic!("no {flag}:\n{out}"));
        let next = out[at + 1..]
            .find("\n      --")
            .map_or(out.len(), |i| at + 1 + i);
        assert!(
            out[at..next].contains(default),
            "{flag} does not show {default}:\n{}",
            &out[at..next]
        );
    }
    assert!(
        out.contains("error, warn, info, debug or trace"),
        "the log levels, as the README lists them:\n{out}"
    );
}

/// A duration without its unit is answered in the spelling the README and
/// the defaults use (`30s`), not humantime's (`30sec`).
#[test]
fn duration_hints_spell_units_as_the_readme_does() {
    let (code, _, err) = client(&["run", "--ready-timeout", "30", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("as in 30s or 30ms"), "{err}");
    assert!(!err.contains("sec"), "{err}");
}

/// `HANDOFF_CONTROL=` (set, empty) is no `--control ""`: the client goes
/// on to the config's control socket.
#[test]
fn an_empty_handoff_control_counts_as_unset() {
    let dir = temp_dir();
    let control = dir.path().join("from-config.sock");
    let file = dir.path().join("h.toml");
    std::fs::write(
        &file,
        format!(
            "control = {:?}\n[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [\"true\"]\n",
            control.display().to_string()
        ),
    )
    .expect("write");
    let out = Command::new(handoff_bin())
        .args(["status", "--config", file.to_str().expect("utf-8")])
        .env("HANDOFF_CONTROL", "")
        .stdin(Stdio::null())
        .output()
        .expect("handoff runs");
    let err = String::from_utf8_lossy(&out.stderr);
    // Nobody listens there: 4, unreachable, naming the config's socket.
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("from-config.sock"), "{err}");
}

/// `--listen http=...` with a config that has `http`: the flag's socket
/// replaces the file's, as flags override the file.
#[test]
fn a_listen_flag_replaces_the_file_socket_of_the_same_name() {
    let dir = temp_dir();
    let file = dir.path().join("h.toml");
    std::fs::write(
        &file,
        format!(
            "[[socket]]\nname = \"http\"\nlisten = \"unix://file.sock\"\n[program]\ncommand = [{:?}]\n",
            example("hello").display().to_string()
        ),
    )
    .expect("write");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--config",
            file.to_str().expect("utf-8"),
            "--listen",
            "http=tcp://127.0.0.1:0",
        ],
    );
    h.wait_generation(1);
    let status = h.status();
    assert_eq!(status.sockets.len(), 1, "{status:?}");
    assert_eq!(status.sockets[0].name, "http");
    assert_eq!(status.sockets[0].listen, "tcp://127.0.0.1:0");
    assert!(
        !dir.path().join("file.sock").exists(),
        "the file's socket was bound too"
    );
}

/// `status --json` prints the protocol's answer whole, as the README
/// shows it.
#[test]
fn status_json_is_the_protocol_answer_whole() {
    let dir = temp_dir();
    let h = serve_hello(dir.path(), &[]);
    let control = h.control.to_str().expect("utf-8");
    let (code, json, err) = client(&["status", "--json", "--control", control]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["result"], "status", "{json}");
    assert_eq!(v["pid"], h.child.id(), "{json}");
}

/// Plain `status` shows the upgrade count, as `--json` gives it.
#[test]
fn status_shows_the_upgrade_count() {
    let dir = temp_dir();
    let h = serve_hello(dir.path(), &[]);
    let upgrades = h.status().upgrades;
    let (code, out, err) = client(&["status", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.contains(&format!("upgraded {upgrades} time(s)")),
        "{out}"
    );
}

/// `stop` says what it stopped.
#[test]
fn stop_says_what_it_stopped() {
    let dir = temp_dir();
    let mut h = serve_hello(dir.path(), &[]);
    let pid = h.child.id();
    let (code, out, err) = client(&["stop", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("stopped handoff (pid {pid})\n"));
    assert_eq!(h.wait_exit().code(), Some(0));
}
