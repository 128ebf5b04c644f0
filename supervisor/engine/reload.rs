//! `reload`: re-read the config file with the flags given at start, then
//! hand the core what the next generation runs. The file is read (and its
//! host names resolved) on a blocking thread, so a slow resolver never
//! stalls the loop or the watchdog; the sockets are bound back on the loop.

use std::sync::Arc;

use super::{Event, Supervisor};
use crate::config::{self, Config, ConfigErrors};
use crate::core::{error, Asked, Next, RestartWaiter};
use crate::protocol::{ErrorKind, Response};
use crate::sockets::{BoundSocket, ListenAddr, SocketSet, SocketSpec};

impl Supervisor {
    /// Starts reading the file; [`Event::Reloaded`] brings it back.
    pub(super) fn reload(&mut self, asked: Asked<RestartWaiter>) {
        if let Some(refusal) = self.core.admit_reload(&mut self.fx, &asked) {
            return answer(asked, refusal);
        }
        let Some(file) = self.source.file.clone() else {
            let message =
                "handoff was started without --config: there is no file to reload (use restart)";
            tracing::error!("reload: {message}");
            return answer(asked, error(ErrorKind::BadRequest, message));
        };
        let overrides = self.source.overrides.clone();
        let events = self.fx.events();
        self.reading += 1;
        tokio::task::spawn_blocking(move || {
            let config = Box::new(config::load_checked(Some(&file), overrides));
            let _ = events.send(Event::Reloaded { asked, config });
        });
    }

    /// The file has been read: an invalid one, or a socket change that
    /// cannot be made, changes nothing; a valid one becomes what the next
    /// generation runs, and that generation is started.
    pub(super) fn reloaded(
        &mut self,
        asked: Asked<RestartWaiter>,
        config: Result<Config, ConfigErrors>,
    ) {
        self.reading -= 1;
        // Checked again: the phase may have changed while the file was read.
        if let Some(refusal) = self.core.admit_reload(&mut self.fx, &asked) {
            return answer(asked, refusal);
        }
        let config = match config {
            Ok(config) => config,
            Err(errors) => {
                let message = errors.to_string();
                tracing::error!(
                    "reload: the configuration is invalid, nothing changed:\n{message}"
                );
                return answer(asked, error(ErrorKind::ConfigInvalid, message));
            }
        };
        let sockets = match self.rebind(&config.sockets, config.program.workers) {
            Ok(sockets) => sockets,
            Err(e) => {
                tracing::error!("reload: {e}; nothing changed");
                return answer(asked, error(ErrorKind::ConfigInvalid, e.to_string()));
            }
        };
        if config.control.is_some() && config.control.as_deref() != Some(&*self.control.path) {
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
        self.source.sighup = config.sighup;
        // The event loop follows it (`--watch` and the file's [watch]).
        self.source.watch = config.watch.clone();
        if self.source.forward_signals != config.forward_signals {
            tracing::info!(
                "reload: forward_signals is now [{}]",
                config
                    .forward_signals
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.source.forward_signals = config.forward_signals.clone();
        }
        let next = Next {
            spec: Arc::new(config.program),
            sockets,
        };
        self.core.reload(&mut self.fx, next, asked);
    }

    /// The sockets for `specs`: those already held (same name, same
    /// address) are kept, so not one queued connection is lost on them;
    /// others are bound now. Sockets no longer listed stay open for the
    /// generations that have them and close with the last of those.
    ///
    /// Whether every kept socket can take its new settings is checked
    /// before anything is bound or changed, so that a refused reload
    /// changes nothing; the settings are applied once every new socket is
    /// bound, to the kept socket and to every live generation's own socket
    /// on its address (a steered one), so all of them carry them.
    fn rebind(&self, specs: &[SocketSpec], workers: usize) -> Result<SocketSet, RebindError> {
        let held = &self.core.next().sockets;
        let all_held = self.core.held_sockets();
        // Every address some generation listens on, by its bound address.
        let listening: std::collections::HashMap<String, Arc<BoundSocket>> = all_held
            .iter()
            .map(|s| (s.local.clone(), s.clone()))
            .collect();
        let kept: Vec<Option<&Arc<BoundSocket>>> = specs
            .iter()
            .map(|spec| {
                held.iter()
                    .find(|s| s.spec.name == spec.name && s.spec.listen == spec.listen)
            })
            .collect();
        for (spec, socket) in specs.iter().zip(&kept) {
            if let Some(socket) = socket {
                socket.check_adjust(spec)?;
                for sibling in siblings(socket, &all_held) {
                    sibling.check_adjust(spec)?;
                }
            }
        }
        let mut sockets = Vec::with_capacity(specs.len());
        for (i, (spec, kept)) in specs.iter().zip(&kept).enumerate() {
            match kept {
                Some(socket) => sockets.push(Arc::clone(socket)),
                None => {
                    let at = match &spec.listen {
                        ListenAddr::Tcp(a) | ListenAddr::Udp(a) => listening.get(&a.to_string()),
                        _ => None,
                    };
                    if let Some(held) = at.filter(|s| s.is_at(&spec.listen)) {
                        return Err(RebindError::Held {
                            name: spec.name.clone(),
                            listen: spec.listen.to_string(),
                            held: held.spec.name.clone(),
                            held_listen: held.spec.listen.to_string(),
                        });
                    }
                    let socket = BoundSocket::bind(spec)?;
                    super::log_socket(&socket, i, "listening on");
                    sockets.push(Arc::new(socket));
                }
            }
        }
        for (spec, socket) in specs.iter().zip(&kept) {
            if let Some(socket) = socket {
                adjust(socket, spec, &all_held)?;
            }
        }
        // The fd store follows the next generation's sockets once the core
        // has them (`Supervisor::sync_fdstore`).
        crate::sys::raise_fd_limit(sockets.len(), workers);
        Ok(sockets.into())
    }
}

/// The live generations' own sockets beside a steered `socket`, in its
/// SO_REUSEPORT group.
fn siblings<'a>(
    socket: &'a Arc<BoundSocket>,
    all_held: &'a [Arc<BoundSocket>],
) -> impl Iterator<Item = &'a Arc<BoundSocket>> {
    all_held.iter().filter(move |s| {
        !Arc::ptr_eq(s, socket)
            && s.mode.is_steer()
            && s.spec.listen == socket.spec.listen
            && s.local == socket.local
    })
}

/// Applies `spec` to a kept socket and to the live generations' own
/// sockets beside it. A kernel that refuses a value checked already
/// (ENOMEM, a device gone) can leave some of them changed: the error
/// says which.
fn adjust(
    socket: &Arc<BoundSocket>,
    spec: &SocketSpec,
    all_held: &[Arc<BoundSocket>],
) -> Result<(), RebindError> {
    let before = socket.options();
    let kept = socket.adjust(spec)?;
    for sibling in siblings(socket, all_held) {
        sibling.adjust(spec)?;
    }
    let after = socket.options();
    if after != before {
        tracing::info!(
            "reload: socket {}: options now {}",
            spec.name,
            if after.is_empty() {
                "the kernel's defaults".to_string()
            } else {
                after.to_string()
            }
        );
    }
    if !kept.is_empty() {
        tracing::warn!(
            "reload: socket {}: {} no longer in the config, but the socket keeps the value it has: there is \
             no value that means \"unset\" for it; restart handoff for the kernel's default",
            spec.name,
            kept.join(", ")
        );
    }
    Ok(())
}

/// A socket of the new configuration cannot be had.
#[derive(Debug, thiserror::Error)]
enum RebindError {
    #[error(transparent)]
    Adjust(#[from] crate::sockets::AdjustError),
    #[error(transparent)]
    Bind(#[from] crate::sockets::BindError),
    /// A steered socket has SO_REUSEPORT: a new bind of its address would
    /// succeed and join its group, where no generation accepts from it.
    #[error(
        "socket `{name}`: {listen} is where handoff already listens for socket `{held}` (configured as \
         {held_listen}); a second socket cannot be bound there: keep `listen = \"{held_listen}\"` to keep that \
         socket, or give another address (if only an old generation still drains on it, the address is free \
         once that generation is gone)"
    )]
    Held {
        name: String,
        listen: String,
        held: String,
        held_listen: String,
    },
}

fn answer(asked: Asked<RestartWaiter>, response: Response) {
    if let Asked::Client(w) = asked {
        let _ = w.reply.send(response);
    }
}
