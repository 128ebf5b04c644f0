//! The control socket: the server side, which turns connections into
//! [`ControlCall`]s for the event loop, and a small blocking client for the
//! `handoff restart/status/stop` commands (`control/call.rs`). The wire
//! format is in `protocol.rs`.
//!
//! Limits, so that no client can lock the operator out: at most
//! [`MAX_CONNECTIONS`] connections, where a newcomer takes the place of the
//! longest-idle one (`control/slots.rs`); an idle connection closes after
//! [`IDLE_TIMEOUT`]; at the fd limit, new clients get a `busy` answer
//! rather than a wait in the backlog (`control/accept.rs`).

mod accept;
mod call;
mod slots;

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

pub use call::{call, call_within, ClientError};

use crate::protocol::{self, ErrorKind, Request, Response, MAX_REQUEST};
use crate::sockets::{BindError, BoundSocket, ListenAddr, SocketSpec};
use slots::{Admission, SlotId, Slots};

#[derive(Debug, thiserror::Error)]
#[error("control socket {}: {what}: {source}", path.display())]
pub struct ControlBindError {
    pub path: PathBuf,
    pub what: &'static str,
    #[source]
    pub source: io::Error,
}

/// At most this many connections at once. A newcomer beyond it takes the
/// place of the longest-idle one; only when all are waiting for answers
/// does it get a `busy` answer.
pub const MAX_CONNECTIONS: usize = 64;

/// A connection that sends no request for this long is closed: a client
/// that has something to ask asks at once.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the control server is told to do with its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Serve.
    No,
    /// Stop, close the socket and remove its file (the supervisor stops).
    Close,
    /// Stop and give the socket back, open, with the connections waiting in
    /// its queue (an upgrade hands it to the new binary).
    HandOver,
}

/// A request from a client and where its answer goes.
#[derive(Debug)]
pub struct ControlCall {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
    /// For `upgrade`: the client's connection, which the new supervisor
    /// answers on after the exec.
    pub stream: Option<std::os::fd::OwnedFd>,
}

/// The listening control socket. Its file is removed when it is dropped.
pub struct ControlServer {
    socket: BoundSocket,
    listener: UnixListener,
    /// Closed to answer clients when no fd is left (see `accept.rs`).
    spare: accept::Spare,
}

impl ControlServer {
    /// Binds `path` with mode 0600. A socket file left by a dead supervisor
    /// is replaced; a live one is an error ("another handoff is running").
    pub fn bind(path: &Path) -> Result<ControlServer, ControlBindError> {
        let io_error = |what: &'static str| {
            move |source| ControlBindError {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        let socket = BoundSocket::bind(&SocketSpec {
            name: "control".into(),
            listen: ListenAddr::Unix(path.to_path_buf()),
            backlog: Some(128),
            reuse_port: false,
            mode: Some(0o600),
            handover: None,
            options: Default::default(),
        })
        .map_err(|e: BindError| ControlBindError {
            path: path.to_path_buf(),
            what: if e.source.kind() == io::ErrorKind::AddrInUse {
                "a supervisor is already running there (stop it, or give this one its own --control)"
            } else {
                e.what
            },
            source: e.source,
        })?;
        let io_error = io_error("cannot set up");
        let std_listener = std::os::unix::net::UnixListener::from(
            socket.as_fd().try_clone_to_owned().map_err(io_error)?,
        );
        std_listener.set_nonblocking(true).map_err(io_error)?;
        let listener = UnixListener::from_std(std_listener).map_err(io_error)?;
        Ok(ControlServer::new(socket, listener))
    }

    /// The listening socket's fd (for an upgrade to hand on).
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.socket.as_fd())
    }

    /// What an upgrade hands on: the socket and its file.
    pub fn snapshot(&self) -> crate::sockets::SocketSnapshot {
        self.socket.snapshot()
    }

    /// Takes over the control socket an upgrading supervisor handed on.
    pub fn restore(
        snapshot: crate::sockets::SocketSnapshot,
        fd: std::os::fd::OwnedFd,
    ) -> io::Result<ControlServer> {
        let socket = BoundSocket::restore(snapshot, fd);
        let std_listener =
            std::os::unix::net::UnixListener::from(socket.as_fd().try_clone_to_owned()?);
        std_listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(std_listener)?;
        Ok(ControlServer::new(socket, listener))
    }

    fn new(socket: BoundSocket, listener: UnixListener) -> ControlServer {
        ControlServer {
            socket,
            listener,
            spare: accept::Spare::open(),
        }
    }

    /// Accepts connections until `shutdown` says stop, and then waits (up to
    /// `grace`) for answers already on their way to be written, and for
    /// requests already sent to be read and answered. Returns the server
    /// on [`Stop::HandOver`].
    pub async fn serve(
        mut self,
        calls: mpsc::UnboundedSender<ControlCall>,
        mut shutdown: watch::Receiver<Stop>,
        grace: Duration,
    ) -> Option<ControlServer> {
        // Each connection holds a clone of `alive`; when all are dropped,
        // `done` yields None.
        let (alive, mut done) = mpsc::channel::<()>(1);
        let slots = Arc::new(Mutex::new(Slots::new(MAX_CONNECTIONS)));
        let mut trouble = accept::Trouble::default();
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = stopped(&mut shutdown) => break,
            };
            match accepted {
                Ok((stream, _)) => {
                    if let Some(more) = trouble.accepted() {
                        tracing::info!("control socket: accepting connections again ({more} more failed accepts since the warning)");
                    }
                    let connection = Connection {
                        calls: calls.clone(),
                        shutdown: shutdown.clone(),
                        slots: slots.clone(),
                        alive: alive.clone(),
                    };
                    connection.admit(stream);
                }
                Err(e) => {
                    if self.accept_failed(&e, &mut trouble) {
                        continue;
                    }
                    // Nothing could be done: retry later, not at once, as
                    // the listener stays readable and would fail again.
                    tokio::select! {
                        _ = tokio::time::sleep(trouble.retry_delay()) => {}
                        _ = stopped(&mut shutdown) => break,
                    }
                }
            }
        }
        drop(alive);
        let _ = tokio::time::timeout(grace, done.recv()).await;
        match *shutdown.borrow() {
            Stop::HandOver => Some(self),
            Stop::No | Stop::Close => None,
        }
    }

    /// Deals with a failed accept: at the fd limit, answers the waiting
    /// clients `busy` with the spare fd's place. True if the loop may go
    /// on at once: the queue was emptied that way, so the next accept
    /// waits for a new client.
    fn accept_failed(&mut self, e: &io::Error, trouble: &mut accept::Trouble) -> bool {
        let out_of_fds = accept::out_of_fds(e);
        let shed = if out_of_fds {
            let reply = error(
                ErrorKind::Busy,
                "the supervisor is out of file descriptors; try again later".into(),
            );
            self.spare.shed(&self.listener, &protocol::encode(&reply))
        } else {
            None
        };
        // At the limit with nobody waiting, nobody was refused: no news.
        if shed == Some(0) {
            return true;
        }
        if let Some(failures) = trouble.failed(Instant::now()) {
            let what = match shed {
                Some(_) => "answering new clients `busy` until fds are freed",
                None => "retrying with a growing delay",
            };
            let raise = if out_of_fds {
                " (raise LimitNOFILE / ulimit -n?)"
            } else {
                ""
            };
            tracing::warn!(
                "control socket: cannot accept: {e}{raise}; {what} ({failures} failure(s) since the last warning; the next in a minute at the earliest)"
            );
        }
        shed.is_some()
    }
}

/// What a connection's task shares with the server.
struct Connection {
    calls: mpsc::UnboundedSender<ControlCall>,
    shutdown: watch::Receiver<Stop>,
    slots: Arc<Mutex<Slots<oneshot::Sender<()>>>>,
    /// Dropped when the connection ends: the server's shutdown waits for it.
    alive: mpsc::Sender<()>,
}

/// A connection's slot, given back when the connection ends however it
/// ends.
struct Slot {
    slots: Arc<Mutex<Slots<oneshot::Sender<()>>>>,
    id: SlotId,
}

impl Slot {
    fn busy(&self) -> bool {
        lock(&self.slots).busy(self.id)
    }

    fn idle(&self) -> bool {
        lock(&self.slots).idle(self.id)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.slots).leave(self.id);
    }
}

fn lock<T>(slots: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    slots
        .lock()
        .expect("the slots lock is never poisoned: nothing panics while holding it")
}

impl Connection {
    /// Gives the new connection a slot (evicting the longest-idle one if
    /// all are taken) and serves it; or answers `busy` if every slot is
    /// waiting for an answer.
    fn admit(self, mut stream: UnixStream) {
        let (evict, evicted) = oneshot::channel();
        let admission = lock(&self.slots).admit(evict);
        let id = match admission {
            Admission::Admitted { id, evicted } => {
                if evicted.is_some() {
                    tracing::debug!(
                        "control socket: closing the longest-idle connection to make room"
                    );
                }
                // Dropping its sender closes the evicted connection.
                drop(evicted);
                id
            }
            Admission::Full(_) => {
                tokio::spawn(async move {
                    let reply = error(
                        ErrorKind::Busy,
                        format!("all {MAX_CONNECTIONS} control connections are waiting for answers; try again when one is answered"),
                    );
                    let _ = stream.write_all(&protocol::encode(&reply)).await;
                });
                return;
            }
        };
        let slot = Slot {
            slots: self.slots,
            id,
        };
        tokio::spawn(async move {
            if let Err(e) = connection(stream, self.calls, self.shutdown, slot, evicted).await {
                tracing::debug!("control connection: {e}");
            }
            drop(self.alive);
        });
    }
}

async fn connection(
    stream: UnixStream,
    calls: mpsc::UnboundedSender<ControlCall>,
    mut shutdown: watch::Receiver<Stop>,
    slot: Slot,
    mut evicted: oneshot::Receiver<()>,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    loop {
        // Idle (evictable) only with no request waiting unread: tokio may
        // not know yet that one has arrived, so ask the socket itself.
        let waiting = !read.buffer().is_empty() || unread_bytes(read.get_ref().as_ref());
        if !waiting && !slot.idle() {
            return Ok(());
        }
        let mut line = Vec::new();
        let mut limited = (&mut read).take(MAX_REQUEST as u64 + 1);
        let n = tokio::select! {
            // First: an evicted connection has lost its slot and must not
            // go on, even if a request came in at the same moment.
            biased;
            _ = &mut evicted => return Ok(()),
            // A request already sent is read and answered first, also one
            // that came while this task waited.
            _ = stopped(&mut shutdown), if !waiting => {
                if !read.buffer().is_empty() || unread_bytes(read.get_ref().as_ref()) {
                    continue;
                }
                return Ok(());
            }
            // A client that says nothing gives its place to another.
            _ = tokio::time::sleep(IDLE_TIMEOUT) => return Ok(()),
            n = limited.read_until(b'\n', &mut line) => n?,
        };
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && line.len() > MAX_REQUEST {
            let reply = bad_request(format!("request longer than {MAX_REQUEST} bytes"));
            write.write_all(&protocol::encode(&reply)).await?;
            return Ok(());
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        // From here until the answer is written, the connection is busy:
        // never evicted, and not bound by the idle timeout.
        if !slot.busy() {
            return Ok(());
        }
        let reply = match protocol::parse_request(text) {
            Err(message) => bad_request(message),
            Ok(request) => {
                tracing::debug!("control socket: {request:?} requested");
                let (tx, rx) = oneshot::channel();
                let stream = match request {
                    Request::Upgrade {} => Some(write.as_ref().as_fd().try_clone_to_owned()?),
                    _ => None,
                };
                let upgrade = stream.is_some();
                let call = ControlCall {
                    request,
                    reply: tx,
                    stream,
                };
                if calls.send(call).is_err() {
                    gone()
                } else if upgrade {
                    // At the hand-over the new supervisor answers, on a
                    // copy of this connection: this end has nothing more
                    // to wait for (and must not hold the hand-over up).
                    tokio::select! {
                        reply = rx => reply.unwrap_or_else(|_| gone()),
                        _ = shutdown.wait_for(|stop| *stop == Stop::HandOver) => {
                            // Closed without a shutdown(2): that would end
                            // the connection for the copy too.
                            write.forget();
                            return Ok(());
                        }
                    }
                } else {
                    rx.await.unwrap_or_else(|_| gone())
                }
            }
        };
        write.write_all(&protocol::encode(&reply)).await?;
    }
}

/// Whether the peer has sent bytes this end has not read (a peek that
/// neither blocks nor consumes).
fn unread_bytes(stream: &UnixStream) -> bool {
    use nix::sys::socket::{recv, MsgFlags};
    let mut byte = [0u8; 1];
    let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
    matches!(
        recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT),
        Ok(n) if n > 0
    )
}

/// Resolves once the shutdown flag is set.
async fn stopped(shutdown: &mut watch::Receiver<Stop>) {
    // The guard wait_for returns is not Send; drop it at once.
    let _ = shutdown.wait_for(|stop| *stop != Stop::No).await;
}

fn bad_request(message: String) -> Response {
    error(ErrorKind::BadRequest, message)
}

fn error(kind: ErrorKind, message: String) -> Response {
    Response::Error { kind, message }
}

fn gone() -> Response {
    Response::Error {
        kind: ErrorKind::ShuttingDown,
        message: "the supervisor is shutting down".into(),
    }
}

#[cfg(test)]
mod tests;
