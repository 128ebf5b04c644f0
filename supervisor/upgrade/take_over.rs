//! The new binary's side of an upgrade: take back the parts the state
//! describes (the fds handed on across the exec, and the data), ready for
//! the same constructor a boot uses.

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use super::State;
use crate::control::ControlServer;
use crate::core::WorkerId;
use crate::engine::Parts;
use crate::groups::Leftovers;
use crate::notify::NotifySocket;
use crate::runtime_dir::RuntimeDir;
use crate::sockets::BoundSocket;
use crate::systemd::ServiceManager;

/// What the new supervisor is built from.
pub struct TakenOver {
    pub parts: Parts,
    pub control: ControlServer,
    /// Each worker's notify socket, to watch it again.
    pub notify: Vec<(WorkerId, NotifySocket)>,
}

/// Takes ownership of an fd handed on across the exec.
pub fn take_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the old supervisor handed this fd to us across the exec and
    // nothing else in this process has it; the state names each fd once
    // (the check made sure).
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    crate::sys::set_cloexec(fd.as_fd());
    fd
}

pub fn take_over(state: State) -> Result<TakenOver, std::io::Error> {
    let now = Instant::now();
    let control = ControlServer::restore(
        state.control.socket.clone(),
        take_fd(state.control.socket.fd),
    )?;
    let sockets: Vec<Arc<BoundSocket>> = state
        .sockets
        .into_iter()
        .map(|k| {
            let fd = take_fd(k.fd);
            Arc::new(BoundSocket::restore(k, fd))
        })
        .collect();
    let notify = state
        .notify
        .into_iter()
        .map(|n| Ok((n.worker, NotifySocket::from_fd(n.path, take_fd(n.fd))?)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut manager = ServiceManager::from_env(state.source.fdstore);
    manager.set_ready(state.manager_ready);
    let parts = Parts {
        core: state.core,
        sockets,
        runtime_dir: RuntimeDir(state.runtime_dir),
        leftovers: Leftovers::restore(&state.leftovers, now),
        manager,
        source: state.source,
        control: state.control,
        binary: state.binary,
        upgrades: state.upgrades + 1,
        started: now.checked_sub(state.uptime).unwrap_or(now),
    };
    Ok(TakenOver {
        parts,
        control,
        notify,
    })
}
