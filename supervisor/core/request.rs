//! Who asked the core for something, and where their answer goes.

use std::os::fd::OwnedFd;

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use crate::protocol::Response;

/// Where a control request's answer goes.
pub type Waiter = oneshot::Sender<Response>;

/// Who asked for a restart (or reload), and whether they want the answer
/// only once the old workers have exited.
#[derive(Debug)]
pub struct RestartWaiter {
    pub reply: Waiter,
    pub drained: bool,
}

/// Who asked for a restart, a reload or a stop.
#[derive(Debug)]
pub enum Asked<W> {
    /// A control client, answered when it is done.
    Client(W),
    /// A signal sent to handoff: nobody to answer.
    Signal(Signal),
    /// A watched file changed (`--watch`): nobody to answer either.
    Change,
}

/// Who asked for an upgrade: the reply channel, and the client's connection
/// that the new supervisor answers on after the exec. SIGUSR2 has neither.
#[derive(Debug)]
pub struct Asker {
    pub reply: Waiter,
    pub stream: Option<OwnedFd>,
}
