//! systemd, both ways: adopting the sockets a socket activator passed to
//! handoff (LISTEN_FDS), and telling the service manager what handoff does
//! (sd_notify: READY=1, STATUS=, RELOADING=1, STOPPING=1, WATCHDOG=1, and
//! the fd store).
//!
//! The notify side is written here rather than with the `sd-notify` crate:
//! that crate cannot reach an abstract-namespace NOTIFY_SOCKET (`@name`),
//! which systemd uses in containers, and handoff must not change its own
//! environment (it builds its children's from it).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{self, ControlMessage, MsgFlags, UnixAddr};

use crate::sockets::{ListenAddr, SocketSpec};

/// The sockets an activator passed to this process, with their names
/// (`unknown` where it gave none, as sd_listen_fds_with_names(3) says).
pub struct Inherited {
    fds: Vec<Option<(OwnedFd, String)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("LISTEN_FDS: {0}")]
    Env(String),
    #[error("socket `{name}`: the activator passed fd {fd}, which {problem}")]
    Mismatch {
        name: String,
        fd: i32,
        problem: String,
    },
    #[error("the activator passed fd {fd} named `{name}`, which the config has no [[socket]] for")]
    Unexpected { fd: i32, name: String },
}

impl Inherited {
    /// Takes the fds meant for this process: LISTEN_PID must be our pid,
    /// or they were meant for someone else and are left alone.
    pub fn from_env() -> Result<Inherited, AdoptError> {
        // LISTEN_PID first: variables a parent inherited and passed on
        // (a shell started from a socket-activated service, a test runner)
        // are stale, and nothing in them, not even a malformed
        // LISTEN_FDNAMES, may stop the start. sd-notify parses the names
        // whoever the fds are for.
        match std::env::var("LISTEN_PID") {
            Err(_) => return Ok(Inherited { fds: Vec::new() }),
            Ok(pid) if pid.trim().parse::<u32>().ok() != Some(std::process::id()) => {
                tracing::debug!("LISTEN_PID={pid} is not this process: leaving LISTEN_FDS alone");
                return Ok(Inherited { fds: Vec::new() });
            }
            Ok(_) => {}
        }
        if std::env::var("LISTEN_FDS").is_ok_and(|n| n.trim() == "0") {
            return Ok(Inherited { fds: Vec::new() });
        }
        let fds =
            sd_notify::listen_fds_with_names(false).map_err(|e| AdoptError::Env(e.to_string()))?;
        let fds = fds
            .map(|(fd, name)| {
                // SAFETY: the activator passed these fds to this process for
                // it to own, and nothing else in it has taken them.
                Some((unsafe { OwnedFd::from_raw_fd(fd) }, name))
            })
            .collect();
        Ok(Inherited { fds })
    }

    pub fn is_empty(&self) -> bool {
        self.fds.iter().all(Option::is_none)
    }

    /// The fd for `spec`, at config position `index`: the one with its
    /// name, or, when the activator named none of them, the one at the same
    /// position. It must be the kind of socket the config describes.
    pub fn take(&mut self, spec: &SocketSpec, index: usize) -> Result<Option<OwnedFd>, AdoptError> {
        let unnamed = self
            .fds
            .iter()
            .flatten()
            .all(|(_, n)| n == "unknown" || n.is_empty());
        let position = if unnamed {
            (index < self.fds.len()).then_some(index)
        } else {
            self.fds
                .iter()
                .position(|f| f.as_ref().is_some_and(|(_, n)| *n == spec.name))
        };
        let Some((fd, _)) = position.and_then(|i| self.fds[i].take()) else {
            return Ok(None);
        };
        check_fits(&fd, spec).map_err(|problem| AdoptError::Mismatch {
            name: spec.name.clone(),
            fd: fd.as_raw_fd(),
            problem,
        })?;
        Ok(Some(fd))
    }

    /// Fails if the activator passed a socket no config entry took; with
    /// the fd store in use, such a socket is one a previous config stored:
    /// it is dropped from the store instead, with a warning.
    pub fn finish(self, manager: &ServiceManager) -> Result<(), AdoptError> {
        for (fd, name) in self.fds.into_iter().flatten() {
            if !manager.uses_fdstore() {
                return Err(AdoptError::Unexpected {
                    fd: fd.as_raw_fd(),
                    name,
                });
            }
            tracing::warn!("the fd store held a socket named `{name}` that the config no longer has: removing it");
            manager.unstore(&name);
        }
        Ok(())
    }
}

/// Checks an inherited fd against the config: a socket, of the right type,
/// listening, bound where the config says (port 0 in the config takes any
/// port). The error is a message, completed with the socket's name and
/// shown; a misfit is always fatal, so nothing branches on its kind.
fn check_fits(fd: &OwnedFd, spec: &SocketSpec) -> Result<(), String> {
    use socket::sockopt::{AcceptConn, SockType};
    let ty = socket::getsockopt(fd, SockType).map_err(|e| format!("is not a socket ({e})"))?;
    let want = match spec.listen {
        ListenAddr::Udp(_) => socket::SockType::Datagram,
        _ => socket::SockType::Stream,
    };
    if ty != want {
        return Err(format!(
            "is a {ty:?} socket, not the {want:?} socket {} needs",
            spec.listen
        ));
    }
    if want == socket::SockType::Stream && !socket::getsockopt(fd, AcceptConn).unwrap_or(false) {
        return Err("is not listening".into());
    }
    let local = socket2::SockRef::from(fd)
        .local_addr()
        .map_err(|e| format!("has no address ({e})"))?;
    let fits = match &spec.listen {
        ListenAddr::Tcp(want) | ListenAddr::Udp(want) => {
            local.as_socket().is_some_and(|got| same_inet(got, *want))
        }
        ListenAddr::Unix(path) => local.as_pathname() == Some(path.as_path()),
        ListenAddr::UnixAbstract(name) => local.as_abstract_namespace() == Some(name.as_bytes()),
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "is bound to {}, not {}",
            describe(&local),
            spec.listen
        ))
    }
}

fn same_inet(got: SocketAddr, want: SocketAddr) -> bool {
    got.ip() == want.ip() && (want.port() == 0 || got.port() == want.port())
}

fn describe(addr: &socket2::SockAddr) -> String {
    if let Some(a) = addr.as_socket() {
        a.to_string()
    } else if let Some(p) = addr.as_pathname() {
        p.display().to_string()
    } else if let Some(n) = addr.as_abstract_namespace() {
        format!("@{}", String::from_utf8_lossy(n))
    } else {
        "an unnamed address".into()
    }
}

/// The service manager's notification socket (NOTIFY_SOCKET, read once at
/// start). Sending is best effort: a failure is logged, never fatal.
pub struct Notifier {
    socket: std::os::unix::net::UnixDatagram,
    addr: UnixAddr,
}

impl Notifier {
    /// None when handoff was not started by a service manager.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => UnixAddr::new_abstract(name),
            None => UnixAddr::new(bytes),
        };
        let addr = match addr {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(
                    "NOTIFY_SOCKET={}: {e}; not notifying",
                    path.to_string_lossy()
                );
                return None;
            }
        };
        match std::os::unix::net::UnixDatagram::unbound() {
            Ok(socket) => Some(Notifier { socket, addr }),
            Err(e) => {
                tracing::warn!("cannot create a socket to notify the service manager: {e}");
                None
            }
        }
    }

    /// Sends one datagram of `KEY=VALUE` lines, with `fds` attached.
    pub fn send(&self, message: &str, fds: &[BorrowedFd]) {
        if let Err(e) = self.try_send(message, fds) {
            tracing::warn!(
                "cannot notify the service manager ({}): {e}",
                message.replace('\n', " ")
            );
        }
    }

    fn try_send(&self, message: &str, fds: &[BorrowedFd]) -> io::Result<()> {
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
        let iov = [IoSlice::new(message.as_bytes())];
        socket::sendmsg(
            self.socket.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::empty(),
            Some(&self.addr),
        )
        .map(drop)
        .map_err(io::Error::from)
    }
}

/// The watchdog interval systemd asked for (WATCHDOG_USEC, when
/// WATCHDOG_PID is unset or ours), halved as sd_watchdog_enabled(3) advises.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// CLOCK_MONOTONIC in microseconds, for MONOTONIC_USEC=.
pub fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0)
}

/// What handoff tells the service manager, and what it told it last.
pub struct ServiceManager {
    notifier: Option<Notifier>,
    fdstore: bool,
    status: String,
    /// The service manager asked for WATCHDOG=1 pings (WATCHDOG_USEC set,
    /// WATCHDOG_PID unset or ours). Unasked, a ping is at best noise, at
    /// worst it feeds a watchdog set for another process (WATCHDOG_PID)
    /// and hides that process hanging.
    watchdog: bool,
    /// READY=1 was sent (the first generation became ready).
    ready: bool,
    /// RELOADING=1 was sent; READY=1 follows once the restart is over.
    reloading: bool,
    /// STOPPING=1 was sent: once is what systemd expects.
    stopping: bool,
}

impl ServiceManager {
    pub fn from_env(fdstore: bool) -> ServiceManager {
        let notifier = Notifier::from_env();
        if fdstore && notifier.is_none() {
            tracing::warn!(
                "fdstore = true, but there is no NOTIFY_SOCKET: the sockets are not stored"
            );
        }
        ServiceManager {
            notifier,
            fdstore,
            watchdog: watchdog_interval().is_some(),
            status: String::new(),
            ready: false,
            reloading: false,
            stopping: false,
        }
    }

    fn send(&self, message: &str) {
        if let Some(n) = &self.notifier {
            n.send(message, &[]);
        }
    }

    /// Called after every event: STATUS= when it changed, READY=1 once the
    /// first generation serves, and READY=1 again when a reload is over
    /// (`settled`: no restart running or queued), whether it succeeded or
    /// was rolled back; the STATUS= beside it says which.
    pub fn update(&mut self, status: String, serving: bool, settled: bool) {
        if self.notifier.is_none() {
            return;
        }
        let mut message = String::new();
        if (serving && !self.ready) || (self.reloading && settled) {
            self.ready = true;
            self.reloading = false;
            message.push_str("READY=1\n");
        }
        if status != self.status {
            message.push_str(&format!("STATUS={status}\n"));
            self.status = status;
        }
        if !message.is_empty() {
            self.send(&message);
        }
    }

    /// SIGHUP under Type=notify-reload: RELOADING=1 and MONOTONIC_USEC= in
    /// one datagram, as systemd requires.
    pub fn reloading(&mut self) {
        if self.notifier.is_some() {
            self.reloading = true;
            self.send(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}\n",
                monotonic_usec()
            ));
        }
    }

    pub fn uses_fdstore(&self) -> bool {
        self.fdstore && self.notifier.is_some()
    }

    /// Whether READY=1 was sent (carried across an upgrade).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
    }

    pub fn stopping(&mut self) {
        if !std::mem::replace(&mut self.stopping, true) {
            self.send("STOPPING=1\nSTATUS=stopping\n");
        }
    }

    /// Pings the watchdog, if the service manager asked for one.
    pub fn watchdog(&self) {
        if self.watchdog {
            self.send("WATCHDOG=1\n");
        }
    }

    /// With `fdstore = true`, hands sockets to the service manager's fd
    /// store, one message each (FDNAME= names one fd), so that they survive
    /// a crash of handoff itself and come back in LISTEN_FDS.
    pub fn store(&self, name: &str, fd: BorrowedFd) {
        if let (true, Some(n)) = (self.fdstore, &self.notifier) {
            n.send(&format!("FDSTORE=1\nFDNAME={name}\n"), &[fd]);
        }
    }

    /// Takes a socket out of the fd store (a reload removed it).
    pub fn unstore(&self, name: &str) {
        if self.fdstore {
            self.send(&format!("FDSTOREREMOVE=1\nFDNAME={name}\n"));
        }
    }
}
