//! Issue 8: `handoff-docs completions SHELL` and `handoff-docs man` (generated from
//! the clap definitions), and the `{fd_count}` template that lets a server
//! written for einhorn find its sockets (`EINHORN_FD_COUNT`,
//! `EINHORN_FD_0`...).

use std::process::{Command, Stdio};

use crate::harness::{serve_hello, temp_dir};

/// Runs `handoff-docs ARGS`; returns (exit code, stdout, stderr).
fn docs(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_handoff-docs"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("handoff-docs runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every subcommand a user types; `__resume` is internal.
const SUBCOMMANDS: [&str; 9] = [
    "run", "restart", "reload", "scale", "status", "stop", "upgrade", "check", "help",
];

#[test]
fn bash_completion_offers_every_subcommand_and_not_the_internal_one() {
    let (code, script, err) = docs(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(script.contains("complete -F _handoff"), "{script}");
    // The words offered after `handoff `: the top level's `opts="..."`.
    let top = script
        .lines()
        .find(|l| l.trim_start().starts_with("opts=\"") && l.contains("--log-level"))
        .unwrap_or_else(|| panic!("no top-level opts line in:\n{script}"));
    let words: Vec<&str> = top
        .trim()
        .trim_start_matches("opts=\"")
        .trim_end_matches('"')
        .split_whitespace()
        .collect();
    for sub in SUBCOMMANDS {
        assert!(words.contains(&sub), "`{sub}` not offered: {top}");
    }
    assert!(!script.contains("__resume"), "{script}");
    for shell in ["zsh", "fish"] {
        let (code, script, err) = docs(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(script.contains("restart"), "{shell}: {script}");
    }
}

#[test]
fn the_man_page_is_roff_with_a_section_per_subcommand() {
    let (code, page, err) = docs(&["man"]);
    assert_eq!(code, 0, "{err}");
    // The title comes before any section (two string definitions of
    // clap_mangen's may precede it).
    let title = page.find("\n.TH handoff 1 ").expect("a .TH line");
    let first_section = page.find("\n.SH ").expect("a .SH line");
    assert!(title < first_section, "{page}");
    for sub in SUBCOMMANDS.iter().filter(|s| **s != "help") {
        let heading = format!(".SH \"HANDOFF {}\"", sub.to_uppercase());
        assert!(page.contains(&heading), "no `{heading}` in:\n{page}");
    }
    assert!(page.contains("ready\\-timeout"), "run's flags are in it");
    assert!(!page.contains("__resume"), "{page}");
    // Render it where groff exists: no warnings, and the text is there.
    let rendered = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut groff) = rendered else {
        eprintln!("groff is not installed: the page was checked as text only");
        return;
    };
    use std::io::Write;
    groff
        .stdin
        .take()
        .expect("piped")
        .write_all(page.as_bytes())
        .expect("groff reads the page");
    let out = groff.wait_with_output().expect("groff runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.is_empty(), "{warnings}");
    // (Headings are in overstruck bold: look for plain text.)
    assert!(
        text.contains("Bind the sockets and run the server"),
        "{text}"
    );
}

#[test]
fn an_einhorn_server_finds_its_sockets_in_einhorn_variables() {
    let dir = temp_dir();
    // EINHORN_FD_0 is the second socket: the einhorn order is the user's.
    let h = serve_hello(
        dir.path(),
        &[
            "--listen",
            "admin=tcp://127.0.0.1:0",
            "--env",
            "EINHORN_FD_COUNT={fd_count}",
            "--env",
            "EINHORN_FD_0={fd:admin}",
            "--env",
            "EINHORN_FD_1={fd:http}",
        ],
    );
    let pids = h.pids("ready");
    assert_eq!(pids.len(), 1, "{pids:?}");
    let raw = std::fs::read(format!("/proc/{}/environ", pids[0])).expect("the worker is alive");
    let env: Vec<String> = raw
        .split(|&b| b == 0)
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    let var = |name: &str| {
        env.iter()
            .find_map(|e| e.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {env:?}"))
            .to_string()
    };
    // The einhorn variables agree with the systemd ones handoff also sets:
    // fd 3 + the socket's place in LISTEN_FDNAMES.
    assert_eq!(var("EINHORN_FD_COUNT"), var("LISTEN_FDS"));
    let names = var("LISTEN_FDNAMES");
    let fd = |name: &str| {
        let place = names
            .split(':')
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no {name} in LISTEN_FDNAMES={names}"));
        (3 + place).to_string()
    };
    assert_eq!(var("EINHORN_FD_0"), fd("admin"));
    assert_eq!(var("EINHORN_FD_1"), fd("http"));
    assert_ne!(var("EINHORN_FD_0"), var("EINHORN_FD_1"));
}
