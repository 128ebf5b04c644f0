//! handoff's own log: tracing's fmt lines on stderr, written so that a bad
//! stderr can neither kill nor stall the supervisor.
//!
//! - Closed (`handoff run 2>&1 | head`): a write fails with EPIPE (Rust
//!   ignores SIGPIPE). `eprintln!`, and tracing-subscriber's report of a
//!   failed write, panic on that; a supervisor that dies takes its children
//!   with it. Nothing here panics on a write.
//! - Full (a pipe nobody reads): a write blocks, and the supervisor's
//!   single-threaded event loop with it. So the loop only appends each
//!   formatted line to a small bounded buffer; a thread of its own writes
//!   the buffer to stderr. When the buffer is full, lines are dropped and
//!   counted, and once stderr takes lines again the log says how many were
//!   lost.
//!
//! The buffer is flushed, with a deadline, before handoff exits, before an
//! upgrade's exec (a thread does not survive exec) and when it panics.
//! Short-lived commands (the clients, `check`) write straight to stderr:
//! blocking is harmless there, and they must not panic either.
//! The children's output never passes through here: they inherit stderr.

use std::fmt::Display;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// At most this many bytes of log wait for stderr: on top of the pipe's
/// own 64 KiB, room for a burst while the writer thread is not scheduled,
/// small beside the supervisor's ~4 MiB.
const BUFFER: usize = 32 * 1024;

/// How long exit, exec and a panic wait for the buffer to reach stderr;
/// past it, with nobody reading, the rest is lost.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// The writer thread's stack: it only moves bytes.
const WRITER_STACK: usize = 64 * 1024;

/// How handoff writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Straight to stderr, ignoring errors: for commands that exit soon.
    Direct,
    /// Through the bounded buffer and the writer thread: for the
    /// supervisor.
    Buffered,
}

/// Sets up the tracing subscriber for the process (once, in `main`).
pub fn init(level: tracing::Level, output: Output) {
    let buffered = output == Output::Buffered && start_writer().is_ok();
    if buffered {
        // A panic aborts (release profile): write what is buffered first,
        // the lines that lead up to it matter most.
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            report(info);
        }));
    }
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        // Its report of a failed write is an `eprintln!`, which panics
        // when stderr is gone. Neither writer here fails anyway.
        .log_internal_errors(false)
        .with_writer(Stderr);
    // journald stamps each line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

/// Prints `handoff: {message}` for the user on stderr, in order with the
/// log, never panicking.
pub fn error(message: impl Display) {
    let line = format!("handoff: {message}\n");
    match writer() {
        Some(writer) => writer.push(line.as_bytes()),
        None => {
            let _ = io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Waits, at most FLUSH_TIMEOUT, until everything logged so far was
/// handed to stderr. Does nothing where the log is not buffered.
pub fn flush() {
    if let Some(writer) = writer() {
        writer.flush(Instant::now() + FLUSH_TIMEOUT);
    }
}

static WRITER: Writer = Writer::new();

/// Whether the writer thread runs: until then, and if it cannot start,
/// lines go straight to stderr.
static RUNNING: AtomicBool = AtomicBool::new(false);

fn writer() -> Option<&'static Writer> {
    RUNNING.load(Ordering::Acquire).then_some(&WRITER)
}

/// Starts the writer thread with every signal blocked, from its first
/// instruction (a thread inherits its creator's mask): the kernel may
/// deliver a process signal to any thread that does not block it, and an
/// upgrade keeps signals pending across its exec by blocking them in the
/// event loop's thread (`sys::block_signals`), the only one that may take
/// them.
fn start_writer() -> io::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow};
    let before = SigSet::all()
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(io::Error::from)?;
    let started = std::thread::Builder::new()
        .name("handoff-log".into())
        .stack_size(WRITER_STACK)
        .spawn(|| WRITER.run());
    // Cannot fail: `before` was the mask a moment ago.
    let _ = before.thread_set_mask();
    started
        .map(|_| RUNNING.store(true, Ordering::Release))
        .map_err(|e| {
            let _ = writeln!(
                io::stderr(),
                "handoff: cannot start the log writer thread ({e}); logging straight to stderr"
            );
            e
        })
}

/// The buffer between the event loop and the writer thread.
struct Writer {
    state: Mutex<State>,
    /// Signalled when lines arrive (for the writer) and when the writer
    /// is done with a batch (for `flush`).
    changed: Condvar,
}

struct State {
    pending: Vec<u8>,
    /// Lines dropped since the writer last took the buffer. Once one is
    /// dropped, every later one is too until then, so that all of them
    /// come after what is pending and the log has one gap, not several.
    dropped: u64,
    /// The writer holds a batch it has not finished writing.
    writing: bool,
}

impl Writer {
    const fn new() -> Writer {
        Writer {
            state: Mutex::new(State {
                pending: Vec::new(),
                dropped: 0,
                writing: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the
        // state is still a valid buffer.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, line: &[u8]) {
        let mut state = self.lock();
        if state.dropped > 0 || state.pending.len() + line.len() > BUFFER {
            state.dropped += 1;
            return;
        }
        state.pending.extend_from_slice(line);
        self.changed.notify_all();
    }

    fn flush(&self, deadline: Instant) {
        let mut state = self.lock();
        while state.writing || !state.pending.is_empty() || state.dropped > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The writer thread: takes the whole buffer, writes it, and again.
    fn run(&self) {
        let mut batch = Vec::with_capacity(BUFFER);
        // Lines that neither reached stderr nor were reported lost yet.
        let mut lost = 0;
        loop {
            let dropped = {
                let mut state = self.lock();
                state.writing = false;
                self.changed.notify_all();
                while state.pending.is_empty() && state.dropped == 0 {
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                std::mem::swap(&mut state.pending, &mut batch);
                state.writing = true;
                std::mem::take(&mut state.dropped)
            };
            // Lost earlier, so reported before this batch.
            report_lost(&mut lost);
            lost += write_lines(&mut io::stderr(), &batch);
            batch.clear();
            // Dropped while this batch waited: after it.
            lost += dropped;
            report_lost(&mut lost);
        }
    }
}

/// Writes whole lines, at most PIPE_BUF bytes at a time where the lines
/// allow: such a write to a pipe is atomic, so a child's output, which
/// shares the pipe, never lands inside a line of handoff's. Returns how
/// many lines were not written.
fn write_lines(out: &mut impl Write, mut bytes: &[u8]) -> u64 {
    let lines = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count() as u64;
    while !bytes.is_empty() {
        let end = if bytes.len() <= libc::PIPE_BUF {
            bytes.len()
        } else if let Some(i) = bytes[..libc::PIPE_BUF].iter().rposition(|&c| c == b'\n') {
            i + 1
        } else {
            // A line longer than PIPE_BUF: on its own.
            bytes
                .iter()
                .position(|&c| c == b'\n')
                .map_or(bytes.len(), |i| i + 1)
        };
        if out.write_all(&bytes[..end]).is_err() {
            return lines(bytes);
        }
        bytes = &bytes[end..];
    }
    0
}

fn report_lost(lost: &mut u64) {
    if *lost == 0 {
        return;
    }
    // One write, like every log line: the children share this stderr.
    let line = format!("handoff: {lost} log line(s) lost: stderr did not take them in time\n");
    if io::stderr().write_all(line.as_bytes()).is_ok() {
        *lost = 0;
    }
}

/// tracing's writer: one `write` per formatted event.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line
    }
}

struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match writer() {
            Some(writer) => writer.push(buf),
            // What cannot be written is lost; the caller carries on.
            _ => {
                let _ = io::stderr().write_all(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_line_is_dropped_the_later_ones_are_too_until_the_writer_catches_up() {
        let writer = Writer::new();
        let line = [b'x'; 1000];
        while writer.lock().dropped == 0 {
            writer.push(&line);
        }
        let kept = writer.lock().pending.len();
        assert!(kept <= BUFFER, "{kept} bytes buffered");
        // A short line would fit, but would land after the gap.
        writer.push(b"short\n");
        let state = writer.lock();
        assert_eq!((state.pending.len(), state.dropped), (kept, 2));
    }

    /// Records each write.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_batch_is_written_in_whole_lines_of_at_most_pipe_buf_bytes() {
        let mut batch = Vec::new();
        for i in 0..100 {
            batch.extend_from_slice(format!("{i:>99}\n").as_bytes());
        }
        let long = format!("{}\n", "y".repeat(libc::PIPE_BUF + 10));
        batch.extend_from_slice(long.as_bytes());
        batch.extend_from_slice(b"last\n");
        let mut out = Writes::default();
        assert_eq!(write_lines(&mut out, &batch), 0);
        assert_eq!(out.0.concat(), batch, "everything, in order");
        for w in &out.0 {
            assert!(w.ends_with(b"\n"), "whole lines");
            assert!(
                w.len() <= libc::PIPE_BUF || w == long.as_bytes(),
                "{} bytes",
                w.len()
            );
        }
        assert!(
            out.0.len() < 10,
            "{} writes: lines are grouped",
            out.0.len()
        );
    }

    #[test]
    fn a_flush_nobody_serves_gives_up_at_its_deadline() {
        let writer = Writer::new();
        writer.push(b"never written\n");
        let started = Instant::now();
        writer.flush(started + Duration::from_millis(50));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(writer.lock().pending, b"never written\n");
    }
}
