//! The effects the core asks for, as a trait: the core decides, an
//! implementation carries it out. The real one (`engine/executor.rs`) forks,
//! signals and arms tokio timers; the tests' fake records every call, so a
//! test asserts the exact sequence of effects a decision makes, on a clock
//! it moves by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::generation::Generation;
use super::request::Waiter;
use super::steering::Attach;
use super::worker::{Worker, WorkerId};
use crate::protocol::Response;
use crate::sockets::{BindError, BoundSocket};
use crate::spawn::SpawnError;

/// Timers the core arms; each comes back as an input when due. A timer of
/// a worker is dropped by the executor when that worker's state changes
/// (it becomes ready, is signalled, is gone); the core ignores stale ones
/// anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// `ready_timeout` since the worker started.
    ReadyDeadline(WorkerId),
    /// `drain_timeout` since the worker was told to stop.
    DrainDeadline(WorkerId),
    /// A slot's respawn delay has passed.
    RespawnDue { slot: usize, token: u64 },
    /// A restart's ready batch has stayed up for `min_ready_time`.
    Settled { generation: u64, token: u64 },
    /// Time to look at the old sockets' queues during a hand-over.
    HandOver { generation: u64, token: u64 },
}

impl Timer {
    /// The worker the timer belongs to, if any.
    pub fn worker(&self) -> Option<WorkerId> {
        match self {
            Timer::ReadyDeadline(id) | Timer::DrainDeadline(id) => Some(*id),
            Timer::RespawnDue { .. } | Timer::Settled { .. } | Timer::HandOver { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot create the notify socket {path}: {source}")]
    Notify {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

/// A process group a worker left behind when it exited: the rest of it is
/// sent `signal` (None: it already got the worker's) and SIGKILL at
/// `deadline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub signal: Option<Signal>,
    pub deadline: Instant,
}

/// A started worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    pub pid: u32,
    /// When it was forked: its exec and its start-up are the child's own
    /// time, whatever supervises it.
    pub forked: Instant,
}

pub trait Effects {
    /// The clock every decision uses.
    fn now(&self) -> Instant;

    /// Starts worker `id` of `generation` in `slot` and watches it (its
    /// exit, its notify socket, its readiness probe).
    fn launch(
        &mut self,
        id: WorkerId,
        generation: &Arc<Generation>,
        slot: usize,
    ) -> Result<Launched, LaunchError>;

    /// The worker is ready: its readiness probe and deadline end.
    fn ready(&mut self, worker: &Worker);

    /// Sends `signal` to the worker's process group (its stop signal, or
    /// SIGKILL).
    fn signal(&mut self, worker: &Worker, signal: Signal);

    /// Sends `signal` on a user's behalf (`handoff signal`, a forwarded
    /// signal) to the worker, or with `group` to its process group. Unlike
    /// [`Effects::signal`] it changes nothing about the worker: its
    /// timers stay. Err: why the kernel refused.
    fn send(&mut self, worker: &Worker, signal: Signal, group: bool) -> Result<(), String>;

    /// Arms a timer.
    fn timer(&mut self, after: Duration, timer: Timer);

    /// The worker exited and was reaped: what watched it ends, and the rest
    /// of its process group, if any, is ended as `leftover` says.
    fn gone(&mut self, worker: &Worker, leftover: Leftover);

    /// Answers a control request.
    fn answer(&mut self, reply: Waiter, response: Response);

    /// Makes the sockets that a child shut down listen again (a cheap check,
    /// done when a worker exits and when a restart starts and ends), and
    /// returns those it revived.
    fn check_sockets(&mut self, sockets: &[Arc<BoundSocket>]) -> Vec<Arc<BoundSocket>>;

    /// Binds and listens on a new socket for `socket`'s address, in its
    /// SO_REUSEPORT group, for a new generation.
    fn sibling(&mut self, socket: &Arc<BoundSocket>) -> Result<Arc<BoundSocket>, BindError>;

    /// Takes a steered socket out of its group now; the core drops it next.
    fn release(&mut self, socket: &Arc<BoundSocket>);

    /// Attaches a steering program to a group; false if it could not be
    /// (said in the log).
    fn steer(&mut self, attach: &Attach) -> bool;

    /// How many connections wait in these sockets' accept queues.
    fn queued(&mut self, sockets: &[Arc<BoundSocket>]) -> u32;
}
