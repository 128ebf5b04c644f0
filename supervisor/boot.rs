//! Starting a supervisor, fresh (`handoff run`) or as the new binary of an
//! upgrade (`handoff __resume`): signals first, then the control socket,
//! the sockets and the runtime directory; then the supervisor is built
//! (`Supervisor::assemble`, the same way both times) and the event loop
//! (`boot/event_loop.rs`) runs until a graceful stop. Nothing depends on
//! this module but `main`.

mod event_loop;

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, Overrides};
use crate::control::{ControlBindError, ControlServer};
use crate::core::{error, CoreSnapshot, LaunchError};
use crate::engine::{log_socket, ControlInfo, Inbox, Parts, Source, Supervisor};
use crate::protocol::{self, ErrorKind, Response};
use crate::reaper::Reaper;
use crate::runtime_dir::RuntimeDir;
use crate::signals::Signals;
use crate::sockets::{BindError, BoundSocket};
use crate::systemd::{AdoptError, Inherited, ServiceManager};
use crate::upgrade::{self, State};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Bind(#[source] BindError),
    #[error("{0}")]
    Control(#[source] ControlBindError),
    #[error("{0}")]
    RuntimeDir(#[from] crate::runtime_dir::CreateError),
    #[error("cannot start the server: {0}")]
    Start(#[source] LaunchError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    #[error("{0}")]
    Adopt(#[source] AdoptError),
    #[error("cannot watch the files: {0}")]
    Watch(#[source] std::io::Error),
    #[error("cannot take over after an upgrade: {0}")]
    Resume(String),
    /// Not a failure to start: the server kept crashing, and handoff
    /// stopped as `respawn_limit` asks.
    #[error("{0}")]
    RespawnLimit(String),
}

/// How a graceful stop ended: asked for, or handoff gave up.
fn stopped(gave_up: Option<String>) -> Result<(), RunError> {
    match gave_up {
        Some(message) => Err(RunError::RespawnLimit(message)),
        None => Ok(()),
    }
}

/// Binds the sockets, starts the first generation and supervises until a
/// graceful stop. `overrides` are the flags, kept for reloads.
pub async fn run(
    config: Config,
    overrides: Overrides,
    control_path: &Path,
) -> Result<(), RunError> {
    let signals = Signals::install().map_err(RunError::Signals)?;
    // Before the first worker: its orphans must come to us, and each
    // SIGCHLD be heard.
    let reaper = Reaper::start().map_err(RunError::Signals)?;
    // Whoever started us may have blocked some of these (a parent that
    // blocked SIGTERM and forgot to unblock it before exec): they would stay
    // pending for ever, and `kill` could not stop us. (Ignored ones, as
    // `nohup` leaves SIGHUP, are already undone: the handlers replaced
    // them.) The handlers are in place, so let them in.
    crate::sys::unblock_signals();
    // The control socket first: if another handoff runs there, say so
    // before touching its ports.
    let control = ControlServer::bind(control_path).map_err(RunError::Control)?;
    tracing::info!("control socket {}", control_path.display());
    let manager = ServiceManager::from_env(config.fdstore);
    let sockets = bind_sockets(&config, &manager)?;
    crate::sys::raise_fd_limit(sockets.len(), config.program.workers);
    let runtime_dir = RuntimeDir::create()?;
    let control_info = ControlInfo {
        path: control_path.to_path_buf(),
        socket: control.snapshot(),
    };
    let inbox = Inbox::open(control);
    let parts = Parts {
        core: CoreSnapshot::first(config.program, sockets.len()),
        sockets,
        runtime_dir,
        leftovers: Default::default(),
        manager,
        source: Source {
            file: config.file,
            overrides,
            sighup: config.sighup,
            fdstore: config.fdstore,
            forward_signals: config.forward_signals,
            watch: config.watch,
        },
        control: control_info,
        binary: upgrade::own_binary(),
        upgrades: 0,
        started: Instant::now(),
    };
    let mut sup =
        Supervisor::assemble(parts, &inbox).map_err(|e| RunError::Resume(e.to_string()))?;
    // Before the first generation: a change while it starts counts.
    let files = event_loop::watch_files(&sup).map_err(RunError::Watch)?;
    sup.core.start(&mut sup.fx).map_err(RunError::Start)?;
    stopped(event_loop::serve(sup, signals, reaper, inbox, files).await)
}

/// The config's sockets: adopted where a service manager passed them in
/// LISTEN_FDS, bound otherwise.
fn bind_sockets(
    config: &Config,
    manager: &ServiceManager,
) -> Result<Vec<Arc<BoundSocket>>, RunError> {
    // First everything passed in is matched, so that a passed socket the
    // config does not name is reported as such, not as a bind failure.
    let mut inherited = Inherited::from_env().map_err(RunError::Adopt)?;
    let passed = config
        .sockets
        .iter()
        .enumerate()
        .map(|(i, spec)| inherited.take(spec, i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RunError::Adopt)?;
    inherited.finish(manager).map_err(RunError::Adopt)?;
    let mut sockets = Vec::with_capacity(config.sockets.len());
    for (i, (spec, passed)) in config.sockets.iter().zip(passed).enumerate() {
        let socket = match passed {
            Some(fd) => {
                let socket = BoundSocket::adopt(spec, fd).map_err(|source| {
                    RunError::Bind(BindError {
                        name: spec.name.clone(),
                        listen: spec.listen.clone(),
                        what: "cannot adopt the socket passed in LISTEN_FDS",
                        source,
                    })
                })?;
                log_socket(&socket, i, "adopted from the service manager:");
                socket
            }
            None => {
                let socket = BoundSocket::bind(spec).map_err(RunError::Bind)?;
                manager.store(&spec.name, socket.as_fd());
                log_socket(&socket, i, "listening on");
                socket
            }
        };
        sockets.push(Arc::new(socket));
    }
    Ok(sockets)
}

/// `handoff __resume --check STATE`: exit 0 if this binary can take over.
pub fn check(state: &Path) -> Result<String, upgrade::check::CheckError> {
    upgrade::check::check(state)
}

/// `handoff __resume STATE`: the new supervisor takes over and serves.
pub async fn resume(path: &Path) -> Result<(), RunError> {
    let signals = Signals::install().map_err(RunError::Signals)?;
    let reaper = Reaper::start().map_err(RunError::Signals)?;
    // The old supervisor blocked signals across the exec; handlers are in
    // place now, so let any that came meanwhile in.
    crate::sys::unblock_signals();
    let state = State::read(path).map_err(|e| RunError::Resume(e.to_string()))?;
    let _ = std::fs::remove_file(path);
    // The asking client hears how it went, whichever way it goes.
    let mut reply = state
        .reply_fd
        .map(|fd| std::os::unix::net::UnixStream::from(upgrade::take_over::take_fd(fd)));
    let from_version = state.from_version.clone();
    let runtime_dir = state.runtime_dir.clone();
    let control_file = state
        .control
        .socket
        .created_file
        .as_ref()
        .map(|f| f.path.clone());
    let taken = upgrade::take_over::take_over(state)
        .map_err(|e| RunError::Resume(e.to_string()))
        .and_then(|taken| {
            let inbox = Inbox::open(taken.control);
            let sup = Supervisor::assemble(taken.parts, &inbox)
                .map_err(|e| RunError::Resume(e.to_string()))?;
            Ok((sup, inbox, taken.notify))
        });
    let (mut sup, inbox, notify) = match taken {
        Ok(taken) => taken,
        Err(e) => {
            // Nothing can serve now: say so, and leave no files behind. The
            // children get SIGTERM when this process exits (PDEATHSIG).
            let message =
                format!("the new supervisor could not take over ({e}); handoff has stopped");
            tracing::error!("upgrade: {message}");
            if let Some(stream) = &mut reply {
                let _ = std::io::Write::write_all(
                    stream,
                    &protocol::encode(&error(ErrorKind::UpgradeFailed, message)),
                );
            }
            if let Some(file) = control_file {
                let _ = std::fs::remove_file(file);
            }
            let _ = std::fs::remove_dir_all(runtime_dir);
            return Err(e);
        }
    };
    for (id, socket) in notify {
        match sup.core.worker(id) {
            Some(worker) => sup.fx.adopt(worker, socket),
            None => tracing::warn!("upgrade: a notify socket for worker {id}, which is gone"),
        }
    }
    sup.core.resume(&mut sup.fx);
    tracing::info!(
        "upgraded from handoff {from_version} to {}: took over {} sockets and {} workers",
        env!("CARGO_PKG_VERSION"),
        sup.core.held_sockets().len(),
        sup.core.workers().count()
    );
    if let Some(stream) = &mut reply {
        let answer = Response::Upgraded {
            version: env!("CARGO_PKG_VERSION").to_string(),
            from_version,
            pid: std::process::id(),
            upgrades: sup.upgrades,
        };
        let _ = std::io::Write::write_all(stream, &protocol::encode(&answer));
    }
    drop(reply);
    // The workers are the old supervisor's children, waited for here as
    // they were there: not the reaper's.
    crate::reaper::own(sup.core.workers().map(|w| w.pid));
    reap_strays(&sup);
    // Serving goes on without it rather than stop.
    let files = event_loop::watch_files(&sup).unwrap_or_else(|e| {
        tracing::error!("upgrade: cannot watch the files: {e}; files are not watched");
        None
    });
    stopped(event_loop::serve(sup, signals, reaper, inbox, files).await)
}

/// Children of this process in its own process group that are not
/// workers were the old supervisor's own helpers (a readiness probe that
/// ran at the exec): nothing here waits for them, so end and reap them
/// rather than leave zombies. Other children are the servers' orphans
/// (a subreaper inherits them, in their own groups): the reaper takes
/// those when they exit; killing them would cut a drain short.
fn reap_strays(sup: &Supervisor) {
    let workers: Vec<u32> = sup.core.workers().map(|w| w.pid).collect();
    let ours = nix::unistd::getpgrp();
    let in_our_group =
        |pid: u32| nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32))) == Ok(ours);
    for pid in crate::sys::children()
        .into_iter()
        .filter(|&p| !workers.contains(&p) && in_our_group(p))
    {
        // SIGKILL ends it at once, so waiting for it here is brief.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        match crate::sys::reap(pid) {
            Ok(_) => tracing::info!(
                "ended pid {pid}, a helper of the old supervisor (a readiness probe)"
            ),
            Err(e) => tracing::warn!("cannot reap pid {pid}, a helper of the old supervisor: {e}"),
        }
    }
}
