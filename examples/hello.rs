//! A small HTTP server that shows how to run under `handoff`.
//!
//! handoff binds the listening sockets itself and hands them to its child using
//! the systemd socket-activation protocol: the sockets are file descriptors 3,
//! 4, ..., described by `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID`. The
//! child says it is ready to take traffic by sending `READY=1` to the unix
//! datagram socket named by `NOTIFY_SOCKET`. handoff also sets
//! `HANDOFF_GENERATION` and `HANDOFF_WORKER` so a server can tell which
//! generation and worker slot it is.
//!
//! This example shows the three things a server needs to do:
//!
//! 1. take the inherited listener instead of binding its own (here with the
//!    `listenfd` crate);
//! 2. send `READY=1` once it is accepting (here with the `sd-notify` crate);
//! 3. on SIGTERM, stop accepting and close its copy of the listener (never
//!    `shutdown()` it: the next generation is using the same socket), finish
//!    the requests in flight, then exit.
//!
//! Run it with:
//!
//! ```text
//! cargo build --example hello
//! handoff run --listen http=tcp://127.0.0.1:8080 -- target/debug/examples/hello
//! curl http://127.0.0.1:8080/
//! curl http://127.0.0.1:8080/env
//! ```
//!
//! It also works under `systemd-socket-activate -l 127.0.0.1:8080 target/debug/examples/hello`.
//!
//! Routes (every response carries an `X-Pid` header):
//!
//! * `GET /`           -> `hello from pid <pid> generation <gen> worker <slot>`
//! * `GET /env`        -> JSON with the pid, the socket-activation and handoff
//!   environment variables, and the file descriptors open at start-up
//! * `GET /slow?ms=N`  -> the same as `/`, after sleeping N milliseconds
//! * anything else     -> 404
//!
//! Flags, mostly useful for testing a supervisor:
//!
//! * `--exit-at-start`       exit with code 3 before touching any socket
//! * `--never-ready`         serve, but never send `READY=1`
//! * `--ready-after <ms>`    wait this long before taking the listener and
//!   sending `READY=1`
//! * `--drain-delay <ms>`    on SIGTERM/SIGINT, wait this much longer after
//!   the in-flight requests have finished, before exiting
//! * `--bind <addr>`         bind the address itself instead of taking a
//!   socket from the supervisor (the naive way, for comparison)
//! * `--sloppy-drain`        drain the way many real servers do, losing
//!   requests (see `Drain::Sloppy`); also `HELLO_SLOPPY_DRAIN=1` in the
//!   environment, for configs (`handoff run --env HELLO_SLOPPY_DRAIN=1`)

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use listenfd::ListenFd;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};

/// How long to wait for in-flight requests after SIGTERM before giving up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to pause after a failed `accept()` (for example EMFILE), so we do
/// not spin on an error that will not go away by itself.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How long, once draining, a connection may stay open without a request.
///
/// hyper's graceful shutdown closes a connection it thinks idle at once. But
/// "idle" includes a keep-alive connection whose next request is already on
/// its way, and a connection accepted a moment ago whose first request is
/// not read yet: closing those loses a request the client has sent (a
/// client may retry it; for a POST it usually will not). So a draining
/// connection instead answers its next request with `Connection: close`,
/// which ends it cleanly, and only a connection that sends nothing for this
/// long is closed unanswered. (Go's http.Server.Shutdown gives new
/// connections 5 s for the same reason.)
const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(2);

/// With `--sloppy-drain`: how many pending connections one accept takes at
/// once. asyncio (under uvicorn and other ASGI servers) accepts up to its
/// backlog, 100, per wake-up, and reads none of them before the batch is
/// taken.
const SLOPPY_ACCEPT_BATCH: usize = 100;

/// `--sloppy-drain`: the drain of servers that lose requests on a restart,
/// reproduced on purpose so the tests can show what handoff can and cannot
/// save.
///
/// The careful drain (the default) loses nothing that reached this process:
/// it stops accepting the moment the stop signal arrives, leaves what is
/// still queued to the next generation, and serves every connection it
/// accepted, giving one that has sent nothing yet DRAIN_IDLE_GRACE to send
/// its request. The sloppy drain differs in two ways, each taken from real
/// servers:
///
/// * it accepts eagerly, a batch of up to SLOPPY_ACCEPT_BATCH pending
///   connections at a time, right up to the stop signal, so at any moment it
///   may hold connections whose request it has not read yet;
/// * on the stop signal it closes, at once and unanswered, every connection
///   whose request it has not read yet (hyper's graceful shutdown does this
///   to a connection it thinks idle, uvicorn to one with no request cycle),
///   and ends the others after the request in flight.
///
/// A client whose request was sent but not read sees its connection reset
/// (or closed without an answer): lost, though the socket handoff holds
/// never refused it.
///
/// The server closes those connections itself rather than leave it to
/// hyper's `graceful_shutdown` (which, called at once, loses about as many:
/// tried): so it knows, and prints, how many it closed unread, and a test
/// can check that the clients lost exactly those.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Drain {
    #[default]
    Careful,
    Sloppy,
}

/// What every connection task shares: the shutdown flag, a sender whose
/// clones say "still running" (when all are dropped, draining is done), and
/// how draining treats a connection.
#[derive(Clone)]
struct Connections {
    shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    drain: Drain,
    /// With the sloppy drain: the connections closed with their request unread.
    dropped: Arc<AtomicU64>,
}

impl Connections {
    fn draining(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// What the process looked like when it started, before it opened anything.
struct StartupInfo {
    pid: u32,
    listen_fds: Option<String>,
    listen_fdnames: Option<String>,
    listen_pid: Option<String>,
    notify_socket: Option<String>,
    generation: Option<String>,
    worker: Option<String>,
    /// The file descriptors that were open when `main` started, sorted.
    fds: Vec<i32>,
}

impl StartupInfo {
    fn capture() -> StartupInfo {
        let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
        let pid = std::process::id();
        StartupInfo {
            pid,
            fds: open_fds(),
            listen_fds: env("LISTEN_FDS"),
            listen_fdnames: env("LISTEN_FDNAMES"),
            listen_pid: env("LISTEN_PID"),
            notify_socket: env("NOTIFY_SOCKET"),
            generation: env("HANDOFF_GENERATION"),
            worker: env("HANDOFF_WORKER"),
        }
    }

    fn generation(&self) -> &str {
        self.generation.as_deref().unwrap_or("?")
    }

    fn worker(&self) -> &str {
        self.worker.as_deref().unwrap_or("?")
    }

    fn hello_line(&self) -> String {
        format!(
            "hello from pid {} generation {} worker {}\n",
            self.pid,
            self.generation(),
            self.worker()
        )
    }

    fn to_json(&self) -> String {
        let fds: Vec<String> = self.fds.iter().map(|fd| fd.to_string()).collect();
        format!(
            concat!(
                "{{\"pid\":{},\"listen_fds\":{},\"listen_fdnames\":{},\"listen_pid\":{},",
                "\"notify_socket\":{},\"generation\":{},\"worker\":{},\"fds\":[{}]}}\n"
            ),
            self.pid,
            json_string(self.listen_fds.as_deref()),
            json_string(self.listen_fdnames.as_deref()),
            json_string(self.listen_pid.as_deref()),
            json_string(self.notify_socket.as_deref()),
            json_string(self.generation.as_deref()),
            json_string(self.worker.as_deref()),
            fds.join(","),
        )
    }
}

/// Lists the open file descriptors by reading `/proc/self/fd`.
///
/// Reading the directory opens one more descriptor; it is left out (its link
/// points at the `/proc/<pid>/fd` directory itself).
fn open_fds() -> Vec<i32> {
    let dir = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("hello: cannot list open fds from /proc/self/fd: {err}");
            return Vec::new();
        }
    };
    let mut fds = Vec::new();
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // Must be read while the directory is still open, or the iterator's
        // own descriptor would already be gone.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // closed in the meantime
        };
        let target = target.to_string_lossy();
        let is_this_listing = target.starts_with("/proc/") && target.ends_with("/fd");
        if !is_this_listing {
            fds.push(fd);
        }
    }
    fds.sort_unstable();
    fds
}

/// Formats an optional string as a JSON string literal, or `null`.
fn json_string(value: Option<&str>) -> String {
    let Some(value) = value else {
        return "null".to_string();
    };
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Command-line options.
#[derive(Default)]
struct Options {
    exit_at_start: bool,
    never_ready: bool,
    ready_after: Option<Duration>,
    drain_delay: Duration,
    /// Bind this address itself instead of taking a socket: the naive way,
    /// which the benchmark compares handoff against.
    bind: Option<String>,
    drain: Drain,
}

const USAGE: &str = "usage: hello [--exit-at-start] [--never-ready] \
                     [--ready-after <millis>] [--drain-delay <millis>] [--bind <addr>] \
                     [--sloppy-drain]";

/// The environment variable that turns on the sloppy drain, as the flag does.
const SLOPPY_DRAIN_ENV: &str = "HELLO_SLOPPY_DRAIN";

/// Reads `HELLO_SLOPPY_DRAIN`: `1`/`true`/`yes` turn the sloppy drain on,
/// unset, empty, `0`/`false`/`no` leave it off; anything else is a mistake
/// worth stopping for (a typo must not quietly test the careful drain).
fn drain_from_env(value: Option<std::ffi::OsString>) -> Result<Drain, String> {
    let Some(value) = value else {
        return Ok(Drain::Careful);
    };
    match value.to_string_lossy().as_ref() {
        "1" | "true" | "yes" => Ok(Drain::Sloppy),
        "" | "0" | "false" | "no" => Ok(Drain::Careful),
        other => Err(format!(
            "{SLOPPY_DRAIN_ENV}={other:?}: expected 1, true, yes, 0, false or no"
        )),
    }
}

fn parse_args(
    mut args: impl Iterator<Item = String>,
    sloppy_env: Option<std::ffi::OsString>,
) -> Result<Options, String> {
    let mut options = Options {
        drain: drain_from_env(sloppy_env)?,
        ..Options::default()
    };
    let millis = |flag: &str, value: Option<String>| -> Result<Duration, String> {
        let value = value.ok_or_else(|| format!("{flag} needs a value in milliseconds"))?;
        let ms = value
            .parse::<u64>()
            .map_err(|_| format!("{flag}: {value:?} is not a number of milliseconds"))?;
        Ok(Duration::from_millis(ms))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--exit-at-start" => options.exit_at_start = true,
            "--never-ready" => options.never_ready = true,
            "--ready-after" => options.ready_after = Some(millis(&arg, args.next())?),
            "--drain-delay" => options.drain_delay = millis(&arg, args.next())?,
            "--sloppy-drain" => options.drain = Drain::Sloppy,
            "--bind" => {
                options.bind = Some(
                    args.next()
                        .ok_or("--bind needs an address, e.g. 127.0.0.1:8080")?,
                )
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    // Look at what we inherited before anything (the tokio runtime, the
    // listener, ...) opens file descriptors of its own.
    let info = StartupInfo::capture();

    let options = match parse_args(std::env::args().skip(1), std::env::var_os(SLOPPY_DRAIN_ENV)) {
        Ok(options) => options,
        Err(msg) => {
            eprintln!("hello: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    if options.exit_at_start {
        eprintln!("hello: pid {} exiting at start (--exit-at-start)", info.pid);
        return ExitCode::from(3);
    }

    // Read LISTEN_FDS/LISTEN_PID now, while the process has a single thread:
    // listenfd removes those variables from the environment, and changing the
    // environment is only safe before other threads exist. The sockets
    // themselves are taken later, in `run`.
    let listen_fds = ListenFd::from_env();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hello: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(Arc::new(info), options, listen_fds));
    // Do not wait for connections that outlived the drain timeout.
    runtime.shutdown_background();
    code
}

async fn run(info: Arc<StartupInfo>, options: Options, mut listen_fds: ListenFd) -> ExitCode {
    let pid = info.pid;
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("hello: cannot install signal handlers: {err}");
            return ExitCode::FAILURE;
        }
    };

    // Pretend to have a slow start-up, if asked to. A signal ends it early.
    if let Some(delay) = options.ready_after {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            signal = signals.recv() => {
                println!("hello: pid {pid} got {signal} before serving, exiting");
                return ExitCode::SUCCESS;
            }
        }
    }

    let taken = match &options.bind {
        // tokio's bind sets SO_REUSEADDR, as most servers do.
        Some(addr) => TcpListener::bind(addr)
            .await
            .map(Listener::Tcp)
            .map_err(|err| format!("cannot bind {addr}: {err}")),
        None => Listener::take(&mut listen_fds),
    };
    let mut listener = match taken {
        Ok(listener) => listener,
        Err(msg) => {
            eprintln!("hello: {msg}");
            return ExitCode::from(2);
        }
    };

    if !options.never_ready {
        // `false`: leave NOTIFY_SOCKET in the environment (changing the
        // environment is not safe once there are several threads).
        if let Err(err) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
            eprintln!("hello: could not send READY=1: {err}");
        }
    }
    let sloppy = options.drain == Drain::Sloppy;
    println!(
        "hello: pid {pid} generation {} serving on {}{}",
        info.generation(),
        listener.local_addr(),
        if sloppy { " (sloppy drain)" } else { "" }
    );

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let dropped = Arc::new(AtomicU64::new(0));
    let connections = Connections {
        shutdown: shutdown_rx,
        alive,
        drain: options.drain,
        dropped: Arc::clone(&dropped),
    };
    let signal = 'serving: loop {
        let accepted = tokio::select! {
            // Check for a signal first, so we stop accepting as soon as one
            // arrives.
            biased;
            signal = signals.recv() => break signal,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => {
                serve_accepted(accepted, &info, &connections);
                if sloppy {
                    accept_batch(&listener, &info, &connections).await;
                }
            }
            Err(err) => {
                // For example EMFILE (too many open files): log it, pause,
                // and try again rather than crash.
                eprintln!("hello: accept failed: {err}");
                // A listener someone shut down (EINVAL) waits until handoff
                // makes it listen again. It reported "closed" to tokio,
                // which keeps that for good and would spin on accept once
                // it listens again: then register it afresh.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                        signal = signals.recv() => break 'serving signal,
                    }
                    if listener.is_listening() {
                        break;
                    }
                }
                listener = match listener.renew() {
                    Ok(renewed) => renewed,
                    Err(err) => {
                        // The listener is gone with the error: let handoff
                        // start another worker.
                        eprintln!("hello: cannot use the listener again: {err}");
                        std::process::exit(1);
                    }
                };
            }
        }
    };

    // Close our copy of the listening socket. Only close it: `shutdown()`
    // would stop the socket for every process sharing it, including the
    // supervisor and the next generation. Connections still waiting in its
    // queue are accepted by the next generation.
    drop(listener);
    eprintln!("hello: pid {pid} got {signal}, draining");

    // Requests in flight finish; idle keep-alive connections are closed.
    let _ = shutdown.send(true);
    drop(connections);
    tokio::select! {
        result = tokio::time::timeout(DRAIN_TIMEOUT, all_done.recv()) => {
            if result.is_err() {
                eprintln!(
                    "hello: pid {pid} some connections still open after {}s, giving up on them",
                    DRAIN_TIMEOUT.as_secs()
                );
            }
        }
        signal = signals.recv() => {
            eprintln!("hello: pid {pid} got {signal} again, not waiting for connections");
        }
    }

    if sloppy {
        // On stdout, before "drained, exiting": a reader of the log finds
        // the count before the exit line.
        println!(
            "hello: pid {pid} closed {} connections with their request unread (--sloppy-drain)",
            dropped.load(Ordering::Relaxed)
        );
    }

    if !options.drain_delay.is_zero() {
        eprintln!(
            "hello: pid {pid} waiting {} ms before exiting (--drain-delay)",
            options.drain_delay.as_millis()
        );
        tokio::time::sleep(options.drain_delay).await;
    }

    println!("hello: pid {pid} drained, exiting");
    ExitCode::SUCCESS
}

fn serve_accepted(accepted: Accepted, info: &Arc<StartupInfo>, connections: &Connections) {
    match accepted {
        Accepted::Tcp(stream) => serve_connection(stream, info, connections),
        Accepted::Unix(stream) => serve_connection(stream, info, connections),
    }
}

/// The sloppy drain's eager accept: after one connection, takes every other
/// pending one at once, up to SLOPPY_ACCEPT_BATCH, before any of them is
/// read. Stops at the first "nothing pending" or error (the main loop deals
/// with errors).
async fn accept_batch(listener: &Listener, info: &Arc<StartupInfo>, connections: &Connections) {
    for _ in 1..SLOPPY_ACCEPT_BATCH {
        match listener.try_accept().await {
            Some(Ok(accepted)) => serve_accepted(accepted, info, connections),
            Some(Err(_)) | None => break,
        }
    }
}

/// Serves one connection with HTTP/1.1 (keep-alive on) in its own task,
/// and drains it on shutdown. The careful drain: every response from then
/// on says `Connection: close`, so the connection ends after the request in
/// flight or the next one (see DRAIN_IDLE_GRACE). The sloppy drain: see
/// `Drain::Sloppy`.
fn serve_connection<S>(stream: S, info: &Arc<StartupInfo>, connections: &Connections)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::clone(info);
    let for_service = connections.clone();
    // Set once hyper has read a request head and calls the service.
    let request_read = Arc::new(AtomicBool::new(false));
    let read_flag = Arc::clone(&request_read);
    let service = service_fn(move |req| {
        read_flag.store(true, Ordering::Relaxed);
        let connections = for_service.clone();
        let info = Arc::clone(&info);
        async move {
            let mut response = handle(req, info).await?;
            if connections.draining() {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        // The timer makes hyper's default 30 s header-read timeout effective.
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    let Connections {
        mut shutdown,
        alive,
        drain,
        dropped,
    } = connections.clone();
    tokio::spawn(async move {
        let mut connection = std::pin::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            _ = set(&mut shutdown) => match drain {
                Drain::Careful => tokio::select! {
                    result = connection.as_mut() => result,
                    _ = tokio::time::sleep(DRAIN_IDLE_GRACE) => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                },
                Drain::Sloppy if !request_read.load(Ordering::Relaxed) => {
                    // Returning drops the connection, which closes the
                    // socket: with the request still unread in it, the
                    // kernel answers the client with a reset.
                    dropped.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Drain::Sloppy => {
                    // Ends the request in flight, or closes the connection
                    // at once if it waits for its next request.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            },
        };
        finish(result, alive);
    });
}

/// Resolves once the flag is true.
async fn set(flag: &mut watch::Receiver<bool>) {
    // Drop the guard wait_for returns at once: it must not live across an
    // await in a task that may move between threads.
    let _ = flag.wait_for(|v| *v).await;
}

fn finish(result: hyper::Result<()>, alive: mpsc::Sender<()>) {
    if let Err(err) = result {
        eprintln!("hello: connection error: {err}");
    }
    drop(alive);
}

async fn handle(
    req: Request<Incoming>,
    info: Arc<StartupInfo>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => text(StatusCode::OK, info.hello_line()),
        (&Method::GET, "/env") => json(info.to_json()),
        (&Method::GET, "/slow") => match query_millis(req.uri().query()) {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                text(StatusCode::OK, info.hello_line())
            }
            None => text(
                StatusCode::BAD_REQUEST,
                "usage: /slow?ms=<milliseconds>\n".to_string(),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    Ok(with_pid(response, info.pid))
}

/// Finds `ms=<number>` in a query string.
fn query_millis(query: Option<&str>) -> Option<Duration> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", body)
}

fn json(body: String) -> Response<Full<Bytes>> {
    response(StatusCode::OK, "application/json", body)
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

fn with_pid(mut response: Response<Full<Bytes>>, pid: u32) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert("x-pid", hyper::header::HeaderValue::from(pid));
    response
}

/// The inherited listening socket: TCP, or a unix stream socket.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Takes the first socket passed by the supervisor (fd 3).
    fn take(listen_fds: &mut ListenFd) -> Result<Listener, String> {
        const NO_SOCKET: &str = "no listening socket passed (run me under handoff)";
        if listen_fds.len() == 0 {
            return Err(NO_SOCKET.to_string());
        }
        // take_tcp_listener fails (and leaves the fd in place) if fd 3 is
        // not a TCP socket; then try it as a unix socket.
        let listener = match listen_fds.take_tcp_listener(0) {
            Ok(Some(std_listener)) => Self::tcp(std_listener),
            Ok(None) => return Err(NO_SOCKET.to_string()),
            Err(tcp_err) => match listen_fds.take_unix_listener(0) {
                Ok(Some(std_listener)) => Self::unix(std_listener),
                Ok(None) => return Err(NO_SOCKET.to_string()),
                Err(unix_err) => {
                    return Err(format!(
                        "the socket passed is neither a TCP nor a unix stream listener \
                         ({tcp_err}; {unix_err})"
                    ))
                }
            },
        };
        listener.map_err(|err| format!("cannot use the socket passed: {err}"))
    }

    // tokio requires non-blocking sockets (debug builds panic otherwise), and
    // an inherited socket may well be blocking.
    fn tcp(listener: std::net::TcpListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener).map(Listener::Tcp)
    }

    fn unix(listener: std::os::unix::net::UnixListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        UnixListener::from_std(listener).map(Listener::Unix)
    }

    /// Whether the socket accepts connections (SO_ACCEPTCONN).
    fn is_listening(&self) -> bool {
        let listening = match self {
            Listener::Tcp(listener) => socket2::SockRef::from(listener).is_listener(),
            Listener::Unix(listener) => socket2::SockRef::from(listener).is_listener(),
        };
        listening.unwrap_or(true)
    }

    /// The same socket with a fresh registration in tokio's poller.
    fn renew(self) -> io::Result<Listener> {
        match self {
            Listener::Tcp(listener) => Self::tcp(listener.into_std()?),
            Listener::Unix(listener) => Self::unix(listener.into_std()?),
        }
    }

    /// Accepts a connection if one is pending, without waiting for one.
    async fn try_accept(&self) -> Option<io::Result<Accepted>> {
        // One poll: Pending means nothing is queued (tokio then keeps the
        // waker, which does no harm: the next `accept` replaces it).
        let polled = std::future::poll_fn(|cx| {
            Poll::Ready(match self {
                Listener::Tcp(listener) => listener
                    .poll_accept(cx)
                    .map(|r| r.map(|(s, _)| Accepted::Tcp(s))),
                Listener::Unix(listener) => listener
                    .poll_accept(cx)
                    .map(|r| r.map(|(s, _)| Accepted::Unix(s))),
            })
        })
        .await;
        match polled {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }

    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(listener) => listener.accept().await.map(|(s, _)| Accepted::Tcp(s)),
            Listener::Unix(listener) => listener.accept().await.map(|(s, _)| Accepted::Unix(s)),
        }
    }

    fn local_addr(&self) -> String {
        let addr = match self {
            Listener::Tcp(listener) => listener.local_addr().map(|addr| addr.to_string()),
            Listener::Unix(listener) => {
                listener.local_addr().map(|addr| match addr.as_pathname() {
                    Some(path) => format!("unix:{}", path.display()),
                    None => format!("unix:{addr:?}"),
                })
            }
        };
        addr.unwrap_or_else(|err| format!("<unknown address: {err}>"))
    }
}

/// SIGTERM (sent by handoff to retire a generation) and SIGINT (Ctrl-C).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT and returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
