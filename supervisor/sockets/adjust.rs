//! A reload's change to a socket handoff keeps: what can change on a bound
//! socket (the backlog, a unix file's mode and owner, the options the
//! kernel lets change in place), and the refusal of what cannot.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::options::SocketOptions;
use super::setup::{self, Failed};
use super::{somaxconn, BoundSocket, CreatedFile, Mode, SocketSpec};

impl BoundSocket {
    /// Whether a reloaded spec for the same address can be applied to this
    /// socket without a new bind ([`BoundSocket::adjust`]); changes nothing.
    /// `reuse_port`, the handover and the options fixed at bind() cannot
    /// change on a bound socket.
    pub fn check_adjust(&self, spec: &SocketSpec) -> Result<(), AdjustError> {
        let name = &spec.name;
        if spec.reuse_port != self.spec.reuse_port {
            return Err(AdjustError::ReusePort { name: name.clone() });
        }
        let steer = |s: &SocketSpec| Mode::for_spec(s).is_steer();
        if steer(spec) != steer(&self.spec) {
            return Err(AdjustError::Handover {
                name: name.clone(),
                from: if steer(&self.spec) { "steer" } else { "shared" },
            });
        }
        // An activator's socket has the activator's (see `adopt`): the
        // config's were never applied, and cannot be now.
        if !self.from_activator {
            if let Some((option, from, to)) = self.spec.options.fixed_change(&spec.options) {
                return Err(AdjustError::FixedAtBind {
                    name: name.clone(),
                    option,
                    from,
                    to,
                });
            }
        }
        Ok(())
    }

    /// Applies a reloaded spec for the same address to this socket without
    /// a new bind: the backlog (listen() again), a unix socket's mode,
    /// owner and group, and the options that can change in place (on a
    /// socket from an activator, those the config asks for). Returns
    /// the options the new spec dropped that keep their value (see
    /// [`SocketOptions::reloaded`]).
    /// Call [`BoundSocket::check_adjust`] first: this one does not check.
    pub fn adjust(&self, spec: &SocketSpec) -> Result<Vec<&'static str>, AdjustError> {
        let name = &spec.name;
        if self.backlog().is_some() {
            let wanted = spec.backlog.unwrap_or_else(somaxconn);
            if self.backlog() != Some(wanted) {
                let backlog = i32::try_from(wanted).unwrap_or(i32::MAX);
                self.socket
                    .listen(backlog)
                    .map_err(|source| AdjustError::Backlog {
                        name: name.clone(),
                        source,
                    })?;
                self.backlog.store(wanted, Ordering::Relaxed);
            }
        }
        if let (Some(mode), Some(CreatedFile { path, .. })) = (spec.mode, &self.created_file) {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
                |source| AdjustError::Mode {
                    name: name.clone(),
                    path: path.clone(),
                    source,
                },
            )?;
        }
        let asked = if self.from_activator {
            // As `adopt` does: the file is the activator's.
            SocketOptions {
                owner: None,
                group: None,
                ..spec.options.changeable()
            }
        } else {
            spec.options.clone()
        };
        let mut options = self.options.lock().unwrap_or_else(PoisonError::into_inner);
        let reloaded = options.reloaded(&asked);
        let option_failed = |f: Failed| AdjustError::Option {
            name: name.clone(),
            what: f.what,
            source: f.source,
        };
        setup::set_live(&self.socket, &reloaded.apply).map_err(option_failed)?;
        if let Some(CreatedFile { path, .. }) = &self.created_file {
            setup::set_file_owner(path, &reloaded.apply).map_err(option_failed)?;
        }
        *options = SocketOptions {
            ipv6_only: options.ipv6_only,
            free_bind: options.free_bind,
            bind_to_device: options.bind_to_device.clone(),
            ..reloaded.in_effect
        };
        Ok(reloaded.kept)
    }
}

/// Why a reload could not apply a socket's new settings to the socket
/// handoff holds; the reload then changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum AdjustError {
    #[error(
        "socket `{name}`: reuse_port cannot change while handoff holds the socket: that needs a new bind of \
         the same address, which would reset the connections queued on the old one; restart handoff to change it"
    )]
    ReusePort { name: String },
    #[error(
        "socket `{name}`: handover cannot change from \"{from}\" while handoff holds the socket (a steered socket \
         and a shared one are bound differently); restart handoff to change it"
    )]
    Handover { name: String, from: &'static str },
    #[error(
        "socket `{name}`: {option} cannot change (from {from} to {to}) while handoff holds the socket: it takes \
         effect at bind(), and a new bind of the same address would reset the connections queued \
         on the old one; restart handoff to change it"
    )]
    FixedAtBind {
        name: String,
        option: &'static str,
        from: String,
        to: String,
    },
    #[error("socket `{name}`: {what}: {source}")]
    Option {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("socket `{name}`: cannot change the backlog: {source}")]
    Backlog {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("socket `{name}`: cannot change the mode of {}: {source}", path.display())]
    Mode {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
}

// The reload reports its problems as one message (`reconfigure.rs` uses
// `?` into a String): the message is the error's Display, as before.
impl From<AdjustError> for String {
    fn from(e: AdjustError) -> String {
        e.to_string()
    }
}
