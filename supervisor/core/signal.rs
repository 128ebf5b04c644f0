//! `handoff signal` and `forward_signals`: which workers a signal sent on
//! a user's behalf is for.
//!
//! By default, the ready workers of the slots: the ones serving now. Not a
//! draining worker (it is on its way out, and may be a version that does
//! not know the signal), nor a restart's new worker still starting, nor a
//! respawned one still starting: a process that has not installed its
//! handler yet meets the signal's default action, which for SIGUSR1 is to
//! die; a worker that starts opens its logs anew anyway. With a generation
//! named, that generation's ready and draining workers, wherever they are.
//!
//! The signal goes to the worker's pid: a server with workers of its own
//! (gunicorn's arbiter, nginx's master) passes it on itself, as it does
//! when started by hand. `group` sends it to the worker's process group
//! instead, for a server that does not (a shell script's children).

use nix::sys::signal::Signal;

use super::worker::{Worker, WorkerState};
use super::{error, shutting_down, Core, Effects};
use crate::protocol::{ErrorKind, Response, SignalFailure, SignalledWorker};

/// What to signal, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalAsk {
    pub signal: Signal,
    /// None: the serving workers.
    pub generation: Option<u64>,
    /// To each worker's process group rather than its pid.
    pub group: bool,
}

/// Whether a user may have handoff send `signal`, and if not, why not.
pub fn sendable(signal: Signal) -> Result<(), String> {
    match signal {
        // A stopped worker keeps its share of the listening socket and
        // accepts nothing: connections queue for it until someone sends
        // SIGCONT, and handoff never does. (SIGKILL is allowed: it is what
        // `kill -9` of a stuck worker does, and the slot is respawned.)
        Signal::SIGSTOP => Err(format!(
            "{signal} is not sent to workers: a stopped worker holds its connections without serving them; \
             to stop the server use `handoff stop`"
        )),
        _ => Ok(()),
    }
}

impl Core {
    /// Sends a signal to the workers `ask` names, and answers with those
    /// it reached. Changes nothing else: a worker that dies of it is
    /// respawned like any other.
    pub fn signal_workers(&mut self, fx: &mut dyn Effects, ask: SignalAsk) -> Response {
        if let Err(message) = sendable(ask.signal) {
            return error(ErrorKind::BadRequest, message);
        }
        let targets: Vec<&Worker> = match ask.generation {
            None => {
                if self.is_stopping() {
                    return shutting_down();
                }
                let serving: Vec<&Worker> = self
                    .slots
                    .iter()
                    .filter_map(|s| s.active())
                    .filter(|w| w.is_ready())
                    .collect();
                if serving.is_empty() {
                    return error(ErrorKind::NotServing, self.not_serving(ask.signal));
                }
                serving
            }
            Some(number) => {
                let of_it: Vec<&Worker> = self
                    .workers()
                    .filter(|w| w.generation.number == number)
                    .collect();
                let takers: Vec<&Worker> = of_it
                    .iter()
                    .copied()
                    .filter(|w| {
                        matches!(
                            w.state,
                            WorkerState::Ready { .. } | WorkerState::Draining { .. }
                        )
                    })
                    .collect();
                if takers.is_empty() {
                    return error(
                        ErrorKind::NoWorkers,
                        self.no_workers(ask.signal, number, of_it.len()),
                    );
                }
                takers
            }
        };
        let mut workers = Vec::new();
        let mut failed = Vec::new();
        for worker in targets {
            match fx.send(worker, ask.signal, ask.group) {
                Ok(()) => workers.push(SignalledWorker {
                    pid: worker.pid,
                    slot: worker.slot,
                    generation: worker.generation.number,
                    state: worker.state.name().to_string(),
                }),
                Err(e) => {
                    tracing::warn!("{worker}: cannot send {}: {e}", ask.signal);
                    failed.push(SignalFailure {
                        pid: worker.pid,
                        error: e,
                    });
                }
            }
        }
        let pids: Vec<String> = workers.iter().map(|w| w.pid.to_string()).collect();
        tracing::info!(
            "{} sent to {}{} worker(s): pid {}",
            ask.signal,
            if ask.group {
                "the process groups of "
            } else {
                ""
            },
            workers.len(),
            pids.join(", ")
        );
        Response::Signalled {
            signal: ask.signal.as_str().to_string(),
            group: ask.group,
            workers,
            failed,
        }
    }

    fn not_serving(&self, signal: Signal) -> String {
        let starting = self
            .slots
            .iter()
            .filter_map(|s| s.active())
            .filter(|w| w.state == WorkerState::Starting)
            .count();
        format!(
            "no worker is ready to take {signal} yet ({starting} starting, {} waiting to be respawned): \
             a starting worker may not handle it yet and would die of it; try again once `handoff status` shows one ready",
            self.slots.iter().filter(|s| s.respawn().is_some()).count()
        )
    }

    fn no_workers(&self, signal: Signal, number: u64, starting_or_killed: usize) -> String {
        if starting_or_killed > 0 {
            return format!(
                "generation {number} has no worker that can take {signal}: its {starting_or_killed} worker(s) are starting \
                 (and may not handle it yet) or being killed"
            );
        }
        let mut running: Vec<u64> = self.workers().map(|w| w.generation.number).collect();
        running.sort_unstable();
        running.dedup();
        let running = match running.as_slice() {
            [] => "none".to_string(),
            some => some
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        format!("generation {number} has no workers (generations with workers: {running})")
    }
}
