//! The handover settings (issue 10) as a user meets their mistakes: every
//! one in a file named at its line in one `check` run (exit 3), what is no
//! mistake accepted, and the flags refused as `run` parses them.

use crate::harness::{client, temp_dir};
use crate::run_true::run_true_with;

/// Each mistake on a line of its own, the line that `check` must name.
const BAD: &str = r#"handover = "steered"

[[socket]]
name = "unix"
listen = "unix://u.sock"
handover = "steer"

[[socket]]
name = "group"
listen = "tcp://127.0.0.1:0"
reuse_port = true
handover = "steer"

[[socket]]
name = "typo"
listen = "tcp://127.0.0.1:0"
handover = "Shared"

[program]
command = ["/bin/true"]
handover_settle = "2s"
handover_timeout = "1s"
"#;

#[test]
fn check_names_each_handover_mistake_at_its_line() {
    let dir = temp_dir();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, BAD).expect("write the config");
    let (code, out, err) = client(&["check", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 3, "{out}{err}");
    let f = file.display().to_string();
    let found: Vec<&str> = err.lines().filter(|l| l.contains(&f)).collect();
    let expected = [
        format!("{f}:1:12: handover = \"steered\": expected \"steer\" or \"shared\""),
        format!("{f}:6:12: handover = \"steer\" on a unix:// socket"),
        format!("{f}:12:12: handover = \"steer\" with reuse_port = true"),
        format!("{f}:17:12: handover = \"Shared\": expected \"steer\" or \"shared\""),
        format!("{f}:21:19: handover_settle (2s) must be at most handover_timeout (1s)"),
    ];
    assert_eq!(found.len(), expected.len(), "{err}");
    for (line, expected) in found.iter().zip(&expected) {
        assert!(line.contains(expected.as_str()), "{expected}\n{err}");
    }
}

/// The top-level `steer` is a default: the sockets that cannot be steered
/// fall back to shared under it, and the file is valid.
#[test]
fn check_accepts_a_global_steer_over_sockets_that_cannot_be_steered() {
    let dir = temp_dir();
    let file = dir.path().join("good.toml");
    // BAD without the sockets' own `steer`s, its other mistakes fixed.
    let good = BAD
        .replace("handover = \"steer\"\n", "")
        .replace("\"steered\"", "\"steer\"")
        .replace("\"Shared\"", "\"shared\"")
        .replace("\"2s\"", "\"1s\"");
    assert!(good.starts_with("handover = \"steer\"\n"), "{good}");
    assert_eq!(good.matches("handover = ").count(), 2, "{good}");
    std::fs::write(&file, &good).expect("write the config");
    let (code, out, err) = client(&["check", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{good}\n{out}{err}");
}

#[test]
fn run_refuses_bad_handover_flags() {
    let dir = temp_dir();
    let run = |flags: &[&str]| run_true_with(dir.path(), flags);
    let (code, out, err) = run(&["--handover", "steered"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("[possible values: steer, shared]"), "{err}");
    let (code, out, err) = run(&["--handover-settle", "2s", "--handover-timeout", "1s"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("handover_settle (2s) must be at most handover_timeout (1s)"),
        "{err}"
    );
    assert!(
        !dir.path().join("control.sock").exists(),
        "a refused run creates no control socket"
    );
}
