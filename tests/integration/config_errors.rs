//! Bad input: every mistake named with file:line, each failure with its own
//! exit code.

use crate::harness::{client, example, temp_dir, Handoff};

const BAD: &str = r#"# a config with three mistakes
[[socket]]
name = "http"
listen = "tcp://127.0.0.1"

[program]
command = ["./server"]
ready_timeout = "soon"
stop_sginal = "SIGTERM"
"#;

#[test]
fn check_names_file_and_line_and_exits_3() {
    let dir = temp_dir();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, BAD).expect("write");
    let (code, out, err) = client(&["check", "--config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 3, "{out}{err}");
    // The unknown key no longer hides the others: all three, in one run.
    let f = file.display();
    for expected in [
        format!("{f}:4:10: `tcp://127.0.0.1`: no port"),
        format!("{f}:8:17: ready_timeout: `soon` is not a duration"),
        format!("{f}:9:1: unknown field `stop_sginal`"),
    ] {
        assert!(err.contains(&expected), "{expected}\n{err}");
    }
}

/// Five different mistakes, the unknown keys after the others so that the
/// order shows they were sorted, not merely found.
const FIVE: &str = r#"[[socket]]
name = "http"
listen = "tcp://127.0.0.1"

[program]
command = ["./no-such-server", "--fd", "{fd:http}"]
drain_timeout = "30"
stop_signal = "SIGNOPE"
workers = 0
redy_timeout = "5s"
"#;

#[test]
fn check_reports_every_mistake_in_one_run_sorted_by_line() {
    let dir = temp_dir();
    let file = dir.path().join("five.toml");
    std::fs::write(&file, FIVE).expect("write");
    let (code, out, err) = client(&["check", file.to_str().expect("utf-8")]);
    assert_eq!(code, 3, "{out}{err}");
    let f = file.display().to_string();
    let found: Vec<&str> = err.lines().filter(|l| l.contains(&f)).collect();
    let expected = [
        format!("{f}:3:10: `tcp://127.0.0.1`: no port"),
        format!("{f}:6:11: program: cannot find `"),
        format!("{f}:7:17: drain_timeout: `30` is not a duration"),
        format!("{f}:8:15: `SIGNOPE` is not a signal"),
        format!("{f}:9:11: workers must be between 1 and"),
        format!("{f}:10:1: unknown field `redy_timeout` in [program]"),
    ];
    assert_eq!(found.len(), expected.len(), "{err}");
    for (line, expected) in found.iter().zip(&expected) {
        assert!(line.contains(expected.as_str()), "{expected}\n{err}");
    }
}

/// Values of the wrong type: each is reported where it stands, and the
/// rest of the file is still checked (a type error used to stop the
/// typed parse and hide every other mistake).
#[test]
fn values_of_the_wrong_type_do_not_hide_the_other_mistakes() {
    let dir = temp_dir();
    let file = dir.path().join("types.toml");
    std::fs::write(
        &file,
        "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:99999\"\nbacklog = \"lots\"\n\n\
         [program]\ncommand = [\"/bin/true\"]\nworkers = \"two\"\nready = \"sometimes\"\n\
         drain_timeout = 30\ncolour = \"blue\"\nstop_signal = \"SIGNOPE\"\n",
    )
    .expect("write");
    let (code, out, err) = client(&["check", file.to_str().expect("utf-8")]);
    assert_eq!(code, 3, "{out}{err}");
    let f = file.display().to_string();
    let found: Vec<&str> = err.lines().filter(|l| l.contains(&f)).collect();
    let expected = [
        format!("{f}:3:10: `tcp://127.0.0.1:99999`"),
        format!("{f}:4:11: backlog: expected a whole number, not the string \"lots\""),
        format!("{f}:8:11: workers: expected a whole number, not the string \"two\""),
        format!("{f}:9:9: ready = \"sometimes\""),
        format!(
            "{f}:10:17: drain_timeout: expected a duration such as \"10s\", not the integer 30"
        ),
        format!("{f}:11:1: unknown field `colour` in [program]"),
        format!("{f}:12:15: `SIGNOPE` is not a signal"),
    ];
    assert_eq!(found.len(), expected.len(), "{err}");
    for (line, expected) in found.iter().zip(&expected) {
        assert!(line.contains(expected.as_str()), "{expected}\n{err}");
    }
}

/// A required key of the wrong type is reported as such, not also as
/// missing.
#[test]
fn a_required_key_of_the_wrong_type_is_not_also_missing() {
    let dir = temp_dir();
    let file = dir.path().join("name.toml");
    std::fs::write(
        &file,
        "[[socket]]\nname = 5\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [\"/bin/true\"]\n",
    )
    .expect("write");
    let (code, out, err) = client(&["check", file.to_str().expect("utf-8")]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{}:2:8: name: expected a string, not the integer 5",
            file.display()
        )),
        "{err}"
    );
    assert!(!err.contains("missing field"), "{err}");
}

#[test]
fn check_can_skip_the_program_lookup_and_says_so() {
    let dir = temp_dir();
    let file = dir.path().join("elsewhere.toml");
    std::fs::write(&file, "[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [\"/opt/not-here/server\"]\n")
        .expect("write");
    let path = file.to_str().expect("utf-8");
    let (code, out, err) = client(&["check", path, "--skip-program-check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok (1 socket(s), 1 worker(s)); the program was not looked up"),
        "{out}"
    );
    let (code, out, err) = client(&["check", path]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{}:5:11: program: cannot find `/opt/not-here/server`",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn the_shipped_systemd_config_checks_without_its_program() {
    // Written for a machine where the server is in /usr/local/bin.
    let config = format!("{}/config/systemd/example.toml", env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = client(&["check", "--skip-program-check", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the program was not looked up"), "{out}");
}

#[test]
fn run_refuses_a_bad_config_before_binding_anything() {
    let dir = temp_dir();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, BAD).expect("write");
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    assert_eq!(h.wait_exit().code(), Some(3));
    assert!(
        h.log().contains("bad.toml:9:1: unknown field"),
        "{}",
        h.log()
    );
    assert!(!h.control.exists());
}

#[test]
fn a_missing_program_is_a_config_error_with_the_file() {
    let dir = temp_dir();
    let file = dir.path().join("h.toml");
    std::fs::write(&file, "[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [\"./no-such-server\"]\n")
        .expect("write");
    let (code, _, err) = client(&["check", "--config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("h.toml:5:11: program: cannot find `") && err.contains("no-such-server"),
        "{err}"
    );
}

/// Checks a shipped config, with its server command (`program`, as
/// written there) pointed at the example the tests built.
fn check_shipped(config: &str, program: &str) -> String {
    let text =
        std::fs::read_to_string(format!("{}/{config}", env!("CARGO_MANIFEST_DIR"))).expect("read");
    let program = format!("{program:?}");
    assert!(text.contains(&program), "{config} runs the example server");
    let text = text.replace(
        &program,
        &format!("{:?}", example("hello").display().to_string()),
    );
    let dir = temp_dir();
    let file = dir.path().join("example.toml");
    std::fs::write(&file, text).expect("write");
    let (code, out, err) = client(&["check", "--config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{config}: {out}{err}");
    out
}

#[test]
fn the_example_config_is_valid() {
    // It runs the release build of the example; the tests have the debug one.
    let out = check_shipped("config/example.toml", "../target/release/examples/hello");
    assert!(out.contains("ok (1 socket(s), 1 worker(s))"), "{out}");
}

#[test]
fn the_development_config_is_valid_where_it_stands() {
    // Its paths are relative to config/: checked in place, not copied.
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev.toml");
    let (code, out, err) = client(&["check", "--config", file]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok (1 socket(s), 1 worker(s))"), "{out}");
}

#[test]
fn usage_errors_exit_2_and_an_absent_supervisor_exits_4() {
    let (code, _, err) = client(&["run", "--listen", "nonsense", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs a name"), "{err}");
    let (code, _, err) = client(&["run", "--ready-timeout", "fast", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = client(&["run", "--listen", "a=tcp://127.0.0.1:0"]);
    assert_eq!(code, 3, "no command: {err}");
    assert!(err.contains("no program to run"), "{err}");

    let dir = temp_dir();
    let nobody = dir.path().join("nobody.sock");
    for cmd in ["restart", "status", "stop"] {
        let (code, _, err) = client(&[cmd, "--control", nobody.to_str().expect("utf-8")]);
        assert_eq!(code, 4, "{cmd}: {err}");
        assert!(err.contains("cannot reach the supervisor"), "{err}");
    }
}

#[test]
fn the_systemd_example_config_is_valid() {
    check_shipped("config/systemd/example.toml", "/usr/local/bin/hello");
}
