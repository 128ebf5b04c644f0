//! Hostile config files: `check` refuses each with exit 3 and a message
//! naming the file (and the line, where there is one), and never panics.
//! Part of the fault suite's cases that held (issue 7).

use std::path::Path;

use crate::harness::{client, temp_dir};
use crate::held::junk;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A valid config; the cases below break one thing in it.
const GOOD: &str = "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\n[program]\ncommand = [\"/bin/true\"]\n";

/// What a hostile config file holds.
enum Content {
    Text(String),
    Bytes(Vec<u8>),
    Directory,
    Missing,
}

/// GOOD with `old` replaced by `new`.
fn edit(old: &str, new: &str) -> Content {
    assert!(GOOD.contains(old), "{old:?} is not in the good config");
    Content::Text(GOOD.replacen(old, new, 1))
}

/// GOOD with `line` added to `[program]`.
fn program_line(line: &str) -> Content {
    Content::Text(format!("{GOOD}{line}\n"))
}

/// GOOD's [[socket]] with `line` added.
fn socket_line(line: &str) -> Content {
    edit(
        "listen = \"tcp://127.0.0.1:0\"\n",
        &format!("listen = \"tcp://127.0.0.1:0\"\n{line}\n"),
    )
}

/// (name, file content, the line the error must name, if it has one)
fn hostile_configs() -> Vec<(&'static str, Content, Option<usize>)> {
    let ten_mb = "x".repeat(10 * 1024 * 1024);
    vec![
        (
            "workers as a string",
            program_line("workers = \"two\""),
            Some(7),
        ),
        ("workers zero", program_line("workers = 0"), Some(7)),
        ("workers negative", program_line("workers = -3"), Some(7)),
        (
            "workers huge",
            program_line("workers = 9223372036854775807"),
            Some(7),
        ),
        (
            "workers past i64",
            program_line("workers = 99999999999999999999"),
            Some(7),
        ),
        ("workers a float", program_line("workers = 1e308"), Some(7)),
        ("backlog negative", socket_line("backlog = -5"), Some(4)),
        (
            "backlog huge",
            socket_line("backlog = 99999999999"),
            Some(4),
        ),
        ("mode too big", socket_line("mode = 0o77777"), Some(4)),
        ("mode not octal", socket_line("mode = \"rwx\""), Some(4)),
        (
            "ready_timeout zero",
            program_line("ready_timeout = \"0s\""),
            Some(7),
        ),
        (
            "ready_timeout negative",
            program_line("ready_timeout = \"-5s\""),
            Some(7),
        ),
        (
            "ready_timeout astronomical",
            program_line("ready_timeout = \"99999999999999999999999s\""),
            Some(7),
        ),
        (
            "drain_timeout a number",
            program_line("drain_timeout = 30"),
            Some(7),
        ),
        (
            "backoff above its max",
            program_line("respawn_backoff = \"10s\"\nrespawn_backoff_max = \"1s\""),
            Some(7),
        ),
        (
            "batch zero",
            program_line("strategy = \"rolling\"\nbatch = 0"),
            Some(8),
        ),
        (
            "strategy unknown",
            program_line("strategy = \"sideways\""),
            Some(7),
        ),
        (
            "stop_signal unknown",
            program_line("stop_signal = \"SIGFOO\""),
            Some(7),
        ),
        ("ready unknown", program_line("ready = \"maybe\""), Some(7)),
        (
            "exec without a probe",
            program_line("ready = \"exec\""),
            Some(7),
        ),
        (
            "sighup unknown",
            Content::Text(format!("sighup = \"explode\"\n{GOOD}")),
            Some(1),
        ),
        (
            "fdstore a string",
            Content::Text(format!("fdstore = \"yes\"\n{GOOD}")),
            Some(1),
        ),
        (
            "unknown top-level key",
            Content::Text(format!("colour = \"red\"\n{GOOD}")),
            Some(1),
        ),
        (
            "unknown program key",
            program_line("comand = [\"/bin/true\"]"),
            Some(7),
        ),
        ("unknown socket key", socket_line("port = 80"), Some(4)),
        (
            "duplicate key",
            program_line("command = [\"/bin/false\"]"),
            Some(7),
        ),
        (
            "duplicate socket names",
            Content::Text(format!(
                "{GOOD}[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n"
            )),
            Some(7),
        ),
        (
            "address without a port",
            edit("tcp://127.0.0.1:0", "tcp://127.0.0.1"),
            Some(3),
        ),
        (
            "address out of range",
            edit("tcp://127.0.0.1:0", "tcp://999.1.1.1:80"),
            Some(3),
        ),
        (
            "port out of range",
            edit("tcp://127.0.0.1:0", "tcp://127.0.0.1:99999"),
            Some(3),
        ),
        (
            "unknown scheme",
            edit("tcp://127.0.0.1:0", "ftp://127.0.0.1:21"),
            Some(3),
        ),
        ("empty address", edit("tcp://127.0.0.1:0", ""), Some(3)),
        (
            "empty unix path",
            edit("tcp://127.0.0.1:0", "unix://"),
            Some(3),
        ),
        (
            "socket name with a colon",
            edit("name = \"http\"", "name = \"a:b\""),
            Some(2),
        ),
        (
            "empty socket name",
            edit("name = \"http\"", "name = \"\""),
            Some(2),
        ),
        ("empty command", edit("[\"/bin/true\"]", "[]"), Some(6)),
        (
            "empty program name",
            edit("[\"/bin/true\"]", "[\"\"]"),
            None,
        ),
        (
            "command a string",
            edit("[\"/bin/true\"]", "\"/bin/true\""),
            Some(6),
        ),
        (
            "command a table",
            edit("command = [\"/bin/true\"]", "[program.command]\nx = 1"),
            Some(6),
        ),
        (
            "program missing",
            edit("command = [\"/bin/true\"]", "nothing = 1"),
            Some(6),
        ),
        (
            "NUL in the command",
            edit("[\"/bin/true\"]", "[\"/bin/true\", \"a\\u0000b\"]"),
            Some(6),
        ),
        (
            "env name with =",
            program_line("env = { \"A=B\" = \"c\" }"),
            Some(7),
        ),
        (
            "working_directory missing",
            program_line("working_directory = \"/nonexistent/handoff\""),
            None,
        ),
        ("no socket, no program", Content::Text(String::new()), None),
        (
            "a 10 MB argument",
            edit("[\"/bin/true\"]", &format!("[\"/bin/true\", \"{ten_mb}\"]")),
            None,
        ),
        (
            "a 10 MB env value",
            program_line(&format!("env = {{ BIG = \"{ten_mb}\" }}")),
            Some(7),
        ),
        (
            "a 10 MB unterminated string",
            Content::Text(format!("{GOOD}x = \"{ten_mb}")),
            Some(7),
        ),
        (
            "deeply nested arrays",
            Content::Text(format!(
                "x = {}{}\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            )),
            Some(1),
        ),
        (
            "deeply nested inline tables",
            Content::Text(format!(
                "x = {}1{}\n",
                "{a=".repeat(10_000),
                "}".repeat(10_000)
            )),
            Some(1),
        ),
        (
            "deeply nested table header",
            Content::Text(format!("[{}]\n", vec!["a"; 10_000].join("."))),
            // toml 0.9 gives this error ("recursion limit") no place.
            None,
        ),
        (
            "invalid UTF-8",
            Content::Bytes([GOOD.as_bytes(), b"x = \"\xff\xfe\"\n"].concat()),
            None,
        ),
        ("binary junk", Content::Bytes(junk(4096, 42)), None),
        ("NUL bytes", Content::Bytes(vec![0; 64]), None),
        ("a directory", Content::Directory, None),
        ("a missing file", Content::Missing, None),
    ]
}

#[test]
fn hostile_configs_are_refused_by_check_with_their_file_and_line_and_never_panic() {
    let dir = temp_dir();
    // The control: the unbroken config passes, so each failure below is
    // the broken part's.
    let good = dir.path().join("good.toml");
    std::fs::write(&good, GOOD).expect("write");
    let (code, out, err) = client(&["check", "--config", path(&good)]);
    assert_eq!(code, 0, "{out}{err}");

    let mut wrong = Vec::new();
    let cases = hostile_configs();
    for (i, (name, content, line)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case-{i}.toml"));
        match content {
            Content::Text(text) => std::fs::write(&file, text).expect("write"),
            Content::Bytes(bytes) => std::fs::write(&file, bytes).expect("write"),
            Content::Directory => std::fs::create_dir(&file).expect("mkdir"),
            Content::Missing => {}
        }
        let (code, out, err) = client(&["check", "--config", path(&file)]);
        let shown: String = err.chars().take(300).collect();
        let named = match line {
            Some(l) => err.contains(&format!("{}:{l}:", file.display())),
            None => err.contains(&file.display().to_string()),
        };
        if code != 3 || !named || err.contains("panicked") {
            wrong.push(format!(
                "{name}: exit {code}, expected 3 and a message naming {}{}: {out}{shown}",
                file.display(),
                line.map(|l| format!(" line {l}")).unwrap_or_default()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} hostile configs were not refused as they should be:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );

    // And a usage mistake is a usage error.
    let (code, _, err) = client(&["check"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn check_refuses_socket_paths_too_long_to_bind() {
    let dir = temp_dir();
    let long = format!("/tmp/{}", "c".repeat(200));
    for (name, text) in [
        (
            "unix socket",
            GOOD.replace("tcp://127.0.0.1:0", &format!("unix://{long}")),
        ),
        ("control", format!("control = \"{long}\"\n{GOOD}")),
    ] {
        let file = dir.path().join("long.toml");
        std::fs::write(&file, text).expect("write");
        let (code, out, err) = client(&["check", "--config", path(&file)]);
        assert_eq!(code, 3, "{name} path of {} bytes: {out}{err}", long.len());
        assert!(err.contains(&format!("{}:", file.display())), "{err}");
    }
}
