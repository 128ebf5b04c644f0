//! The load generator: `clients` concurrent HTTP/1.1 clients, each sending
//! GET / in a loop until stopped, timing every request and classifying
//! every failure. Written here so the benchmark needs no outside tool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request slower than this counts as timed out.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new connection per request (`Connection: close`).
    Close,
    /// One connection per client, reused.
    KeepAlive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
    Reset,
    Timeout,
    BadStatus,
}

#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// When the request started, from the load's start.
    pub start: Duration,
    pub latency: Duration,
    pub outcome: Outcome,
    /// A reused keep-alive connection was closed by the server before it
    /// answered (a draining server closing an idle connection), and the
    /// request was sent again on a new one, as HTTP clients do.
    pub retried: bool,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    pub epoch: Instant,
    tasks: Vec<tokio::task::JoinHandle<Vec<Record>>>,
    runtime: tokio::runtime::Runtime,
}

impl Load {
    pub fn start(addr: &str, mode: Mode, clients: usize) -> Load {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let tasks = (0..clients)
            .map(|_| runtime.spawn(client(addr.to_string(), mode, stop.clone(), epoch)))
            .collect();
        Load {
            stop,
            epoch,
            tasks,
            runtime,
        }
    }

    /// Stops the clients and returns every request's record.
    pub fn stop(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        let Load { tasks, runtime, .. } = self;
        let mut all = Vec::new();
        runtime.block_on(async {
            for t in tasks {
                all.extend(t.await.expect("a load client panicked"));
            }
        });
        all.sort_by_key(|r| r.start);
        all
    }
}

async fn client(addr: String, mode: Mode, stop: Arc<AtomicBool>, epoch: Instant) -> Vec<Record> {
    let mut records = Vec::with_capacity(16 * 1024);
    let mut conn: Option<TcpStream> = None;
    let request: &[u8] = match mode {
        Mode::Close => b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n",
        Mode::KeepAlive => b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n",
    };
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let mut retried = false;
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            loop {
                let reused = conn.is_some();
                let mut stream = match conn.take() {
                    Some(s) => s,
                    None => TcpStream::connect(&addr).await.map_err(classify)?,
                };
                match exchange(&mut stream, request, &mut buf).await {
                    Ok((status, keep)) => {
                        if mode == Mode::KeepAlive && keep {
                            conn = Some(stream);
                        }
                        return Ok(status);
                    }
                    // RFC 9112 9.3.1: a request on a reused connection that
                    // the server closed before answering may be retried.
                    Err(Exchange::ClosedBeforeAnswer) if reused && !retried => retried = true,
                    Err(e) => return Err(e.outcome()),
                }
            }
        })
        .await;
        let outcome = match result {
            Ok(Ok(200)) => Outcome::Ok,
            Ok(Ok(_)) => Outcome::BadStatus,
            Ok(Err(outcome)) => outcome,
            Err(_) => {
                conn = None;
                Outcome::Timeout
            }
        };
        records.push(Record {
            start: start.duration_since(epoch),
            latency: start.elapsed(),
            outcome,
            retried,
        });
    }
    records
}

enum Exchange {
    /// EOF or reset before a single byte of the answer.
    ClosedBeforeAnswer,
    Failed(Outcome),
}

impl Exchange {
    fn outcome(self) -> Outcome {
        match self {
            Exchange::ClosedBeforeAnswer => Outcome::Reset,
            Exchange::Failed(o) => o,
        }
    }
}

fn classify(e: std::io::Error) -> Outcome {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
        _ => Outcome::Reset,
    }
}

/// Sends one request and reads one response; returns (status, whether the
/// connection may be reused).
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(u16, bool), Exchange> {
    let closed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
            Exchange::ClosedBeforeAnswer
        }
        _ => Exchange::Failed(classify(e)),
    };
    stream.write_all(request).await.map_err(closed)?;
    let mut have = 0;
    let head_end = loop {
        if have == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = stream.read(&mut buf[have..]).await.map_err(|e| {
            if have == 0 {
                closed(e)
            } else {
                Exchange::Failed(Outcome::Reset)
            }
        })?;
        if n == 0 {
            return Err(if have == 0 {
                Exchange::ClosedBeforeAnswer
            } else {
                Exchange::Failed(Outcome::Reset)
            });
        }
        have += n;
        if let Some(i) = find(&buf[..have], b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| Exchange::Failed(Outcome::BadStatus))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(Exchange::Failed(Outcome::BadStatus))?;
    let lower = head.to_ascii_lowercase();
    let length: usize = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let keep = !lower.contains("connection: close");
    let mut body = have - head_end;
    while body < length {
        let n = stream
            .read(&mut buf[..])
            .await
            .map_err(|_| Exchange::Failed(Outcome::Reset))?;
        if n == 0 {
            return Err(Exchange::Failed(Outcome::Reset));
        }
        body += n;
    }
    Ok((status, keep))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
