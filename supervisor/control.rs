//! The control socket: the server side, which turns connections into
//! [`ControlCall`]s for the event loop, and a small blocking client for the
//! `handoff restart/status/stop` commands. The wire format is in
//! `protocol.rs`.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::protocol::{self, ErrorKind, Request, Response, MAX_REQUEST};
use crate::sockets::{BindError, BoundSocket, ListenAddr, SocketSpec};

#[derive(Debug, thiserror::Error)]
#[error("control socket {}: {what}: {source}", path.display())]
pub struct ControlBindError {
    pub path: PathBuf,
    pub what: &'static str,
    #[source]
    pub source: io::Error,
}

/// At most this many clients at once; more get a `busy` answer.
const MAX_CONNECTIONS: usize = 64;

/// A connection that sends no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
        Ok(ControlServer { socket, listener })
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
        Ok(ControlServer { socket, listener })
    }

    /// Accepts connections until `shutdown` turns true, and then waits (up to
    /// `grace`) for answers already on their way to be written.
    pub async fn serve(
        self,
        calls: mpsc::UnboundedSender<ControlCall>,
        mut shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) {
        // Each connection holds a clone of `alive`; when all are dropped,
        // `done` yields None.
        let (alive, mut done) = mpsc::channel::<()>(1);
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let for_connection = shutdown.clone();
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((mut stream, _)) => {
                        // A bounded number of clients, so idle ones cannot
                        // use up the supervisor's fds.
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            tokio::spawn(async move {
                                let reply = error(ErrorKind::Busy, format!("more than {MAX_CONNECTIONS} control connections are open; try again"));
                                let _ = stream.write_all(&protocol::encode(&reply)).await;
                            });
                            continue;
                        };
                        let calls = calls.clone();
                        let alive = alive.clone();
                        let shutdown = for_connection;
                        tokio::spawn(async move {
                            if let Err(e) = connection(stream, calls, shutdown).await {
                                tracing::debug!("control connection: {e}");
                            }
                            drop((alive, slot));
                        });
                    }
                    Err(e) => {
                        // EMFILE and friends: say so, and keep serving.
                        tracing::warn!("control socket: cannot accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = stopped(&mut shutdown) => break,
            }
        }
        drop(alive);
        let _ = tokio::time::timeout(grace, done.recv()).await;
        drop(self.socket);
    }
}

async fn connection(
    stream: UnixStream,
    calls: mpsc::UnboundedSender<ControlCall>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let mut limited = (&mut read).take(MAX_REQUEST as u64 + 1);
        let n = tokio::select! {
            n = limited.read_until(b'\n', &mut line) => n?,
            _ = stopped(&mut shutdown) => return Ok(()),
            // A client that says nothing gives its place to another.
            _ = tokio::time::sleep(IDLE_TIMEOUT) => return Ok(()),
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
        let reply = match protocol::parse_request(text) {
            Err(message) => bad_request(message),
            Ok(request) => {
                let (tx, rx) = oneshot::channel();
                let stream = match request {
                    Request::Upgrade => Some(write.as_ref().as_fd().try_clone_to_owned()?),
                    _ => None,
                };
                let call = ControlCall {
                    request,
                    reply: tx,
                    stream,
                };
                match calls.send(call) {
                    Ok(()) => rx.await.unwrap_or_else(|_| gone()),
                    Err(_) => gone(),
                }
            }
        };
        write.write_all(&protocol::encode(&reply)).await?;
    }
}

/// Resolves once the shutdown flag is set.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send; drop it at once.
    let _ = shutdown.wait_for(|stop| *stop).await;
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
}

/// Sends one request and waits for its answer (as long as it takes: a
/// restart answers when the new generation is ready or rolled back).
pub fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(|source| {
        ClientError::Unreachable {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let io_err = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Talk only to a supervisor run by us or by root: a control socket in
    // a shared directory could have been put there by someone else.
    if let Ok(peer) =
        nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
    {
        let me = nix::unistd::getuid().as_raw();
        if peer.uid() != me && peer.uid() != 0 {
            return Err(ClientError::Foreign {
                path: path.to_path_buf(),
                uid: peer.uid(),
            });
        }
    }
    stream
        .write_all(&protocol::encode(request))
        .map_err(io_err)?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(io_err)?;
    if line.is_empty() {
        return Err(ClientError::NoAnswer {
            path: path.to_path_buf(),
        });
    }
    serde_json::from_str(&line).map_err(|e| ClientError::Protocol {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake event loop that answers every call with a fixed status.
    async fn serve_for_test(path: &Path) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let server = ControlServer::bind(path).unwrap();
        let (calls_tx, mut calls_rx) = mpsc::unbounded_channel::<ControlCall>();
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Some(call) = calls_rx.recv().await {
                let _ = call.reply.send(Response::Stopped { pid: 7 });
            }
        });
        let task = tokio::spawn(server.serve(calls_tx, stop_rx, Duration::from_secs(1)));
        (stop_tx, task)
    }

    async fn exchange(path: &Path, bytes: &[u8]) -> String {
        let mut s = UnixStream::connect(path).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(s)
            .read_line(&mut line)
            .await
            .unwrap();
        line
    }

    #[tokio::test]
    async fn answers_good_and_bad_requests_and_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let (stop, task) = serve_for_test(&path).await;
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        assert_eq!(
            exchange(&path, b"{\"command\":\"stop\"}\n").await,
            "{\"result\":\"stopped\",\"pid\":7}\n"
        );
        let bad = exchange(&path, b"{\"command\":\"fly\"}\n").await;
        assert!(bad.contains("\"kind\":\"bad_request\""), "{bad}");
        let huge = vec![b'x'; MAX_REQUEST + 10];
        let long = exchange(&path, &huge).await;
        assert!(long.contains("longer than"), "{long}");
        // Still serving after all that.
        assert_eq!(
            exchange(&path, b"{\"command\":\"status\"}\n").await,
            "{\"result\":\"stopped\",\"pid\":7}\n"
        );

        stop.send(true).unwrap();
        task.await.unwrap();
        assert!(!path.exists(), "the control socket file is removed");
    }

    #[tokio::test]
    async fn a_second_server_on_a_live_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let (_stop, _task) = serve_for_test(&path).await;
        let err = ControlServer::bind(&path)
            .err()
            .expect("must not bind twice");
        assert!(
            err.to_string().contains("another process is listening"),
            "{err}"
        );
    }
}
