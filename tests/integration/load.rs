//! A small load generator: client threads doing one HTTP request per
//! connection until told to stop, counting every failure by kind.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bounds every read and write, so a stuck request fails instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// One GET with `Connection: close`; returns (status, body).
pub fn request(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("incomplete response: {text:?}"),
        )
    })?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line: {head:?}"),
            )
        })?;
    Ok((status, body.to_string()))
}

#[derive(Debug, Default)]
pub struct Tally {
    pub ok: u64,
    /// Failure kind (e.g. "ConnectionRefused", "status 502") -> count.
    pub failed: BTreeMap<String, u64>,
    /// Response bodies seen, deduplicated (they name the pid).
    pub bodies: BTreeMap<String, u64>,
}

impl Tally {
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    /// The first failure that is not a connection the server accepted and
    /// closed without an answer (a reset, an end of file, or a broken pipe
    /// when the client's write came after the server's reset): one refused
    /// or timed out, say.
    pub fn other_than_closed_unanswered(&self) -> Option<&str> {
        self.failed.keys().map(String::as_str).find(|kind| {
            !(kind.starts_with("ConnectionReset")
                || kind.starts_with("UnexpectedEof")
                || kind.starts_with("BrokenPipe"))
        })
    }
}

/// Client threads hammering `addr` until `stop()`.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tally: Arc<(Mutex<Tally>, Condvar)>,
}

impl Load {
    pub fn start(addr: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new((Mutex::new(Tally::default()), Condvar::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, tally, addr) = (stop.clone(), tally.clone(), addr.to_string());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let result = request(&addr, "/");
                        let mut t = tally.0.lock().expect("tally lock");
                        match result {
                            Ok((200, body)) => {
                                t.ok += 1;
                                *t.bodies.entry(body).or_default() += 1;
                            }
                            Ok((code, _)) => {
                                *t.failed.entry(format!("status {code}")).or_default() += 1
                            }
                            Err(e) => {
                                *t.failed.entry(format!("{:?}: {e}", e.kind())).or_default() += 1
                            }
                        }
                        tally.1.notify_all();
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            tally,
        }
    }

    /// Waits until `n` more requests have completed (successfully or not).
    pub fn wait_for_more(&self, n: u64) {
        let (lock, cvar) = &*self.tally;
        let mut t = lock.lock().expect("tally lock");
        let target = t.ok + t.failures() + n;
        let deadline = std::time::Instant::now() + crate::harness::DEADLINE;
        while t.ok + t.failures() < target {
            let left = deadline
                .checked_duration_since(std::time::Instant::now())
                .unwrap_or_else(|| panic!("load made fewer than {n} requests in time: {:?}", *t));
            t = cvar.wait_timeout(t, left).expect("tally lock").0;
        }
    }

    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a load thread panicked");
        }
        let (lock, _) = Arc::try_unwrap(self.tally).expect("threads are done");
        lock.into_inner().expect("tally lock")
    }
}
