//! What the supervisor is doing: one phase at a time, each with the data
//! only it has.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::generation::Generation;
use super::request::{Asked, Asker, RestartWaiter, Waiter};
use super::worker::WorkerId;

// One Phase per supervisor: boxing the rollout would save no memory worth
// an indirection in every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Default)]
pub enum Phase {
    /// Serving; nothing in progress.
    #[default]
    Steady,
    /// A restart replaces the slots, batch by batch.
    Rolling { rollout: Rollout, queued: Queue },
    /// A new handoff binary is being checked before it takes over.
    Upgrading { asker: Option<Asker> },
    /// Every worker was told to stop; the loop ends once all are gone.
    Stopping { waiters: Vec<Waiter> },
}

/// Restarts asked for while one runs: one more restart answers them all
/// (coalesced), so none is lost and none is answered by a generation that
/// started before it was asked for.
#[derive(Debug, Default)]
pub struct Queue {
    pub waiters: Vec<RestartWaiter>,
    /// A signal or a file change asked too (nobody to answer).
    pub unanswered: bool,
}

impl Queue {
    pub fn push(&mut self, asked: Asked<RestartWaiter>) {
        match asked {
            Asked::Client(w) => self.waiters.push(w),
            Asked::Signal(_) | Asked::Change => self.unanswered = true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty() && !self.unanswered
    }
}

/// A restart in progress.
#[derive(Debug)]
pub struct Rollout {
    pub generation: Arc<Generation>,
    pub started: Instant,
    /// The slots whose new workers are starting now.
    pub batch: Vec<usize>,
    pub batch_started: Instant,
    /// The slots still to replace, after this batch.
    pub todo: VecDeque<usize>,
    /// How many slots were replaced so far.
    pub replaced: usize,
    /// The slot count before the rollout (a reload may add slots).
    pub original_slots: usize,
    /// Of the time so far, how much the children themselves took to become
    /// ready (per batch, the slowest one's own start-to-ready time, plus
    /// the `min_ready_time` each batch but the last had to stay up for).
    pub child_time: Duration,
    /// When the latest batch was all ready (its READY=1s; its
    /// `min_ready_time` comes after).
    pub ready_at: Option<Instant>,
    /// The old workers this rollout told to drain.
    pub drained: Vec<WorkerId>,
    /// The batch is ready and waits out `min_ready_time` before it is
    /// committed.
    pub settling: Option<Settling>,
    /// The batch is ready, new connections go to it, and its commit waits
    /// for the old generation's sockets to be quiet (`core/handover.rs`).
    pub handover: Option<HandOver>,
    pub waiters: Vec<RestartWaiter>,
}

#[derive(Debug, Clone, Copy)]
pub struct Settling {
    /// Names the timer that ends the wait.
    pub token: u64,
    pub since: Instant,
}

/// A batch's wait for the old sockets' queues to empty.
#[derive(Debug)]
pub struct HandOver {
    /// Names the timer of the next check: a stale one is ignored.
    pub token: u64,
    /// When new connections went to the new generation.
    pub since: Instant,
    /// Since when every old socket was seen with an empty queue.
    pub quiet_since: Option<Instant>,
    /// The old generations' steered sockets that no longer get connections.
    pub sockets: Vec<Arc<crate::sockets::BoundSocket>>,
}

/// Why the supervisor stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// `handoff stop`.
    Request,
    /// SIGTERM or SIGINT. A second one while stopping kills what is left.
    Signal(Signal),
    /// Workers crashed past `respawn_limit`.
    RespawnLimit,
}
