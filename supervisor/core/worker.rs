//! A worker as the core sees it: one child process of one generation in
//! one slot, and where it is in its life. Pure data: the process itself and
//! the tasks that watch it belong to the effects (`engine/watch.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::generation::Generation;

/// A worker's identity for the life of the supervisor (and across
/// upgrades); never reused, so a late event about a worker that is gone
/// is simply ignored.
pub type WorkerId = u64;

/// Where a worker is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// Started, not yet ready.
    Starting,
    /// Ready; it took `ready_in` to get there.
    Ready { ready_in: Duration },
    /// Told to stop (its stop signal); SIGKILL at `deadline`.
    Draining { deadline: Instant },
    /// Sent SIGKILL, for `reason`; waiting for it to be reaped.
    Killed { reason: String },
}

impl WorkerState {
    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready { .. } => "ready",
            WorkerState::Draining { .. } => "draining",
            WorkerState::Killed { .. } => "killed",
        }
    }
}

#[derive(Debug)]
pub struct Worker {
    pub id: WorkerId,
    pub pid: u32,
    pub slot: usize,
    pub generation: Arc<Generation>,
    pub state: WorkerState,
    /// When the process started.
    pub started: Instant,
    /// When the state last changed.
    pub since: Instant,
    /// The last STATUS= the child sent.
    pub status: Option<String>,
}

impl Worker {
    pub fn is_ready(&self) -> bool {
        matches!(self.state, WorkerState::Ready { .. })
    }

    pub(crate) fn set_state(&mut self, state: WorkerState, now: Instant) {
        self.state = state;
        self.since = now;
    }
}

impl fmt::Display for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "generation {} worker {} (pid {})",
            self.generation.number, self.slot, self.pid
        )
    }
}
