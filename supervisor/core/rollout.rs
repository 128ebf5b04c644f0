//! Restarts: start the next generation on the same sockets, wait until it
//! is ready, then drain the old one (docs/design.md, "Restart, step by
//! step").
//!
//! A rollout replaces the slots in batches: all of them at once
//! (`strategy = "all-at-once"`), or `batch` at a time (`"rolling"`). When
//! every worker of a batch is ready (and has stayed up `min_ready_time`),
//! the batch is committed: each slot's old worker gets its stop signal and
//! the new one takes its place, and the next batch starts. If a new worker
//! exits or misses `ready_timeout` first, the batch is killed, the rollout
//! stops there, the slots not yet replaced keep their old workers, and
//! whoever asked is told why and how far it got.
//!
//! Restart requests that arrive while a rollout runs are coalesced (see
//! [`Queue`]).

use std::sync::Arc;
use std::time::Duration;

use super::phase::{Phase, Queue, Rollout, Settling};
use super::request::{Asked, RestartWaiter};
use super::slot::{Occupant, Slot, SlotState};
use super::{error, ms_u64, shutting_down, us_u64, Core, DrainWait, Effects, Timer, WorkerState};
use crate::config::Strategy;
use crate::protocol::{ErrorKind, Response, RestartReport};

impl Core {
    /// A restart request, from a control client or SIGHUP.
    pub fn restart(&mut self, fx: &mut dyn Effects, asked: Asked<RestartWaiter>) {
        self.begin_restart(fx, asked);
        self.tidy_sockets(fx);
    }

    fn begin_restart(&mut self, fx: &mut dyn Effects, asked: Asked<RestartWaiter>) {
        let has_ready = self.rollout_has_a_ready_worker();
        match &mut self.phase {
            Phase::Stopping { .. } => {
                if let Asked::Client(w) = asked {
                    fx.answer(w.reply, shutting_down());
                }
            }
            Phase::Rolling { rollout, queued } => {
                let number = rollout.generation.number;
                let stale = matches!(asked, Asked::Change) && rollout.replaced == 0;
                queued.push(asked);
                // A file changed while the build of an older change is under
                // way: that build is out of date, so it is stopped and the
                // queued restart builds the new one at once, rather than after
                // it. Only while none of its workers is ready: one that is may
                // already have connections.
                if stale && !has_ready {
                    // Whoever waits for it is answered by the next one.
                    queued.waiters.append(&mut rollout.waiters);
                    self.supersede_rollout(fx);
                    return;
                }
                tracing::info!(
                    "restart requested while generation {number} is starting: one more restart will follow it"
                );
            }
            Phase::Upgrading { .. } => match asked {
                Asked::Client(w) => fx.answer(
                    w.reply,
                    error(
                        ErrorKind::Busy,
                        "handoff is upgrading itself: restart once the upgrade is done",
                    ),
                ),
                // A signal or a change is not refused: the upgrade gives way.
                Asked::Signal(signal) => {
                    self.abandon_upgrade(fx, ErrorKind::Busy, format!("{signal} arrived first"));
                    self.start_rollout(fx, Vec::new());
                }
                Asked::Change => {
                    self.abandon_upgrade(
                        fx,
                        ErrorKind::Busy,
                        "a watched file changed first".into(),
                    );
                    self.start_rollout(fx, Vec::new());
                }
            },
            Phase::Steady => {
                let waiters = match asked {
                    Asked::Client(w) => vec![w],
                    Asked::Signal(_) | Asked::Change => Vec::new(),
                };
                self.start_rollout(fx, waiters);
            }
        }
    }

    fn start_rollout(&mut self, fx: &mut dyn Effects, waiters: Vec<RestartWaiter>) {
        self.check_sockets(fx);
        self.ids.last_generation += 1;
        let number = self.ids.last_generation;
        let (sockets, failure) = match self.open_sockets(fx, number) {
            Ok(sockets) => (sockets, None),
            Err(reason) => (self.next.sockets.clone(), Some(reason)),
        };
        let generation = Arc::new(self.next.generation(number, sockets));
        let workers = generation.spec.workers;
        tracing::info!(
            "restart: starting generation {} ({} worker(s), {})",
            generation.number,
            workers,
            match generation.spec.strategy {
                Strategy::AllAtOnce => "all at once".to_string(),
                Strategy::Rolling { batch } => format!("rolling, {batch} at a time"),
            }
        );
        let now = fx.now();
        self.phase = Phase::Rolling {
            rollout: Rollout {
                generation,
                started: now,
                batch: Vec::new(),
                batch_started: now,
                todo: (0..workers).collect(),
                replaced: 0,
                original_slots: self.slots.len(),
                child_time: Duration::ZERO,
                ready_at: None,
                drained: Vec::new(),
                settling: None,
                handover: None,
                waiters,
            },
            queued: Queue::default(),
        };
        if let Some(reason) = failure {
            return self.fail_rollout(fx, reason, ErrorKind::RestartFailed, None);
        }
        self.start_next_batch(fx);
    }

    /// Whether a worker of the rollout's batch is ready (or past it).
    fn rollout_has_a_ready_worker(&self) -> bool {
        let Phase::Rolling { rollout, .. } = &self.phase else {
            return false;
        };
        rollout.ready_at.is_some()
            || rollout.batch.iter().any(|&slot| {
                self.slots
                    .get(slot)
                    .and_then(Slot::incoming)
                    .is_some_and(super::Worker::is_ready)
            })
    }

    pub(super) fn rollout_mut(&mut self) -> &mut Rollout {
        match &mut self.phase {
            Phase::Rolling { rollout, .. } => rollout,
            _ => unreachable!("only called while a rollout is in progress"),
        }
    }

    fn start_next_batch(&mut self, fx: &mut dyn Effects) {
        let now = fx.now();
        let rollout = self.rollout_mut();
        let size = match rollout.generation.spec.strategy {
            Strategy::AllAtOnce => rollout.todo.len(),
            Strategy::Rolling { batch } => batch.min(rollout.todo.len()),
        };
        rollout.batch = rollout.todo.drain(..size).collect();
        rollout.batch_started = now;
        let (generation, batch) = (rollout.generation.clone(), rollout.batch.clone());
        for slot in batch {
            match self.launch(fx, &generation, slot) {
                Ok(new) => match self.slots.get_mut(slot) {
                    Some(s) => s.begin_replacing(new),
                    // A reload raised the worker count: the slot is new.
                    None => self.slots.push(Slot::added(new)),
                },
                Err(e) => {
                    let reason = format!(
                        "cannot start generation {} worker {slot}: {e}",
                        generation.number
                    );
                    return self.fail_rollout(fx, reason, ErrorKind::RestartFailed, None);
                }
            }
        }
    }

    /// Called when a new worker became ready: once all of the batch is,
    /// the batch waits out `min_ready_time` (if it replaces old workers,
    /// which keep serving meanwhile), then is committed.
    pub(super) fn advance_rollout(&mut self, fx: &mut dyn Effects) {
        let Phase::Rolling { rollout, .. } = &self.phase else {
            return;
        };
        if rollout.settling.is_some() || rollout.handover.is_some() {
            return;
        }
        let all_ready = rollout
            .batch
            .iter()
            .all(|&s| self.slots[s].incoming().is_some_and(|w| w.is_ready()));
        if !all_ready {
            return;
        }
        let hold = rollout.generation.spec.min_ready_time;
        let replaces = rollout
            .batch
            .iter()
            .any(|&s| self.slots[s].active().is_some());
        let now = fx.now();
        let token = self.ids.token();
        let rollout = self.rollout_mut();
        rollout.ready_at = Some(now);
        if hold.is_zero() || !replaces {
            return self.hand_over_or_commit(fx);
        }
        rollout.settling = Some(Settling { token, since: now });
        let generation = rollout.generation.number;
        fx.timer(hold, Timer::Settled { generation, token });
    }

    /// `min_ready_time` has passed since the batch was ready, and none of
    /// it died meanwhile (that would have failed the rollout).
    pub(super) fn on_settled(&mut self, fx: &mut dyn Effects, generation: u64, token: u64) {
        let current = matches!(&self.phase, Phase::Rolling { rollout, .. }
            if rollout.generation.number == generation
                && rollout.settling.is_some_and(|s| s.token == token));
        if current {
            self.hand_over_or_commit(fx);
        }
    }

    /// The batch is ready (and stayed up): where the old generation has
    /// sockets of its own, new connections go to the new one first, and
    /// the commit waits for the old sockets to be quiet (`handover.rs`).
    fn hand_over_or_commit(&mut self, fx: &mut dyn Effects) {
        if !self.begin_handover(fx) {
            self.commit_batch(fx);
        }
    }

    /// Every new worker of the batch takes its slot; the old ones drain.
    pub(super) fn commit_batch(&mut self, fx: &mut dyn Effects) {
        let now = fx.now();
        let Phase::Rolling { rollout, .. } = &mut self.phase else {
            unreachable!("only called while a rollout is in progress")
        };
        // The hold since the batch was ready: `min_ready_time`, then the
        // hand-over's wait for the old sockets to be quiet.
        rollout.settling = None;
        rollout.handover = None;
        let held = rollout
            .ready_at
            .map_or(Duration::ZERO, |ready| now.duration_since(ready));
        let batch = std::mem::take(&mut rollout.batch);
        let mut slowest = Duration::ZERO;
        for &s in &batch {
            if let Some(WorkerState::Ready { ready_in }) =
                self.slots[s].incoming().map(|w| &w.state)
            {
                slowest = slowest.max(*ready_in);
            }
        }
        rollout.replaced += batch.len();
        // The children's own time: their start-up, and the min_ready_time
        // they had to stay up for before the next batch could start (the
        // supervisor only waited). The last batch's hold comes after
        // `ready_ms`: it is the difference between `ready_ms` and
        // `total_ms`, when the old workers are told to drain.
        rollout.child_time += slowest;
        if !rollout.todo.is_empty() {
            rollout.child_time += held;
        }
        let took = rollout
            .ready_at
            .unwrap_or(now)
            .duration_since(rollout.batch_started);
        let number = rollout.generation.number;
        let done = rollout.todo.is_empty();
        let mut old = Vec::new();
        for &slot in &batch {
            let previous = self.slots[slot].commit();
            // A pending respawn of the old generation no longer applies.
            if let Some(Occupant::Running(previous)) = previous {
                old.push(format!(
                    "generation {} (pid {})",
                    previous.generation.number, previous.pid
                ));
                self.rollout_mut().drained.push(previous.id);
                self.drain(fx, previous);
            }
        }
        tracing::info!(
            "generation {number}{} ready in {}{}; draining {}",
            if done && batch.len() == self.slots.len() {
                String::new()
            } else {
                format!(" workers {}", slot_list(&batch))
            },
            crate::ms(took),
            if held.is_zero() {
                String::new()
            } else {
                format!(
                    ", then held {} (min_ready_time, and the old sockets' quiet)",
                    crate::ms(held)
                )
            },
            if old.is_empty() {
                "nothing".to_string()
            } else {
                old.join(", ")
            }
        );
        if done {
            self.finish_rollout(fx);
        } else {
            self.start_next_batch(fx);
        }
    }

    fn finish_rollout(&mut self, fx: &mut dyn Effects) {
        self.check_sockets(fx);
        let Phase::Rolling { rollout, queued } = std::mem::take(&mut self.phase) else {
            unreachable!("only called while a rollout is in progress")
        };
        self.last_failure = None;
        let workers = rollout.generation.spec.workers;
        // A reload may have lowered the worker count: drain the extra slots.
        let mut drained = rollout.drained;
        while self.slots.len() > workers {
            let slot = self.slots.pop().expect("more slots than workers");
            for worker in slot.into_workers() {
                drained.push(worker.id);
                self.drain(fx, worker);
            }
        }
        self.serving = rollout.generation.clone();
        self.serving_ready = true;
        let now = fx.now();
        let ready = rollout
            .ready_at
            .unwrap_or(now)
            .duration_since(rollout.started);
        let report = RestartReport {
            generation: rollout.generation.number,
            ready_ms: ms_u64(ready),
            total_ms: ms_u64(now.duration_since(rollout.started)),
            workers: rollout.replaced,
            child_ready_ms: ms_u64(rollout.child_time),
            drained_ms: None,
            ready_us: us_u64(ready),
            child_ready_us: us_u64(rollout.child_time),
        };
        // Old workers already gone (killed early, or exited on their own)
        // are not waited for.
        drained.retain(|id| self.draining.iter().any(|w| w.id == *id));
        for w in rollout.waiters {
            if w.drained {
                self.drain_waits.push(DrainWait {
                    remaining: drained.clone(),
                    started: rollout.started,
                    report: report.clone(),
                    reply: w.reply,
                });
            } else {
                fx.answer(w.reply, Response::Restarted(report.clone()));
            }
        }
        self.worker_gone(fx, None);
        self.start_queued(fx, queued);
    }

    /// Kills the batch's new workers, keeps the old ones, and answers the
    /// waiters with `reason`. `reaped` is a new worker that already exited
    /// and was reaped: it is dropped, not signalled (its pid is no longer
    /// its own).
    pub(super) fn fail_rollout(
        &mut self,
        fx: &mut dyn Effects,
        reason: String,
        kind: ErrorKind,
        reaped: Option<super::WorkerId>,
    ) {
        let Phase::Rolling { rollout, queued } = std::mem::take(&mut self.phase) else {
            unreachable!("only called while a rollout is in progress")
        };
        let number = rollout.generation.number;
        self.roll_back_batch(fx, &rollout, reaped);
        self.last_failure = Some(format!("generation {number} failed: {reason}"));
        let message = if kind == ErrorKind::ShuttingDown {
            reason
        } else if rollout.replaced > 0 {
            format!(
                "{reason}; {} of {} workers had been replaced by generation {number}, the other {} keep their old workers",
                rollout.replaced,
                rollout.generation.spec.workers,
                self.slots.len().saturating_sub(rollout.replaced)
            )
        } else if self.serving_ready {
            format!("{reason}; generation {} keeps serving", self.serving.number)
        } else {
            format!(
                "{reason}; no generation has become ready yet, so none was kept: generation {}'s workers keep being retried",
                self.serving.number
            )
        };
        tracing::error!("restart to generation {number} failed: {message}");
        for w in rollout.waiters {
            fx.answer(w.reply, error(kind, message.clone()));
        }
        self.start_queued(fx, queued);
    }

    /// A newer change made the rollout out of date (`--watch`) before any
    /// of its workers was ready: no failure, its new workers are killed and
    /// the queued restart starts. Its waiters were moved to the queue.
    fn supersede_rollout(&mut self, fx: &mut dyn Effects) {
        let Phase::Rolling { rollout, queued } = std::mem::take(&mut self.phase) else {
            unreachable!("only called while a rollout is in progress")
        };
        self.roll_back_batch(fx, &rollout, None);
        tracing::info!(
            "generation {} stopped: out of date before it was ready: a newer change arrived",
            rollout.generation.number
        );
        self.start_queued(fx, queued);
    }

    /// Takes the batch's new workers out of their slots and kills them
    /// (all but `reaped`), the old ones staying.
    fn roll_back_batch(
        &mut self,
        fx: &mut dyn Effects,
        rollout: &Rollout,
        reaped: Option<super::WorkerId>,
    ) {
        let number = rollout.generation.number;
        // From the last: slots the rollout added are removed as it goes.
        for &slot in rollout.batch.iter().rev() {
            let Some(s) = self.slots.get_mut(slot) else {
                continue; // its launch failed: never added
            };
            if !matches!(s.state, SlotState::Replacing { .. }) {
                continue; // not launched yet when the batch failed
            }
            let (new, kept) = s.roll_back();
            if !kept {
                // Slots this rollout added go away again (they are the last
                // ones: batches go in slot order).
                debug_assert_eq!(slot + 1, self.slots.len());
                self.slots.truncate(slot);
            }
            if Some(new.id) != reaped {
                self.kill(fx, new, format!("generation {number} rolled back"));
            }
        }
    }

    /// A draining worker is gone (None: just check): answers the restarts
    /// that were waiting for the last of their old workers.
    pub(super) fn worker_gone(&mut self, fx: &mut dyn Effects, id: Option<super::WorkerId>) {
        let now = fx.now();
        let mut i = 0;
        while i < self.drain_waits.len() {
            let wait = &mut self.drain_waits[i];
            wait.remaining.retain(|w| Some(*w) != id);
            if wait.remaining.is_empty() {
                let mut wait = self.drain_waits.swap_remove(i);
                wait.report.drained_ms = Some(ms_u64(now.duration_since(wait.started)));
                fx.answer(wait.reply, Response::Restarted(wait.report));
            } else {
                i += 1;
            }
        }
    }

    /// Starts the restart that requests queued during a rollout asked for.
    fn start_queued(&mut self, fx: &mut dyn Effects, queued: Queue) {
        if queued.is_empty() {
            return;
        }
        match &self.phase {
            Phase::Steady => self.start_rollout(fx, queued.waiters),
            _ => {
                for w in queued.waiters {
                    fx.answer(w.reply, shutting_down());
                }
            }
        }
    }
}

/// "0-3, 7".
pub(super) fn slot_list(slots: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < slots.len() {
        let mut j = i;
        while j + 1 < slots.len() && slots[j + 1] == slots[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            slots[i].to_string()
        } else {
            format!("{}-{}", slots[i], slots[j])
        });
        i = j + 1;
    }
    out.join(", ")
}
