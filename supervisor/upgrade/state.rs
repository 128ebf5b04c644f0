//! The state an upgrading supervisor hands to the new binary: versioned
//! data, made of each part's own snapshot (the core's, the sockets', the
//! executor's notify sockets, the leftover process groups).

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::core::{CoreSnapshot, WorkerId};
use crate::engine::{ControlInfo, Source, Supervisor};
use crate::groups::GroupSnapshot;
use crate::sockets::{BoundSocket, SocketSnapshot};

/// Bumped when the state changes incompatibly; a binary refuses a state of
/// another format in its check, before the old one execs it. Format 1 was
/// one flat struct; 2 is made of the parts' snapshots.
pub const FORMAT: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub from_version: String,
    /// The binary the new supervisor's own upgrades will execute.
    pub binary: PathBuf,
    pub upgrades: u32,
    pub uptime: Duration,
    pub source: Source,
    pub control: ControlInfo,
    /// The asking client's connection, answered by the new supervisor.
    pub reply_fd: Option<RawFd>,
    pub runtime_dir: PathBuf,
    pub manager_ready: bool,
    /// Every socket some generation has, by the index the core uses.
    pub sockets: Vec<SocketSnapshot>,
    pub core: CoreSnapshot,
    /// Each worker's notify socket.
    pub notify: Vec<NotifySnapshot>,
    /// Process groups whose worker is gone but not the rest.
    pub leftovers: Vec<GroupSnapshot>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifySnapshot {
    pub worker: WorkerId,
    pub fd: RawFd,
    pub path: PathBuf,
}

/// Why the state cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot understand {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state format {0} is not this binary's ({FORMAT}): upgrade through a version that knows both")]
    Format(u32),
}

impl State {
    /// The supervisor's state now; `reply_fd` is the asking client's
    /// connection.
    pub fn of(sup: &Supervisor, reply_fd: Option<RawFd>) -> State {
        let now = Instant::now();
        let mut sockets: Vec<Arc<BoundSocket>> = Vec::new();
        let mut index = |s: &Arc<BoundSocket>| match sockets.iter().position(|k| Arc::ptr_eq(k, s))
        {
            Some(i) => i,
            None => {
                sockets.push(s.clone());
                sockets.len() - 1
            }
        };
        let core = sup.core.snapshot(now, &mut index);
        State {
            format: FORMAT,
            from_version: env!("CARGO_PKG_VERSION").to_string(),
            binary: sup.binary.clone(),
            upgrades: sup.upgrades,
            uptime: sup.started.elapsed(),
            source: sup.source.clone(),
            control: sup.control.clone(),
            reply_fd,
            runtime_dir: sup.fx.runtime_dir().to_path_buf(),
            manager_ready: sup.manager.is_ready(),
            sockets: sockets.iter().map(|s| s.snapshot()).collect(),
            core,
            notify: sup
                .fx
                .notify_sockets()
                .map(|(worker, n)| NotifySnapshot {
                    worker,
                    fd: std::os::fd::AsRawFd::as_raw_fd(n),
                    path: n.path().to_path_buf(),
                })
                .collect(),
            leftovers: sup.fx.leftovers().snapshot(now),
        }
    }

    /// Every fd the new supervisor needs.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.sockets.iter().map(|k| k.fd).collect();
        fds.push(self.control.socket.fd);
        fds.extend(self.reply_fd);
        fds.extend(self.notify.iter().map(|n| n.fd));
        fds
    }

    /// Writes the state for the new binary. It holds the config's `env`:
    /// the file is created anew, mode 0600, never through a symlink planted
    /// there.
    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        let json = serde_json::to_vec(self)
            .expect("the state serializes: it has no map with non-string keys");
        crate::runtime_dir::create_private_file(path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, &json))
            .map_err(|source| StateError::Write {
                path: path.to_path_buf(),
                source,
            })
    }

    pub fn read(path: &Path) -> Result<State, StateError> {
        let mut text = Vec::new();
        crate::runtime_dir::open_private_file(path)
            .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut text))
            .map_err(|source| StateError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        // The format first: a state of another format may not parse at all.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let parse = |source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        };
        let format: Format = serde_json::from_slice(&text).map_err(parse)?;
        if format.format != FORMAT {
            return Err(StateError::Format(format.format));
        }
        serde_json::from_slice(&text).map_err(parse)
    }
}
