//! Changing the configuration of a running supervisor: `scale` (the worker
//! count, now) and `reload` (re-read the file, start a generation with it).

use std::sync::Arc;

use crate::config::{self, ProgramSpec, MAX_WORKERS};
use crate::protocol::{ErrorKind, Response};
use crate::sockets::{BoundSocket, SocketSet, SocketSpec};
use crate::supervisor::{error, log_socket, RestartWaiter, Slot, Supervisor};

impl Supervisor {
    /// Sets the number of workers. New slots run the serving generation;
    /// removed slots (the highest) drain: their workers get the stop signal,
    /// never a SIGKILL mid-request before `drain_timeout`. The next
    /// generation keeps the new count.
    pub fn scale(&mut self, workers: usize) -> Response {
        if self.is_shutting_down() {
            return error(ErrorKind::ShuttingDown, "the supervisor is shutting down");
        }
        if !(1..=MAX_WORKERS).contains(&workers) {
            return error(
                ErrorKind::BadRequest,
                format!("workers must be between 1 and {MAX_WORKERS}, not {workers}"),
            );
        }
        if let Some(r) = &self.rollout {
            return error(
                ErrorKind::Busy,
                format!(
                    "a restart (generation {}) is in progress: scale once it is done",
                    r.generation.number
                ),
            );
        }
        self.check_sockets();
        let before = self.slots.len();
        self.next_spec = Arc::new(ProgramSpec {
            workers,
            ..(*self.next_spec).clone()
        });
        if workers < before {
            for mut slot in self.slots.drain(workers..).collect::<Vec<_>>() {
                for worker in slot.take_workers() {
                    self.drain(worker);
                }
            }
        }
        for slot in before..workers {
            self.slots.push(Slot::default());
            match self.launch(self.serving.clone(), slot) {
                Ok(worker) => self.slots[slot].active = Some(worker),
                Err(e) => {
                    self.slots.pop();
                    let message = format!(
                        "cannot start worker {slot}: {e}; now {} workers",
                        self.slots.len()
                    );
                    tracing::error!("scale: {message}");
                    return error(ErrorKind::RestartFailed, message);
                }
            }
        }
        tracing::info!("scaled from {before} to {workers} worker(s)");
        Response::Scaled { workers }
    }

    /// Re-reads the config file with the flags given at start. An invalid
    /// file, or a socket change that cannot be made, changes nothing. A
    /// valid one becomes what the next generation runs, and that
    /// generation is started (coalesced with one in progress, like restart).
    pub fn reload(&mut self, waiter: Option<RestartWaiter>) {
        let answer = |waiter: Option<RestartWaiter>, response: Response| {
            if let Some(w) = waiter {
                let _ = w.reply.send(response);
            }
        };
        if self.is_shutting_down() {
            return answer(
                waiter,
                error(ErrorKind::ShuttingDown, "the supervisor is shutting down"),
            );
        }
        let Some(file) = self.source.file.clone() else {
            let message =
                "handoff was started without --config: there is no file to reload (use restart)";
            tracing::error!("reload: {message}");
            return answer(waiter, error(ErrorKind::BadRequest, message));
        };
        let config = match config::load_checked(Some(&file), self.source.overrides.clone())
            .map_err(|e| e.to_string())
        {
            Ok(config) => config,
            Err(message) => {
                tracing::error!(
                    "reload: the configuration is invalid, nothing changed:\n{message}"
                );
                return answer(waiter, error(ErrorKind::ConfigInvalid, message));
            }
        };
        let sockets = match self.rebind(&config.sockets) {
            Ok(sockets) => sockets,
            Err(message) => {
                tracing::error!("reload: {message}; nothing changed");
                return answer(waiter, error(ErrorKind::ConfigInvalid, message));
            }
        };
        if config.control.is_some()
            && config.control.as_deref() != Some(self.control_path.as_path())
        {
            tracing::warn!(
                "reload: `control` changed; the control socket moves only when handoff restarts"
            );
        }
        tracing::info!(
            "reload: {} socket(s), {} worker(s): {}",
            sockets.len(),
            config.program.workers,
            config.program.command.join(" ")
        );
        self.next_spec = Arc::new(config.program);
        self.next_sockets = sockets;
        self.source.sighup = config.sighup;
        self.request_restart(waiter);
    }

    /// The sockets for `specs`: those already held (same name, same
    /// address) are kept, so not one queued connection is lost on them;
    /// others are bound now. Sockets no longer listed stay open for the
    /// generations that have them and close with the last of those.
    fn rebind(&self, specs: &[SocketSpec]) -> Result<SocketSet, String> {
        let mut sockets = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let held = self
                .next_sockets
                .iter()
                .find(|s| s.spec.name == spec.name && s.spec.listen == spec.listen);
            match held {
                Some(socket) => {
                    socket.adjust(spec)?;
                    sockets.push(socket.clone());
                }
                None => {
                    let socket = BoundSocket::bind(spec).map_err(|e| e.to_string())?;
                    log_socket(&socket, i, "listening on");
                    sockets.push(Arc::new(socket));
                }
            }
        }

        for old in self.next_sockets.iter() {
            if !sockets.iter().any(|s| Arc::ptr_eq(s, old)) {
                self.manager.unstore(&old.spec.name);
            }
        }
        // After the removals: FDSTOREREMOVE goes by name.
        for (socket, spec) in sockets.iter().zip(specs) {
            if !self.next_sockets.iter().any(|s| Arc::ptr_eq(s, socket)) {
                self.manager
                    .store(&spec.name, std::os::fd::AsFd::as_fd(&**socket));
            }
        }
        crate::sys::raise_fd_limit(sockets.len(), self.next_spec.workers);
        Ok(sockets.into())
    }
}
