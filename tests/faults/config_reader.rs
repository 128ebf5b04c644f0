//! A config file with many mistakes, and a large one: `check` names every
//! mistake in one run, each at its line, however many there are and
//! however large the file. (Reading it through serde stopped at a value of
//! the wrong type; going on meant parsing the whole file again for each
//! one, at most 16 times, and only once past 256 KB.)

use crate::harness::{client, temp_dir};

#[test]
fn check_names_every_wrong_type_of_a_large_file_in_one_run() {
    let dir = temp_dir();
    let file = dir.path().join("large.toml");
    // A wrong type in the socket, then one per [program] key below, then
    // 30,000 env entries (~600 KB), then a wrong type at the very end.
    let keys = [
        "ready_delay",
        "ready_interval",
        "ready_timeout",
        "min_ready_time",
        "drain_timeout",
        "respawn_backoff",
        "respawn_backoff_max",
        "handover_settle",
        "handover_timeout",
        "stop_signal",
        "strategy",
        "listen_pid",
        "working_directory",
        "env_file",
        "ready",
        "workers",
        "batch",
        "listen_env",
    ];
    let mut text = String::from(
        "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\nbacklog = \"lots\"\n\n\
         [program]\ncommand = [\"/bin/true\"]\n",
    );
    for key in keys {
        text.push_str(&format!("{key} = [1]\n"));
    }
    text.push_str("[program.env]\n");
    for i in 0..30_000 {
        text.push_str(&format!("VARIABLE_{i} = \"value number {i}\"\n"));
    }
    text.push_str("LAST = 1\n");
    assert!(text.len() > 1024 * 1024, "{} bytes", text.len());
    std::fs::write(&file, &text).expect("write the config");
    let (code, out, err) = client(&["check", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 3, "{out}{err}");
    let f = file.display().to_string();
    let found: Vec<&str> = err.lines().filter(|l| l.contains(&f)).collect();
    let mut expected = vec![format!(
        "{f}:4:11: backlog: expected a whole number, not the string \"lots\""
    )];
    for (i, key) in keys.iter().enumerate() {
        expected.push(format!("{f}:{}:{}: {key}: expected ", 8 + i, key.len() + 4));
    }
    expected.push(format!(
        "{f}:{}:8: env: `LAST`: expected a string, not the integer 1",
        8 + keys.len() + 1 + 30_000
    ));
    assert_eq!(found.len(), expected.len(), "{err}");
    for (line, expected) in found.iter().zip(&expected) {
        assert!(line.contains(expected.as_str()), "{expected}\n{err}");
    }
}
