//! Listening sockets: what the user asks for ([`ListenAddr`], [`SocketSpec`])
//! and the bound kernel sockets the supervisor holds for its whole life
//! ([`BoundSocket`]).
//!
//! The supervisor never accepts on these sockets. It only keeps them open:
//! a shared socket (unix ones, `handover = "shared"`) for as long as a
//! generation has it, so that the kernel keeps completing handshakes into
//! one accept queue while generations come and go (docs/design.md, "One
//! socket, one accept queue"); a steered one as one socket per generation in
//! one SO_REUSEPORT group (docs/design.md, "A socket per generation").
//!
//! `addr.rs` parses and checks what the user asks for, `options.rs` the
//! socket options; `setup.rs` creates and sets up every kernel socket;
//! `unix_file.rs` looks after the files of unix sockets; `steered.rs` is a
//! socket per generation.

mod addr;
mod adjust;
mod options;
mod setup;
mod steered;
mod unix_file;

pub use addr::{check_unix_path, validate_name, AddrError, Handover, ListenAddr, SocketSpec};
pub use adjust::AdjustError;
pub use options::{SocketOptions, FIXED_AT_BIND};
use steered::steerable_adopted;
pub use steered::Mode;
use unix_file::remove_stale_unix_socket;
pub use unix_file::CreatedFile;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use socket2::{Domain, SockAddr, Socket, Type};

#[derive(Debug, thiserror::Error)]
#[error("socket `{name}` ({listen}): {what}: {source}")]
pub struct BindError {
    pub name: String,
    pub listen: ListenAddr,
    pub what: &'static str,
    #[source]
    pub source: io::Error,
}

/// The sockets of one generation, in fd order. A socket is shared by every
/// generation that has it, and closes when the last one is gone.
pub type SocketSet = std::sync::Arc<[std::sync::Arc<BoundSocket>]>;

/// A socket the supervisor has bound and holds open.
#[derive(Debug)]
pub struct BoundSocket {
    pub spec: SocketSpec,
    socket: Socket,
    /// The address actually bound (the real port when 0 was asked for).
    pub local: String,
    /// A unix socket file this supervisor created, removed on shutdown.
    created_file: Option<CreatedFile>,
    /// The backlog in effect (a reload may change it); 0 for UDP.
    backlog: AtomicU32,
    /// How often a child shut the listener down and it was made to listen
    /// again ([`BoundSocket::relisten_if_shut_down`]).
    revived: AtomicU32,
    /// Whether each generation gets a socket of its own for this address.
    pub mode: Mode,
    /// Passed in by an activator (a socket unit, the fd store), which may
    /// hold the same open socket: handoff must never shut it down, only
    /// close its own copy (docs/design.md, "A socket per generation").
    pub from_activator: bool,
    /// The socket options handoff set and that are in effect (a reload
    /// may change them): what `status` shows, and what the next
    /// generation's own socket gets.
    options: Mutex<SocketOptions>,
}

impl BoundSocket {
    /// Binds and (for stream sockets) listens. Every fd is created with
    /// CLOEXEC by socket2, so nothing leaks into children unless passed on
    /// purpose.
    pub fn bind(spec: &SocketSpec) -> Result<BoundSocket, BindError> {
        let fail = |what: &'static str| {
            let spec = spec.clone();
            move |source: io::Error| BindError {
                name: spec.name,
                listen: spec.listen,
                what,
                source,
            }
        };
        let (domain, ty, addr) = match &spec.listen {
            ListenAddr::Tcp(a) => (Domain::for_address(*a), Type::STREAM, SockAddr::from(*a)),
            ListenAddr::Udp(a) => (Domain::for_address(*a), Type::DGRAM, SockAddr::from(*a)),
            ListenAddr::Unix(p) => {
                remove_stale_unix_socket(p).map_err(fail("cannot reuse the socket path"))?;
                (
                    Domain::UNIX,
                    Type::STREAM,
                    SockAddr::unix(p).map_err(fail("bad path"))?,
                )
            }
            ListenAddr::UnixAbstract(n) => {
                let mut raw = vec![0u8];
                raw.extend_from_slice(n.as_bytes());
                let addr = SockAddr::unix(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&raw),
                )
                .map_err(fail("bad abstract name"))?;
                (Domain::UNIX, Type::STREAM, addr)
            }
        };
        let mode = Mode::for_spec(spec);
        let reuse_port = !spec.listen.is_unix() && (spec.reuse_port || mode.is_steer());
        let socket = setup::open(domain, ty, &addr, reuse_port, &spec.options)
            .map_err(|f| fail(f.what)(f.source))?;
        let created_file = match &spec.listen {
            ListenAddr::Unix(p) => {
                Some(CreatedFile::new(p.clone()).map_err(fail("cannot stat the socket file"))?)
            }
            _ => None,
        };
        // From here on a file we created must be removed if a later step fails.
        let mut bound = BoundSocket {
            spec: spec.clone(),
            socket,
            local: String::new(),
            created_file,
            backlog: AtomicU32::new(0),
            revived: AtomicU32::new(0),
            mode,
            from_activator: false,
            options: Mutex::new(spec.options.clone()),
        };
        if let Some(CreatedFile { path, .. }) = &bound.created_file {
            // Before listen(), so no client can connect under the old mode
            // or owner.
            if let Some(mode) = spec.mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(fail("cannot set the socket file's mode"))?;
            }
            setup::set_file_owner(path, &spec.options).map_err(|f| fail(f.what)(f.source))?;
        }
        setup::set_live(&bound.socket, &spec.options).map_err(|f| fail(f.what)(f.source))?;
        if ty == Type::STREAM {
            let backlog = spec.backlog.unwrap_or_else(somaxconn);
            let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
            bound
                .socket
                .listen(backlog)
                .map_err(fail("cannot listen"))?;
            bound
                .backlog
                .store(backlog.unsigned_abs(), Ordering::Relaxed);
        }
        let local = bound
            .socket
            .local_addr()
            .map_err(fail("cannot read the bound address"))?;
        bound.local = describe_local(&local, &spec.listen);
        Ok(bound)
    }

    pub fn snapshot(&self) -> SocketSnapshot {
        SocketSnapshot {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.socket),
            spec: self.spec.clone(),
            local: self.local.clone(),
            created_file: self.created_file.clone(),
            backlog: self.backlog.load(Ordering::Relaxed),
            revived: self.revived(),
            mode: self.mode.clone(),
            from_activator: self.from_activator,
            options: Some(self.options()),
        }
    }

    /// Takes over a socket an upgrading supervisor handed on.
    pub fn restore(snapshot: SocketSnapshot, fd: std::os::fd::OwnedFd) -> BoundSocket {
        // A handoff from before socket options set none.
        let options = snapshot.options.unwrap_or_default();
        BoundSocket {
            spec: snapshot.spec,
            socket: Socket::from(fd),
            local: snapshot.local,
            created_file: snapshot.created_file,
            backlog: AtomicU32::new(snapshot.backlog),
            revived: AtomicU32::new(snapshot.revived),
            mode: snapshot.mode,
            from_activator: snapshot.from_activator,
            options: Mutex::new(options),
        }
    }

    /// Takes over a socket someone else bound (a socket activator), already
    /// checked to fit `spec`. Its file, if it has one, is not ours to remove.
    ///
    /// Whether generations can have sockets of their own depends on how the
    /// activator bound it: only with SO_REUSEPORT (`ReusePort=yes` in a
    /// .socket unit), and only if handoff may join its group (the kernel
    /// asks for the same owner uid).
    ///
    /// Its options are the activator's (a .socket unit's `KeepAlive=`,
    /// `BindIPv6Only=`, ...). handoff sets on top of them only what its own
    /// config asks for and only what can change on a bound socket, and
    /// says so; what is fixed at bind (ipv6_only, free_bind,
    /// bind_to_device) and the file's owner, group and mode stay the
    /// activator's, with a warning if the config asks for them.
    pub fn adopt(spec: &SocketSpec, fd: std::os::fd::OwnedFd) -> io::Result<BoundSocket> {
        let socket = Socket::from(fd);
        let local = socket.local_addr()?;
        let local = describe_local(&local, &spec.listen);
        let mut mode = Mode::for_spec(spec);
        if mode.is_steer() {
            mode = steerable_adopted(&socket, &local, &spec.listen);
        }
        let applied = SocketOptions {
            owner: None,
            group: None,
            ..spec.options.changeable()
        };
        setup::set_live(&socket, &applied)
            .map_err(|f| io::Error::new(f.source.kind(), format!("{}: {}", f.what, f.source)))?;
        if !applied.is_empty() {
            tracing::info!(
                "socket {}: set on the socket from the service manager: {applied}",
                spec.name
            );
        }
        let mut left: Vec<&str> = spec
            .options
            .set()
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| FIXED_AT_BIND.contains(key) || ["owner", "group"].contains(key))
            .collect();
        if spec.mode.is_some() {
            left.push("mode");
        }
        if !left.is_empty() {
            tracing::warn!(
                "socket {}: {} not applied to the socket from the service manager: it was bound by the \
                 service manager, so these are its .socket unit's to set (BindIPv6Only=, FreeBind=, \
                 BindToDevice=, SocketUser=, SocketGroup=, SocketMode=)",
                spec.name,
                left.join(", ")
            );
        }
        Ok(BoundSocket {
            spec: spec.clone(),
            local,
            socket,
            created_file: None,
            // The activator chose it (Backlog= in a .socket unit).
            backlog: AtomicU32::new(0),
            revived: AtomicU32::new(0),
            mode,
            from_activator: true,
            options: Mutex::new(applied),
        })
    }

    /// Whether this socket is bound at `listen`'s address (an IP address
    /// with a port other than 0, of the same protocol).
    pub fn is_at(&self, listen: &ListenAddr) -> bool {
        let same_kind = matches!(
            (listen, &self.spec.listen),
            (ListenAddr::Tcp(_), ListenAddr::Tcp(_)) | (ListenAddr::Udp(_), ListenAddr::Udp(_))
        );
        let (ListenAddr::Tcp(addr) | ListenAddr::Udp(addr)) = listen else {
            return false;
        };
        same_kind && addr.port() != 0 && self.local.parse::<SocketAddr>().ok() == Some(*addr)
    }

    /// The backlog in effect: the configured one or the kernel's maximum.
    /// As a `{fd:NAME}`/`{port:NAME}` template sees it: its bound port.
    pub fn named(&self) -> crate::template::Named<'_> {
        let port = match self.spec.listen {
            ListenAddr::Tcp(_) | ListenAddr::Udp(_) => Some(
                self.socket
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .map_or(0, |a| a.port()),
            ),
            ListenAddr::Unix(_) | ListenAddr::UnixAbstract(_) => None,
        };
        crate::template::Named {
            name: &self.spec.name,
            port,
        }
    }

    pub fn backlog(&self) -> Option<u32> {
        match self.backlog.load(Ordering::Relaxed) {
            0 => None,
            b => Some(b),
        }
    }

    /// Whether it accepts connections (always true for UDP, and for a unix
    /// socket, whose shutdown does not show).
    pub fn is_listening(&self) -> bool {
        !matches!(self.spec.listen, ListenAddr::Tcp(_))
            || self.socket.is_listener().unwrap_or(false)
    }

    /// How often a child shut this listener down and it was revived.
    pub fn revived(&self) -> u32 {
        self.revived.load(Ordering::Relaxed)
    }

    /// A child that calls `shutdown()` on the shared listener (never do
    /// that: docs/design.md, "One socket, one accept queue") takes it out of the LISTEN state for every process
    /// that holds it: new connections are refused from then on, whatever
    /// generation runs. Linux leaves such a TCP socket bound and
    /// unconnected, so `listen()` on the very same socket makes it listen
    /// again: every child keeps its fd, and nothing is rebound. Returns
    /// Ok(false) when the socket listens (or is not a TCP listener),
    /// Ok(true) when it was revived. (A unix listener that was shut down
    /// still reports listening and refuses connections; it cannot be told
    /// apart without a connection a child would then accept.)
    pub fn relisten_if_shut_down(&self) -> io::Result<bool> {
        if !matches!(self.spec.listen, ListenAddr::Tcp(_)) || self.socket.is_listener()? {
            return Ok(false);
        }
        let bound: SocketAddr = self
            .local
            .parse()
            .map_err(|_| io::Error::other(format!("unknown address {}", self.local)))?;
        // A port the kernel chose (port 0 in the config) is released by
        // the shutdown (though getsockname still shows it), and listen()
        // alone would pick another one: bind the one clients know first.
        // A port given explicitly stays bound, and bind says EINVAL.
        match self.socket.bind(&bound.into()) {
            Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
            _ => {}
        }
        let backlog = self.backlog().unwrap_or_else(somaxconn);
        self.socket
            .listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        if self.socket.local_addr()?.as_socket() != Some(bound) {
            return Err(io::Error::other(format!(
                "it listens again, but not on {bound}"
            )));
        }
        self.revived.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// The socket options handoff set and that are in effect.
    pub fn options(&self) -> SocketOptions {
        self.options
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl AsFd for BoundSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Some(file) = &self.created_file {
            file.remove();
        }
        // Only a socket that was fully set up has anything to report.
        if !self.local.is_empty() {
            tracing::info!(
                "socket {} closed ({}{})",
                self.spec.name,
                self.local,
                if self.mode.is_steer() {
                    ", a generation's own"
                } else {
                    ""
                }
            );
        }
    }
}

fn describe_local(local: &SockAddr, asked: &ListenAddr) -> String {
    match local.as_socket() {
        Some(addr) => addr.to_string(),
        None => match asked {
            ListenAddr::Unix(p) => p.display().to_string(),
            ListenAddr::UnixAbstract(n) => format!("@{n}"),
            other => other.to_string(),
        },
    }
}

/// The kernel's cap on listen backlogs. Asking for it (rather than a small
/// fixed number) keeps a slow-starting generation from dropping SYNs.
pub fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

/// A socket as an upgrade hands it to the new binary (its fd travels
/// separately, inherited across the exec).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SocketSnapshot {
    pub fd: i32,
    pub spec: SocketSpec,
    pub local: String,
    pub created_file: Option<CreatedFile>,
    pub backlog: u32,
    #[serde(default)]
    pub revived: u32,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub from_activator: bool,
    /// None: from a handoff without socket options.
    #[serde(default)]
    pub options: Option<SocketOptions>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, listen: ListenAddr, mode: Option<u32>) -> SocketSpec {
        SocketSpec {
            name: name.into(),
            listen,
            backlog: None,
            reuse_port: false,
            mode,
            handover: None,
            options: SocketOptions::default(),
        }
    }

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "tcp://127.0.0.1:8080".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            "tcp://[::1]:0".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("[::1]:0".parse().unwrap())
        );
        assert_eq!(
            "tcp://:80".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(
            "udp://127.0.0.1:53".parse::<ListenAddr>().unwrap(),
            ListenAddr::Udp("127.0.0.1:53".parse().unwrap())
        );
        assert_eq!(
            "unix:///run/a.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/a.sock".into())
        );
        assert_eq!(
            "unix://@hello".parse::<ListenAddr>().unwrap(),
            ListenAddr::UnixAbstract("hello".into())
        );
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "127.0.0.1:80",
            "http://x:1",
            "tcp://127.0.0.1",
            "tcp://1.2.3.4:99999",
            "unix://",
        ] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn port_zero_reports_the_real_port() {
        let spec = spec("t", "tcp://127.0.0.1:0".parse().unwrap(), None);
        let bound = BoundSocket::bind(&spec).unwrap();
        let addr: SocketAddr = bound.local.parse().unwrap();
        assert_ne!(addr.port(), 0);
    }

    #[test]
    fn stale_unix_socket_is_replaced_but_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let spec = spec("u", ListenAddr::Unix(path.clone()), Some(0o600));
        // A stale file: bound, then the listener dropped without unlinking.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let first = BoundSocket::bind(&spec).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = BoundSocket::bind(&spec).unwrap_err();
        assert!(
            err.to_string().contains("another process is listening"),
            "{err}"
        );
        drop(first);
        assert!(!path.exists(), "the file we created is removed on drop");
    }

    #[test]
    fn a_udp_socket_cannot_be_taken_over() {
        let spec = spec("dns", "udp://127.0.0.1:0".parse().unwrap(), None);
        let bound = BoundSocket::bind(&spec).unwrap();
        let addr: SocketAddr = bound.local.parse().unwrap();
        let intruder = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        intruder.set_reuse_address(true).unwrap();
        assert!(
            intruder.bind(&addr.into()).is_err(),
            "another process must not share the port"
        );
        assert_eq!(bound.backlog(), None);
    }

    #[test]
    fn a_file_that_replaced_ours_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let spec = spec("u", ListenAddr::Unix(path.clone()), None);
        let ours = BoundSocket::bind(&spec).unwrap();
        std::fs::remove_file(&path).unwrap();
        let theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(ours);
        assert!(path.exists(), "someone else's socket file stays");
        drop(theirs);
    }
}
