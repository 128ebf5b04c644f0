//! Restarts: start the next generation on the same sockets, wait until it
//! is ready, then drain the old one (DESIGN.md, "Restart, step by step").
//!
//! A rollout replaces the slots in batches; today every restart is one batch
//! of all slots ("all at once"). When every worker of a batch is ready, the
//! batch is committed: each slot's old worker gets its stop signal and the
//! new one takes its place. If any new worker exits or misses
//! `ready_timeout` first, the whole batch is killed, the old workers keep
//! serving, and whoever asked is told why.
//!
//! Restart requests that arrive while a rollout runs are coalesced: they
//! are all answered by one more rollout that starts after the current one
//! ends, so a request is never lost and never answered by a generation that
//! started before it was made.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::config::ProgramSpec;
use crate::protocol::{ErrorKind, Response, RestartReport};
use crate::supervisor::{ms_u64, shutting_down, Supervisor, Waiter};
use crate::worker::WorkerState;

pub struct Rollout {
    pub generation: u64,
    spec: Arc<ProgramSpec>,
    started: Instant,
    /// The slots whose new workers are starting now.
    batch: Vec<usize>,
    /// The slots still to replace, after this batch.
    todo: VecDeque<usize>,
    /// The slots already replaced.
    replaced: usize,
    /// When the last batch became ready.
    ready_at: Option<Instant>,
    waiters: Vec<Waiter>,
}

impl Supervisor {
    /// A restart request, from the control socket (`waiter`) or SIGHUP.
    pub fn request_restart(&mut self, waiter: Option<Waiter>) {
        if self.is_shutting_down() {
            if let Some(w) = waiter {
                let _ = w.send(shutting_down());
            }
            return;
        }
        if let Some(rollout) = &self.rollout {
            tracing::info!(
                "restart requested while generation {} is starting: one more restart will follow it",
                rollout.generation
            );
            self.queued.extend(waiter);
            if self.queued.is_empty() {
                // SIGHUP has no waiter; remember it all the same.
                self.queued_signal = true;
            }
            return;
        }
        self.start_rollout(waiter.into_iter().collect());
    }

    fn start_rollout(&mut self, waiters: Vec<Waiter>) {
        self.last_generation += 1;
        let generation = self.last_generation;
        tracing::info!("restart: starting generation {generation}");
        self.rollout = Some(Rollout {
            generation,
            spec: self.spec.clone(),
            started: Instant::now(),
            batch: Vec::new(),
            todo: (0..self.slots.len()).collect(),
            replaced: 0,
            ready_at: None,
            waiters,
        });
        self.start_next_batch();
    }

    fn start_next_batch(&mut self) {
        let rollout = self.rollout.as_mut().expect("a rollout is in progress");
        rollout.batch = rollout.todo.drain(..).collect();
        let (generation, spec, batch) = (
            rollout.generation,
            rollout.spec.clone(),
            rollout.batch.clone(),
        );
        for slot in batch {
            match self.launch(generation, spec.clone(), slot) {
                Ok(worker) => self.slots[slot].incoming = Some(worker),
                Err(e) => {
                    let reason = format!("cannot start generation {generation} worker {slot}: {e}");
                    return self.fail_rollout(reason, ErrorKind::RestartFailed);
                }
            }
        }
    }

    /// Called when a new worker became ready: commits the batch once all of
    /// it is ready.
    pub(crate) fn advance_rollout(&mut self) {
        let Some(rollout) = &self.rollout else { return };
        let all_ready = rollout.batch.iter().all(|&s| {
            self.slots[s]
                .incoming
                .as_ref()
                .is_some_and(|w| matches!(w.state, WorkerState::Ready { .. }))
        });
        if !all_ready {
            return;
        }
        let batch = std::mem::take(&mut self.rollout.as_mut().expect("checked above").batch);
        let mut old = Vec::new();
        for &slot in &batch {
            let s = &mut self.slots[slot];
            let new = s.incoming.take().expect("a ready batch has its workers");
            s.clear_respawn();
            if let Some(mut previous) = s.active.replace(new) {
                previous.drain(&self.sink);
                old.push(format!(
                    "generation {} (pid {})",
                    previous.generation, previous.pid
                ));
                self.draining.push(previous);
            }
        }
        let rollout = self.rollout.as_mut().expect("checked above");
        rollout.replaced += batch.len();
        rollout.ready_at = Some(Instant::now());
        let took = rollout.started.elapsed();
        tracing::info!(
            "generation {} ready in {} ms; draining {}",
            rollout.generation,
            took.as_millis(),
            if old.is_empty() {
                "nothing".to_string()
            } else {
                old.join(", ")
            }
        );
        if rollout.todo.is_empty() {
            self.finish_rollout();
        } else {
            self.start_next_batch();
        }
    }

    fn finish_rollout(&mut self) {
        let rollout = self.rollout.take().expect("a rollout is in progress");
        self.serving = rollout.generation;
        let ready_at = rollout.ready_at.unwrap_or_else(Instant::now);
        let report = RestartReport {
            generation: rollout.generation,
            ready_ms: ms_u64(ready_at.duration_since(rollout.started)),
            total_ms: ms_u64(rollout.started.elapsed()),
        };
        for w in rollout.waiters {
            let _ = w.send(Response::Restarted(report.clone()));
        }
        self.start_queued();
    }

    /// Kills the batch's new workers, keeps the old ones, and answers the
    /// waiters with `reason`.
    pub(crate) fn fail_rollout(&mut self, reason: String, kind: ErrorKind) {
        let rollout = self.rollout.take().expect("a rollout is in progress");
        for &slot in &rollout.batch {
            if let Some(mut worker) = self.slots[slot].incoming.take() {
                worker.kill(format!("generation {} rolled back", rollout.generation));
                self.draining.push(worker);
            }
        }
        let kept = if self.serving == 0 {
            "the previous workers keep running".to_string()
        } else {
            format!("generation {} keeps serving", self.serving)
        };
        let message = if rollout.replaced > 0 {
            format!(
                "{reason}; {} of {} workers had been replaced; the others keep running",
                rollout.replaced,
                self.slots.len()
            )
        } else {
            format!("{reason}; {kept}")
        };
        tracing::error!(
            "restart to generation {} failed: {message}",
            rollout.generation
        );
        for w in rollout.waiters {
            let _ = w.send(Response::Error {
                kind,
                message: message.clone(),
            });
        }
        self.start_queued();
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
