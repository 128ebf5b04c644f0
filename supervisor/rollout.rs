//! Restarts: start the next generation on the same sockets, wait until it
//! is ready, then drain the old one (DESIGN.md, "Restart, step by step").
//!
//! A rollout replaces the slots in batches: all of them at once
//! (`strategy = "all-at-once"`), or `batch` at a time (`"rolling"`). When
//! every worker of a batch is ready, the batch is committed: each slot's old
//! worker gets its stop signal and the new one takes its place, and the next
//! batch starts. If a new worker exits or misses `ready_timeout` first, the
//! batch is killed, the rollout stops there, the slots not yet replaced keep
//! their old workers, and whoever asked is told why and how far it got.
//!
//! Restart requests that arrive while a rollout runs are coalesced: they
//! are all answered by one more rollout that starts after the current one
//! ends, so a request is never lost and never answered by a generation that
//! started before it was made.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Strategy;
use crate::protocol::{ErrorKind, Response, RestartReport};
use crate::supervisor::{error, ms_u64, DrainWait, Event, RestartWaiter, Slot, Supervisor};
use crate::worker::{Generation, WorkerId, WorkerState};

pub struct Rollout {
    pub generation: Arc<Generation>,
    started: Instant,
    /// The slots whose new workers are starting now, and when they started.
    batch: Vec<usize>,
    batch_started: Instant,
    /// The slots still to replace, after this batch.
    todo: VecDeque<usize>,
    /// How many slots were replaced so far.
    replaced: usize,
    /// The slot count before the rollout (a reload may add slots).
    original_slots: usize,
    /// Of the time so far, how much the children themselves took to become
    /// ready (per batch, the slowest one's own start-to-ready time).
    child_time: Duration,
    /// The old workers this rollout told to drain.
    drained: Vec<WorkerId>,
    /// The batch is ready and waits out `min_ready_time` before it is
    /// committed: the token of that timer.
    settling: Option<u64>,
    /// When the batch began to settle.
    settled_since: Option<Instant>,
    waiters: Vec<RestartWaiter>,
}

impl Supervisor {
    /// A restart request, from the control socket (`waiter`) or SIGHUP.
    pub fn request_restart(&mut self, waiter: Option<RestartWaiter>) {
        if self.is_shutting_down() {
            if let Some(w) = waiter {
                let _ = w.reply.send(error(
                    ErrorKind::ShuttingDown,
                    "the supervisor is shutting down",
                ));
            }
            return;
        }
        if let Some(rollout) = &self.rollout {
            tracing::info!(
                "restart requested while generation {} is starting: one more restart will follow it",
                rollout.generation.number
            );
            match waiter {
                Some(w) => self.queued.push(w),
                None => self.queued_signal = true,
            }
            return;
        }
        self.start_rollout(waiter.into_iter().collect());
    }

    fn start_rollout(&mut self, waiters: Vec<RestartWaiter>) {
        self.check_sockets();
        self.last_generation += 1;
        let generation = Arc::new(Generation {
            number: self.last_generation,
            spec: self.next_spec.clone(),
            sockets: self.next_sockets.clone(),
        });
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
        // A reload may have raised the worker count: new slots start empty.
        let original_slots = self.slots.len();
        while self.slots.len() < workers {
            self.slots.push(Slot::default());
        }
        let now = Instant::now();
        self.rollout = Some(Rollout {
            generation,
            started: now,
            batch: Vec::new(),
            batch_started: now,
            todo: (0..workers).collect(),
            replaced: 0,
            original_slots,
            child_time: Duration::ZERO,
            drained: Vec::new(),
            settling: None,
            settled_since: None,
            waiters,
        });
        self.start_next_batch();
    }

    fn start_next_batch(&mut self) {
        let rollout = self.rollout.as_mut().expect("a rollout is in progress");
        let size = match rollout.generation.spec.strategy {
            Strategy::AllAtOnce => rollout.todo.len(),
            Strategy::Rolling { batch } => batch.min(rollout.todo.len()),
        };
        rollout.batch = rollout.todo.drain(..size).collect();
        rollout.batch_started = Instant::now();
        let (generation, batch) = (rollout.generation.clone(), rollout.batch.clone());
        for slot in batch {
            match self.launch(generation.clone(), slot) {
                Ok(worker) => self.slots[slot].incoming = Some(worker),
                Err(e) => {
                    let reason = format!(
                        "cannot start generation {} worker {slot}: {e}",
                        generation.number
                    );
                    return self.fail_rollout(reason, ErrorKind::RestartFailed);
                }
            }
        }
    }

    /// Called when a new worker became ready: once all of the batch is,
    /// the batch waits out `min_ready_time` (if it replaces old workers,
    /// which keep serving meanwhile), then is committed.
    pub(crate) fn advance_rollout(&mut self) {
        let Some(rollout) = &self.rollout else { return };
        if rollout.settling.is_some() {
            return;
        }
        for &s in &rollout.batch {
            if !matches!(
                self.slots[s].incoming.as_ref().map(|w| &w.state),
                Some(WorkerState::Ready { .. })
            ) {
                return;
            }
        }
        let hold = rollout.generation.spec.min_ready_time;
        let replaces = rollout
            .batch
            .iter()
            .any(|&s| self.slots[s].active.is_some());
        if hold.is_zero() || !replaces {
            return self.commit_batch();
        }
        let token = self.next_token;
        self.next_token += 1;
        let rollout = self.rollout.as_mut().expect("checked above");
        rollout.settling = Some(token);
        rollout.settled_since = Some(Instant::now());
        let generation = rollout.generation.number;
        let tx = self.sink.0.clone();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let _ = tx.send(Event::Settled { generation, token });
        });
    }

    /// `min_ready_time` has passed since the batch was ready, and none of
    /// it died meanwhile (that would have failed the rollout).
    pub(crate) fn on_settled(&mut self, generation: u64, token: u64) {
        let current = self
            .rollout
            .as_ref()
            .is_some_and(|r| r.generation.number == generation && r.settling == Some(token));
        if current {
            self.commit_batch();
        }
    }

    /// Every new worker of the batch takes its slot; the old ones drain.
    fn commit_batch(&mut self) {
        let rollout = self.rollout.as_mut().expect("a rollout is in progress");
        rollout.settling = None;
        let mut slowest = Duration::ZERO;
        for &s in &rollout.batch {
            if let Some(WorkerState::Ready { ready_in }) =
                self.slots[s].incoming.as_ref().map(|w| &w.state)
            {
                slowest = slowest.max(*ready_in);
            }
        }
        let batch = std::mem::take(&mut rollout.batch);
        rollout.replaced += batch.len();
        // The children's own time: their start-up, and the min_ready_time
        // they had to stay up for (the supervisor only waited).
        let held = rollout
            .settled_since
            .take()
            .map_or(Duration::ZERO, |t| t.elapsed());
        rollout.child_time += slowest + held;
        let took = rollout.batch_started.elapsed();
        let number = rollout.generation.number;
        let done = rollout.todo.is_empty();
        let mut old = Vec::new();
        for &slot in &batch {
            let s = &mut self.slots[slot];
            let new = s.incoming.take().expect("a ready batch has its workers");
            s.clear_respawn();
            s.restarts = 0;
            if let Some(previous) = s.active.replace(new) {
                old.push(format!(
                    "generation {} (pid {})",
                    previous.generation.number, previous.pid
                ));
                if let Some(r) = self.rollout.as_mut() {
                    r.drained.push(previous.id);
                }
                self.drain(previous);
            }
        }
        tracing::info!(
            "generation {number}{} ready in {} ms; draining {}",
            if done && batch.len() == self.slots.len() {
                String::new()
            } else {
                format!(" workers {}", slot_list(&batch))
            },
            took.as_millis(),
            if old.is_empty() {
                "nothing".to_string()
            } else {
                old.join(", ")
            }
        );
        if done {
            self.finish_rollout();
        } else {
            self.start_next_batch();
        }
    }

    fn finish_rollout(&mut self) {
        self.check_sockets();
        let rollout = self.rollout.take().expect("a rollout is in progress");
        self.last_failure = None;
        let workers = rollout.generation.spec.workers;
        // A reload may have lowered the worker count: drain the extra slots.
        let mut drained = rollout.drained;
        while self.slots.len() > workers {
            let mut slot = self.slots.pop().expect("more slots than workers");
            let extra: Vec<_> = slot.take_workers().collect();
            for worker in extra {
                drained.push(worker.id);
                self.drain(worker);
            }
        }
        self.serving = rollout.generation.clone();
        self.serving_ready = true;
        let ready = rollout.started.elapsed();
        let ready_ms = ms_u64(ready);
        let report = RestartReport {
            generation: rollout.generation.number,
            ready_ms,
            total_ms: ready_ms,
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
                let _ = w.reply.send(Response::Restarted(report.clone()));
            }
        }
        self.worker_gone(None);
        self.start_queued();
    }

    /// Kills the batch's new workers, keeps the old ones, and answers the
    /// waiters with `reason`.
    pub(crate) fn fail_rollout(&mut self, reason: String, kind: ErrorKind) {
        let rollout = self.rollout.take().expect("a rollout is in progress");
        for &slot in &rollout.batch {
            if let Some(mut worker) = self.slots[slot].incoming.take() {
                worker.kill(format!(
                    "generation {} rolled back",
                    rollout.generation.number
                ));
                self.draining.push(worker);
            }
        }
        // Slots this rollout added that never got a worker go away again.
        while self.slots.len() > rollout.original_slots
            && self
                .slots
                .last()
                .is_some_and(|s| s.active.is_none() && s.respawn.is_none())
        {
            self.slots.pop();
        }
        self.last_failure = Some(format!(
            "generation {} failed: {reason}",
            rollout.generation.number
        ));
        let message = if kind == ErrorKind::ShuttingDown {
            reason
        } else if rollout.replaced > 0 {
            format!(
                "{reason}; {} of {} workers had been replaced by generation {}, the other {} keep their old workers",
                rollout.replaced,
                rollout.generation.spec.workers,
                rollout.generation.number,
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
        tracing::error!(
            "restart to generation {} failed: {message}",
            rollout.generation.number
        );
        for w in rollout.waiters {
            let _ = w.reply.send(error(kind, message.clone()));
        }
        self.start_queued();
    }

    /// A draining worker is gone (None: just check): answers the restarts
    /// that were waiting for the last of their old workers.
    pub(crate) fn worker_gone(&mut self, id: Option<WorkerId>) {
        let mut i = 0;
        while i < self.drain_waits.len() {
            let wait = &mut self.drain_waits[i];
            wait.remaining.retain(|w| Some(*w) != id);
            if wait.remaining.is_empty() {
                let mut wait = self.drain_waits.swap_remove(i);
                wait.report.drained_ms = Some(ms_u64(wait.started.elapsed()));
                let _ = wait.reply.send(Response::Restarted(wait.report));
            } else {
                i += 1;
            }
        }
    }

    fn start_queued(&mut self) {
        if self.is_shutting_down() || (self.queued.is_empty() && !self.queued_signal) {
            return;
        }
        self.queued_signal = false;
        let waiters = std::mem::take(&mut self.queued);
        self.start_rollout(waiters);
    }
}

fn us_u64(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// "0-3, 7".
fn slot_list(slots: &[usize]) -> String {
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
