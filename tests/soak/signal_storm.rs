//! Issue 7: a storm of SIGHUP (restart) and SIGUSR2 (upgrade in place)
//! while clients ask for restarts, on a rolling restart of 4 workers under
//! load. Upgrades are refused while a restart runs and happen between
//! them; whatever the interleaving, no request fails, every child starts
//! with no signal blocked, and the same supervisor process (a new binary
//! each upgrade) still answers and stops cleanly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use handoff::control::ClientError;
use handoff::protocol::{ErrorKind, Request, Response};
use nix::sys::signal::Signal;

use crate::harness::{example, installed_copy, run_command, temp_dir, Handoff, DEADLINE};
use crate::load::Load;
use crate::procs::{assert_no_zombie, steady_blocked, stop_and_check_port};
use handoff::sys::children_of;

/// Cycles of the storm: in each, a loud phase of `LOUD_ROUNDS` signals,
/// SIGHUP and SIGUSR2 in turn, while clients ask for restarts (upgrades run
/// into restarts and are refused); then a quiet phase: the clients pause,
/// and once no restart runs, `QUIET_ROUNDS` SIGUSR2 alone (upgrades
/// happen, and signals arrive during them).
const CYCLES: usize = 6;
const LOUD_ROUNDS: usize = 150;
const QUIET_ROUNDS: usize = 20;
/// Clients asking for restarts during the loud phases.
const RESTARTERS: usize = 2;

/// Whether the restart clients may ask, and whether they are done.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Gate {
    fn set(&self, open: bool, done: bool) {
        *self.state.lock().expect("gate lock") = (open, done);
        self.changed.notify_all();
    }

    /// Waits until the gate is open (true) or the clients are done (false).
    fn pass(&self) -> bool {
        let state = self.state.lock().expect("gate lock");
        let state = self
            .changed
            .wait_while(state, |(open, done)| !*open && !*done)
            .expect("gate lock");
        !state.1
    }
}

/// Clients asking for restarts one after another while the gate is open,
/// tallying how each request ended.
struct Restarters {
    gate: Arc<Gate>,
    threads: Vec<JoinHandle<BTreeMap<String, u64>>>,
}

impl Restarters {
    fn start(control: &Path, clients: usize) -> Restarters {
        let gate = Arc::new(Gate::default());
        let threads = (0..clients)
            .map(|_| {
                let (gate, control) = (gate.clone(), control.to_path_buf());
                std::thread::spawn(move || {
                    let mut outcomes = BTreeMap::new();
                    while gate.pass() {
                        let outcome = outcome(handoff::control::call(
                            &control,
                            &Request::Restart { drained: false },
                        ));
                        *outcomes.entry(outcome).or_default() += 1;
                        // Pacing, not synchronisation: signals, not only
                        // clients, start restarts.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    outcomes
                })
            })
            .collect();
        Restarters { gate, threads }
    }

    fn resume(&self) {
        self.gate.set(true, false);
    }

    fn pause(&self) {
        self.gate.set(false, false);
    }

    fn stop(self) -> BTreeMap<String, u64> {
        self.gate.set(false, true);
        let mut all = BTreeMap::new();
        for t in self.threads {
            for (k, n) in t.join().expect("a restart client panicked") {
                *all.entry(k).or_default() += n;
            }
        }
        all
    }
}

/// Waits until no restart runs (the restart clients paused, their last
/// requests answered), asking `status` again if an upgrade cuts the call.
fn wait_no_restart(control: &Path) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match handoff::control::call(control, &Request::Status {}) {
            Ok(Response::Status(s)) if s.restarting.is_none() => return,
            Ok(Response::Status(_)) => {}
            other => assert_eq!(outcome(other), "cut by an upgrade"),
        }
        assert!(
            Instant::now() < deadline,
            "a restart still runs after {DEADLINE:?}"
        );
        // Pacing between status calls; the condition decides.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How a restart request ended: "restarted", "cut by an upgrade" (the
/// README: control connections open when the new binary is executed are
/// closed), or what went wrong.
fn outcome(answer: Result<Response, ClientError>) -> String {
    match answer {
        Ok(Response::Restarted(_)) => "restarted".into(),
        // Asked while an upgrade was under way (its check, or its hand-over:
        // requests on their way then are answered, not cut).
        Ok(Response::Error {
            kind: ErrorKind::Busy,
            message,
        }) if message.contains("upgrading") => "refused during an upgrade".into(),
        Err(ClientError::NoAnswer { .. }) => "cut by an upgrade".into(),
        Err(ClientError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::ConnectionReset =>
        {
            "cut by an upgrade".into()
        }
        Ok(other) => format!("{other:?}"),
        Err(e) => e.to_string(),
    }
}

/// The pids of every child the log says handoff started.
fn started_pids(log: &str) -> BTreeSet<u32> {
    log.lines()
        .filter(|l| l.ends_with(") started"))
        .filter_map(|l| {
            l.rsplit_once("(pid ")?
                .1
                .strip_suffix(") started")?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn a_storm_of_sighup_and_sigusr2_with_restart_clients_fails_no_request() {
    let started = Instant::now();
    let dir = temp_dir();
    let installed = installed_copy(dir.path());
    let mut cmd = run_command(&installed, dir.path());
    cmd.args([
        "--listen",
        "http=tcp://127.0.0.1:0",
        "--workers",
        "4",
        "--strategy",
        "rolling",
        "--min-ready-time",
        "20ms",
        // A child started with SIGTERM blocked cannot drain: with a
        // long drain timeout it is still there when the storm ends.
        "--drain-timeout",
        "25s",
        "--",
    ])
    .arg(example("hello"));
    let mut h = Handoff::spawn(cmd, dir.path());
    h.wait_generation(1);
    let supervisor = h.child.id();
    let pid = nix::unistd::Pid::from_raw(supervisor as i32);
    let addr = h.addr("http");
    let load = Load::start(&addr, 16);
    load.wait_for_more(100);
    let restarters = Restarters::start(&h.control, RESTARTERS);

    // pid -> SigBlk, for the children seen while the storm runs.
    let mut seen = BTreeMap::new();
    let sample = |seen: &mut BTreeMap<u32, u64>| {
        for child in children_of(supervisor) {
            if let Some(blocked) = steady_blocked(child, "hello") {
                seen.insert(child, blocked);
            }
        }
    };
    let (mut hups, mut usr2s) = (0, 0);
    let mut send = |signal: Signal| {
        match signal {
            Signal::SIGHUP => hups += 1,
            _ => usr2s += 1,
        }
        nix::sys::signal::kill(pid, signal).expect("handoff is alive");
        std::thread::sleep(Duration::from_millis(5)); // pacing, not synchronisation
    };
    for _ in 0..CYCLES {
        restarters.resume();
        for round in 0..LOUD_ROUNDS {
            send(if round % 2 == 0 {
                Signal::SIGHUP
            } else {
                Signal::SIGUSR2
            });
            if round % 10 == 0 {
                sample(&mut seen);
            }
        }
        restarters.pause();
        wait_no_restart(&h.control);
        for _ in 0..QUIET_ROUNDS {
            send(Signal::SIGUSR2);
        }
        sample(&mut seen);
    }
    let outcomes = restarters.stop();

    // One more restart, answered once its generation serves: whatever the
    // storm started has started by then. It can be cut by an upgrade that
    // the last SIGUSR2 began: then ask again.
    let deadline = Instant::now() + DEADLINE;
    loop {
        sample(&mut seen);
        let answer = handoff::control::call(&h.control, &Request::Restart { drained: false });
        match outcome(answer) {
            o if o == "restarted" => break,
            o if (o == "cut by an upgrade" || o == "refused during an upgrade")
                && Instant::now() < deadline =>
            {
                continue
            }
            o => panic!("the restart after the storm: {o}"),
        }
    }
    sample(&mut seen);

    load.wait_for_more(100);
    let tally = load.stop();
    let requests = tally.ok + tally.failures();
    assert_eq!(tally.failures(), 0, "failed requests: {:?}", tally.failed);
    let unexpected: Vec<_> = outcomes
        .iter()
        .filter(|(o, _)| {
            ![
                "restarted",
                "cut by an upgrade",
                "refused during an upgrade",
            ]
            .contains(&o.as_str())
        })
        .collect();
    assert!(unexpected.is_empty(), "restart requests: {outcomes:?}");

    // Every child the log says was started: gone (it drained on its stop
    // signal, so did not block it) or alive with nothing blocked. A child
    // seen with something blocked is judged on what it has now: a signal
    // handler running, or a thread being created, blocks signals for a
    // moment.
    let log = h.log();
    let children = started_pids(&log);
    let bad: Vec<String> = children
        .iter()
        .chain(seen.keys())
        .filter_map(|&pid| {
            let blocked = steady_blocked(pid, "hello")?;
            (blocked != 0).then(|| format!("{pid}: SigBlk {blocked:016x}"))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "of {} children, these started with signals blocked:\n{}",
        children.len(),
        bad.join("\n")
    );

    let status = h.status();
    assert_eq!(
        status.pid, supervisor,
        "the same process after the upgrades"
    );
    assert!(status.upgrades > 0, "the storm upgraded: {status:?}");
    let upgrade_refusals = log.matches("upgrade: a restart").count();
    assert_no_zombie(supervisor);
    stop_and_check_port(&mut h, &addr);
    let restarted = outcomes.get("restarted").copied().unwrap_or(0);
    let cut = outcomes.get("cut by an upgrade").copied().unwrap_or(0);
    let refused = outcomes
        .get("refused during an upgrade")
        .copied()
        .unwrap_or(0);
    eprintln!(
        "soak signal-storm: {} restarts, {requests} requests, {} failed, \
         {} signals ({hups} SIGHUP, {usr2s} SIGUSR2), {} upgrades ({upgrade_refusals} refused during a restart), \
         {restarted} restart requests answered, {refused} refused busy during an upgrade and {cut} cut by one, \
         {} children started, all with SigBlk 0, supervisor pid unchanged, 0 zombies, \
         port free after stop, {:.1}s",
        status.generation - 1,
        tally.failures(),
        hups + usr2s,
        status.upgrades,
        children.len(),
        started.elapsed().as_secs_f64()
    );
}
