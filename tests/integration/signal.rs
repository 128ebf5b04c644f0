//! `handoff signal` and `forward_signals` (issue 12): a signal for the
//! server reaches exactly the serving workers, a draining one only when its
//! generation is named, and one sent to handoff itself reaches them too.
//!
//! The server is a small python3 script that writes a line per signal it
//! gets ("PID GENERATION SIGNAL") to a file, says READY=1 once its handlers
//! are in place, and on SIGTERM exits, or when told to linger, drains until
//! the test creates DIR/release, so that a draining generation stays there
//! to be checked.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{client, temp_dir, write_executable, Handoff, DEADLINE};

const RECORDER: &str = r#"#!/usr/bin/env python3
import os, signal, socket, sys, time

log, release, linger = sys.argv[1], sys.argv[2], sys.argv[3] == "linger"
generation = os.environ.get("HANDOFF_GENERATION", "?")
draining_since = None

def record(name):
    with open(log, "a") as f:
        f.write("%d %s %s\n" % (os.getpid(), generation, name))

def on_term(number, frame):
    global draining_since
    record("SIGTERM")
    draining_since = time.monotonic()

for name in ("SIGUSR1", "SIGWINCH", "SIGTTIN"):
    signal.signal(getattr(signal, name), lambda number, frame, name=name: record(name))
signal.signal(signal.SIGTERM, on_term)

path = os.environ["NOTIFY_SOCKET"]
if path.startswith("@"):
    path = "\0" + path[1:]
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", path)

# Drains until the test releases it (or 60s pass: a failed test's workers
# do not outlive it for long).
while draining_since is None or (
    linger and not os.path.exists(release) and time.monotonic() - draining_since < 60
):
    time.sleep(0.02)
"#;

/// The recorder's script in `dir`, and the command line that runs it;
/// with `linger`, it drains until DIR/release exists.
fn recorder(dir: &Path, linger: bool) -> Vec<String> {
    let script = dir.join("recorder.py");
    write_executable(&script, RECORDER);
    vec![
        script.display().to_string(),
        dir.join("signals.log").display().to_string(),
        dir.join("release").display().to_string(),
        if linger { "linger" } else { "exit" }.to_string(),
    ]
}

/// The lines the recorders wrote: (pid, generation, signal).
fn recorded(dir: &Path) -> Vec<(u32, u64, String)> {
    let text = std::fs::read_to_string(dir.join("signals.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            Some((
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
                parts.next()?.to_string(),
            ))
        })
        .collect()
}

/// Waits until every one of `pids` has recorded `signal` at least `times`
/// times; a condition no log line announces, checked again after a short
/// pause until the deadline.
fn wait_recorded(dir: &Path, pids: &[u32], signal: &str, times: usize) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let lines = recorded(dir);
        let missing: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|pid| {
                lines
                    .iter()
                    .filter(|l| l.0 == *pid && l.2 == signal)
                    .count()
                    < times
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pids {missing:?} did not record {signal} {times} time(s) within {DEADLINE:?}: {lines:?}"
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// `handoff signal ARGS --control ...` against `h`.
fn signal(h: &Handoff, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["signal"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--control", h.control.to_str().expect("utf-8 path")]);
    client(&all)
}

/// The pids `handoff signal` printed, in order.
fn printed_pids(out: &str) -> BTreeSet<u32> {
    out.lines()
        .filter_map(|l| l.split(" pid ").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

fn set(pids: &[u32]) -> BTreeSet<u32> {
    pids.iter().copied().collect()
}

/// Two recorder workers (draining for as long as the test needs, with
/// `linger`).
fn start(dir: &Path, linger: bool, extra: &[&str]) -> Handoff {
    let mut args = vec!["--listen", "http=tcp://127.0.0.1:0", "--workers", "2"];
    args.extend_from_slice(extra);
    args.push("--");
    let command = recorder(dir, linger);
    args.extend(command.iter().map(String::as_str));
    let mut h = Handoff::start(dir, &args);
    h.wait_generation(1);
    h
}

#[test]
fn reaches_the_serving_workers_and_a_draining_one_only_by_its_generation() {
    let dir = temp_dir();
    let mut h = start(dir.path(), true, &["--drain-timeout", "60s"]);
    let first = h.pids("ready");
    assert_eq!(first.len(), 2);

    let (code, out, err) = signal(&h, &["SIGUSR1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(printed_pids(&out), set(&first), "{out}");
    wait_recorded(dir.path(), &first, "SIGUSR1", 1);

    // Generation 1 drains (it lingers after SIGTERM), generation 2 serves.
    let (code, out, err) = crate::harness::restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_generation(2);
    wait_recorded(dir.path(), &first, "SIGTERM", 1);
    assert_eq!(set(&h.pids("draining")), set(&first));
    let second = h.pids("ready");
    assert_eq!(second.len(), 2);

    let (code, out, err) = signal(&h, &["usr1", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(answer["result"], "signalled", "{out}");
    assert_eq!(answer["signal"], "SIGUSR1", "{out}");
    let reached: BTreeSet<u32> = answer["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["pid"].as_u64().expect("pid") as u32)
        .collect();
    assert_eq!(reached, set(&second), "only generation 2: {out}");
    wait_recorded(dir.path(), &second, "SIGUSR1", 1);

    // Named, the draining generation gets one. Python runs its handlers
    // in signal-number order, so had the SIGUSR1 above reached them
    // (sent before this SIGWINCH), it would be recorded before it.
    let (code, out, err) = signal(&h, &["WINCH", "--generation", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(printed_pids(&out), set(&first), "{out}");
    assert!(out.contains("draining"), "{out}");
    wait_recorded(dir.path(), &first, "SIGWINCH", 1);
    let lines = recorded(dir.path());
    for pid in &first {
        let mine: Vec<&str> = lines
            .iter()
            .filter(|l| l.0 == *pid)
            .map(|l| l.2.as_str())
            .collect();
        assert_eq!(
            mine,
            ["SIGUSR1", "SIGTERM", "SIGWINCH"],
            "pid {pid} of the draining generation: {lines:?}"
        );
    }
    for pid in &second {
        assert!(
            !lines.iter().any(|l| l.0 == *pid && l.2 == "SIGWINCH"),
            "generation 2 got generation 1's signal: {lines:?}"
        );
    }

    std::fs::write(dir.path().join("release"), "").expect("release the drain");
    h.wait_log_all(&["generation 1 worker", "exited"]);
}

#[test]
fn a_signal_sent_to_handoff_is_forwarded_even_in_a_storm_and_after_a_reload() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    let command: Vec<String> = recorder(dir.path(), false);
    let config = |forward: &str| {
        format!(
            "forward_signals = [{forward}]\n[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\
             [program]\ncommand = {command:?}\nworkers = 2\n"
        )
    };
    std::fs::write(&file, config("\"SIGUSR1\"")).expect("write config");
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let first = h.pids("ready");

    h.signal(Signal::SIGUSR1);
    wait_recorded(dir.path(), &first, "SIGUSR1", 1);

    // A storm coalesces, but the last one is never lost: each worker gets
    // at least one more, and handoff is still there to answer.
    for _ in 0..200 {
        h.signal(Signal::SIGUSR1);
    }
    wait_recorded(dir.path(), &first, "SIGUSR1", 2);
    assert_eq!(set(&h.pids("ready")), set(&first));

    // A reload adds SIGWINCH: the new generation hears it.
    std::fs::write(&file, config("\"SIGUSR1\", \"SIGWINCH\"")).expect("write config");
    let (code, out, err) = client(&["reload", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    let second = h.pids("ready");
    h.signal(Signal::SIGWINCH);
    wait_recorded(dir.path(), &second, "SIGWINCH", 1);

    // A reload that takes them off: handoff says so and lives on.
    std::fs::write(&file, config("")).expect("write config");
    let (code, out, err) = client(&["reload", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    h.signal(Signal::SIGUSR1);
    h.wait_log("SIGUSR1 ignored: a reload took it off forward_signals");
    assert_eq!(h.status().generation, 3);
}

#[test]
fn bad_inputs_name_the_problem_with_their_own_exit_codes() {
    let dir = temp_dir();
    let h = start(dir.path(), false, &[]);

    let (code, _, err) = signal(&h, &["SIGNOPE"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`SIGNOPE` is not a signal name"), "{err}");

    let (code, _, err) = signal(&h, &["STOP"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("a stopped worker holds its connections"),
        "{err}"
    );

    let (code, _, err) = signal(&h, &["USR1", "--generation", "9"]);
    assert_eq!(code, 8, "{err}");
    assert!(
        err.contains("generation 9 has no workers (generations with workers: 1)"),
        "{err}"
    );
    assert!(recorded(dir.path()).is_empty(), "nothing was sent");
}

#[test]
fn before_any_worker_is_ready_nothing_serves_yet() {
    let dir = temp_dir();
    // A server that never says READY=1: it stays starting.
    let script = dir.path().join("silent.sh");
    write_executable(&script, "#!/bin/sh\nexec sleep 60\n");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--ready-timeout",
            "5m",
            "--",
            script.to_str().expect("utf-8"),
        ],
    );
    h.wait_log("generation 1 worker 0");
    let (code, _, err) = signal(&h, &["USR1"]);
    assert_eq!(code, 9, "{err}");
    assert!(
        err.contains("no worker is ready to take SIGUSR1 yet"),
        "{err}"
    );
    assert_eq!(h.pids("starting").len(), 1, "and it was left alone");
}

#[test]
fn a_forward_signals_mistake_is_reported_at_its_line() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    std::fs::write(
        &file,
        "forward_signals = [\"USR1\", \"HUP\"]\n[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [\"true\"]\n",
    )
    .expect("write config");
    let (code, _, err) = client(&["check", file.to_str().expect("utf-8")]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!(
            "{}:1:28: forward_signals: SIGHUP cannot be forwarded: handoff restarts",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn forwarding_survives_an_upgrade() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    let command: Vec<String> = recorder(dir.path(), false);
    std::fs::write(
        &file,
        format!(
            "forward_signals = [\"SIGUSR1\"]\n[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\
             [program]\ncommand = {command:?}\n"
        ),
    )
    .expect("write config");
    let installed = crate::harness::installed_copy(dir.path());
    let mut cmd = crate::harness::run_command(&installed, dir.path());
    cmd.args(["--config", file.to_str().expect("utf-8")]);
    let mut h = Handoff::spawn(cmd, dir.path());
    h.wait_generation(1);
    let workers = h.pids("ready");

    let (code, out, err) = client(&["upgrade", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    // The new supervisor (same pid) listens to SIGUSR1 too: without its
    // handler, SIGUSR1's default action would end it.
    h.signal(Signal::SIGUSR1);
    wait_recorded(dir.path(), &workers, "SIGUSR1", 1);
    assert_eq!(h.status().upgrades, 1);
}
