//! Is fd N what the snapshot says it is? The new binary asks before it
//! takes anything over, so a snapshot that names the wrong fds (a closed
//! one, a reused number, a socket of another kind) is refused with a
//! sentence rather than adopted and found out later.
//!
//! Everything here works on the raw fd number with plain syscalls
//! (fcntl F_GETFD, fstat, getsockopt, getsockname), which on a number that
//! is not open answer EBADF: nothing takes ownership, nothing is closed,
//! no flag is changed, and there is no `BorrowedFd` whose promise ("this
//! fd is open") an fd under suspicion could break.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::sockets::ListenAddr;

/// A socket's address family, of those handoff uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Inet,
    Inet6,
    Unix,
}

/// A socket's type, of those handoff uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stream,
    Datagram,
}

/// What an fd should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A server socket: a listening stream socket, or a datagram socket
    /// (bound; that is not checked). `Listener { Unix, Stream }` is the
    /// same check as [`Expect::UnixListener`].
    Listener { domain: Domain, kind: Kind },
    /// A notify socket.
    UnixDatagram,
    /// A connected unix stream: the asking client's connection. A
    /// listening one is refused.
    UnixStream,
    /// The control socket.
    UnixListener,
}

impl Expect {
    /// What a server socket bound for `addr` is.
    pub fn listener_for(addr: &ListenAddr) -> Expect {
        let inet = |a: &std::net::SocketAddr| {
            if a.is_ipv4() {
                Domain::Inet
            } else {
                Domain::Inet6
            }
        };
        let (domain, kind) = match addr {
            ListenAddr::Tcp(a) => (inet(a), Kind::Stream),
            ListenAddr::Udp(a) => (inet(a), Kind::Datagram),
            ListenAddr::Unix(_) | ListenAddr::UnixAbstract(_) => (Domain::Unix, Kind::Stream),
        };
        Expect::Listener { domain, kind }
    }

    fn parts(&self) -> (Domain, Kind) {
        match *self {
            Expect::Listener { domain, kind } => (domain, kind),
            Expect::UnixDatagram => (Domain::Unix, Kind::Datagram),
            Expect::UnixStream | Expect::UnixListener => (Domain::Unix, Kind::Stream),
        }
    }

    /// Some(true): must listen; Some(false): must not; None: either.
    fn listening(&self) -> Option<bool> {
        match *self {
            Expect::Listener { kind, .. } => (kind == Kind::Stream).then_some(true),
            Expect::UnixListener => Some(true),
            Expect::UnixStream => Some(false),
            Expect::UnixDatagram => None,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (domain, kind) = self.parts();
        let (article, name) = name(raw_domain(domain), raw_type(kind));
        match self.listening() {
            Some(true) => write!(f, "{article} {name} listener"),
            Some(false) => write!(f, "a connected {name} socket"),
            None => write!(f, "{article} {name} socket"),
        }
    }
}

fn raw_domain(d: Domain) -> libc::c_int {
    match d {
        Domain::Inet => libc::AF_INET,
        Domain::Inet6 => libc::AF_INET6,
        Domain::Unix => libc::AF_UNIX,
    }
}

fn raw_type(k: Kind) -> libc::c_int {
    match k {
        Kind::Stream => libc::SOCK_STREAM,
        Kind::Datagram => libc::SOCK_DGRAM,
    }
}

/// "TCP", "IPv6 UDP", "unix stream", with its article.
fn name(domain: libc::c_int, ty: libc::c_int) -> (&'static str, String) {
    let proto = match ty {
        libc::SOCK_STREAM => "TCP",
        libc::SOCK_DGRAM => "UDP",
        _ => "",
    };
    match (domain, ty) {
        (libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_DGRAM) => ("a", proto.to_string()),
        (libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_DGRAM) => ("an", format!("IPv6 {proto}")),
        (libc::AF_UNIX, libc::SOCK_STREAM) => ("a", "unix stream".to_string()),
        (libc::AF_UNIX, libc::SOCK_DGRAM) => ("a", "unix datagram".to_string()),
        (libc::AF_UNIX, libc::SOCK_SEQPACKET) => ("a", "unix seqpacket".to_string()),
        _ => ("a", format!("family {domain} type {ty}")),
    }
}

/// What a socket fd is: "a TCP listener", "a UDP socket".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    domain: libc::c_int,
    ty: libc::c_int,
    listening: bool,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (article, name) = name(self.domain, self.ty);
        let what = if self.listening { "listener" } else { "socket" };
        write!(f, "{article} {name} {what}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FdError {
    #[error("fd {fd} is not open")]
    NotOpen { fd: RawFd },
    /// `what`: "a regular file", "a pipe", …
    #[error("fd {fd} is {what}, not a socket")]
    NotSocket { fd: RawFd, what: &'static str },
    #[error("fd {fd} is {found}, expected {expected}")]
    WrongSocket {
        fd: RawFd,
        found: Found,
        expected: Expect,
    },
    #[error("fd {fd} is {found} that is not listening")]
    NotListening { fd: RawFd, found: Found },
    /// A syscall failed otherwise than "not open" (it should not).
    #[error("cannot look at fd {fd}: {source}")]
    Inspect {
        fd: RawFd,
        #[source]
        source: io::Error,
    },
    /// `bound` is "/other/path", "@abstract" or "no name".
    #[error("fd {fd} is bound to {bound}, not {}", expected.display())]
    BoundElsewhere {
        fd: RawFd,
        bound: String,
        expected: PathBuf,
    },
    #[error("fd {fd}'s socket file {} is gone", path.display())]
    PathGone { fd: RawFd, path: PathBuf },
    #[error("fd {fd}'s socket file {} is now {what}", path.display())]
    PathReplaced {
        fd: RawFd,
        path: PathBuf,
        what: &'static str,
    },
}

/// Whether `fd` is open and is the socket `expect` says, without changing
/// it in any way.
pub fn check_fd(fd: RawFd, expect: &Expect) -> Result<(), FdError> {
    let found = inspect(fd)?;
    let (domain, kind) = expect.parts();
    if found.domain != raw_domain(domain) || found.ty != raw_type(kind) {
        return Err(FdError::WrongSocket {
            fd,
            found,
            expected: *expect,
        });
    }
    match expect.listening() {
        Some(true) if !found.listening => Err(FdError::NotListening { fd, found }),
        Some(false) if found.listening => Err(FdError::WrongSocket {
            fd,
            found,
            expected: *expect,
        }),
        _ => Ok(()),
    }
}

/// What socket `fd` is; an error if it is not open or not a socket.
pub fn inspect(fd: RawFd) -> Result<Found, FdError> {
    // SAFETY: F_GETFD on an fd number reads its flags and changes nothing;
    // a number that is not open yields EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(not_open_or(fd, io::Error::last_os_error()));
    }
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one struct stat into `stat`, which has room.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return Err(not_open_or(fd, io::Error::last_os_error()));
    }
    // SAFETY: fstat returned 0, so it filled `stat`.
    let mode = unsafe { stat.assume_init() }.st_mode;
    if mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(FdError::NotSocket {
            fd,
            what: file_type(mode),
        });
    }
    let option = |name| int_option(fd, name).map_err(|e| not_open_or(fd, e));
    Ok(Found {
        domain: option(libc::SO_DOMAIN)?,
        ty: option(libc::SO_TYPE)?,
        listening: option(libc::SO_ACCEPTCONN)? != 0,
    })
}

/// Whether unix socket `fd` is still bound to `path` and the file there
/// is a socket. Used for a listener whose file someone may have removed or
/// replaced.
///
/// It cannot tell whether the socket at `path` is *this* socket or another
/// bound there since: a socket's fstat shows its sockfs inode, not the
/// file's, and only the sock_diag netlink interface (UNIX_DIAG_VFS) maps
/// one to the other; connecting to find out would queue a connection on
/// the running supervisor's listener.
pub fn check_bound_path(fd: RawFd, path: &Path) -> Result<(), FdError> {
    let found = inspect(fd)?;
    if found.domain != libc::AF_UNIX {
        return Err(FdError::BoundElsewhere {
            fd,
            bound: format!("no path (it is {found})"),
            expected: path.to_path_buf(),
        });
    }
    let bound = bound_name(fd)?;
    if bound.as_deref() != Some(path.as_os_str().as_bytes()) {
        let bound = match bound {
            None => "no name".to_string(),
            Some(b) if b.first() == Some(&0) => {
                format!("@{}", String::from_utf8_lossy(&b[1..]))
            }
            Some(b) => Path::new(OsStr::from_bytes(&b)).display().to_string(),
        };
        return Err(FdError::BoundElsewhere {
            fd,
            bound,
            expected: path.to_path_buf(),
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => Ok(()),
        Ok(m) => Err(FdError::PathReplaced {
            fd,
            path: path.to_path_buf(),
            what: file_type(std::os::unix::fs::MetadataExt::mode(&m)),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(FdError::PathGone {
            fd,
            path: path.to_path_buf(),
        }),
        Err(source) => Err(FdError::Inspect { fd, source }),
    }
}

/// The name unix socket `fd` (checked to be one) is bound to: a path, or an abstract name as
/// a NUL and its bytes; None if unnamed.
fn bound_name(fd: RawFd) -> Result<Option<Vec<u8>>, FdError> {
    // SAFETY: a sockaddr_un is plain integers and bytes: all zeros is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_un>())
        .expect("a sockaddr_un's size fits in a socklen_t");
    // SAFETY: getsockname writes at most `len` bytes into `addr`, which is
    // that large, and the new length into `len`.
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_un).cast::<libc::sockaddr>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(not_open_or(fd, io::Error::last_os_error()));
    }
    let header = std::mem::size_of::<libc::sa_family_t>();
    let len = usize::try_from(len)
        .unwrap_or(0)
        .min(std::mem::size_of_val(&addr));
    // sun_path's bytes as u8 (c_char is i8 on x86).
    let path: Vec<u8> = addr.sun_path[..len.saturating_sub(header)]
        .iter()
        .map(|&c| c as u8)
        .collect();
    match path.first() {
        None => Ok(None),
        // Abstract: every byte counts, NULs included.
        Some(0) => Ok(Some(path)),
        // A path: up to its NUL, which the length may or may not include.
        Some(_) => Ok(Some(path.split(|&b| b == 0).next().unwrap_or(&[]).to_vec())),
    }
}

fn not_open_or(fd: RawFd, e: io::Error) -> FdError {
    if e.raw_os_error() == Some(libc::EBADF) {
        FdError::NotOpen { fd }
    } else {
        FdError::Inspect { fd, source: e }
    }
}

fn int_option(fd: RawFd, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .expect("an int's size fits in a socklen_t");
    // SAFETY: getsockopt writes at most `len` bytes into `value`, an int,
    // and `len` says so.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// "a regular file", from a stat mode.
fn file_type(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a pipe",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFSOCK => "a socket",
        // eventfd, epoll, pidfd, signalfd, timerfd: anonymous inodes.
        0 => "an anonymous inode (eventfd, epoll, pidfd, ...)",
        _ => "a file of an unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Socket, Type};
    use std::os::fd::AsRawFd;

    fn tcp_listener() -> std::net::TcpListener {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    }

    const TCP: Expect = Expect::Listener {
        domain: Domain::Inet,
        kind: Kind::Stream,
    };

    fn message(fd: RawFd, expect: Expect) -> String {
        check_fd(fd, &expect).unwrap_err().to_string()
    }

    #[test]
    fn a_closed_fd_is_not_open() {
        // A number no process has open: a just-closed fd could be reused by
        // another test's thread at once.
        let fd = i32::MAX - 1;
        assert!(matches!(check_fd(fd, &TCP), Err(FdError::NotOpen { .. })));
        assert_eq!(message(fd, TCP), format!("fd {fd} is not open"));
    }

    #[test]
    fn a_file_or_a_pipe_is_not_a_socket() {
        let file = tempfile::tempfile().unwrap();
        let fd = file.as_raw_fd();
        assert_eq!(
            message(fd, TCP),
            format!("fd {fd} is a regular file, not a socket")
        );
        let (r, _w) = nix::unistd::pipe().unwrap();
        let fd = r.as_raw_fd();
        assert_eq!(
            message(fd, Expect::UnixDatagram),
            format!("fd {fd} is a pipe, not a socket")
        );
    }

    #[test]
    fn a_tcp_listener_passes_and_a_udp_socket_does_not() {
        let tcp = tcp_listener();
        check_fd(tcp.as_raw_fd(), &TCP).unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = udp.as_raw_fd();
        assert_eq!(
            message(fd, TCP),
            format!("fd {fd} is a UDP socket, expected a TCP listener")
        );
        let udp_expected = Expect::Listener {
            domain: Domain::Inet,
            kind: Kind::Datagram,
        };
        check_fd(fd, &udp_expected).unwrap();
        let fd = tcp.as_raw_fd();
        assert_eq!(
            message(fd, udp_expected),
            format!("fd {fd} is a TCP listener, expected a UDP socket")
        );
    }

    #[test]
    fn a_tcp_socket_that_does_not_listen_is_refused() {
        let s = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).unwrap();
        let fd = s.as_raw_fd();
        assert!(matches!(
            check_fd(fd, &TCP),
            Err(FdError::NotListening { .. })
        ));
        assert_eq!(
            message(fd, TCP),
            format!("fd {fd} is a TCP socket that is not listening")
        );
    }

    #[test]
    fn ipv4_and_ipv6_are_told_apart() {
        let v6 = Socket::new(socket2::Domain::IPV6, Type::STREAM, None).unwrap();
        // listen(2) on an unbound socket binds it to a free port first.
        v6.listen(1).unwrap();
        let fd = v6.as_raw_fd();
        check_fd(
            fd,
            &Expect::Listener {
                domain: Domain::Inet6,
                kind: Kind::Stream,
            },
        )
        .unwrap();
        assert_eq!(
            message(fd, TCP),
            format!("fd {fd} is an IPv6 TCP listener, expected a TCP listener")
        );
    }

    #[test]
    fn unix_sockets_are_checked_by_type_and_listening() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("c")).unwrap();
        let (stream, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (dgram, _peer2) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let (l, s, d) = (listener.as_raw_fd(), stream.as_raw_fd(), dgram.as_raw_fd());
        check_fd(l, &Expect::UnixListener).unwrap();
        check_fd(s, &Expect::UnixStream).unwrap();
        check_fd(d, &Expect::UnixDatagram).unwrap();
        assert_eq!(
            message(l, Expect::UnixStream),
            format!("fd {l} is a unix stream listener, expected a connected unix stream socket")
        );
        assert_eq!(
            message(s, Expect::UnixListener),
            format!("fd {s} is a unix stream socket that is not listening")
        );
        assert_eq!(
            message(d, Expect::UnixListener),
            format!("fd {d} is a unix datagram socket, expected a unix stream listener")
        );
        assert_eq!(
            message(l, Expect::UnixDatagram),
            format!("fd {l} is a unix stream listener, expected a unix datagram socket")
        );
    }

    #[test]
    fn checking_changes_nothing() {
        let tcp = tcp_listener();
        tcp.set_nonblocking(true).unwrap();
        let flags = |tcp: &std::net::TcpListener| {
            use nix::fcntl::{fcntl, FcntlArg};
            (
                fcntl(tcp, FcntlArg::F_GETFD).unwrap(),
                fcntl(tcp, FcntlArg::F_GETFL).unwrap(),
            )
        };
        let before = flags(&tcp);
        check_fd(tcp.as_raw_fd(), &TCP).unwrap();
        let _ = check_fd(tcp.as_raw_fd(), &Expect::UnixDatagram);
        assert_eq!(before, flags(&tcp));
        // Still open and still listening.
        let addr = tcp.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        tcp.accept().unwrap();
    }

    #[test]
    fn listener_for_follows_the_address() {
        let tcp6: ListenAddr = ListenAddr::Tcp("[::1]:80".parse().unwrap());
        let udp: ListenAddr = ListenAddr::Udp("127.0.0.1:53".parse().unwrap());
        assert_eq!(
            Expect::listener_for(&tcp6),
            Expect::Listener {
                domain: Domain::Inet6,
                kind: Kind::Stream
            }
        );
        assert_eq!(Expect::listener_for(&udp).to_string(), "a UDP socket");
        assert_eq!(
            Expect::listener_for(&ListenAddr::Unix("/run/a.sock".into())).to_string(),
            "a unix stream listener"
        );
    }

    #[test]
    fn a_bound_path_is_checked_against_the_file_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fd = listener.as_raw_fd();
        check_bound_path(fd, &path).unwrap();

        let other = dir.path().join("other.sock");
        let err = check_bound_path(fd, &other).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "fd {fd} is bound to {}, not {}",
                path.display(),
                other.display()
            )
        );

        std::fs::remove_file(&path).unwrap();
        let err = check_bound_path(fd, &path).unwrap_err();
        assert!(matches!(err, FdError::PathGone { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("fd {fd}'s socket file {} is gone", path.display())
        );

        std::fs::write(&path, b"").unwrap();
        let err = check_bound_path(fd, &path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "fd {fd}'s socket file {} is now a regular file",
                path.display()
            )
        );
    }

    #[test]
    fn an_unnamed_or_abstract_socket_is_bound_elsewhere() {
        let (unnamed, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = unnamed.as_raw_fd();
        let err = check_bound_path(fd, Path::new("/run/x.sock")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("fd {fd} is bound to no name, not /run/x.sock")
        );

        use std::os::linux::net::SocketAddrExt;
        let name = format!("handoff-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_ = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let fd = abstract_.as_raw_fd();
        let err = check_bound_path(fd, Path::new("/run/x.sock")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("fd {fd} is bound to @{name}, not /run/x.sock")
        );
    }
}
