//! Requests that change what runs: `scale`, a reload's new configuration,
//! `stop`, and the phases of an upgrade. (Restart is in `rollout.rs`.)

use std::sync::Arc;

use super::phase::{Phase, StopCause};
use super::request::{Asked, Asker, RestartWaiter, Waiter};
use super::slot::Slot;
use super::{error, kill_worker, shutting_down, Core, Effects, LaunchError, Next};
use crate::config::{ProgramSpec, MAX_WORKERS};
use crate::protocol::{ErrorKind, Response};

impl Core {
    /// Starts the first generation's workers (at boot). A worker that
    /// cannot be started is fatal here: those already started are killed.
    pub fn start(&mut self, fx: &mut dyn Effects) -> Result<(), LaunchError> {
        let generation = self.serving.clone();
        for socket in generation.sockets.iter() {
            self.steering.join(socket);
        }
        tracing::info!(
            "starting generation {}: {}",
            generation.number,
            generation.spec.command.join(" ")
        );
        for slot in 0..generation.spec.workers {
            match self.launch(fx, &generation, slot) {
                Ok(worker) => self.slots.push(Slot::running(worker)),
                Err(e) => {
                    for slot in std::mem::take(&mut self.slots) {
                        for mut worker in slot.into_workers() {
                            kill_worker(fx, &mut worker, "the server could not be started".into());
                        }
                    }
                    return Err(e);
                }
            }
        }
        // The group's program is there before a second socket joins it.
        self.steer(fx);
        Ok(())
    }

    /// Sets the number of workers. New slots run the serving generation;
    /// removed slots (the highest) drain: their workers get the stop signal,
    /// never a SIGKILL mid-request before `drain_timeout`. The next
    /// generation keeps the new count.
    pub fn scale(&mut self, fx: &mut dyn Effects, workers: usize) -> Response {
        let answer = self.rescale(fx, workers);
        self.tidy_sockets(fx);
        answer
    }

    fn rescale(&mut self, fx: &mut dyn Effects, workers: usize) -> Response {
        match &self.phase {
            Phase::Stopping { .. } => return shutting_down(),
            Phase::Rolling { rollout, .. } => {
                return error(
                    ErrorKind::Busy,
                    format!(
                        "a restart (generation {}) is in progress: scale once it is done",
                        rollout.generation.number
                    ),
                )
            }
            Phase::Upgrading { .. } => {
                return error(
                    ErrorKind::Busy,
                    "handoff is upgrading itself: scale once the upgrade is done",
                )
            }
            Phase::Steady => {}
        }
        if !(1..=MAX_WORKERS).contains(&workers) {
            return error(
                ErrorKind::BadRequest,
                format!("workers must be between 1 and {MAX_WORKERS}, not {workers}"),
            );
        }
        self.check_sockets(fx);
        let before = self.slots.len();
        self.next.spec = Arc::new(ProgramSpec {
            workers,
            ..(*self.next.spec).clone()
        });
        if workers < before {
            for slot in self.slots.drain(workers..).collect::<Vec<_>>() {
                for worker in slot.into_workers() {
                    self.drain(fx, worker);
                }
            }
        }
        let serving = self.serving.clone();
        for slot in before..workers {
            match self.launch(fx, &serving, slot) {
                Ok(worker) => self.slots.push(Slot::running(worker)),
                Err(e) => {
                    let message = format!(
                        "cannot start worker {slot}: {e}; now {} workers",
                        self.slots.len()
                    );
                    tracing::error!("scale: {message}");
                    return error(ErrorKind::RestartFailed, message);
                }
            }
        }
        tracing::info!("scaled from {before} to {workers} worker(s)");
        Response::Scaled { workers }
    }

    /// Whether a reload's new configuration would be taken now; if not,
    /// the answer to give (the caller need not read the file).
    pub fn refuses_reload(&self) -> Option<Response> {
        match &self.phase {
            Phase::Stopping { .. } => Some(shutting_down()),
            Phase::Upgrading { .. } => Some(error(
                ErrorKind::Busy,
                "handoff is upgrading itself: reload once the upgrade is done",
            )),
            Phase::Steady | Phase::Rolling { .. } => None,
        }
    }

    /// Whether a reload asked for by `asked` may go ahead now; if not, the
    /// answer to give (the caller need not read the file). A signal's
    /// reload is not refused: an upgrade in progress gives way to it, as it
    /// does to a signal's restart.
    pub fn admit_reload(
        &mut self,
        fx: &mut dyn Effects,
        asked: &Asked<RestartWaiter>,
    ) -> Option<Response> {
        if let (Asked::Signal(signal), Phase::Upgrading { .. }) = (asked, &self.phase) {
            self.abandon_upgrade(fx, ErrorKind::Busy, format!("{signal} arrived first"));
        }
        self.refuses_reload()
    }

    /// A reload read a valid file and holds its sockets: it becomes what
    /// the next generation runs, and that generation is started (coalesced
    /// with one in progress, like restart).
    pub fn reload(&mut self, fx: &mut dyn Effects, next: Next, asked: Asked<RestartWaiter>) {
        if let Some(refusal) = self.refuses_reload() {
            if let Asked::Client(w) = asked {
                fx.answer(w.reply, refusal);
            }
            return;
        }
        self.next = next;
        // A socket the reload bound for an address already steered joined
        // that group when it listened.
        for socket in self.next.sockets.clone().iter() {
            self.steering.join(socket);
        }
        self.restart(fx, asked);
    }

    /// Stops everything: every worker gets its stop signal, nothing is
    /// respawned or started, and the loop ends once all are reaped. A second
    /// signal while stopping kills what is left with SIGKILL. Returns
    /// whether this began the stop.
    pub fn stop(&mut self, fx: &mut dyn Effects, waiter: Option<Waiter>, cause: StopCause) -> bool {
        if let Phase::Stopping { waiters } = &mut self.phase {
            waiters.extend(waiter);
            if let StopCause::Signal(signal) = cause {
                tracing::warn!("{signal} again while stopping: killing the remaining workers");
                for w in &mut self.draining {
                    kill_worker(fx, w, "forced stop".into());
                }
            }
            return false;
        }
        match cause {
            StopCause::Request => tracing::info!("stop requested: stopping gracefully"),
            StopCause::Signal(signal) => tracing::info!("{signal}: stopping gracefully"),
            StopCause::RespawnLimit => tracing::info!("respawn_limit: stopping gracefully"),
        }
        match std::mem::take(&mut self.phase) {
            Phase::Rolling { rollout, queued } => {
                // The new workers drain like the others, rather than being
                // killed as a failed rollout's would be; then the rollout
                // fails with nothing left to kill.
                for &slot in rollout.batch.iter().rev() {
                    if let Some(s) = self.slots.get_mut(slot) {
                        if s.incoming().is_some() {
                            let (new, kept) = s.roll_back();
                            if !kept {
                                self.slots.truncate(slot);
                            }
                            self.drain(fx, new);
                        }
                    }
                }
                self.phase = Phase::Rolling {
                    rollout,
                    queued: Default::default(),
                };
                self.fail_rollout(
                    fx,
                    "the supervisor is shutting down".into(),
                    ErrorKind::ShuttingDown,
                    None,
                );
                for w in queued.waiters {
                    fx.answer(w.reply, shutting_down());
                }
            }
            Phase::Upgrading { asker } => refuse_upgrade(
                fx,
                asker,
                ErrorKind::ShuttingDown,
                "the supervisor is shutting down".into(),
            ),
            Phase::Steady | Phase::Stopping { .. } => {}
        }
        self.phase = Phase::Stopping {
            waiters: waiter.into_iter().collect(),
        };
        for slot in std::mem::take(&mut self.slots) {
            for worker in slot.into_workers() {
                self.drain(fx, worker);
            }
        }
        true
    }

    /// The waiters of a finished stop, to be told once the sockets closed.
    pub fn into_stop_waiters(self) -> Vec<Waiter> {
        match self.phase {
            Phase::Stopping { waiters } => waiters,
            _ => Vec::new(),
        }
    }

    /// An upgrade is asked for. Returns true if it may go ahead (the phase
    /// is now `Upgrading`): then the caller runs the new binary's check,
    /// and hands over if [`Core::is_upgrading`] still holds when it passed,
    /// or reports a failure with [`Core::abandon_upgrade`].
    pub fn begin_upgrade(&mut self, fx: &mut dyn Effects, asker: Option<Asker>) -> bool {
        let refusal = match &self.phase {
            Phase::Stopping { .. } => Some((
                ErrorKind::ShuttingDown,
                "the supervisor is shutting down".to_string(),
            )),
            Phase::Rolling { rollout, .. } => Some((
                ErrorKind::Busy,
                format!(
                    "a restart (generation {}) is in progress: upgrade once it is done",
                    rollout.generation.number
                ),
            )),
            Phase::Upgrading { .. } => Some((
                ErrorKind::Busy,
                "an upgrade is already in progress".to_string(),
            )),
            Phase::Steady if !self.drain_waits.is_empty() => Some((
                ErrorKind::Busy,
                "a restart --drained is waiting for old workers to exit: upgrade once it is answered"
                    .to_string(),
            )),
            Phase::Steady => None,
        };
        if let Some((kind, message)) = refusal {
            refuse_upgrade(fx, asker, kind, message);
            return false;
        }
        self.phase = Phase::Upgrading { asker };
        true
    }

    /// Whether an upgrade is still wanted (a stop or a signal may have
    /// called it off while its check ran).
    pub fn is_upgrading(&self) -> bool {
        matches!(self.phase, Phase::Upgrading { .. })
    }

    /// The connection an upgrade's asker waits on, to hand to the new
    /// binary.
    pub fn upgrade_stream(&self) -> Option<std::os::fd::RawFd> {
        match &self.phase {
            Phase::Upgrading {
                asker: Some(Asker {
                    stream: Some(s), ..
                }),
            } => Some(std::os::fd::AsRawFd::as_raw_fd(s)),
            _ => None,
        }
    }

    /// The upgrade did not happen (its check failed, or the exec did): the
    /// asker hears why, and this supervisor carries on.
    pub fn abandon_upgrade(&mut self, fx: &mut dyn Effects, kind: ErrorKind, message: String) {
        if let Phase::Upgrading { asker } = std::mem::take(&mut self.phase) {
            refuse_upgrade(fx, asker, kind, message);
        }
    }
}

fn refuse_upgrade(fx: &mut dyn Effects, asker: Option<Asker>, kind: ErrorKind, message: String) {
    tracing::error!("upgrade: {message}; this supervisor stays in charge");
    if let Some(asker) = asker {
        fx.answer(asker.reply, error(kind, message));
    }
}
