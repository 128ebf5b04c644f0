//! A socket per generation (docs/design.md, "A socket per generation"):
//! whether an address gets one ([`Mode`]), the next generation's socket
//! beside the old one ([`BoundSocket::sibling`]), taking an old one out of
//! the group ([`BoundSocket::leave_group`]), and what waits on one
//! ([`BoundSocket::queued`]).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use socket2::{Domain, Socket, Type};

use super::{
    setup, somaxconn, BindError, BoundSocket, Handover, ListenAddr, SocketOptions, SocketSpec,
};

/// How the generations share this socket's address (issue 10,
/// docs/design.md "A socket per generation").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Each generation gets its own socket for the address, all of them in
    /// one SO_REUSEPORT group; a program steers new connections
    /// (`supervisor/steer/`). This socket has SO_REUSEPORT.
    Steer,
    /// One socket for every generation, and why.
    Shared { why: String },
}

impl Default for Mode {
    /// What a socket handed over by a handoff that did not know modes is.
    fn default() -> Self {
        Mode::Shared {
            why: "bound by a handoff version without per-generation sockets; restart handoff to steer".into(),
        }
    }
}

impl Mode {
    /// What the config asks for a socket that handoff binds itself (one
    /// passed in by an activator may still fall back: `steerable_adopted`).
    pub fn for_spec(spec: &SocketSpec) -> Mode {
        let shared = |why: &str| Mode::Shared { why: why.into() };
        match spec.handover {
            Some(Handover::Shared) => shared("handover = \"shared\""),
            _ if spec.listen.is_unix() => {
                shared("unix sockets have no SO_REUSEPORT, so generations cannot have one each")
            }
            // An explicit `handover = "steer"` with reuse_port is refused
            // when the config is read.
            _ if spec.reuse_port => shared(
                "reuse_port = true lets other processes join the port's SO_REUSEPORT group, \
                 which steering cannot allow",
            ),
            _ => Mode::Steer,
        }
    }

    pub fn is_steer(&self) -> bool {
        *self == Mode::Steer
    }
}

impl BoundSocket {
    /// A new socket for the same address in this one's SO_REUSEPORT group,
    /// for a new generation: it joins the group at the end when it listens
    /// (TCP) or binds (UDP), and gets no connection until a steering
    /// program sends it some.
    pub fn sibling(&self) -> Result<BoundSocket, BindError> {
        let fail = |what: &'static str| {
            let spec = self.spec.clone();
            move |source: io::Error| BindError {
                name: spec.name,
                listen: spec.listen,
                what,
                source,
            }
        };
        let addr: SocketAddr = self.local.parse().map_err(|_| {
            fail("cannot bind a socket for the new generation")(io::Error::other(format!(
                "`{}` is not an IP address and port",
                self.local
            )))
        })?;
        let ty = match self.spec.listen {
            ListenAddr::Udp(_) => Type::DGRAM,
            _ => Type::STREAM,
        };
        // The options in effect, and what is fixed at bind as the kernel
        // has it on this socket: the same device and dual-stack setting,
        // or the kernel puts the new socket in a group of its own (an
        // activator's socket has the activator's).
        let fixed = setup::fixed_of(&self.socket, addr.is_ipv6())
            .map_err(fail("cannot read the options fixed at bind"))?;
        let options = SocketOptions {
            ipv6_only: fixed.ipv6_only,
            free_bind: fixed.free_bind,
            bind_to_device: fixed.bind_to_device,
            ..self.options()
        };
        let socket = setup::open(Domain::for_address(addr), ty, &addr.into(), true, &options)
            .map_err(|f| fail(f.what)(f.source))?;
        setup::set_live(&socket, &options).map_err(|f| fail(f.what)(f.source))?;
        let backlog = self.backlog.load(Ordering::Relaxed);
        if ty == Type::STREAM {
            let backlog = if backlog == 0 { somaxconn() } else { backlog };
            socket
                .listen(i32::try_from(backlog).unwrap_or(i32::MAX))
                .map_err(fail("cannot listen on the new generation's socket"))?;
        }
        Ok(BoundSocket {
            spec: self.spec.clone(),
            socket,
            local: self.local.clone(),
            created_file: None,
            backlog: AtomicU32::new(backlog),
            // The address's count, carried from one generation's socket to
            // the next.
            revived: AtomicU32::new(self.revived()),
            mode: Mode::Steer,
            from_activator: false,
            options: std::sync::Mutex::new(SocketOptions {
                // Only what the config asked for, as on the first socket.
                ipv6_only: self.options().ipv6_only,
                free_bind: self.options().free_bind,
                bind_to_device: self.options().bind_to_device,
                ..options
            }),
        })
    }

    /// Takes a steered TCP listener out of its SO_REUSEPORT group now, even
    /// while another process still has a copy of it: `shutdown()` unhashes
    /// the listener (`tcp_disconnect`), which its last close would do only
    /// once every copy is closed. What waits in its accept queue is reset,
    /// or moved to another socket of the group with `tcp_migrate_req = 1`.
    /// A UDP socket leaves when its last copy closes. A socket from an
    /// activator is never shut down: the activator's copy is the same
    /// socket, and must keep listening (the core keeps it in the group).
    pub fn leave_group(&self) -> io::Result<()> {
        if self.from_activator || !matches!(self.spec.listen, ListenAddr::Tcp(_)) {
            return Ok(());
        }
        match self.socket.shutdown(std::net::Shutdown::Read) {
            // Not listening (a child shut it down already): not in a group.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            other => other,
        }
    }

    /// What waits on the socket: for a TCP listener, the connections in its
    /// accept queue; for UDP, 1 if a datagram waits (the kernel tells the
    /// size of the next one only), else 0. None for a unix socket, or a
    /// TCP socket that is not listening.
    pub fn queued(&self) -> Option<u32> {
        match self.spec.listen {
            ListenAddr::Tcp(_) => crate::steer::queue_len(&self.socket).ok(),
            ListenAddr::Udp(_) => crate::steer::datagram_waiting(&self.socket)
                .ok()
                .map(u32::from),
            _ => None,
        }
    }
}

/// Whether a socket from an activator can be steered: it has SO_REUSEPORT,
/// and a second socket for its address can be bound beside it (bound, not
/// listening, so it never joins the group or takes a connection).
pub(super) fn steerable_adopted(socket: &Socket, local: &str, listen: &ListenAddr) -> Mode {
    let shared = |why: String| {
        tracing::warn!("{why}");
        Mode::Shared { why }
    };
    match socket.reuse_port() {
        Ok(true) => {}
        Ok(false) => {
            return shared(format!(
                "the socket for {local} from the service manager has no SO_REUSEPORT: every generation \
                 shares it; add ReusePort=yes to its .socket unit for a socket per generation"
            ))
        }
        Err(e) => return shared(format!("cannot read SO_REUSEPORT of the socket for {local}: {e}")),
    }
    // The kernel lets a socket join a group only with the owner uid of the
    // group's sockets, which is the socket inode's (`sock_i_uid`).
    match nix::sys::stat::fstat(socket) {
        Ok(st) if st.st_uid == nix::unistd::geteuid().as_raw() => {}
        Ok(st) => {
            return shared(format!(
                "the socket for {local} from the service manager belongs to uid {}, handoff runs as uid {}: \
                 the kernel lets only the same uid bind beside it, so every generation shares it",
                st.st_uid,
                nix::unistd::geteuid()
            ))
        }
        Err(e) => return shared(format!("cannot read the owner of the socket for {local}: {e}")),
    }
    let ListenAddr::Tcp(_) = listen else {
        // UDP joins the group at bind(): the uid check above is the probe.
        return Mode::Steer;
    };
    // Set up as a generation's own socket would be (`sibling`).
    let probe = local
        .parse::<SocketAddr>()
        .map_err(io::Error::other)
        .and_then(|addr| {
            let fixed = setup::fixed_of(socket, addr.is_ipv6())?;
            setup::open(
                Domain::for_address(addr),
                Type::STREAM,
                &addr.into(),
                true,
                &fixed,
            )
            .map(drop)
            .map_err(|f| io::Error::new(f.source.kind(), format!("{}: {}", f.what, f.source)))
        });
    match probe {
        Ok(()) => Mode::Steer,
        Err(e) => shared(format!(
            "cannot bind a second socket for {local} beside the one from the service manager ({e}): \
             every generation shares it (the kernel lets only the socket's owner uid join its group)"
        )),
    }
}
