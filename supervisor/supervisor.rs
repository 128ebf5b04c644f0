//! The supervisor's state and its event loop.
//!
//! Everything that happens arrives as an event (a worker exited, said
//! READY=1, missed a deadline; a respawn is due; a control request; a
//! signal) and is handled here, one at a time, by a method of
//! [`Supervisor`]. Nothing polls: between events the supervisor sleeps.
//!
//! The workers live in slots, `0..workers`. A slot has an `active` worker
//! (serving, or starting at boot), maybe an `incoming` one (the next
//! generation, during a restart), and maybe a pending respawn. Workers told
//! to stop move to `draining` until they are reaped. What happens to a
//! worker is in `children.rs`, restarts in `rollout.rs`, scaling and reloads
//! in `reconfigure.rs`, the status report in `status.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use crate::config::{Overrides, ProgramSpec, SighupAction};
use crate::control::{ControlBindError, ControlCall};
use crate::groups::{Leftovers, Outcome};
use crate::protocol::{ErrorKind, Request, Response};
use crate::rollout::Rollout;
use crate::sockets::{BindError, BoundSocket, SocketSet};
pub use crate::startup::run;
pub(crate) use crate::startup::{Inbox, RuntimeDir, Signals};
use crate::systemd::{self, AdoptError, ServiceManager};
use crate::template::FIRST_FD;
use crate::worker::{
    EventSink, Generation, LaunchError, LaunchRequest, Worker, WorkerEvent, WorkerId,
};

/// How long answers to control requests get to be written at shutdown.
pub(crate) const CONTROL_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum Event {
    Worker(WorkerId, WorkerEvent),
    RespawnDue {
        slot: usize,
        token: u64,
    },
    /// Time to look at the process groups workers left behind.
    CheckGroups,
    /// A restart's ready batch has stayed up for `min_ready_time`.
    Settled {
        generation: u64,
        token: u64,
    },
}

pub type Waiter = oneshot::Sender<Response>;

/// Who asked for a restart (or reload), and whether they want the answer
/// only once the old workers have exited.
pub struct RestartWaiter {
    pub reply: Waiter,
    pub drained: bool,
}

/// A restart answer held back until the old workers it drained are gone.
pub(crate) struct DrainWait {
    pub remaining: Vec<WorkerId>,
    pub started: Instant,
    pub report: crate::protocol::RestartReport,
    pub reply: Waiter,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Bind(#[source] BindError),
    #[error("{0}")]
    Control(#[source] ControlBindError),
    #[error("{0}")]
    RuntimeDir(#[from] crate::runtime_dir::CreateError),
    #[error("cannot start the server: {0}")]
    Start(#[source] LaunchError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("{0}")]
    Adopt(#[source] AdoptError),
    #[error("cannot take over after an upgrade: {0}")]
    Resume(String),
}

#[derive(Default)]
pub struct Slot {
    pub active: Option<Worker>,
    pub incoming: Option<Worker>,
    pub(crate) respawn: Option<PendingRespawn>,
    /// How often this slot's worker died and was respawned.
    pub(crate) restarts: u32,
    /// The next respawn delay; None: the spec's initial one.
    pub(crate) backoff: Option<Duration>,
}

impl Slot {
    /// A new worker took the slot: a pending respawn no longer applies, and
    /// the backoff starts over.
    pub(crate) fn clear_respawn(&mut self) {
        self.respawn = None;
        self.backoff = None;
    }

    /// Every worker of the slot, for shutdown or scaling down.
    pub(crate) fn take_workers(&mut self) -> impl Iterator<Item = Worker> {
        self.respawn = None;
        self.active.take().into_iter().chain(self.incoming.take())
    }
}

pub(crate) struct PendingRespawn {
    pub token: u64,
    pub since_wall: SystemTime,
    pub since: Instant,
    pub generation: Arc<Generation>,
}

/// How the supervisor was configured, kept to re-read the file on reload.
pub(crate) struct Source {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
    pub sighup: SighupAction,
    pub fdstore: bool,
}

pub struct Supervisor {
    /// What the next generation runs (changed by a reload).
    pub(crate) next_spec: Arc<ProgramSpec>,
    pub(crate) next_sockets: SocketSet,
    /// The newest generation whose workers all became ready; new slots
    /// (scaling up) run it. Before any is ready: the first generation.
    pub(crate) serving: Arc<Generation>,
    pub(crate) serving_ready: bool,
    /// The newest generation number handed out.
    pub(crate) last_generation: u64,
    pub(crate) slots: Vec<Slot>,
    pub(crate) draining: Vec<Worker>,
    pub(crate) rollout: Option<Rollout>,
    /// Restart requests that came during a rollout: one more rollout
    /// answers them all (coalesced).
    pub(crate) queued: Vec<RestartWaiter>,
    /// Restart answers waiting for old workers to exit.
    pub(crate) drain_waits: Vec<DrainWait>,
    /// A SIGHUP came during a rollout (it has no waiter to queue).
    pub(crate) queued_signal: bool,
    pub(crate) shutdown: Option<Vec<Waiter>>,
    pub(crate) source: Source,
    pub(crate) control_path: PathBuf,
    /// The control socket (the control task owns it), for an upgrade.
    pub(crate) control_snapshot: crate::sockets::SocketSnapshot,
    pub(crate) runtime_dir: RuntimeDir,
    pub(crate) next_worker: WorkerId,
    pub(crate) next_token: u64,
    pub(crate) sink: EventSink<Event>,
    pub(crate) started: Instant,
    /// systemd (or another service manager), if one started us.
    pub(crate) manager: ServiceManager,
    /// Why the last restart failed, until one succeeds (for STATUS=).
    pub(crate) last_failure: Option<String>,
    /// The handoff binary, as it was when this one started: `upgrade`
    /// executes what is at that path now.
    pub(crate) binary: PathBuf,
    /// How often this supervisor was upgraded in place.
    pub(crate) upgrades: u32,
    /// An upgrade asked for (by a client, or SIGUSR2 with no one to answer).
    pub(crate) pending_upgrade: Option<Option<crate::upgrade::Asker>>,
    /// Process groups whose worker exited while others of the group live
    /// on (`groups.rs`), and whether a check of them is already due.
    pub(crate) leftovers: Leftovers,
    pub(crate) groups_check_due: bool,
}

/// Where a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Active(usize),
    Incoming(usize),
    Draining(usize),
}

/// The event loop, until a graceful stop has finished.
pub(crate) async fn serve(
    mut sup: Supervisor,
    mut signals: Signals,
    mut inbox: Inbox,
) -> Result<(), RunError> {
    // Pinged from the loop itself: a stuck loop stops the pings, and
    // systemd restarts the service.
    let mut watchdog = systemd::watchdog_interval().map(tokio::time::interval);
    while !sup.finished() {
        tokio::select! {
            Some(event) = inbox.events.recv() => sup.handle(event),
            Some(call) = inbox.calls.recv() => sup.handle_call(call),
            _ = signals.hangup.recv() => sup.on_sighup(),
            _ = signals.terminate.recv() => sup.begin_shutdown(None, "SIGTERM"),
            _ = signals.interrupt.recv() => sup.begin_shutdown(None, "SIGINT"),
            _ = signals.user2.recv() => {
                tracing::info!("SIGUSR2: upgrading handoff");
                sup.pending_upgrade = Some(None);
            }
            _ = tick(&mut watchdog) => sup.manager.watchdog(),
        }
        if let Some(asker) = sup.pending_upgrade.take() {
            crate::upgrade::upgrade(&mut sup, &mut signals, &mut inbox, asker).await;
        }
        sup.report_to_manager();
    }
    // Requests still queued get their answer rather than silence.
    inbox.calls.close();
    while let Ok(call) = inbox.calls.try_recv() {
        let _ = call.reply.send(error(
            ErrorKind::ShuttingDown,
            "the supervisor is shutting down",
        ));
    }
    let waiters = sup.close();
    for w in waiters {
        let _ = w.send(Response::Stopped {
            pid: std::process::id(),
        });
    }
    let _ = inbox.stop_control.send(true);
    let _ = inbox.control_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// "socket http listening on 127.0.0.1:8080 (fd 3 in children, backlog 4096)";
/// `how` says whether handoff bound it or adopted it.
pub(crate) fn log_socket(socket: &BoundSocket, index: usize, how: &str) {
    tracing::info!(
        "socket {} {how} {} (fd {} in children{})",
        socket.spec.name,
        socket.local,
        FIRST_FD + index,
        socket
            .backlog()
            .map(|b| format!(", backlog {b}"))
            .unwrap_or_default()
    );
}

impl Supervisor {
    /// Makes every held TCP listener that a child shut down listen again,
    /// loudly (see [`BoundSocket::relisten_if_shut_down`]). Called where
    /// it matters and costs one getsockopt per socket: when a worker exits,
    /// when a restart starts and ends, on scale, upgrade and status.
    pub(crate) fn check_sockets(&self) {
        let held = self
            .slots
            .iter()
            .flat_map(|s| s.active.iter().chain(&s.incoming));
        let mut seen: Vec<&Arc<BoundSocket>> = Vec::new();
        let sockets = self
            .next_sockets
            .iter()
            .chain(held.flat_map(|w| w.generation.sockets.iter()));
        for socket in sockets {
            if seen.iter().any(|s| Arc::ptr_eq(s, socket)) {
                continue;
            }
            seen.push(socket);
            match socket.relisten_if_shut_down() {
                Ok(false) => {}
                Ok(true) => tracing::error!(
                    "socket {} ({}) had stopped listening: a child called shutdown() on the shared listener, \
                     which refuses every new connection for all generations (a server must only close its copy); \
                     it listens again (revived {} time(s))",
                    socket.spec.name,
                    socket.local,
                    socket.revived()
                ),
                Err(e) => tracing::error!(
                    "socket {} ({}) is not listening and cannot listen again: {e}; restart handoff to bind it anew",
                    socket.spec.name,
                    socket.local
                ),
            }
        }
    }

    pub(crate) fn launch(
        &mut self,
        generation: Arc<Generation>,
        slot: usize,
    ) -> Result<Worker, LaunchError> {
        let id = self.next_worker;
        self.next_worker += 1;
        let worker = Worker::launch(
            LaunchRequest {
                id,
                generation,
                slot,
                runtime_dir: &self.runtime_dir.0,
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

    pub(crate) fn take(&mut self, place: Place) -> Worker {
        let worker = match place {
            Place::Active(s) => self.slots[s].active.take(),
            Place::Incoming(s) => self.slots[s].incoming.take(),
            Place::Draining(i) => Some(self.draining.swap_remove(i)),
        };
        worker.expect("a located worker is where it was found")
    }

    /// Sends a worker its stop signal and keeps it until it is reaped.
    pub(crate) fn drain(&mut self, mut worker: Worker) {
        worker.drain(&self.sink);
        self.draining.push(worker);
    }

    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Worker(id, event) => {
                if let Some(place) = self.locate(id) {
                    self.on_worker_event(place, event);
                }
                // else: a late event about a worker already gone
            }
            Event::RespawnDue { slot, token } => self.on_respawn_due(slot, token),
            Event::Settled { generation, token } => self.on_settled(generation, token),
            Event::CheckGroups => {
                self.groups_check_due = false;
                self.check_groups();
            }
        }
    }

    /// A worker has exited and was reaped: the rest of its process group,
    /// if any, is told to stop (unless its stop signal already reached the
    /// whole group) and waited for, with SIGKILL at the drain deadline.
    pub(crate) fn adopt_group(&mut self, worker: &Worker) {
        let spec = &worker.generation.spec;
        let (signal, deadline) = match &worker.state {
            crate::worker::WorkerState::Draining { deadline } => (None, *deadline),
            crate::worker::WorkerState::Killed { .. } => (Some(Signal::SIGKILL), Instant::now()),
            _ => (Some(spec.stop_signal), Instant::now() + spec.drain_timeout),
        };
        let left = self
            .leftovers
            .adopt(worker.pid, worker.to_string(), signal, deadline);
        if left > 0 {
            tracing::warn!(
                "{worker} is gone, but {left} process(es) of its process group live on (holding its sockets); {}",
                match signal {
                    Some(Signal::SIGKILL) => "sent them SIGKILL".to_string(),
                    Some(s) => format!("sent them {s}, SIGKILL in {}", crate::ms(spec.drain_timeout)),
                    None => format!(
                        "SIGKILL in {}",
                        crate::ms(deadline.saturating_duration_since(Instant::now()))
                    ),
                }
            );
            self.arm_groups_check();
        }
    }

    fn check_groups(&mut self) {
        for outcome in self.leftovers.check(Instant::now()) {
            match outcome {
                Outcome::Gone { owner, pgid } => {
                    tracing::info!("the rest of process group {pgid} ({owner}) is gone")
                }
                Outcome::Killed { owner, pgid } => tracing::warn!(
                    "process group {pgid} ({owner}) still runs at its drain deadline; sending SIGKILL"
                ),
                Outcome::GivenUp { owner, pgid } => tracing::error!(
                    "process group {pgid} ({owner}) is still there after SIGKILL (uninterruptible sleep?); no longer waiting for it"
                ),
            }
        }
        self.arm_groups_check();
    }

    pub(crate) fn arm_groups_check(&mut self) {
        if self.leftovers.is_empty() || self.groups_check_due {
            return;
        }
        self.groups_check_due = true;
        let tx = self.sink.0.clone();
        tokio::spawn(async move {
            tokio::time::sleep(crate::groups::CHECK_EVERY).await;
            let _ = tx.send(Event::CheckGroups);
        });
    }

    fn handle_call(&mut self, call: ControlCall) {
        match call.request {
            Request::Status {} => {
                self.check_sockets();
                let _ = call.reply.send(Response::Status(self.status()));
            }
            Request::Restart { drained } => self.request_restart(Some(RestartWaiter {
                reply: call.reply,
                drained,
            })),
            Request::Reload { drained } => self.reload(Some(RestartWaiter {
                reply: call.reply,
                drained,
            })),
            Request::Scale { workers } => {
                let reply = self.scale(workers);
                let _ = call.reply.send(reply);
            }
            Request::Stop {} => self.begin_shutdown(Some(call.reply), "stop requested"),
            // Carried out by the loop, which holds the signals and the
            // queued events an upgrade must account for first.
            Request::Upgrade {} => self.pending_upgrade = Some(Some((call.reply, call.stream))),
        }
    }

    pub(crate) fn on_sighup(&mut self) {
        // RELOADING=1 only when a reload can happen: not while stopping,
        // not before the first READY=1.
        if !self.is_shutting_down() && self.manager.is_ready() {
            self.manager.reloading();
        }
        match self.source.sighup {
            SighupAction::Restart => {
                tracing::info!("SIGHUP: restarting");
                self.request_restart(None);
            }
            SighupAction::Reload => {
                tracing::info!("SIGHUP: reloading the configuration");
                self.reload(None);
            }
        }
    }

    /// Stops everything: every worker gets its stop signal, nothing is
    /// respawned or started, and the loop ends once all are reaped. A second
    /// request while stopping kills what is left with SIGKILL.
    pub fn begin_shutdown(&mut self, waiter: Option<Waiter>, why: &str) {
        if let Some(waiters) = &mut self.shutdown {
            waiters.extend(waiter);
            if why.starts_with("SIG") {
                tracing::warn!("{why} again while stopping: killing the remaining workers");
                for w in &mut self.draining {
                    w.kill("forced stop".into());
                }
                self.leftovers.kill_all(Instant::now());
                self.check_groups();
            }
            return;
        }
        tracing::info!("{why}: stopping gracefully");
        self.manager.stopping();
        self.shutdown = Some(waiter.into_iter().collect());
        if self.rollout.is_some() {
            // The new workers drain like the others, rather than being
            // killed as a failed rollout's would be.
            let incoming: Vec<Worker> = self
                .slots
                .iter_mut()
                .filter_map(|s| s.incoming.take())
                .collect();
            for worker in incoming {
                self.drain(worker);
            }
            self.fail_rollout(
                "the supervisor is shutting down".into(),
                ErrorKind::ShuttingDown,
            );
        }
        self.queued_signal = false;
        for w in std::mem::take(&mut self.queued) {
            let _ = w.reply.send(error(
                ErrorKind::ShuttingDown,
                "the supervisor is shutting down",
            ));
        }
        let workers: Vec<Worker> = self.slots.iter_mut().flat_map(Slot::take_workers).collect();
        for worker in workers {
            self.drain(worker);
        }
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_some()
    }

    /// Shutting down and nothing left to wait for.
    fn finished(&self) -> bool {
        self.shutdown.is_some()
            && self.draining.is_empty()
            && self.leftovers.is_empty()
            && self
                .slots
                .iter()
                .all(|s| s.active.is_none() && s.incoming.is_none())
    }

    /// Closes the sockets (removing the unix socket files it created) and
    /// returns who is waiting to hear that the stop is done.
    fn close(mut self) -> Vec<Waiter> {
        let waiters = self.shutdown.take().unwrap_or_default();
        // Every worker is gone; dropping the rest drops the last references
        // to the sockets.
        drop(self);
        waiters
    }
}

/// Waits for the next tick of an optional interval (forever without one).
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl Supervisor {
    /// Tells the service manager where things stand (after every event).
    fn report_to_manager(&mut self) {
        if self.is_shutting_down() {
            return;
        }
        let n = self.slots.len();
        let ready = self
            .slots
            .iter()
            .filter(|s| {
                s.active
                    .as_ref()
                    .is_some_and(|w| matches!(w.state, crate::worker::WorkerState::Ready { .. }))
            })
            .count();
        let mut status = format!(
            "generation {}: {ready}/{n} workers ready",
            self.serving.number
        );
        if let Some(r) = &self.rollout {
            status += &format!(", starting generation {}", r.generation.number);
        } else if let Some(failure) = &self.last_failure {
            status += &format!(" ({failure})");
        }
        let settled = self.rollout.is_none() && !self.queued_signal && self.queued.is_empty();
        self.manager.update(status, self.serving_ready, settled);
    }
}

/// An error answer.
pub(crate) fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

pub(crate) fn ms_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
