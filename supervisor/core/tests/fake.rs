//! A fake [`Effects`]: it records every call as an [`Effect`], in order, on
//! a clock the test moves by hand, and hands out pids from a script. The
//! [`Harness`] around it drives a [`Core`] the way the engine would.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use crate::config::{
    ProgramSpec, Readiness, Strategy, DEFAULT_DRAIN_TIMEOUT, DEFAULT_MIN_READY_TIME,
    DEFAULT_READY_TIMEOUT, DEFAULT_RESPAWN_BACKOFF, DEFAULT_RESPAWN_BACKOFF_MAX,
};
use crate::core::workers::WorkerEvent;
use crate::core::{
    Asked, Core, CoreSnapshot, Effects, Generation, LaunchError, Launched, Leftover, RestartWaiter,
    Timer, Waiter, Worker, WorkerId,
};
use crate::notify::Notice;
use crate::protocol::{ErrorKind, Response};
use crate::sockets::{BoundSocket, Handover, SocketSpec};

/// One call the core made, as the test sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Launch {
        id: WorkerId,
        generation: u64,
        slot: usize,
    },
    /// A launch the script made fail.
    LaunchFailed {
        id: WorkerId,
        generation: u64,
        slot: usize,
    },
    Ready(WorkerId),
    Signal(WorkerId, Signal),
    /// A signal sent on a user's behalf; true: to the process group.
    Send(WorkerId, Signal, bool),
    Timer(Duration, Timer),
    Gone(WorkerId, Leftover),
    Answer(Response),
    /// A new socket beside socket `serial` (the fake's numbering: the
    /// order in which it first saw each socket), numbered `new`.
    Sibling {
        of: usize,
        new: usize,
    },
    /// Socket `serial` left its group.
    Release(usize),
    /// A program for the group whose first member is socket `via`, to
    /// these `(index, weight)`.
    Steer {
        via: usize,
        targets: Vec<(u32, u32)>,
    },
}

pub struct Fx {
    pub now: Instant,
    effects: Vec<Effect>,
    next_pid: u32,
    /// How many launches succeed before the scripted failures.
    ok_first: usize,
    /// How many launches fail after those.
    failures: usize,
    /// Every timer armed, with when it is due (the latest arming wins).
    armed: BTreeMap<String, Instant>,
    /// Every socket seen, its index its serial number in effects.
    pub sockets: Vec<Arc<BoundSocket>>,
    /// What `queued` answers, per socket serial (0 where not set).
    pub queues: BTreeMap<usize, u32>,
    /// `sibling` fails (as with no fd left).
    pub siblings_fail: bool,
    /// `steer` fails (as when the kernel refuses the program).
    pub steer_fails: bool,
    /// Sockets (by serial) the next `check_sockets` says it revived.
    pub revive: Vec<usize>,
}

impl Fx {
    pub fn new() -> Fx {
        Fx {
            now: Instant::now(),
            effects: Vec::new(),
            next_pid: 1000,
            ok_first: 0,
            failures: 0,
            armed: BTreeMap::new(),
            sockets: Vec::new(),
            queues: BTreeMap::new(),
            siblings_fail: false,
            steer_fails: false,
            revive: Vec::new(),
        }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// The effects recorded since the last take.
    pub fn take(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The next `n` launches fail.
    pub fn fail_launches(&mut self, n: usize) {
        self.fail_launches_after(0, n);
    }

    /// The next `ok` launches succeed, the `n` after them fail.
    pub fn fail_launches_after(&mut self, ok: usize, n: usize) {
        self.ok_first = ok;
        self.failures = n;
    }

    /// The serial number of `socket` (given when first seen).
    pub fn serial(&mut self, socket: &Arc<BoundSocket>) -> usize {
        match self.sockets.iter().position(|s| Arc::ptr_eq(s, socket)) {
            Some(i) => i,
            None => {
                self.sockets.push(socket.clone());
                self.sockets.len() - 1
            }
        }
    }

    /// When `timer` was armed to go off, if it was.
    pub fn due(&self, timer: &Timer) -> Option<Instant> {
        self.armed.get(&format!("{timer:?}")).copied()
    }
}

impl Effects for Fx {
    fn now(&self) -> Instant {
        self.now
    }

    fn launch(
        &mut self,
        id: WorkerId,
        generation: &Arc<Generation>,
        slot: usize,
    ) -> Result<Launched, LaunchError> {
        let generation = generation.number;
        if self.ok_first > 0 {
            self.ok_first -= 1;
        } else if self.failures > 0 {
            self.failures -= 1;
            self.effects.push(Effect::LaunchFailed {
                id,
                generation,
                slot,
            });
            return Err(LaunchError::Notify {
                path: "/fake/notify".into(),
                source: std::io::Error::other("scripted failure"),
            });
        }
        self.effects.push(Effect::Launch {
            id,
            generation,
            slot,
        });
        let pid = self.next_pid;
        self.next_pid += 1;
        Ok(Launched {
            pid,
            forked: self.now,
        })
    }

    fn ready(&mut self, worker: &Worker) {
        self.effects.push(Effect::Ready(worker.id));
    }

    fn signal(&mut self, worker: &Worker, signal: Signal) {
        self.effects.push(Effect::Signal(worker.id, signal));
    }

    fn send(&mut self, worker: &Worker, signal: Signal, group: bool) -> Result<(), String> {
        self.effects.push(Effect::Send(worker.id, signal, group));
        Ok(())
    }

    fn timer(&mut self, after: Duration, timer: Timer) {
        self.armed.insert(format!("{timer:?}"), self.now + after);
        self.effects.push(Effect::Timer(after, timer));
    }

    fn gone(&mut self, worker: &Worker, leftover: Leftover) {
        self.effects.push(Effect::Gone(worker.id, leftover));
    }

    fn answer(&mut self, reply: Waiter, response: Response) {
        self.effects.push(Effect::Answer(response.clone()));
        // The test may have dropped the receiver: then nobody listens.
        let _ = reply.send(response);
    }

    fn check_sockets(&mut self, _sockets: &[Arc<BoundSocket>]) -> Vec<Arc<BoundSocket>> {
        std::mem::take(&mut self.revive)
            .into_iter()
            .map(|i| self.sockets[i].clone())
            .collect()
    }

    /// A real socket: the core's bookkeeping is checked against the
    /// kernel's in `steer/tests.rs`; here only the calls matter.
    fn sibling(
        &mut self,
        socket: &Arc<BoundSocket>,
    ) -> Result<Arc<BoundSocket>, crate::sockets::BindError> {
        if self.siblings_fail {
            return Err(crate::sockets::BindError {
                name: socket.spec.name.clone(),
                listen: socket.spec.listen.clone(),
                what: "cannot create the new generation's socket",
                source: std::io::Error::from_raw_os_error(libc::EMFILE),
            });
        }
        let sibling = Arc::new(socket.sibling()?);
        let of = self.serial(socket);
        let new = self.serial(&sibling);
        self.effects.push(Effect::Sibling { of, new });
        Ok(sibling)
    }

    fn release(&mut self, socket: &Arc<BoundSocket>) {
        let serial = self.serial(socket);
        self.effects.push(Effect::Release(serial));
    }

    fn steer(&mut self, attach: &crate::core::Attach) -> bool {
        let via = self.serial(&attach.members[0]);
        self.effects.push(Effect::Steer {
            via,
            targets: attach.targets.clone(),
        });
        !self.steer_fails
    }

    fn queued(&mut self, sockets: &[Arc<BoundSocket>]) -> u32 {
        let serials: Vec<usize> = sockets.iter().map(|s| self.serial(s)).collect();
        serials
            .iter()
            .map(|i| self.queues.get(i).copied().unwrap_or(0))
            .sum()
    }
}

/// The program the tests run: the config's defaults, `workers` of them.
pub fn spec(workers: usize) -> ProgramSpec {
    ProgramSpec {
        command: vec!["./server".into()],
        env: Default::default(),
        working_directory: None,
        ready: Readiness::Notify,
        ready_timeout: DEFAULT_READY_TIMEOUT,
        min_ready_time: DEFAULT_MIN_READY_TIME,
        stop_signal: Signal::SIGTERM,
        drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        respawn_backoff: DEFAULT_RESPAWN_BACKOFF,
        respawn_backoff_max: DEFAULT_RESPAWN_BACKOFF_MAX,
        workers,
        strategy: Strategy::AllAtOnce,
        handover_settle: crate::config::DEFAULT_HANDOVER_SETTLE,
        handover_timeout: crate::config::DEFAULT_HANDOVER_TIMEOUT,
        listen_env: true,
        listen_pid: crate::config::ListenPid::Child,
        sockets_nonblocking: false,
        preload: false,
        controls: Default::default(),
        respawn_limit: None,
    }
}

/// `spec(workers)` without the `min_ready_time` wait, rolling `batch` at a
/// time (0: all at once).
pub fn quick(workers: usize, batch: usize) -> ProgramSpec {
    ProgramSpec {
        min_ready_time: Duration::ZERO,
        strategy: match batch {
            0 => Strategy::AllAtOnce,
            batch => Strategy::Rolling { batch },
        },
        ..spec(workers)
    }
}

/// What a restart's or a stop's asker will read.
pub struct Reply(oneshot::Receiver<Response>);

impl Reply {
    pub fn pair() -> (Waiter, Reply) {
        let (tx, rx) = oneshot::channel();
        (tx, Reply(rx))
    }

    /// The answer, if one was sent.
    pub fn get(&mut self) -> Option<Response> {
        self.0.try_recv().ok()
    }

    /// No answer yet (and the sender is still held by the core).
    pub fn pending(&mut self) -> bool {
        matches!(self.0.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }
}

/// A core driven by hand over a fake.
pub struct Harness {
    pub core: Core,
    pub fx: Fx,
    /// When the harness was made (the clock starts here).
    pub t0: Instant,
}

impl Harness {
    /// A core for `spec`, restored as boot does, not started.
    pub fn new(spec: ProgramSpec) -> Harness {
        Harness::with_sockets(spec, Vec::new())
    }

    /// A core for `spec` on `sockets` (serials 0.. in the fake), not started.
    pub fn with_sockets(spec: ProgramSpec, sockets: Vec<Arc<BoundSocket>>) -> Harness {
        let mut fx = Fx::new();
        for s in &sockets {
            fx.serial(s);
        }
        let core = Core::restore(&CoreSnapshot::first(spec, sockets.len()), &sockets, fx.now)
            .expect("the first snapshot is valid");
        let t0 = fx.now;
        Harness { core, fx, t0 }
    }

    /// Started, every worker of generation 1 ready (ids 1..=workers), the
    /// effects so far taken.
    pub fn serving(spec: ProgramSpec) -> Harness {
        Harness::serving_on(spec, Vec::new())
    }

    /// `serving`, on `sockets`.
    pub fn serving_on(spec: ProgramSpec, sockets: Vec<Arc<BoundSocket>>) -> Harness {
        let workers = spec.workers as u64;
        let mut h = Harness::with_sockets(spec, sockets);
        h.core.start(&mut h.fx).expect("the fake launches");
        for id in 1..=workers {
            h.ready(id);
        }
        assert_eq!(h.core.serving_generation(), 1);
        h.take();
        h
    }

    pub fn take(&mut self) -> Vec<Effect> {
        self.fx.take()
    }

    pub fn advance(&mut self, by: Duration) {
        self.fx.advance(by);
    }

    /// The time `ms` after the harness was made.
    pub fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    pub fn ready(&mut self, id: WorkerId) {
        let notice = WorkerEvent::Notice(Notice::Ready);
        self.core.on_worker(&mut self.fx, id, notice);
    }

    pub fn event(&mut self, id: WorkerId, event: WorkerEvent) {
        self.core.on_worker(&mut self.fx, id, event);
    }

    /// The worker exited with `code`.
    pub fn exit(&mut self, id: WorkerId, code: i32) {
        let status = ExitStatus::from_raw(code << 8);
        self.event(id, WorkerEvent::Exited(Ok(status)));
    }

    /// The worker was killed by `signal`.
    pub fn killed(&mut self, id: WorkerId, signal: Signal) {
        let status = ExitStatus::from_raw(signal as i32);
        self.event(id, WorkerEvent::Exited(Ok(status)));
    }

    /// Fires a timer the core armed, moving the clock to when it is due
    /// (if that is later than now).
    pub fn fire(&mut self, timer: Timer) {
        let due = self
            .fx
            .due(&timer)
            .unwrap_or_else(|| panic!("{timer:?} was never armed"));
        self.fx.now = self.fx.now.max(due);
        self.core.on_timer(&mut self.fx, timer);
    }

    /// Delivers a timer at the current time, armed or not (a stale one).
    pub fn deliver(&mut self, timer: Timer) {
        self.core.on_timer(&mut self.fx, timer);
    }

    /// A restart asked by a client.
    pub fn restart(&mut self, drained: bool) -> Reply {
        let (reply, rx) = Reply::pair();
        let asked = Asked::Client(RestartWaiter { reply, drained });
        self.core.restart(&mut self.fx, asked);
        rx
    }

    /// A restart asked by SIGHUP.
    pub fn sighup(&mut self) {
        self.core
            .restart(&mut self.fx, Asked::Signal(Signal::SIGHUP));
    }

    /// A restart asked by a watched file's change (`--watch`).
    pub fn change(&mut self) {
        self.core.restart(&mut self.fx, Asked::Change);
    }
}

// Effect builders, to keep expected sequences short.

pub fn launch(id: WorkerId, generation: u64, slot: usize) -> Effect {
    Effect::Launch {
        id,
        generation,
        slot,
    }
}

pub fn ready_deadline(id: WorkerId) -> Effect {
    Effect::Timer(DEFAULT_READY_TIMEOUT, Timer::ReadyDeadline(id))
}

/// The stop signal and the drain deadline, as `drain` sends them.
pub fn drain(id: WorkerId) -> [Effect; 2] {
    [
        Effect::Signal(id, Signal::SIGTERM),
        Effect::Timer(DEFAULT_DRAIN_TIMEOUT, Timer::DrainDeadline(id)),
    ]
}

pub fn sigkill(id: WorkerId) -> Effect {
    Effect::Signal(id, Signal::SIGKILL)
}

pub fn respawn_due(after: Duration, slot: usize, token: u64) -> Effect {
    Effect::Timer(after, Timer::RespawnDue { slot, token })
}

/// A restart's answer without `drained` (times in ms; `_us` alike).
pub fn restarted(generation: u64, workers: usize, ready: u64, total: u64, child: u64) -> Response {
    Response::Restarted(crate::protocol::RestartReport {
        generation,
        ready_ms: ready,
        total_ms: total,
        workers,
        child_ready_ms: child,
        drained_ms: None,
        ready_us: ready * 1000,
        child_ready_us: child * 1000,
    })
}

pub fn error(kind: ErrorKind, message: &str) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Socket `http` on 127.0.0.1, a port of the kernel's choice.
pub fn http_spec(handover: Option<Handover>) -> SocketSpec {
    SocketSpec {
        name: "http".into(),
        listen: "tcp://127.0.0.1:0".parse().expect("an address"),
        backlog: None,
        reuse_port: false,
        mode: None,
        handover,
        options: Default::default(),
    }
}
