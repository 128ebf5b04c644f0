//! When the control socket cannot accept: the spare fd that still lets it
//! answer at the fd limit, and how often to retry and to say so.
//!
//! At the process's fd limit `accept` fails with EMFILE and leaves the
//! client in the backlog, where it would wait forever, while the listener
//! stays readable and every retry fails the same way. The classic way out
//! (libev, nginx) is a spare fd held for the purpose: close it, accept,
//! answer `busy` ("out of file descriptors"), close, and take the spare
//! back. Whatever still fails (no spare could be had, other errors) is
//! retried with a growing delay, and reported once, then at most once a
//! minute with the number of failures since, not once per retry.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::net::UnixListener;

/// The first retry after a failed accept comes this soon; each failure in
/// a row doubles it, up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// At most one warning per this long, however often accept fails.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// At most this many waiting clients are answered per spare-fd round (the
/// control socket's backlog is 128), so the loop always ends.
const MAX_SHED: usize = 256;

/// True for the errors that mean "no fd left", for this process (EMFILE)
/// or the whole system (ENFILE): the spare fd helps with both.
pub fn out_of_fds(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// An fd kept open only to be closed when none is left: `/dev/null`,
/// CLOEXEC (std opens every file so), so no child inherits it.
#[derive(Debug)]
pub struct Spare(Option<OwnedFd>);

impl Spare {
    /// Opens the spare; without one (already at the limit) the server
    /// still works, it only cannot answer clients at the limit.
    pub fn open() -> Spare {
        Spare(None).refilled()
    }

    fn refilled(mut self) -> Spare {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok().map(OwnedFd::from);
        }
        self
    }

    /// Accepts every client waiting on `listener` and writes `answer` to
    /// it, using the spare fd's place, then takes the spare back. Returns
    /// how many clients were answered, or None without a spare.
    ///
    /// Some(0) is common: accept fails with EMFILE before it looks at the
    /// queue, so a retry after the last free fd was taken fails even when
    /// nobody waits. Either way the queue was found empty, which also lets
    /// the next `accept().await` wait for a new client instead of failing
    /// again at once.
    pub fn shed(&mut self, listener: &UnixListener, answer: &[u8]) -> Option<usize> {
        if self.0.is_none() {
            // Fds may have been freed since it was lost.
            *self = Spare(None).refilled();
        }
        drop(self.0.take()?);
        let mut answered = 0;
        while answered < MAX_SHED {
            let Some(Ok((stream, _))) = try_accept(listener) else {
                break;
            };
            // Blocking-free: the socket is non-blocking and a fresh one has
            // room for a line. Whether the client reads it is its affair.
            if let Ok(stream) = stream.into_std() {
                let _ = (&stream).write(answer);
            }
            answered += 1;
        }
        *self = Spare(None).refilled();
        Some(answered)
    }

    #[cfg(test)]
    fn is_held(&self) -> bool {
        self.0.is_some()
    }
}

/// One accept that does not wait: None when nobody is waiting.
fn try_accept(
    listener: &UnixListener,
) -> Option<io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)>> {
    // A no-op waker: the serve loop's own `accept().await` registers its
    // waker again before it waits.
    let mut cx = Context::from_waker(Waker::noop());
    match listener.poll_accept(&mut cx) {
        Poll::Ready(result) => Some(result),
        Poll::Pending => None,
    }
}

/// Failed accepts in a row: how long to wait before the next try, and
/// when to say so in the log.
#[derive(Debug, Default)]
pub struct Trouble {
    /// Failures since the last success: the retry delay grows with it.
    streak: u32,
    /// Failures not yet counted in a log line.
    unreported: u64,
    warned_at: Option<Instant>,
    /// A warning went out and no "accepting again" yet.
    announced: bool,
}

impl Trouble {
    /// Counts a failure. Some(n) means "warn now": n failures (this one
    /// included) since the last warning.
    pub fn failed(&mut self, now: Instant) -> Option<u64> {
        self.streak = self.streak.saturating_add(1);
        self.unreported += 1;
        let due = match self.warned_at {
            None => true,
            Some(at) => now.saturating_duration_since(at) >= WARN_EVERY,
        };
        if !due {
            return None;
        }
        self.warned_at = Some(now);
        self.announced = true;
        Some(std::mem::take(&mut self.unreported))
    }

    /// How long to wait before retrying after the latest failure.
    pub fn retry_delay(&self) -> Duration {
        let doublings = self.streak.saturating_sub(1).min(16);
        FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY)
    }

    /// Counts a success. Some(n) means "say it works again": a warning
    /// went out, and n more failures came after it.
    pub fn accepted(&mut self) -> Option<u64> {
        self.streak = 0;
        if !std::mem::take(&mut self.announced) {
            return None;
        }
        Some(std::mem::take(&mut self.unreported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_then_one_a_minute_with_the_count() {
        let start = Instant::now();
        let mut t = Trouble::default();
        assert_eq!(t.failed(start), Some(1));
        // A failure every 100 ms for just under a minute: silence.
        for i in 1..600 {
            assert_eq!(t.failed(start + Duration::from_millis(100 * i)), None);
        }
        assert_eq!(t.failed(start + WARN_EVERY), Some(600));
        assert_eq!(t.failed(start + WARN_EVERY + FIRST_RETRY), None);
        assert_eq!(t.accepted(), Some(1), "one failure since the warning");
        assert_eq!(t.accepted(), None, "said once");
    }

    #[test]
    fn flapping_does_not_flood_the_log_either() {
        let start = Instant::now();
        let mut t = Trouble::default();
        let mut lines = 0;
        for i in 0..100 {
            let now = start + Duration::from_millis(100 * i);
            lines += usize::from(t.failed(now).is_some());
            lines += usize::from(t.accepted().is_some());
        }
        assert_eq!(lines, 2, "one warning and one recovery in 10 s");
    }

    #[test]
    fn a_success_without_trouble_says_nothing() {
        let mut t = Trouble::default();
        assert_eq!(t.accepted(), None);
    }

    #[test]
    fn the_retry_delay_doubles_up_to_a_cap_and_resets() {
        let now = Instant::now();
        let mut t = Trouble::default();
        let delays: Vec<_> = (0..8)
            .map(|_| {
                t.failed(now);
                t.retry_delay()
            })
            .collect();
        assert_eq!(delays[0], FIRST_RETRY);
        assert_eq!(delays[1], FIRST_RETRY * 2);
        assert_eq!(delays[2], FIRST_RETRY * 4);
        assert_eq!(delays[7], MAX_RETRY);
        for _ in 0..100 {
            t.failed(now);
        }
        assert_eq!(t.retry_delay(), MAX_RETRY, "no overflow");
        t.accepted();
        t.failed(now);
        assert_eq!(t.retry_delay(), FIRST_RETRY);
    }

    #[tokio::test]
    async fn the_spare_answers_a_waiting_client_and_comes_back() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut spare = Spare::open();
        assert!(spare.is_held());
        assert_eq!(spare.shed(&listener, b"busy\n"), Some(0), "nobody waits");
        let mut a = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut b = tokio::net::UnixStream::connect(&path).await.unwrap();
        assert_eq!(spare.shed(&listener, b"busy\n"), Some(2));
        assert!(spare.is_held());
        for client in [&mut a, &mut b] {
            let mut answer = String::new();
            client.read_to_string(&mut answer).await.unwrap();
            assert_eq!(answer, "busy\n", "answered, then closed");
        }
    }
}
