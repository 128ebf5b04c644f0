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
mod tests;
