//! What happens to a worker: it becomes ready, says something, misses a
//! deadline, or exits, and a dead worker's slot is respawned with backoff.

use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::preload_hint::preload_hint;
use super::slot::{Occupant, Respawn};
use super::{
    kill_worker, Core, Effects, Generation, Leftover, Place, StopCause, Timer, WorkerId,
    WorkerState,
};
use crate::config::Readiness;
use crate::notify::Notice;
use crate::protocol::ErrorKind;
use crate::{describe_exit, ms};

/// A worker that stayed ready this long before dying is respawned after the
/// initial backoff again, not the doubled one.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// What a worker's watchers report.
#[derive(Debug)]
pub enum WorkerEvent {
    /// The process exited and was reaped, with this status (or waiting for
    /// it failed).
    Exited(io::Result<ExitStatus>),
    Notice(Notice),
    /// The exec probe succeeded, or the readiness delay passed.
    Ready,
}

impl Core {
    pub fn on_worker(&mut self, fx: &mut dyn Effects, id: WorkerId, event: WorkerEvent) {
        self.on_worker_event(fx, id, event);
        self.tidy_sockets(fx);
    }

    fn on_worker_event(&mut self, fx: &mut dyn Effects, id: WorkerId, event: WorkerEvent) {
        // A late event about a worker already gone is ignored.
        let Some(place) = self.locate(id) else { return };
        match event {
            WorkerEvent::Exited(status) => self.on_exit(fx, place, status),
            WorkerEvent::Ready => self.on_ready(fx, place),
            // READY=1 counts only where it was asked for: with an exec
            // probe or a delay, they decide.
            WorkerEvent::Notice(Notice::Ready) => {
                if self.worker_mut(place).generation.spec.ready.by_notice() {
                    self.on_ready(fx, place);
                }
            }
            WorkerEvent::Notice(Notice::Status(text)) => {
                let worker = self.worker_mut(place);
                tracing::debug!("{worker}: STATUS={text}");
                worker.status = Some(text);
            }
            WorkerEvent::Notice(other) => {
                tracing::debug!("{}: {other:?}", self.worker_mut(place));
            }
        }
    }

    pub fn on_timer(&mut self, fx: &mut dyn Effects, timer: Timer) {
        self.on_timer_due(fx, timer);
        self.tidy_sockets(fx);
    }

    fn on_timer_due(&mut self, fx: &mut dyn Effects, timer: Timer) {
        match timer {
            Timer::ReadyDeadline(id) => {
                if let Some(place) = self.locate(id) {
                    self.on_ready_timeout(fx, place);
                }
            }
            Timer::DrainDeadline(id) => {
                if let Some(place) = self.locate(id) {
                    self.on_drain_timeout(fx, place);
                }
            }
            Timer::RespawnDue { slot, token } => self.on_respawn_due(fx, slot, token),
            Timer::Settled { generation, token } => self.on_settled(fx, generation, token),
            Timer::HandOver { generation, token } => self.on_handover_check(fx, generation, token),
        }
    }

    fn on_exit(&mut self, fx: &mut dyn Effects, place: Place, status: io::Result<ExitStatus>) {
        let how = match &status {
            Ok(s) => describe_exit(s),
            Err(e) => format!("could not be waited for ({e})"),
        };
        let serving_command = self
            .serving_ready
            .then(|| self.serving.spec.command.clone());
        let (why, spec, hint) = {
            let worker = self.worker_mut(place);
            let why = match &worker.state {
                WorkerState::Killed { reason } => format!("{how} (killed: {reason})"),
                _ => how,
            };
            // Exited with an error code before it was ever ready: perhaps
            // a server that binds its own port. Not when the same command
            // served already (a build that failed in development mode, a
            // crash at start): it takes the sockets handoff gives it.
            let served_before = serving_command.as_ref() == Some(&worker.generation.spec.command);
            let failed_start = !worker.is_ready()
                && !served_before
                && !matches!(worker.state, WorkerState::Killed { .. })
                && status
                    .as_ref()
                    .is_ok_and(|s| s.code().is_some_and(|c| c != 0));
            let hint = failed_start
                .then(|| preload_hint(&worker.generation.spec, &worker.generation.sockets))
                .flatten();
            (why, worker.generation.spec.clone(), hint)
        };

        let now = fx.now();
        match place {
            Place::Draining(i) => {
                let worker = self.draining.swap_remove(i);
                fx.gone(&worker, leftover(&worker, now));
                self.check_sockets(fx);
                match worker.state {
                    WorkerState::Killed { .. } => tracing::info!("{worker} {why}"),
                    _ => tracing::info!(
                        "{worker} {why} after draining for {}",
                        ms(now.duration_since(worker.since))
                    ),
                }
                let id = worker.id;
                // Its sockets may close now, before anyone hears it is gone.
                drop(worker);
                self.worker_gone(fx, Some(id));
            }
            Place::Incoming(slot) => {
                let worker = self.slots[slot].incoming().expect("located");
                fx.gone(worker, leftover(worker, now));
                let when = match worker.state {
                    WorkerState::Ready { .. } => format!(
                        "{} after it was ready (a new worker must stay up for min_ready_time, {})",
                        ms(now.duration_since(worker.since)),
                        ms(spec.min_ready_time)
                    ),
                    _ => "before it was ready".to_string(),
                };
                let reason = format!("{worker} {why} {when}");
                let id = worker.id;
                self.check_sockets(fx);
                self.fail_rollout(fx, reason, ErrorKind::RestartFailed, Some(id));
            }
            Place::Active(slot) => {
                let worker = self.slots[slot].active().expect("located");
                fx.gone(worker, leftover(worker, now));
                let stable = worker.is_ready() && now.duration_since(worker.since) >= STABLE_AFTER;
                let generation = worker.generation.clone();
                let (delay, respawn) = self.schedule_respawn(fx, slot, generation.clone(), stable);
                let Some(Occupant::Running(worker)) =
                    self.slots[slot].set_occupant(Occupant::Respawning(respawn))
                else {
                    unreachable!("located as the slot's running worker")
                };
                self.check_sockets(fx);
                if let Some(message) = self.past_respawn_limit(now, &spec) {
                    tracing::error!("{worker} {why}; {message}");
                    self.gave_up = Some(message);
                    self.stop(fx, None, StopCause::RespawnLimit);
                } else if self.serving_ready {
                    tracing::warn!("{worker} {why}; respawning in {}", ms(delay));
                } else {
                    // The documented choice for a first generation that
                    // cannot start: keep the sockets and keep trying (a
                    // database it needs may come up), and say so plainly.
                    tracing::error!(
                        "{worker} {why}; no generation is serving yet: connections wait in the listen backlog \
                         while handoff keeps trying (attempt {} of generation {}, the next in {})",
                        self.slots[slot].crashes.restarts + 1,
                        generation.number,
                        ms(delay)
                    );
                }
            }
        }
        // After the worker's own line, once.
        if let Some(hint) = hint.filter(|_| !self.preload_hinted) {
            self.preload_hinted = true;
            tracing::warn!("{hint}");
        }
    }

    /// Counts a crashed worker's respawn against `respawn_limit`, and says
    /// why handoff gives up when this one is past it. Only workers of the
    /// serving generation count (`Place::Active`): a restart's new worker
    /// that dies is rolled back while the old generation serves.
    fn past_respawn_limit(
        &mut self,
        now: std::time::Instant,
        spec: &crate::config::ProgramSpec,
    ) -> Option<String> {
        let limit = spec.respawn_limit?;
        self.respawns
            .retain(|&at| now.saturating_duration_since(at) < limit.within);
        if self.respawns.len() < limit.count as usize {
            self.respawns.push_back(now);
            return None;
        }
        Some(format!(
            "workers crashed {} times within {} (respawn_limit = {{ count = {}, within = \"{}\" }}): \
             handoff stops, so that whatever runs it (a container's restart policy, systemd) sees the crash loop",
            limit.count + 1,
            humantime::format_duration(limit.within),
            limit.count,
            humantime::format_duration(limit.within),
        ))
    }

    /// Arms a respawn of `slot` and returns its delay (exponential backoff,
    /// capped, starting over after a stable run) and the pending respawn.
    fn schedule_respawn(
        &mut self,
        fx: &mut dyn Effects,
        slot: usize,
        generation: Arc<Generation>,
        stable: bool,
    ) -> (Duration, Respawn) {
        let crashes = &mut self.slots[slot].crashes;
        if stable {
            crashes.backoff = None;
        }
        let spec = &generation.spec;
        let delay = crashes.backoff.unwrap_or(spec.respawn_backoff);
        crashes.backoff = Some((delay * 2).min(spec.respawn_backoff_max));
        (delay, self.arm_respawn(fx, slot, generation, delay))
    }

    pub(super) fn arm_respawn(
        &mut self,
        fx: &mut dyn Effects,
        slot: usize,
        generation: Arc<Generation>,
        delay: Duration,
    ) -> Respawn {
        let token = self.ids.token();
        fx.timer(delay, Timer::RespawnDue { slot, token });
        Respawn {
            token,
            since: fx.now(),
            generation,
        }
    }

    fn on_respawn_due(&mut self, fx: &mut dyn Effects, slot: usize, token: u64) {
        if self.is_stopping() {
            return;
        }
        let Some(s) = self.slots.get_mut(slot) else {
            return; // scaled away meanwhile
        };
        let generation = match s.respawn() {
            Some(r) if r.token == token => r.generation.clone(),
            _ => return, // replaced meanwhile
        };
        s.crashes.restarts += 1;
        let occupant = match self.launch(fx, &generation, slot) {
            Ok(worker) => {
                tracing::info!("{worker} respawned");
                Occupant::Running(worker)
            }
            Err(e) => {
                let number = generation.number;
                let (delay, respawn) = self.schedule_respawn(fx, slot, generation, false);
                tracing::error!(
                    "cannot respawn generation {number} worker {slot}: {e}; trying again in {}",
                    ms(delay)
                );
                Occupant::Respawning(respawn)
            }
        };
        self.slots[slot].set_occupant(occupant);
    }

    fn on_ready(&mut self, fx: &mut dyn Effects, place: Place) {
        let now = fx.now();
        let worker = self.worker_mut(place);
        if worker.state != WorkerState::Starting {
            return; // a late or repeated READY=1
        }
        let took = now.duration_since(worker.started);
        worker.set_state(WorkerState::Ready { ready_in: took }, now);
        fx.ready(worker);
        tracing::info!("{worker} ready in {}", ms(took));
        let number = worker.generation.number;
        match place {
            Place::Active(_) => self.check_generation_ready(number),
            Place::Incoming(_) => self.advance_rollout(fx),
            Place::Draining(_) => {}
        }
    }

    /// At boot (and after respawns or scaling), the generation counts as
    /// serving once every slot has a ready worker of it.
    fn check_generation_ready(&mut self, number: u64) {
        if self.serving_ready || number != self.serving.number {
            return;
        }
        let all_ready = self.slots.iter().all(|s| {
            s.active()
                .is_some_and(|w| w.generation.number == number && w.is_ready())
        });
        if all_ready {
            self.serving_ready = true;
            tracing::info!(
                "generation {number} ready: {} worker(s) serving",
                self.slots.len()
            );
        }
    }

    fn on_ready_timeout(&mut self, fx: &mut dyn Effects, place: Place) {
        let worker = self.worker_mut(place);
        if worker.state != WorkerState::Starting {
            return;
        }
        let spec = worker.generation.spec.clone();
        let reason = format!(
            "not ready within {}{}",
            ms(spec.ready_timeout),
            readiness_hint(&spec.ready)
        );
        match place {
            Place::Active(_) => {
                tracing::warn!("{worker} {reason}; killing it");
                kill_worker(fx, worker, reason);
            }
            Place::Incoming(_) => {
                let message = format!("{worker} {reason}");
                self.fail_rollout(fx, message, ErrorKind::RestartFailed, None);
            }
            Place::Draining(_) => {}
        }
    }

    fn on_drain_timeout(&mut self, fx: &mut dyn Effects, place: Place) {
        let worker = self.worker_mut(place);
        if !matches!(worker.state, WorkerState::Draining { .. }) {
            return; // killed already
        }
        let reason = format!(
            "still running {} after its stop signal (drain_timeout)",
            ms(worker.generation.spec.drain_timeout)
        );
        tracing::warn!("{worker} {reason}; sending SIGKILL");
        kill_worker(fx, worker, reason);
    }
}

/// What is done to the rest of a reaped worker's process group: a worker
/// told to stop had its signal sent to the whole group, which keeps its
/// deadline; a killed one's group is killed; any other's group gets the
/// stop signal now, and SIGKILL after `drain_timeout`.
fn leftover(worker: &super::Worker, now: std::time::Instant) -> Leftover {
    let spec = &worker.generation.spec;
    match &worker.state {
        WorkerState::Draining { deadline } => Leftover {
            signal: None,
            deadline: *deadline,
        },
        WorkerState::Killed { .. } => Leftover {
            signal: Some(Signal::SIGKILL),
            deadline: now,
        },
        _ => Leftover {
            signal: Some(spec.stop_signal),
            deadline: now + spec.drain_timeout,
        },
    }
}

fn readiness_hint(ready: &Readiness) -> &'static str {
    match ready {
        Readiness::Notify => {
            " (ready = \"notify\": it never sent READY=1 on NOTIFY_SOCKET; for a server that does not speak sd_notify use ready = \"exec\" or \"delay\")"
        }
        Readiness::Exec { .. } => " (the ready_command probe never exited 0)",
        Readiness::Delay(_) => "",
        Readiness::Listen => {
            " (ready = \"listen\": it never listened on a socket handoff holds; does it bind one of its addresses?)"
        }
    }
}
