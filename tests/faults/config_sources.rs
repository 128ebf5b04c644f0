//! Where a config value came from decides what it means and where its
//! mistakes are reported: a value in the file is relative to the file's
//! directory and reported at its file:line:column; a value from a flag is
//! the command line's, and reported as that flag (issue 9, "Also fix").

use std::path::Path;

use crate::harness::{example, temp_dir, write_executable, Handoff};

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// One socket, `http`, and the `[program]` lines given.
fn write_config(dir: &Path, program: &str) -> std::path::PathBuf {
    let file = dir.join("handoff.toml");
    let text = format!(
        "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\n[program]\n{program}\n"
    );
    std::fs::write(&file, text).expect("write the config");
    file
}

/// `handoff run --config FILE ARGS...`, which must refuse the config:
/// returns its output once it has exited 3.
fn refused(dir: &Path, file: &Path, args: &[&str]) -> String {
    let mut all = vec!["--config", path(file)];
    all.extend_from_slice(args);
    let mut h = Handoff::start(dir, &all);
    let status = h.wait_exit();
    let log = h.log();
    assert_eq!(status.code(), Some(3), "{log}");
    log
}

#[test]
fn a_bad_env_template_in_the_file_names_its_entry() {
    let dir = temp_dir();
    // The place is the entry's (line 7, column 29), not the table's.
    let file = write_config(
        dir.path(),
        "command = [\"/bin/true\"]\nenv = { GOOD = \"{fd:http}\", X = \"{fd:nope}\" }",
    );
    let log = refused(dir.path(), &file, &[]);
    let f = path(&file);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("nope")).collect();
    assert_eq!(
        lines,
        [format!(
            "handoff: {f}:7:29: env: `X`: `{{fd:nope}}` refers to socket `nope`, but the sockets are: http"
        )],
        "{log}"
    );
    // A table of its own: line 9, column 1.
    let file = write_config(
        dir.path(),
        "command = [\"/bin/true\"]\n\n[program.env]\nGOOD = \"{fd:http}\"\nY = \"--fd={fd:nope}\"",
    );
    let log = refused(dir.path(), &file, &[]);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("nope")).collect();
    assert_eq!(
        lines,
        [format!(
            "handoff: {f}:10:1: env: `Y`: `--fd={{fd:nope}}` refers to socket `nope`, but the sockets are: http"
        )],
        "{log}"
    );
}

#[test]
fn a_bad_env_template_from_a_flag_is_reported_as_the_flag() {
    let dir = temp_dir();
    // The file has an X too: the flag's value replaces it, so the mistake
    // is the flag's, not the file's line.
    let file = write_config(dir.path(), "command = [\"/bin/true\"]\nenv = { X = \"1\" }");
    let log = refused(dir.path(), &file, &["--env", "X={fd:nope}"]);
    let line = log
        .lines()
        .find(|l| l.contains("{fd:nope}"))
        .unwrap_or_else(|| panic!("no error about the template: {log}"));
    assert_eq!(
        line, "handoff: --env `X`: `{fd:nope}` refers to socket `nope`, but the sockets are: http",
        "{log}"
    );
    // And where the file has no such entry.
    let file = write_config(dir.path(), "command = [\"/bin/true\"]");
    let log = refused(dir.path(), &file, &["--env", "Z=a{fd:nope"]);
    assert!(
        log.lines()
            .any(|l| l == "handoff: --env `Z`: `a{fd:nope`: `{fd:` is not closed with `}`"),
        "{log}"
    );
}

#[test]
fn a_relative_ready_command_is_the_config_files() {
    let dir = temp_dir();
    // The probe is next to the config, and handoff runs elsewhere (the
    // test's directory): like `command`, it must be found from the file.
    write_executable(
        &dir.path().join("probe.sh"),
        &format!("#!/bin/sh\ntouch {}\n", path(&dir.path().join("probed"))),
    );
    let file = write_config(
        dir.path(),
        &format!(
            "command = [\"{}\"]\nready = \"exec\"\nready_command = [\"./probe.sh\"]\nready_interval = \"50ms\"\nready_timeout = \"10s\"",
            path(&example("hello"))
        ),
    );
    assert!(
        !std::env::current_dir()
            .expect("a current directory")
            .join("probe.sh")
            .exists(),
        "the test must run where there is no probe.sh"
    );
    let mut h = Handoff::start(dir.path(), &["--config", path(&file)]);
    h.wait_generation(1);
    assert!(dir.path().join("probed").exists(), "{}", h.log());
    assert!(!h.log().contains("cannot run"), "{}", h.log());
}
