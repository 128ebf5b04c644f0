//! Issue 7, item 1: children must start with no signal blocked and none
//! ignored, whatever state the supervisor is in when it forks; and a
//! supervisor started with its signals blocked must still get them.

use handoff::sys::children_of;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};

use crate::harness::{example, handoff_bin, restart, run_command, temp_dir, Handoff, DEADLINE};

/// SigBlk and SigIgn of a process, from /proc/PID/status; None once it is
/// gone.
fn masks(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(parse_masks(&text))
}

fn parse_masks(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        u64::from_str_radix(line.trim(), 16).expect("a hex signal mask")
    };
    (field("SigBlk:"), field("SigIgn:"))
}

/// `handoff run ARGS`, started the way a careless parent would: SIGTERM,
/// SIGHUP, SIGINT and SIGUSR2 blocked, SIGHUP, SIGUSR1 and SIGQUIT ignored.
fn start_with_signals_blocked(dir: &Path, args: &[&str]) -> Handoff {
    let mut cmd = run_command(handoff_bin(), dir);
    cmd.args(args);
    // SAFETY: runs between fork and exec; sigprocmask and sigaction are
    // async-signal-safe and nothing is allocated.
    unsafe {
        cmd.pre_exec(|| {
            let mut blocked = SigSet::empty();
            for s in [
                Signal::SIGTERM,
                Signal::SIGHUP,
                Signal::SIGINT,
                Signal::SIGUSR2,
            ] {
                blocked.add(s);
            }
            sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)?;
            for s in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGQUIT] {
                nix::sys::signal::signal(s, SigHandler::SigIgn)?;
            }
            Ok(())
        });
    }
    Handoff::spawn(cmd, dir)
}

/// Every ready worker of `generation`, and its probe's record, has nothing
/// blocked and nothing ignored.
fn assert_clean_start(h: &Handoff, dir: &Path, generation: u64) {
    let status = h.status();
    let pids: Vec<u32> = status
        .workers
        .iter()
        .filter(|w| w.generation == generation && w.state == "ready")
        .filter_map(|w| w.pid)
        .collect();
    assert_eq!(pids.len(), 2, "{status:?}");
    for pid in pids {
        let (blocked, ignored) = masks(pid).expect("a ready worker is alive");
        assert_eq!(
            (blocked, ignored),
            (0, 0),
            "worker {pid} of generation {generation} started with SigBlk {blocked:016x}, SigIgn {ignored:016x}"
        );
        // The probe is a `sh -c`: dash clears its own mask at start, so
        // only what it ignores tells how it was started.
        let record = std::fs::read_to_string(dir.join(format!("probe.{pid}")))
            .expect("the probe for this worker ran and recorded its masks");
        let (_, ignored) = parse_masks(&record);
        assert_eq!(
            ignored, 0,
            "the probe for worker {pid} started with SigIgn {ignored:016x}"
        );
    }
}

#[test]
fn children_start_clean_from_a_supervisor_started_with_signals_blocked() {
    let dir = temp_dir();
    let probe = format!(
        "grep Sig /proc/$$/status > {}/probe.$HANDOFF_PID",
        dir.path().display()
    );
    let mut h = start_with_signals_blocked(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--workers",
            "2",
            "--ready",
            "exec",
            "--ready-command",
            &probe,
            "--ready-interval",
            "50ms",
            "--",
            "sleep",
            "1000",
        ],
    );
    h.wait_generation(1);
    assert_clean_start(&h, dir.path(), 1);
    // SIGHUP, blocked and ignored by the parent, still restarts.
    h.signal(Signal::SIGHUP);
    h.wait_generation(2);
    assert_clean_start(&h, dir.path(), 2);
    // And SIGTERM, blocked by the parent, still stops it.
    h.signal(Signal::SIGTERM);
    let status = h.wait_exit();
    assert!(status.success(), "{status:?}");
}

/// The signals `pid` blocks, if it is a `hello` (that is, has exec'd),
/// not read while it blocks every signal around creating a thread (glibc's
/// pthread_create does, for a moment). None once it is gone.
fn steady_blocked(pid: u32) -> Option<u64> {
    for _ in 0..100 {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() != "hello" {
            return None;
        }
        let (blocked, _) = masks(pid)?;
        if blocked | ALWAYS_DELIVERED != u64::MAX {
            return Some(blocked);
        }
        std::thread::yield_now();
    }
    None
}

/// SIGKILL and SIGSTOP, which no mask blocks.
const ALWAYS_DELIVERED: u64 = 1 << (9 - 1) | 1 << (19 - 1);

/// The race itself: an upgrade (SIGUSR2) blocks the supervisor's signals
/// and then handles queued events, and one of them can start a worker (the
/// next batch of a rolling restart) inside that window. Storm it with
/// SIGUSR2 and SIGHUP while rolling restarts of 4 workers run, and check
/// every child ever started. A child started with SIGTERM blocked cannot
/// drain: it outlives its stop signal until `drain_timeout` (long here), so
/// every such child is still there to be found when the storm ends.
#[test]
fn no_child_starts_with_signals_blocked_during_an_upgrade_storm() {
    let dir = temp_dir();
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--workers",
            "4",
            "--strategy",
            "rolling",
            "--drain-timeout",
            "25s",
            "--",
            example("hello").to_str().expect("utf-8 path"),
        ],
    );
    h.wait_generation(1);
    let supervisor = h.child.id();
    let pid = nix::unistd::Pid::from_raw(supervisor as i32);
    // pid -> SigBlk, as last seen.
    let mut seen = BTreeMap::new();
    // Only children that have exec'd the server count: between fork and
    // exec a child still has the supervisor's mask, and the upgrade's
    // helpers (spawned by posix_spawn) block everything until their exec.
    let check = |seen: &mut BTreeMap<u32, u64>| {
        for child in children_of(supervisor) {
            if let Some(blocked) = steady_blocked(child) {
                seen.insert(child, blocked);
            }
        }
    };
    // Bounded: 400 rounds, a few seconds. In each 100, SIGHUP and SIGUSR2
    // in turn, then SIGUSR2 alone, so that restarts run into upgrades that
    // are refused (a restart is in progress) and then upgrades that happen.
    let storm = Instant::now();
    for round in 0..400 {
        let signal = if round % 2 == 0 && round % 100 < 70 {
            Signal::SIGHUP
        } else {
            Signal::SIGUSR2
        };
        nix::sys::signal::kill(pid, signal).expect("handoff is alive");
        std::thread::sleep(Duration::from_millis(2)); // pacing, not synchronisation
        if round % 10 == 0 {
            check(&mut seen);
        }
        if storm.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    // One more restart, answered once its generation serves: everything
    // the storm started has been started by then. (It may be refused while
    // an upgrade's new supervisor takes over: then ask again.)
    let deadline = Instant::now() + DEADLINE;
    loop {
        check(&mut seen);
        let (code, out, err) = restart(&h);
        if code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no restart succeeded after the storm: {out}{err}"
        );
    }
    check(&mut seen);
    let status = h.status();
    assert!(status.generation > 2, "the storm restarted: {status:?}");
    eprintln!(
        "storm: {} children checked, {} generations, {} upgrades",
        seen.len(),
        status.generation,
        status.upgrades
    );
    // A child seen with something blocked is judged on what it has now: a
    // signal handler running, or a thread being created, blocks signals
    // for a moment. One that started with SIGTERM blocked is still alive
    // (it cannot drain before `drain_timeout`) and still has it blocked;
    // one that is gone drained on its stop signal, so had none blocked.
    let bad: Vec<String> = seen
        .iter()
        .filter(|(_, &blocked)| blocked != 0)
        .filter_map(|(&pid, _)| {
            let blocked = steady_blocked(pid)?;
            (blocked != 0).then(|| format!("{pid}: SigBlk {blocked:016x}"))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "of {} children, these started with signals blocked:\n{}",
        seen.len(),
        bad.join("\n")
    );
    h.signal(Signal::SIGTERM);
    assert!(h.wait_exit().success());
}
