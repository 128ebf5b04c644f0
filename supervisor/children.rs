//! What happens to a worker: it becomes ready, says something, misses a
//! deadline, or exits, and a dead worker's slot is respawned with backoff.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Readiness;
use crate::notify::Notice;
use crate::protocol::ErrorKind;
use crate::supervisor::{Event, PendingRespawn, Place, Supervisor};
use crate::worker::{Generation, WorkerEvent, WorkerState};
use crate::{describe_exit, ms};

/// A worker that stayed ready this long before dying is respawned after the
/// initial backoff again, not the doubled one.
const STABLE_AFTER: Duration = Duration::from_secs(10);

impl Supervisor {
    pub(crate) fn on_worker_event(&mut self, place: Place, event: WorkerEvent) {
        match event {
            WorkerEvent::Exited(status) => self.on_exit(place, status),
            WorkerEvent::Ready => self.on_ready(place),
            // READY=1 counts only where it was asked for: with an exec
            // probe or a delay, they decide.
            WorkerEvent::Notice(Notice::Ready) => {
                if self.worker_mut(place).generation.spec.ready == Readiness::Notify {
                    self.on_ready(place);
                }
            }
            WorkerEvent::Notice(notice) => self.on_notice(place, notice),
            WorkerEvent::ReadyTimeout => self.on_ready_timeout(place),
            WorkerEvent::DrainTimeout => self.on_drain_timeout(place),
        }
    }

    fn on_exit(&mut self, place: Place, exited: std::io::Result<()>) {
        let worker = self.take(place);
        // Only a process known to have exited is reaped (waitpid would
        // block otherwise); if even waiting failed, it is reported as such.
        let status = exited.and_then(|()| crate::sys::reap(worker.pid));
        let how = match &status {
            Ok(s) => describe_exit(s),
            Err(e) => format!("could not be waited for ({e})"),
        };
        let why = match &worker.state {
            WorkerState::Killed { reason } => format!("{how} (killed: {reason})"),
            _ => how,
        };
        self.adopt_group(&worker);
        self.check_sockets();
        match place {
            Place::Draining(_) => {
                match worker.state {
                    WorkerState::Killed { .. } => tracing::info!("{worker} {why}"),
                    _ => tracing::info!(
                        "{worker} {why} after draining for {}",
                        ms(worker.since.elapsed())
                    ),
                }
                let id = worker.id;
                // Its sockets may close now, before anyone hears it is gone.
                drop(worker);
                self.worker_gone(Some(id));
            }
            Place::Incoming(_) => {
                let when = match worker.state {
                    WorkerState::Ready { .. } => format!(
                        "{} after it was ready (a new worker must stay up for min_ready_time, {})",
                        ms(worker.since.elapsed()),
                        ms(worker.generation.spec.min_ready_time)
                    ),
                    _ => "before it was ready".to_string(),
                };
                self.fail_rollout(format!("{worker} {why} {when}"), ErrorKind::RestartFailed);
            }
            Place::Active(slot) => {
                if self.is_shutting_down() {
                    tracing::info!("{worker} {why}");
                    return;
                }
                let stable = matches!(worker.state, WorkerState::Ready { .. })
                    && worker.since.elapsed() >= STABLE_AFTER;
                let delay = self.schedule_respawn(slot, worker.generation.clone(), stable);
                if self.serving_ready {
                    tracing::warn!("{worker} {why}; respawning in {}", ms(delay));
                } else {
                    // The documented choice for a first generation that
                    // cannot start: keep the sockets and keep trying (a
                    // database it needs may come up), and say so plainly.
                    tracing::error!(
                        "{worker} {why}; no generation is serving yet: connections wait in the listen backlog \
                         while handoff keeps trying (attempt {} of generation {}, the next in {})",
                        self.slots[slot].restarts + 1,
                        worker.generation.number,
                        ms(delay)
                    );
                }
            }
        }
    }

    /// Arms a respawn of `slot` and returns its delay (exponential backoff,
    /// capped, starting over after a stable run).
    fn schedule_respawn(
        &mut self,
        slot: usize,
        generation: Arc<Generation>,
        stable: bool,
    ) -> Duration {
        let s = &mut self.slots[slot];
        if stable {
            s.backoff = None;
        }
        let spec = &generation.spec;
        let delay = s.backoff.unwrap_or(spec.respawn_backoff);
        s.backoff = Some((delay * 2).min(spec.respawn_backoff_max));
        self.arm_respawn(slot, generation, delay);
        delay
    }

    /// A respawn that was pending when an upgrade took over: after the
    /// initial delay, leaving the slot's backoff as it was.
    pub(crate) fn respawn_soon(&mut self, slot: usize, generation: Arc<Generation>) {
        let delay = generation.spec.respawn_backoff;
        self.arm_respawn(slot, generation, delay);
    }

    fn arm_respawn(&mut self, slot: usize, generation: Arc<Generation>, delay: Duration) {
        let token = self.next_token;
        self.next_token += 1;
        self.slots[slot].respawn = Some(PendingRespawn {
            token,
            since_wall: SystemTime::now(),
            since: Instant::now(),
            generation,
        });
        let tx = self.sink.0.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Event::RespawnDue { slot, token });
        });
    }

    pub(crate) fn on_respawn_due(&mut self, slot: usize, token: u64) {
        let stopping = self.is_shutting_down();
        let Some(s) = self.slots.get_mut(slot) else {
            return; // scaled away meanwhile
        };
        if s.respawn.as_ref().map(|r| r.token) != Some(token) || s.active.is_some() || stopping {
            return;
        }
        let pending = s.respawn.take().expect("checked above");
        s.restarts += 1;
        match self.launch(pending.generation.clone(), slot) {
            Ok(worker) => {
                tracing::info!("{worker} respawned");
                self.slots[slot].active = Some(worker);
            }
            Err(e) => {
                let number = pending.generation.number;
                let delay = self.schedule_respawn(slot, pending.generation, false);
                tracing::error!(
                    "cannot respawn generation {number} worker {slot}: {e}; trying again in {}",
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
        let number = worker.generation.number;
        match place {
            Place::Active(_) => self.check_generation_ready(number),
            Place::Incoming(_) => self.advance_rollout(),
            Place::Draining(_) => {}
        }
    }

    /// At boot (and after respawns or scaling), the generation counts as
    /// serving once every slot has a ready worker of it.
    pub(crate) fn check_generation_ready(&mut self, number: u64) {
        if self.serving_ready || number != self.serving.number {
            return;
        }
        let all_ready = self.slots.iter().all(|s| {
            s.active.as_ref().is_some_and(|w| {
                w.generation.number == number && matches!(w.state, WorkerState::Ready { .. })
            })
        });
        if all_ready {
            self.serving_ready = true;
            tracing::info!(
                "generation {number} ready: {} worker(s) serving",
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
        let spec = &worker.generation.spec;
        let reason = format!(
            "not ready within {}{}",
            ms(spec.ready_timeout),
            readiness_hint(&spec.ready)
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
            ms(worker.generation.spec.drain_timeout)
        );
        tracing::warn!("{worker} {reason}; sending SIGKILL");
        worker.kill(reason);
    }
}

fn readiness_hint(ready: &Readiness) -> &'static str {
    match ready {
        Readiness::Notify => {
            " (ready = \"notify\": it never sent READY=1 on NOTIFY_SOCKET; for a server that does not speak sd_notify use ready = \"exec\" or \"delay\")"
        }
        Readiness::Exec { .. } => " (the ready_command probe never exited 0)",
        Readiness::Delay(_) => "",
    }
}
