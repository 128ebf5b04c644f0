//! The blocking client side of the control socket: one request, one
//! answer, within a time limit.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::protocol::{self, Request, Response};

/// Why a client got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the supervisor at {path}: {source} (is `handoff run` running? point at its control socket with --control or HANDOFF_CONTROL)")]
    Unreachable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the control socket {path} is served by a process of uid {uid}, neither you nor root: not talking to it")]
    Foreign { path: PathBuf, uid: u32 },
    #[error("the supervisor at {path} closed the connection without answering")]
    NoAnswer { path: PathBuf },
    #[error("talking to the supervisor at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the supervisor at {path} sent an answer this client does not understand: {message}")]
    Protocol { path: PathBuf, message: String },
    #[error("the supervisor at {path} {what} within {} (--timeout): {still}", crate::ms(*.limit))]
    TimedOut {
        path: PathBuf,
        limit: Duration,
        /// "did not accept the connection", "did not answer `restart`".
        what: String,
        /// What the supervisor may still be doing.
        still: &'static str,
    },
}

/// Sends one request and waits for its answer as long as it takes (a
/// restart answers when the new generation is ready or rolled back).
pub fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
    call_within(path, request, None)
}

/// Sends one request and waits for its answer, for at most `limit` (None:
/// as long as it takes), connecting included: a supervisor at its fd
/// limit leaves a new connection waiting in the backlog.
pub fn call_within(
    path: &Path,
    request: &Request,
    limit: Option<Duration>,
) -> Result<Response, ClientError> {
    let clock = Clock {
        deadline: limit.map(|l| Instant::now() + l),
    };
    let timed_out = |what: String, still: &'static str| ClientError::TimedOut {
        path: path.to_path_buf(),
        limit: limit.unwrap_or_default(),
        what,
        still,
    };
    let io_err = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = match connect(path, &clock) {
        Ok(stream) => stream,
        Err(e) if is_timeout(&e) => {
            return Err(timed_out(
                "did not accept the connection".into(),
                "it may be out of file descriptors or stuck; the request was not sent",
            ))
        }
        Err(source) => {
            return Err(ClientError::Unreachable {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    // Talk only to a supervisor run by us or by root: a control socket in
    // a shared directory could have been put there by someone else.
    let mut peer_pid = None;
    if let Ok(peer) =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
    {
        // The kernel gives the pid as this process sees it (0 if the
        // supervisor's pid namespace is not visible from here).
        peer_pid = u32::try_from(peer.pid()).ok().filter(|&p| p > 0);
        let me = nix::unistd::getuid().as_raw();
        if peer.uid() != me && peer.uid() != 0 {
            return Err(ClientError::Foreign {
                path: path.to_path_buf(),
                uid: peer.uid(),
            });
        }
    }
    let sent = clock
        .arm(&stream, Stream::Write)
        .and_then(|()| stream.write_all(&protocol::encode(request)));
    let answer = match sent {
        Ok(()) => read_line(&mut stream, &clock),
        // A supervisor at its limits answers `busy` and closes before it
        // reads the request: the answer is there to read all the same.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            match read_line(&mut stream, &clock) {
                Ok(line) if !line.is_empty() => Ok(line),
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    let line = match answer {
        Ok(line) => line,
        Err(e) if is_timeout(&e) => {
            return Err(timed_out(
                format!("did not answer `{}`", name(request)),
                still_doing(request),
            ))
        }
        Err(e) => return Err(io_err(e)),
    };
    if line.is_empty() {
        return Err(ClientError::NoAnswer {
            path: path.to_path_buf(),
        });
    }
    let mut response: Response =
        serde_json::from_slice(&line).map_err(|e| ClientError::Protocol {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    // `stop` answers with the supervisor's own pid, which is that of its
    // pid namespace (1 when it is a container's init): the one to wait for
    // is the pid as this process sees it.
    if let (Response::Stopped { pid }, Some(seen)) = (&mut response, peer_pid) {
        *pid = seen;
    }
    Ok(response)
}

/// The time left until the deadline, as socket timeouts.
struct Clock {
    deadline: Option<Instant>,
}

#[derive(Clone, Copy)]
enum Stream {
    Read,
    Write,
}

impl Clock {
    /// Sets the socket's timeout for `direction` to the time left; an
    /// error that `is_timeout` when none is left.
    fn arm(&self, socket: &impl std::os::fd::AsFd, direction: Stream) -> io::Result<()> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let socket = socket2::SockRef::from(socket);
        match direction {
            Stream::Read => socket.set_read_timeout(Some(left)),
            Stream::Write => socket.set_write_timeout(Some(left)),
        }
    }
}

/// A socket's SO_SNDTIMEO also bounds a unix `connect` that waits for room
/// in a full backlog.
fn connect(path: &Path, clock: &Clock) -> io::Result<UnixStream> {
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    clock.arm(&socket, Stream::Write)?;
    socket.connect(&socket2::SockAddr::unix(path)?)?;
    Ok(UnixStream::from(OwnedFd::from(socket)))
}

/// Reads up to the first newline (one answer), each read bounded by the
/// time left. Empty: the supervisor closed without answering.
fn read_line(stream: &mut UnixStream, clock: &Clock) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        clock.arm(stream, Stream::Read)?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(line);
        }
        // One answer per request: nothing follows it on this connection.
        if let Some(end) = buf[..n].iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&buf[..=end]);
            return Ok(line);
        }
        line.extend_from_slice(&buf[..n]);
    }
}

/// A socket timeout shows as EAGAIN (WouldBlock); `Clock::arm` says
/// TimedOut when no time is left.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn name(request: &Request) -> &'static str {
    match request {
        Request::Status {} => "status",
        Request::Restart { .. } => "restart",
        Request::Reload { .. } => "reload",
        Request::Scale { .. } => "scale",
        Request::Upgrade {} => "upgrade",
        Request::Stop {} => "stop",
        Request::Signal { .. } => "signal",
    }
}

/// What a request the client gave up on may still lead to.
fn still_doing(request: &Request) -> &'static str {
    match request {
        Request::Status {} => "it may be overloaded or stuck; nothing was changed",
        Request::Restart { .. } | Request::Reload { .. } => {
            "the restart may still be under way and end either way (ready, or rolled back); `handoff status` shows the serving generation"
        }
        Request::Scale { .. } => {
            "the new number of workers may still take effect; `handoff status` shows the workers"
        }
        Request::Upgrade {} => {
            "the upgrade may still complete or be refused; `handoff status` shows the running version"
        }
        Request::Stop {} => "the supervisor may still be draining its workers, and exit after",
        Request::Signal { .. } => {
            "the signal may still be sent; the supervisor's log says to which workers"
        }
    }
}
