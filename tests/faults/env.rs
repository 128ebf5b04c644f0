//! Issue 7, item 9: the config's `env`. Entries a child cannot be given
//! as they are (a name with `=`, an empty name, a NUL) are errors with
//! file:line; a large environment is built in linear time; one too large
//! for execve is refused, at `check` and at a reload, with the limit named.

use std::fmt::Write as _;
use std::time::Instant;

use crate::harness::{client, example, restart, temp_dir, Handoff};

const HTTP: &str = "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n";

/// A config running hello, with `env_lines` under `[program.env]`.
fn config(env_lines: &str, workers: usize) -> String {
    format!(
        "{HTTP}\n[program]\ncommand = [{hello:?}]\nworkers = {workers}\n\n[program.env]\n{env_lines}",
        hello = example("hello").display().to_string()
    )
}

/// `count` entries `VAR_n = "value n"`, plus `padding` bytes in each value.
fn many_vars(count: usize, padding: usize) -> String {
    let pad = "p".repeat(padding);
    let mut lines = String::new();
    for i in 0..count {
        writeln!(lines, "VAR_{i} = \"value {i}{pad}\"").expect("writing to a String");
    }
    lines
}

/// The environment process `pid` was started with.
fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("the worker is alive");
    raw.split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

#[test]
fn check_refuses_what_a_child_cannot_be_given_with_file_and_line() {
    let dir = temp_dir();
    let file = dir.path().join("env.toml");
    let big = "v".repeat(128 * 1024);
    let text = config(
        &format!(
            "GOOD = \"1\"\n\"A=B\" = \"2\"\n\"\" = \"3\"\nC = \"c\\u0000d\"\nBIG = \"{big}\"\n"
        ),
        1,
    );
    std::fs::write(&file, &text).expect("write config");
    let (code, out, err) = client(&["check", "--config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 3, "{out}{err}");
    let f = file.display();
    for expected in [
        format!("{f}:11:1: env: `A=B`: a variable name cannot contain `=`"),
        format!("{f}:12:1: env: a variable needs a name"),
        format!("{f}:13:1: env: `C`: the value contains a NUL byte"),
        format!("{f}:14:1: env: `BIG`: NAME=value is 131077 bytes"),
    ] {
        assert!(err.contains(&expected), "no `{expected}` in:\n{err}");
    }
    assert!(!err.contains("GOOD"), "{err}");
}

#[test]
fn check_refuses_an_env_too_large_for_execve_and_names_the_limit() {
    let dir = temp_dir();
    let file = dir.path().join("env.toml");
    // 800 entries of about 3,000 bytes: 2.4 MB, over execve's 2 MiB.
    std::fs::write(&file, config(&many_vars(800, 3000), 1)).expect("write config");
    let (code, out, err) = client(&["check", "--config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 3, "{out}{err}");
    let expected = format!("{}:9:1: env: 800 variables take", file.display());
    assert!(err.contains(&expected), "no `{expected}` in:\n{err}");
    assert!(err.contains("at most 2097152 (2 MiB)"), "{err}");
}

/// 40,000 entries (1.5 MB, under the cap): building each child's
/// environment used to be quadratic (half a minute a worker in a debug
/// build, 2 s in a release one).
#[test]
fn a_large_env_starts_and_restarts() {
    let dir = temp_dir();
    let file = dir.path().join("env.toml");
    std::fs::write(&file, config(&many_vars(40_000, 0), 2)).expect("write config");
    let started = Instant::now();
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let first = started.elapsed();
    let restarted = Instant::now();
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    eprintln!(
        "40,000 env entries, 2 workers: generation 1 in {first:?}, a restart in {:?}",
        restarted.elapsed()
    );
    let status = h.status();
    assert_eq!(status.generation, 2, "{status:?}");
    for pid in h.pids("ready") {
        let env = environ(pid);
        let vars: Vec<&String> = env.iter().filter(|e| e.starts_with("VAR_")).collect();
        assert_eq!(vars.len(), 40_000, "worker {pid}");
        assert!(
            env.iter().any(|e| e == "VAR_39999=value 39999"),
            "worker {pid}"
        );
        assert!(
            env.iter().any(|e| e == "HANDOFF_GENERATION=2"),
            "worker {pid}"
        );
    }
}

#[test]
fn a_reload_of_an_oversized_env_is_refused_and_status_keeps_answering() {
    let dir = temp_dir();
    let file = dir.path().join("env.toml");
    std::fs::write(&file, config(&many_vars(10, 0), 1)).expect("write config");
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let before = h.pids("ready");

    std::fs::write(&file, config(&many_vars(800, 3000), 1)).expect("write config");
    let control = h.control.clone();
    let reload = std::thread::spawn(move || {
        client(&["reload", "--control", control.to_str().expect("utf-8")])
    });
    // Asked while the reload is read and refused: every one is answered.
    let mut answered = 0;
    while !reload.is_finished() {
        let status = h.status();
        assert_eq!(status.generation, 1, "{status:?}");
        answered += 1;
    }
    let (code, out, err) = reload.join().expect("the reload client returns");
    assert_eq!(code, 3, "{out}{err}");
    let expected = format!("{}:9:1: env: 800 variables take", file.display());
    assert!(err.contains(&expected), "no `{expected}` in:\n{err}");
    assert!(err.contains("at most 2097152 (2 MiB)"), "{err}");
    eprintln!("status answered {answered} time(s) during the refused reload");

    let after = h.status();
    assert_eq!(after.generation, 1, "{after:?}");
    assert_eq!(after.restarting, None, "{after:?}");
    assert_eq!(h.pids("ready"), before, "no worker was touched");
    h.wait_log("reload: the configuration is invalid, nothing changed");
}
