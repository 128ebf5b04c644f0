//! The supervisor's state and its event loop.
//!
//! Everything that happens arrives as an event on one channel (a worker
//! exited, said READY=1, missed a deadline; a respawn is due; a control
//! request; a signal) and is handled here, one at a time, by a method of
//! [`Supervisor`]. Nothing polls: between events the supervisor sleeps.
//!
//! The workers live in slots, `0..workers`. A slot has an `active` worker
//! (serving, or starting at boot), maybe an `incoming` one (the next
//! generation, during a restart), and maybe a pending respawn. Workers told
//! to stop move to `draining` until they are reaped. Restarts are in
//! `rollout.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::{Config, ProgramSpec, Readiness};
use crate::control::{ControlBindError, ControlCall, ControlServer};
use crate::notify::Notice;
use crate::protocol::{ErrorKind, Request, Response, SocketStatus, Status, WorkerStatus};
use crate::rollout::Rollout;
use crate::sockets::{BindError, BoundSocket};
use crate::template::FIRST_FD;
use crate::worker::{
    EventSink, LaunchError, LaunchRequest, Worker, WorkerEvent, WorkerId, WorkerState,
};
use crate::{describe_exit, ms};

/// A worker that stayed up this long before dying is respawned after the
/// initial backoff again, not the doubled one.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// How long answers to control requests get to be written at shutdown.
const CONTROL_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum Event {
    Worker(WorkerId, WorkerEvent),
    RespawnDue { slot: usize, token: u64 },
}

pub type Waiter = oneshot::Sender<Response>;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Bind(#[source] BindError),
    #[error("{0}")]
    Control(#[source] ControlBindError),
    #[error("cannot create a runtime directory in {dir}: {source}")]
    RuntimeDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the server: {0}")]
    Start(#[source] LaunchError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

pub struct Slot {
    pub active: Option<Worker>,
    pub incoming: Option<Worker>,
    respawn: Option<PendingRespawn>,
    /// How often this slot's worker died and was respawned.
    restarts: u32,
    /// The next respawn delay; None: the spec's initial one.
    backoff: Option<Duration>,
}

impl Slot {
    /// A new worker took the slot: a pending respawn no longer applies, and
    /// the backoff starts over.
    pub(crate) fn clear_respawn(&mut self) {
        self.respawn = None;
        self.backoff = None;
    }
}

struct PendingRespawn {
    token: u64,
    since_wall: SystemTime,
    since: Instant,
    generation: u64,
    spec: Arc<ProgramSpec>,
}

pub struct Supervisor {
    sockets: Vec<BoundSocket>,
    runtime_dir: tempfile::TempDir,
    /// The program the next generation runs.
    pub(crate) spec: Arc<ProgramSpec>,
    /// The newest generation whose workers all became ready (0: none yet).
    pub(crate) serving: u64,
    /// The newest generation number handed out.
    pub(crate) last_generation: u64,
    pub(crate) slots: Vec<Slot>,
    pub(crate) draining: Vec<Worker>,
    pub(crate) rollout: Option<Rollout>,
    /// Restart requests that came during a rollout: one more rollout
    /// answers them all (coalesced).
    pub(crate) queued: Vec<Waiter>,
    /// A SIGHUP came during a rollout (it has no waiter to queue).
    pub(crate) queued_signal: bool,
    shutdown: Option<Vec<Waiter>>,
    next_worker: WorkerId,
    next_token: u64,
    pub(crate) sink: EventSink<Event>,
    started: Instant,
}

/// Where a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Active(usize),
    Incoming(usize),
    Draining(usize),
}

/// Binds the sockets, starts the first generation and supervises until a
/// graceful stop.
pub async fn run(config: Config, control_path: &Path) -> Result<(), RunError> {
    // Signal handlers first, so no SIGTERM between here and the loop is lost.
    let mut hangup = signal(SignalKind::hangup()).map_err(RunError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;

    // The control socket first: if another handoff runs there, say so
    // before touching its ports.
    let control = ControlServer::bind(control_path).map_err(RunError::Control)?;
    tracing::info!("control socket {}", control_path.display());
    let mut sockets = Vec::with_capacity(config.sockets.len());
    for spec in &config.sockets {
        let socket = BoundSocket::bind(spec).map_err(RunError::Bind)?;
        tracing::info!(
            "socket {} listening on {} (fd {} in children{})",
            spec.name,
            socket.local,
            FIRST_FD + sockets.len(),
            socket
                .backlog()
                .map(|b| format!(", backlog {b}"))
                .unwrap_or_default()
        );
        sockets.push(socket);
    }
    let runtime_base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let runtime_dir = tempfile::Builder::new()
        .prefix("handoff-")
        .tempdir_in(&runtime_base)
        .map_err(|source| RunError::RuntimeDir {
            dir: runtime_base,
            source,
        })?;

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (calls_tx, mut calls) = mpsc::unbounded_channel::<ControlCall>();
    let (stop_control, control_stopped) = watch::channel(false);
    let control_task = tokio::spawn(control.serve(calls_tx, control_stopped, CONTROL_GRACE));

    let workers = config.program.workers;
    let mut sup = Supervisor {
        sockets,
        runtime_dir,
        spec: Arc::new(config.program),
        serving: 0,
        last_generation: 0,
        slots: (0..workers)
            .map(|_| Slot {
                active: None,
                incoming: None,
                respawn: None,
                restarts: 0,
                backoff: None,
            })
            .collect(),
        draining: Vec::new(),
        rollout: None,
        queued: Vec::new(),
        queued_signal: false,
        shutdown: None,
        next_worker: 1,
        next_token: 1,
        sink: (events_tx, Event::Worker),
        started: Instant::now(),
    };
    sup.start_first_generation().map_err(RunError::Start)?;

    while !sup.finished() {
        tokio::select! {
            Some(event) = events.recv() => sup.handle(event),
            Some(call) = calls.recv() => sup.handle_call(call),
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: restarting");
                sup.request_restart(None);
            }
            _ = terminate.recv() => sup.begin_shutdown(None, "SIGTERM"),
            _ = interrupt.recv() => sup.begin_shutdown(None, "SIGINT"),
        }
    }
    let waiters = sup.close();
    for w in waiters {
        let _ = w.send(Response::Stopped {
            pid: std::process::id(),
        });
    }
    let _ = stop_control.send(true);
    let _ = control_task.await;
    tracing::info!("stopped");
    Ok(())
}

impl Supervisor {
    fn start_first_generation(&mut self) -> Result<(), LaunchError> {
        self.last_generation = 1;
        tracing::info!("starting generation 1: {}", self.spec.command.join(" "));
        for slot in 0..self.slots.len() {
            let worker = self.launch(1, self.spec.clone(), slot)?;
            self.slots[slot].active = Some(worker);
        }
        Ok(())
    }

    pub(crate) fn launch(
        &mut self,
        generation: u64,
        spec: Arc<ProgramSpec>,
        slot: usize,
    ) -> Result<Worker, LaunchError> {
        let id = self.next_worker;
        self.next_worker += 1;
        let worker = Worker::launch(
            LaunchRequest {
                id,
                spec,
                generation,
                slot,
                sockets: &self.sockets,
                runtime_dir: self.runtime_dir.path(),
            },
            &self.sink,
        )?;
        tracing::debug!("{worker} started");
        Ok(worker)
    }

    pub(crate) fn locate(&self, id: WorkerId) -> Option<Place> {
        let is = |w: &Option<Worker>| w.as_ref().is_some_and(|w| w.id == id);
        for (i, slot) in self.slots.iter().enumerate() {
            if is(&slot.active) {
                return Some(Place::Active(i));
            }
            if is(&slot.incoming) {
                return Some(Place::Incoming(i));
            }
        }
        self.draining
            .iter()
            .position(|w| w.id == id)
            .map(Place::Draining)
    }

    pub(crate) fn worker_mut(&mut self, place: Place) -> &mut Worker {
        let worker = match place {
            Place::Active(s) => self.slots[s].active.as_mut(),
            Place::Incoming(s) => self.slots[s].incoming.as_mut(),
            Place::Draining(i) => self.draining.get_mut(i),
        };
        worker.expect("a located worker is where it was found")
    }

    fn take(&mut self, place: Place) -> Worker {
        let worker = match place {
            Place::Active(s) => self.slots[s].active.take(),
            Place::Incoming(s) => self.slots[s].incoming.take(),
            Place::Draining(i) => Some(self.draining.swap_remove(i)),
        };
        worker.expect("a located worker is where it was found")
    }

    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Worker(id, event) => {
                let Some(place) = self.locate(id) else {
                    return; // a late event about a worker already gone
                };
                match event {
                    WorkerEvent::Exited(status) => self.on_exit(place, status),
                    WorkerEvent::Ready => self.on_ready(place),
                    // READY=1 counts only where it was asked for: with an
                    // exec probe or a delay, they decide.
                    WorkerEvent::Notice(Notice::Ready)
                        if self.worker_mut(place).spec.ready == Readiness::Notify =>
                    {
                        self.on_ready(place)
                    }
                    WorkerEvent::Notice(notice) => self.on_notice(place, notice),
                    WorkerEvent::ReadyTimeout => self.on_ready_timeout(place),
                    WorkerEvent::DrainTimeout => self.on_drain_timeout(place),
                }
            }
            Event::RespawnDue { slot, token } => self.on_respawn_due(slot, token),
        }
    }

    fn handle_call(&mut self, call: ControlCall) {
        match call.request {
            Request::Status => {
                let _ = call.reply.send(Response::Status(self.status()));
            }
            Request::Restart => self.request_restart(Some(call.reply)),
            Request::Stop => self.begin_shutdown(Some(call.reply), "stop requested"),
        }
    }

    fn on_exit(&mut self, place: Place, status: std::io::Result<std::process::ExitStatus>) {
        let worker = self.take(place);
        let how = match &status {
            Ok(s) => describe_exit(s),
            Err(e) => format!("could not be waited for ({e})"),
        };
        match place {
            Place::Draining(_) => match &worker.state {
                WorkerState::Killed { reason } => {
                    tracing::info!("{worker} {how} (killed: {reason})")
                }
                _ => tracing::info!(
                    "{worker} {how} after draining for {}",
                    ms(worker.since.elapsed())
                ),
            },
            Place::Incoming(_) => {
                self.fail_rollout(
                    format!("{worker} {how} before it was ready"),
                    ErrorKind::RestartFailed,
                );
            }
            Place::Active(slot) => {
                let why = match &worker.state {
                    WorkerState::Killed { reason } => format!("{how} (killed: {reason})"),
                    _ => how,
                };
                if self.shutdown.is_some() {
                    tracing::info!("{worker} {why}");
                } else {
                    let stable = matches!(worker.state, WorkerState::Ready { .. })
                        && worker.since.elapsed() >= STABLE_AFTER;
                    let delay =
                        self.schedule_respawn(slot, worker.generation, worker.spec.clone(), stable);
                    tracing::warn!("{worker} {why}; respawning in {}", ms(delay));
                }
            }
        }
    }

    /// Arms a respawn of `slot` and returns its delay (exponential backoff,
    /// capped, restarting from the initial delay after a stable run).
    fn schedule_respawn(
        &mut self,
        slot: usize,
        generation: u64,
        spec: Arc<ProgramSpec>,
        stable: bool,
    ) -> Duration {
        let token = self.next_token;
        self.next_token += 1;
        let s = &mut self.slots[slot];
        if stable {
            s.backoff = None;
        }
        let delay = s.backoff.unwrap_or(spec.respawn_backoff);
        s.backoff = Some((delay * 2).min(spec.respawn_backoff_max));
        s.respawn = Some(PendingRespawn {
            token,
            since_wall: SystemTime::now(),
            since: Instant::now(),
            generation,
            spec,
        });
        let tx = self.sink.0.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Event::RespawnDue { slot, token });
        });
        delay
    }

    fn on_respawn_due(&mut self, slot: usize, token: u64) {
        let s = &mut self.slots[slot];
        if s.respawn.as_ref().map(|r| r.token) != Some(token)
            || s.active.is_some()
            || self.shutdown.is_some()
        {
            return;
        }
        let pending = s.respawn.take().expect("checked above");
        s.restarts += 1;
        match self.launch(pending.generation, pending.spec.clone(), slot) {
            Ok(worker) => {
                tracing::info!("{worker} respawned");
                self.slots[slot].active = Some(worker);
            }
            Err(e) => {
                let delay = self.schedule_respawn(slot, pending.generation, pending.spec, false);
                tracing::error!(
                    "cannot respawn generation {} worker {slot}: {e}; trying again in {}",
                    pending.generation,
                    ms(delay)
                );
            }
        }
    }

    fn on_ready(&mut self, place: Place) {
        let worker = self.worker_mut(place);
        let Some(took) = worker.mark_ready() else {
            return;
        };
        tracing::info!("{worker} ready in {}", ms(took));
        let generation = worker.generation;
        match place {
            Place::Active(_) => self.check_generation_ready(generation),
            Place::Incoming(_) => self.advance_rollout(),
            Place::Draining(_) => {}
        }
    }

    /// At boot (and after respawns), the generation counts as serving once
    /// every slot has a ready worker of it.
    fn check_generation_ready(&mut self, generation: u64) {
        if generation <= self.serving {
            return;
        }
        let all_ready = self.slots.iter().all(|s| {
            s.active.as_ref().is_some_and(|w| {
                w.generation == generation && matches!(w.state, WorkerState::Ready { .. })
            })
        });
        if all_ready {
            self.serving = generation;
            tracing::info!(
                "generation {generation} ready: {} worker(s) serving",
                self.slots.len()
            );
        }
    }

    fn on_notice(&mut self, place: Place, notice: Notice) {
        let worker = self.worker_mut(place);
        match notice {
            Notice::Status(text) => {
                tracing::debug!("{worker}: STATUS={text}");
                worker.status = Some(text);
            }
            other => tracing::debug!("{worker}: {other:?}"),
        }
    }

    fn on_ready_timeout(&mut self, place: Place) {
        let worker = self.worker_mut(place);
        if worker.state != WorkerState::Starting {
            return;
        }
        let reason = format!(
            "not ready within {}{}",
            ms(worker.spec.ready_timeout),
            readiness_hint(&worker.spec.ready)
        );
        match place {
            Place::Active(_) => {
                tracing::warn!("{worker} {reason}; killing it");
                worker.kill(reason);
            }
            Place::Incoming(_) => {
                let message = format!("{worker} {reason}");
                self.fail_rollout(message, ErrorKind::RestartFailed);
            }
            Place::Draining(_) => {}
        }
    }

    fn on_drain_timeout(&mut self, place: Place) {
        let worker = self.worker_mut(place);
        let reason = format!(
            "still running {} after its stop signal (drain_timeout)",
            ms(worker.spec.drain_timeout)
        );
        tracing::warn!("{worker} {reason}; sending SIGKILL");
        worker.kill(reason);
    }

    /// Stops everything: every worker gets its stop signal, nothing is
    /// respawned or started, and the loop ends once all are reaped. A second
    /// request while stopping kills what is left with SIGKILL.
    pub fn begin_shutdown(&mut self, waiter: Option<Waiter>, why: &str) {
        if let Some(waiters) = &mut self.shutdown {
            waiters.extend(waiter);
            if waiters.is_empty() || why.starts_with("SIG") {
                tracing::warn!("{why} again while stopping: killing the remaining workers");
                for w in &mut self.draining {
                    w.kill("forced stop".into());
                }
            }
            return;
        }
        tracing::info!("{why}: stopping gracefully");
        self.shutdown = Some(waiter.into_iter().collect());
        if self.rollout.is_some() {
            self.fail_rollout(
                "the supervisor is shutting down".into(),
                ErrorKind::ShuttingDown,
            );
        }
        self.queued_signal = false;
        for w in std::mem::take(&mut self.queued) {
            let _ = w.send(shutting_down());
        }
        for slot in &mut self.slots {
            slot.respawn = None;
            for mut worker in slot.active.take().into_iter().chain(slot.incoming.take()) {
                worker.drain(&self.sink);
                self.draining.push(worker);
            }
        }
    }

    /// Shutting down and nothing left to wait for.
    fn finished(&self) -> bool {
        self.shutdown.is_some()
            && self.draining.is_empty()
            && self
                .slots
                .iter()
                .all(|s| s.active.is_none() && s.incoming.is_none())
    }

    /// Closes the sockets (removing the unix socket files it created) and
    /// returns who is waiting to hear that the stop is done.
    fn close(mut self) -> Vec<Waiter> {
        self.sockets.clear();
        self.shutdown.take().unwrap_or_default()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_some()
    }

    pub fn status(&self) -> Status {
        let mut workers = Vec::new();
        let now = Instant::now();
        let row = |w: &Worker, restarts: u32| WorkerStatus {
            slot: w.slot,
            pid: Some(w.pid),
            generation: w.generation,
            state: w.state.name().to_string(),
            since_unix_ms: unix_ms(w.since_wall),
            for_ms: ms_u64(now.duration_since(w.since)),
            restarts,
            status: w.status.clone(),
        };
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(w) = &slot.active {
                workers.push(row(w, slot.restarts));
            }
            if let Some(r) = &slot.respawn {
                workers.push(WorkerStatus {
                    slot: i,
                    pid: None,
                    generation: r.generation,
                    state: "respawning".into(),
                    since_unix_ms: unix_ms(r.since_wall),
                    for_ms: ms_u64(now.duration_since(r.since)),
                    restarts: slot.restarts,
                    status: None,
                });
            }
            if let Some(w) = &slot.incoming {
                workers.push(row(w, 0));
            }
        }
        workers.extend(self.draining.iter().map(|w| row(w, 0)));
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_ms: ms_u64(self.started.elapsed()),
            generation: self.serving,
            restarting: self.rollout.as_ref().map(|r| r.generation),
            shutting_down: self.shutdown.is_some(),
            sockets: self
                .sockets
                .iter()
                .enumerate()
                .map(|(i, s)| SocketStatus {
                    name: s.spec.name.clone(),
                    listen: s.spec.listen.to_string(),
                    address: s.local.clone(),
                    fd: u32::try_from(FIRST_FD + i).unwrap_or(u32::MAX),
                    backlog: s.backlog(),
                })
                .collect(),
            workers,
        }
    }
}

pub(crate) fn shutting_down() -> Response {
    Response::Error {
        kind: ErrorKind::ShuttingDown,
        message: "the supervisor is shutting down".into(),
    }
}

fn readiness_hint(ready: &Readiness) -> &'static str {
    match ready {
        Readiness::Notify => " (ready = \"notify\": it never sent READY=1 on NOTIFY_SOCKET; for a server that does not speak sd_notify use ready = \"exec\" or \"delay\")",
        Readiness::Exec { .. } => " (the ready_command probe never exited 0)",
        Readiness::Delay(_) => "",
    }
}

pub(crate) fn ms_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(ms_u64)
        .unwrap_or(0)
}
