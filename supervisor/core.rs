//! The supervisor's state and every decision it makes, without effects.
//!
//! [`Core`] holds what the supervisor knows: the generation that serves,
//! what the next one will run, the slots and their workers, the workers
//! draining, and the [`Phase`] (steady, rolling, upgrading, stopping).
//! Everything that happens reaches it as a method call (a worker's event, a
//! timer, a request), handled to the end before the next one. It does not
//! fork, signal, or spawn a task: it asks its [`Effects`] to, which the
//! engine carries out for real and the unit tests record (`core/tests/`).
//!
//! Where each decision lives: `rollout.rs` restarts (batches, commit,
//! rollback, coalescing); `workers.rs` what happens to a worker (ready,
//! deadlines, exit, respawn with backoff); `requests.rs` scale, reload,
//! stop and upgrade; `signal.rs` which workers a user's signal is for; `report.rs` what status and the service manager are
//! told; `snapshot.rs` the state handed to an upgraded binary, which is
//! also how a supervisor is built at boot.

pub mod effects;
pub mod generation;
mod handover;
pub mod phase;
mod preload_hint;
mod report;
pub mod request;
mod requests;
mod rollout;
pub mod signal;
pub mod slot;
pub mod snapshot;
pub mod steering;
pub mod worker;
pub mod workers;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use nix::sys::signal::Signal;

pub use effects::{Effects, LaunchError, Launched, Leftover, Timer};
pub use generation::{Generation, Next};
pub use phase::{Phase, StopCause};
pub use request::{Asked, Asker, RestartWaiter, Waiter};
pub use signal::SignalAsk;
pub use slot::{Crashes, Occupant, Respawn, Slot, SlotState};
pub use snapshot::CoreSnapshot;
pub use steering::{Attach, Steering};
pub use worker::{Worker, WorkerId, WorkerState};

use crate::protocol::{ErrorKind, Response, RestartReport};
use crate::sockets::BoundSocket;

#[derive(Debug)]
pub struct Core {
    /// What the next generation runs (changed by reload and scale).
    next: Next,
    /// The newest generation whose workers all became ready (new slots run
    /// it); before any is ready, the first generation.
    serving: Arc<Generation>,
    /// Whether `serving` has been ready.
    serving_ready: bool,
    slots: Vec<Slot>,
    /// Workers told to stop, or killed, until they are reaped.
    draining: Vec<Worker>,
    phase: Phase,
    /// Restart answers waiting for old workers to exit.
    drain_waits: Vec<DrainWait>,
    ids: Ids,
    /// Why the last restart failed, until one succeeds (for STATUS=).
    last_failure: Option<String>,
    /// The SO_REUSEPORT groups of the steered sockets (`handover.rs`).
    steering: Steering,
    /// Whether the `--preload` hint was given (once: `preload_hint.rs`).
    preload_hinted: bool,
    /// When crashed workers were respawned, within `respawn_limit`'s
    /// window, and why handoff gave up once past it (`workers.rs`).
    respawns: std::collections::VecDeque<std::time::Instant>,
    gave_up: Option<String>,
}

/// The numbers the core hands out; never reused.
#[derive(Debug, Clone, Copy)]
struct Ids {
    last_generation: u64,
    next_worker: WorkerId,
    next_token: u64,
}

impl Ids {
    fn worker(&mut self) -> WorkerId {
        let id = self.next_worker;
        self.next_worker += 1;
        id
    }

    fn token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }
}

/// A restart answer held back until the old workers it drained are gone.
#[derive(Debug)]
struct DrainWait {
    remaining: Vec<WorkerId>,
    started: std::time::Instant,
    report: RestartReport,
    reply: Waiter,
}

/// Where a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active(usize),
    Incoming(usize),
    Draining(usize),
}

impl Core {
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The number the next restart's generation gets.
    pub fn next_generation_number(&self) -> u64 {
        self.ids.last_generation + 1
    }

    pub fn next(&self) -> &Next {
        &self.next
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn draining(&self) -> &[Worker] {
        &self.draining
    }

    /// Every worker there is: serving, starting, draining.
    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.slots
            .iter()
            .flat_map(|s| s.active().into_iter().chain(s.incoming()))
            .chain(&self.draining)
    }

    pub fn worker(&self, id: WorkerId) -> Option<&Worker> {
        self.workers().find(|w| w.id == id)
    }

    pub fn is_stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
    }

    /// Stopping, and every worker is gone.
    pub fn is_finished(&self) -> bool {
        self.is_stopping() && self.draining.is_empty() && self.slots.is_empty()
    }

    /// Why handoff stopped on its own: workers crashed past
    /// `respawn_limit`.
    pub fn gave_up(&self) -> Option<&str> {
        self.gave_up.as_deref()
    }

    /// A restart --drained is still waiting for old workers to exit.
    pub fn awaits_drain(&self) -> bool {
        !self.drain_waits.is_empty()
    }

    fn locate(&self, id: WorkerId) -> Option<Place> {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.active().is_some_and(|w| w.id == id) {
                return Some(Place::Active(i));
            }
            if slot.incoming().is_some_and(|w| w.id == id) {
                return Some(Place::Incoming(i));
            }
        }
        self.draining
            .iter()
            .position(|w| w.id == id)
            .map(Place::Draining)
    }

    fn worker_mut(&mut self, place: Place) -> &mut Worker {
        let worker = match place {
            Place::Active(s) => self.slots[s].active_mut(),
            Place::Incoming(s) => self.slots[s].incoming_mut(),
            Place::Draining(i) => self.draining.get_mut(i),
        };
        worker.expect("a located worker is where it was found")
    }

    /// Starts a worker of `generation` for `slot` (not yet placed).
    fn launch(
        &mut self,
        fx: &mut dyn Effects,
        generation: &Arc<Generation>,
        slot: usize,
    ) -> Result<Worker, LaunchError> {
        let id = self.ids.worker();
        let Launched { pid, forked } = fx.launch(id, generation, slot)?;
        let worker = Worker {
            id,
            pid,
            slot,
            generation: generation.clone(),
            state: WorkerState::Starting,
            started: forked,
            since: forked,
            status: None,
        };
        fx.timer(
            generation.spec.ready_timeout,
            Timer::ReadyDeadline(worker.id),
        );
        tracing::debug!("{worker} started");
        Ok(worker)
    }

    /// Sends a worker its stop signal, arms its SIGKILL deadline, and keeps
    /// it until it is reaped.
    fn drain(&mut self, fx: &mut dyn Effects, mut worker: Worker) {
        stop_worker(fx, &mut worker);
        self.draining.push(worker);
    }

    /// Kills a worker and keeps it until it is reaped.
    fn kill(&mut self, fx: &mut dyn Effects, mut worker: Worker, reason: String) {
        kill_worker(fx, &mut worker, reason);
        self.draining.push(worker);
    }

    /// Every socket the next generation or a live one (serving, starting,
    /// draining, waiting to respawn) has, once each.
    pub fn held_sockets(&self) -> Vec<Arc<BoundSocket>> {
        let mut seen: steering::Sockets = self.next.sockets.iter().collect();
        let mut held: Vec<Arc<BoundSocket>> = self.next.sockets.to_vec();
        for socket in self.generation_sockets() {
            if seen.insert(&socket) {
                held.push(socket);
            }
        }
        held
    }

    /// Makes the listeners a child shut down listen again; a revived
    /// steered socket is at the end of its group now.
    pub fn check_sockets(&mut self, fx: &mut dyn Effects) {
        let revived = fx.check_sockets(&self.held_sockets());
        for socket in &revived {
            self.steering.rejoin(socket);
        }
        if !revived.is_empty() {
            self.steer(fx);
        }
    }

    pub fn steering(&self) -> &Steering {
        &self.steering
    }
}

/// Its stop signal, to the worker's process group, with SIGKILL at the
/// drain deadline (unless it was already told, or killed).
fn stop_worker(fx: &mut dyn Effects, worker: &mut Worker) {
    if matches!(
        worker.state,
        WorkerState::Draining { .. } | WorkerState::Killed { .. }
    ) {
        return;
    }
    let spec = worker.generation.spec.clone();
    fx.signal(worker, spec.stop_signal);
    fx.timer(spec.drain_timeout, Timer::DrainDeadline(worker.id));
    let now = fx.now();
    worker.set_state(
        WorkerState::Draining {
            deadline: now + spec.drain_timeout,
        },
        now,
    );
}

fn kill_worker(fx: &mut dyn Effects, worker: &mut Worker, reason: String) {
    fx.signal(worker, Signal::SIGKILL);
    let now = fx.now();
    worker.set_state(WorkerState::Killed { reason }, now);
}

/// An error answer.
pub(crate) fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

pub(crate) fn shutting_down() -> Response {
    error(ErrorKind::ShuttingDown, "the supervisor is shutting down")
}

pub(crate) fn ms_u64(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn us_u64(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
