//! `listen_env`, `listen_pid` and `sockets_nonblocking` (issue 11) as a
//! user sets them: from the file and from the flags, they reach the child
//! (a server behind a wrapper that does not exec it takes its sockets;
//! one given its fd by `{fd:NAME}` gets no LISTEN_* variables); their
//! mistakes are named at their line by `check`, and refused by `run`.

use nix::sys::signal::Signal;

use crate::harness::{client, example, get_from_generation, temp_dir, write_executable, Handoff};
use crate::run_true::run_true_with;

/// Prints what the child was given, as `knobs: ...` on handoff's output:
/// the LISTEN_* variables ("unset" when absent), `$1`, and fd 3's file
/// status flags (octal, as /proc shows them).
const REPORT: &str = "echo \"knobs: pid=$$ LISTEN_FDS=${LISTEN_FDS-unset} LISTEN_FDNAMES=${LISTEN_FDNAMES-unset} LISTEN_PID=${LISTEN_PID-unset} arg=${1-none} flags=$(sed -n 's/^flags:[[:space:]]*//p' /proc/$$/fdinfo/3)\"";

/// The value of `key=` in a `knobs:` line.
fn knob<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + key.len()
        + 2;
    line[start..].split(' ').next().unwrap_or("")
}

/// Whether a `knobs:` line's fd 3 had O_NONBLOCK.
fn nonblocking(line: &str) -> bool {
    let flags = u32::from_str_radix(knob(line, "flags"), 8)
        .unwrap_or_else(|e| panic!("fd 3's flags in {line}: {e}"));
    flags & nix::fcntl::OFlag::O_NONBLOCK.bits() as u32 != 0
}

/// `listen_pid = "any"` in the file: a server run by a wrapper that does
/// not exec it (as `cargo run` runs one) takes the sockets with a library
/// that skips the LISTEN_PID check when it is missing (hello's listenfd),
/// and `sockets_nonblocking = true` hands them over non-blocking.
#[test]
fn the_files_keys_let_a_grandchild_take_nonblocking_sockets() {
    let dir = temp_dir();
    let wrapper = dir.path().join("wrapper.sh");
    let hello = example("hello");
    write_executable(
        &wrapper,
        &format!(
            "#!/bin/sh\n{REPORT}\n{} \"$@\"\nexit $?\n",
            hello.to_str().expect("utf-8 path")
        ),
    );
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\n[program]\ncommand = [\"./wrapper.sh\"]\nlisten_pid = \"any\"\nsockets_nonblocking = true\n",
    )
    .expect("write the config");
    let mut h = Handoff::start(dir.path(), &["--config", config.to_str().expect("utf-8")]);
    let knobs = h.wait_log("knobs:");
    assert_eq!(knob(&knobs, "LISTEN_FDS"), "1", "{knobs}");
    assert_eq!(knob(&knobs, "LISTEN_FDNAMES"), "http", "{knobs}");
    assert_eq!(knob(&knobs, "LISTEN_PID"), "unset", "{knobs}");
    assert!(nonblocking(&knobs), "fd 3 is blocking: {knobs}");
    h.wait_generation(1);

    // The server is the wrapper's child, not handoff's, and serves.
    let env = get_from_generation(&h.addr("http"), "/env", 1);
    let env: serde_json::Value = serde_json::from_str(&env).expect("JSON");
    assert_ne!(env["pid"].to_string(), knob(&knobs, "pid"), "{env}");
    assert_eq!(env["listen_fds"], "1", "{env}");
    assert_eq!(env["listen_pid"], serde_json::Value::Null, "{env}");

    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.log());
}

/// `--no-listen-env` and `--sockets-nonblocking` win over the file's
/// `listen_env = true` and `sockets_nonblocking = false`: a server given
/// its socket by `{fd:http}` gets no LISTEN_* variables to take it twice.
#[test]
fn the_flags_win_over_the_files_keys() {
    let dir = temp_dir();
    let server = dir.path().join("server.sh");
    write_executable(&server, &format!("#!/bin/sh\n{REPORT}\nexec sleep 600\n"));
    let config = dir.path().join("handoff.toml");
    std::fs::write(
        &config,
        "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\n[program]\ncommand = [\"./server.sh\", \"{fd:http}\"]\nready = \"delay\"\nready_delay = \"10ms\"\nlisten_env = true\nsockets_nonblocking = false\n",
    )
    .expect("write the config");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--no-listen-env",
            "--sockets-nonblocking",
        ],
    );
    let knobs = h.wait_log("knobs:");
    assert_eq!(knob(&knobs, "arg"), "3", "{knobs}");
    for var in ["LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"] {
        assert_eq!(knob(&knobs, var), "unset", "{var}: {knobs}");
    }
    assert!(nonblocking(&knobs), "fd 3 is blocking: {knobs}");
    h.wait_generation(1);
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.log());
}

#[test]
fn check_names_each_protocol_mistake_at_its_line() {
    let dir = temp_dir();
    let file = dir.path().join("bad.toml");
    let f = file.display().to_string();
    let head = "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\n[program]\ncommand = [\"/bin/true\"]\n";
    let check = |keys: &str| {
        std::fs::write(&file, format!("{head}{keys}")).expect("write the config");
        let (code, out, err) = client(&["check", file.to_str().expect("utf-8 path")]);
        assert_eq!(code, 3, "{keys}: {out}{err}");
        err
    };
    let err = check("listen_env = false\nlisten_pid = \"any\"\n");
    assert!(
        err.contains(&format!(
            "{f}:8:14: listen_pid = \"any\" does nothing with listen_env = false: "
        )),
        "{err}"
    );
    let err = check("listen_pid = \"parent\"\nsockets_nonblocking = \"yes\"\n");
    assert!(
        err.contains(&format!(
            "{f}:7:14: listen_pid = \"parent\": expected \"child\" or \"any\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{f}:8:23: sockets_nonblocking: expected true or false, not the string \"yes\""
        )),
        "{err}"
    );
}

#[test]
fn run_refuses_bad_protocol_flags() {
    let dir = temp_dir();
    let run = |flags: &[&str]| run_true_with(dir.path(), flags);
    let (code, out, err) = run(&["--listen-pid", "parent"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("[possible values: child, any]"), "{err}");
    let (code, out, err) = run(&["--no-listen-env", "--listen-pid", "any"]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("--listen-pid any does nothing with --no-listen-env: "),
        "{err}"
    );
    assert!(
        !dir.path().join("control.sock").exists(),
        "a refused run creates no control socket"
    );
}
