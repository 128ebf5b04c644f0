//! The new binary's side of the check: `handoff __resume --check STATE`,
//! run by the old supervisor with the fds the state names. It reads the
//! state, checks that it holds together and that every fd is open and is
//! the kind of socket the state says, and exits: it starts nothing, takes
//! no fd over and removes no file, so the running supervisor is untouched
//! whatever it finds.

use std::os::fd::RawFd;
use std::path::Path;

use super::fds::{check_fd, Expect};
use super::State;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    State(#[from] super::state::StateError),
    #[error(transparent)]
    Core(#[from] crate::core::snapshot::RestoreError),
    #[error("socket {name}: {source}")]
    Socket {
        name: String,
        #[source]
        source: super::fds::FdError,
    },
    #[error("{what}: {source}")]
    Fd {
        what: &'static str,
        #[source]
        source: super::fds::FdError,
    },
    #[error("worker {0} has no notify socket in the state")]
    NoNotify(u64),
    #[error("the state has a notify socket for worker {0}, which it does not list")]
    StrayNotify(u64),
    #[error("fd {0} is named twice in the state")]
    SharedFd(RawFd),
}

/// Checks the state at `path` and the fds it names; on success, a line
/// saying what would be taken over.
pub fn check(path: &Path) -> Result<String, CheckError> {
    let state = State::read(path)?;
    state.core.validate(state.sockets.len())?;
    let mut fds = state.fds();
    fds.sort_unstable();
    if let Some(w) = fds.windows(2).find(|w| w[0] == w[1]) {
        return Err(CheckError::SharedFd(w[0]));
    }
    for socket in &state.sockets {
        check_fd(socket.fd, &Expect::listener_for(&socket.spec.listen)).map_err(|source| {
            CheckError::Socket {
                name: socket.spec.name.clone(),
                source,
            }
        })?;
    }
    check_fd(state.control.socket.fd, &Expect::UnixListener).map_err(|source| CheckError::Fd {
        what: "the control socket",
        source,
    })?;
    if let Some(fd) = state.reply_fd {
        check_fd(fd, &Expect::UnixStream).map_err(|source| CheckError::Fd {
            what: "the asking client's connection",
            source,
        })?;
    }
    let workers: Vec<u64> = state
        .core
        .slots
        .iter()
        .filter_map(|s| s.active.as_ref())
        .chain(&state.core.draining)
        .map(|w| w.id)
        .collect();
    for n in &state.notify {
        if !workers.contains(&n.worker) {
            return Err(CheckError::StrayNotify(n.worker));
        }
        check_fd(n.fd, &Expect::UnixDatagram).map_err(|source| CheckError::Fd {
            what: "a worker's notify socket",
            source,
        })?;
    }
    if let Some(id) = workers
        .iter()
        .find(|id| !state.notify.iter().any(|n| n.worker == **id))
    {
        return Err(CheckError::NoNotify(*id));
    }
    Ok(format!(
        "handoff {} can take over from {} ({} sockets, {} generations, {} workers)",
        env!("CARGO_PKG_VERSION"),
        state.from_version,
        state.sockets.len(),
        state.core.generations.len(),
        workers.len()
    ))
}
