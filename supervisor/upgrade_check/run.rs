//! Runs the new binary's check (`NEWBINARY __resume --check STATE`) as a
//! child of the running supervisor, from its event loop.
//!
//! The loop goes on while the check runs: the child is started with
//! tokio's `Command`, its exit awaited through tokio's reaper, its stdout
//! and stderr read as they come, so a chatty check can never fill a pipe
//! and stall (the old check read them only after the exit). A check that
//! outlives its timeout is killed with its process group and reaped.
//!
//! Of each stream only the last [`KEEP`] bytes are kept, the rest read and
//! thrown away: the tail, because what a failing program says last is why
//! it failed (log lines come before the final error), and because a
//! successful check says one short line that fits whole.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// How much of each of stdout and stderr is kept: its last 16 KiB.
pub const KEEP: usize = 16 * 1024;

/// After SIGKILL, how long to wait for the kernel to let the check go. A
/// process stuck in the kernel (a dead NFS mount) cannot die at once; the
/// loop does not wait for it, and tokio reaps it when it does die.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Once the check has exited, at most this much more is read from each
/// pipe: what it wrote before exiting fits in a pipe (1 MiB is
/// `fs.pipe-max-size`'s default); more can only come from a process it left
/// behind, which must not keep the loop reading.
const DRAIN_AFTER_EXIT: usize = 1024 * 1024;

/// The output of a check that exited 0.
#[derive(Debug)]
pub struct CheckOutput {
    pub stdout: Captured,
    pub stderr: Captured,
}

/// What the check had said on both streams.
#[derive(Debug, Default)]
pub struct Said {
    pub stdout: Captured,
    pub stderr: Captured,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// One of the fds to hand on is not open (or is 0, 1 or 2, which are
    /// the check's own stdin, stdout and stderr, or is named twice).
    #[error("cannot hand fd {fd} to the check: {source}")]
    HandFd {
        fd: RawFd,
        #[source]
        source: io::Error,
    },
    #[error("cannot run {}: {source}", binary.display())]
    Start {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} did not finish its check within {}{}", binary.display(), crate::ms(*timeout), colon(&said.what()))]
    TimedOut {
        binary: PathBuf,
        timeout: Duration,
        said: Said,
    },
    /// `exit` is [`crate::describe_exit`] of `status`, `stderr` the kept
    /// tail of stderr, trimmed.
    #[error("{} failed its check ({exit}){}", binary.display(), colon(stderr))]
    Failed {
        binary: PathBuf,
        status: ExitStatus,
        exit: String,
        stderr: String,
        stdout: Captured,
    },
    /// tokio could not wait for the child (it is killed on the way out).
    #[error("cannot wait for the check of {}: {source}", binary.display())]
    Wait {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn colon(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// The last [`KEEP`] bytes of a stream, and how many came before them.
#[derive(Default, Clone)]
pub struct Captured {
    /// Up to 2 × KEEP bytes, of which the last KEEP count: trimming only
    /// when it doubles keeps the copying linear in what is read.
    buf: Vec<u8>,
    /// Bytes thrown away from the front of `buf`.
    thrown: u64,
}

impl Captured {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > 2 * KEEP {
            let cut = self.buf.len() - KEEP;
            self.buf.drain(..cut);
            self.thrown += cut as u64;
        }
    }

    /// The bytes kept: the stream's last [`KEEP`] bytes at most.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.buf.len().saturating_sub(KEEP)..]
    }

    /// How many bytes of the stream came before [`Self::bytes`] and were
    /// thrown away.
    pub fn dropped(&self) -> u64 {
        self.thrown + self.buf.len().saturating_sub(KEEP) as u64
    }

    /// The kept bytes as text, trimmed; "…" in front when the start was
    /// thrown away (and no half character after it).
    pub fn text(&self) -> String {
        let mut bytes = self.bytes();
        if self.dropped() == 0 {
            return String::from_utf8_lossy(bytes).trim().to_string();
        }
        // A UTF-8 continuation byte is 0b10xxxxxx; a character has at most
        // three of them.
        for _ in 0..3 {
            match bytes.first() {
                Some(b) if b & 0xC0 == 0x80 => bytes = &bytes[1..],
                _ => break,
            }
        }
        format!("…{}", String::from_utf8_lossy(bytes).trim())
    }
}

/// As text: in an error's Debug, 16 KiB as a list of numbers helps no one.
impl fmt::Debug for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Captured")
            .field("text", &self.text())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Said {
    /// Stderr, or stdout if stderr is empty: what a person wants to see.
    pub fn what(&self) -> String {
        let err = self.stderr.text();
        if err.is_empty() {
            self.stdout.text()
        } else {
            err
        }
    }
}

/// Runs `binary ARGS` with `fds` open at the same numbers (and no other fd
/// above stderr), stdin on /dev/null, no signal blocked or ignored; waits
/// for it without blocking the runtime's thread, at most `timeout`.
/// Succeeds when it exits 0. The fds are duplicated for the child, never
/// changed or closed here.
///
/// Cancel-safe: dropping the future kills the check (tokio reaps it).
pub async fn run_check(
    binary: &Path,
    args: &[&OsStr],
    fds: &[RawFd],
    timeout: Duration,
) -> Result<CheckOutput, CheckError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut cmd = command(binary, args, fds)?;
    let mut child = cmd.spawn().map_err(|source| CheckError::Start {
        binary: binary.to_path_buf(),
        source,
    })?;
    // The Command holds our duplicates of the fds: the child has its own.
    drop(cmd);
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut err = child.stderr.take().expect("stderr is piped");
    let mut said = Said::default();
    let (mut out_open, mut err_open) = (true, true);
    let mut out_buf = vec![0u8; 8192];
    let mut err_buf = vec![0u8; 8192];
    let status = loop {
        tokio::select! {
            // A read error on our own pipe is as good as its end.
            r = out.read(&mut out_buf), if out_open => match r {
                Ok(n) if n > 0 => said.stdout.push(&out_buf[..n]),
                _ => out_open = false,
            },
            r = err.read(&mut err_buf), if err_open => match r {
                Ok(n) if n > 0 => said.stderr.push(&err_buf[..n]),
                _ => err_open = false,
            },
            status = child.wait() => break status,
            () = tokio::time::sleep_until(deadline) => {
                kill(&mut child).await;
                drain(&out, &mut said.stdout);
                drain(&err, &mut said.stderr);
                return Err(CheckError::TimedOut {
                    binary: binary.to_path_buf(),
                    timeout,
                    said,
                });
            }
        }
    };
    let status = status.map_err(|source| CheckError::Wait {
        binary: binary.to_path_buf(),
        source,
    })?;
    // Whatever the check wrote before it exited is in the pipes now. Read
    // it without waiting for the end of the stream, which a process it
    // left behind could hold off forever.
    if out_open {
        drain(&out, &mut said.stdout);
    }
    if err_open {
        drain(&err, &mut said.stderr);
    }
    if status.success() {
        return Ok(CheckOutput {
            stdout: said.stdout,
            stderr: said.stderr,
        });
    }
    Err(CheckError::Failed {
        binary: binary.to_path_buf(),
        status,
        exit: crate::describe_exit(&status),
        stderr: said.stderr.text(),
        stdout: said.stdout,
    })
}

/// The child's command: stdio, signals, fds.
fn command(binary: &Path, args: &[&OsStr], fds: &[RawFd]) -> Result<Command, CheckError> {
    let mut mappings = Vec::with_capacity(fds.len());
    for &fd in fds {
        if fd <= 2 {
            return Err(CheckError::HandFd {
                fd,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "0, 1 and 2 are the check's stdin, stdout and stderr",
                ),
            });
        }
        if mappings.iter().any(|m: &FdMapping| m.child_fd == fd) {
            return Err(CheckError::HandFd {
                fd,
                source: io::Error::new(io::ErrorKind::InvalidInput, "it is named twice"),
            });
        }
        mappings.push(FdMapping {
            parent_fd: dup(fd).map_err(|source| CheckError::HandFd { fd, source })?,
            child_fd: fd,
        });
    }
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a timeout kills whatever it started too,
        // and a Ctrl-C on the supervisor's terminal is the supervisor's.
        .process_group(0)
        .kill_on_drop(true);
    // The hooks run in this order, in the forked child before exec.
    // SAFETY: both hooks only make syscalls (rt_sigaction(2),
    // sigprocmask(2), close_range(2), getrlimit(2), fcntl(2)), which are
    // async-signal-safe; they allocate nothing and take no lock.
    unsafe {
        // The caller may have signals blocked (across an upgrade, it has).
        cmd.pre_exec(crate::sys::reset_signals_in_child);
        // Stray fds the supervisor inherited without FD_CLOEXEC stay out;
        // the mapping below clears the flag again on the fds handed on.
        cmd.pre_exec(mark_cloexec_above_stderr);
    }
    cmd.fd_mappings(mappings)
        .expect("the child fds were checked to be distinct above");
    Ok(cmd)
}

/// A close-on-exec duplicate of `fd`, which this function does not touch.
/// On the raw number, not a `BorrowedFd`: an fd that is not open is an
/// error to report, not undefined behaviour.
fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(2) on an fd number; F_DUPFD_CLOEXEC only creates a new
    // fd (at 3 or above) and returns it, or -1 (EBADF if `fd` is not open).
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just created for us and nothing else has it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// In the forked child: FD_CLOEXEC on every fd above stderr (std's own
/// exec-error pipe is one of them, and must stay open until the exec, so
/// this marks and does not close). Async-signal-safe: syscalls only.
fn mark_cloexec_above_stderr() -> io::Result<()> {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on
    // fds; it closes nothing and touches no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: every number below the open-file limit. Listing
    // /proc/self/fd would allocate, which a forked child must not do.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct rlimit, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = RawFd::try_from(limit.rlim_cur).unwrap_or(RawFd::MAX);
    for fd in 3..end {
        // SAFETY: F_SETFD on an fd number only changes its flags; a number
        // that is not open yields EBADF, which is what most of them do.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// SIGKILL to the check's process group, then reap the check (bounded by
/// [`KILL_GRACE`]).
async fn kill(child: &mut Child) {
    if let Some(pid) = child.id() {
        // The group is the child's pid; it cannot be another group while
        // the child, its leader, is not reaped yet.
        let group = nix::unistd::Pid::from_raw(-i32::try_from(pid).expect("pids fit in a pid_t"));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    }
    // Also when the group is gone already; an error means it was reaped.
    let _ = child.start_kill();
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "the upgrade check did not die within {} of SIGKILL; it will be reaped when it does",
            crate::ms(KILL_GRACE)
        );
    }
}

/// Reads what is in a pipe now, without waiting for more: the check has
/// exited, or was killed. The pipes are non-blocking (tokio made them so).
fn drain<P: AsFd>(pipe: &P, into: &mut Captured) {
    let mut buf = [0u8; 8192];
    let mut read = 0;
    while read < DRAIN_AFTER_EXIT {
        match nix::unistd::read(pipe.as_fd(), &mut buf) {
            Ok(0) => return,
            Ok(n) => {
                into.push(&buf[..n]);
                read += n;
            }
            Err(nix::errno::Errno::EINTR) => {}
            // EAGAIN: nothing more for now, which after the exit is all.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    const SH: &str = "/bin/sh";
    /// Long enough for a loaded machine; a test that should finish early
    /// and does not shows up as a timeout error, not as a slow pass.
    const GENEROUS: Duration = Duration::from_secs(60);

    async fn sh(script: &str, fds: &[RawFd], timeout: Duration) -> Result<CheckOutput, CheckError> {
        run_check(
            Path::new(SH),
            &[OsStr::new("-c"), OsStr::new(script)],
            fds,
            timeout,
        )
        .await
    }

    #[tokio::test]
    async fn success_returns_stdout() {
        let out = sh("echo 'handoff can take over'; echo note >&2", &[], GENEROUS)
            .await
            .unwrap();
        assert_eq!(out.stdout.text(), "handoff can take over");
        assert_eq!(out.stderr.text(), "note");
        assert_eq!(out.stdout.dropped(), 0);
    }

    #[tokio::test]
    async fn a_mebibyte_on_each_stream_finishes_promptly_and_is_capped() {
        // stdout is written whole before stderr: a runner that reads one
        // stream at a time, or only after the exit, stalls the child on a
        // full pipe until the timeout.
        let mib = 1024 * 1024;
        let script = format!(
            "head -c {mib} /dev/zero | tr '\\0' o; head -c {mib} /dev/zero | tr '\\0' e >&2; echo; echo last words >&2"
        );
        let started = Instant::now();
        let out = sh(&script, &[], GENEROUS).await.unwrap();
        assert!(started.elapsed() < GENEROUS / 2, "{:?}", started.elapsed());
        assert_eq!(out.stdout.bytes().len(), KEEP);
        assert_eq!(out.stdout.dropped(), (mib + 1 - KEEP) as u64);
        assert!(out.stdout.bytes()[..KEEP - 1].iter().all(|&b| b == b'o'));
        assert_eq!(out.stderr.bytes().len(), KEEP);
        assert_eq!(out.stderr.dropped(), (mib + 11 - KEEP) as u64);
        assert!(out.stderr.text().ends_with("eeelast words"));
        assert!(out.stderr.text().starts_with('…'));
    }

    #[tokio::test]
    async fn a_check_that_sleeps_is_killed_at_the_timeout_and_reaped() {
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        // `exec`: the pid it prints is the one that sleeps.
        let err = sh(
            "echo $$; echo about to sleep >&2; exec sleep 600",
            &[],
            timeout,
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < GENEROUS / 2, "{:?}", started.elapsed());
        let CheckError::TimedOut {
            said, timeout: t, ..
        } = &err
        else {
            panic!("not a timeout: {err}");
        };
        assert_eq!(*t, timeout);
        assert_eq!(said.stderr.text(), "about to sleep");
        let message = err.to_string();
        assert!(
            message.ends_with("did not finish its check within 300 ms: about to sleep"),
            "{message}"
        );
        // Reaped: not even a zombie is left (a zombie keeps /proc/PID).
        let pid: u32 = said.stdout.text().parse().unwrap();
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} is still there: {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
        );
    }

    #[tokio::test]
    async fn an_exit_3_gives_the_exit_and_the_trimmed_stderr() {
        let err = sh(
            "echo out; echo '  state format 9 is not mine  ' >&2; exit 3",
            &[],
            GENEROUS,
        )
        .await
        .unwrap_err();
        let CheckError::Failed {
            exit,
            stderr,
            stdout,
            status,
            ..
        } = &err
        else {
            panic!("not a failure: {err}");
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(exit, "exited with code 3");
        assert_eq!(stderr, "state format 9 is not mine");
        assert_eq!(stdout.text(), "out");
        assert!(
            err.to_string()
                .ends_with("failed its check (exited with code 3): state format 9 is not mine"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_binary_names_its_path() {
        let err = run_check(Path::new("/nonexistent/handoff"), &[], &[], GENEROUS)
            .await
            .unwrap_err();
        assert!(matches!(err, CheckError::Start { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("cannot run /nonexistent/handoff: "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bad_fds_are_refused_before_anything_runs() {
        for fds in [&[1][..], &[i32::MAX - 1][..]] {
            let err = sh("exit 0", fds, GENEROUS).await.unwrap_err();
            assert!(matches!(err, CheckError::HandFd { .. }), "{err}");
            assert!(err
                .to_string()
                .starts_with(&format!("cannot hand fd {} ", fds[0])));
        }
    }

    /// The inode number of a socket, as /proc/PID/fd shows it.
    fn socket_link(fd: &impl AsRawFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    #[tokio::test]
    async fn a_mapped_fd_is_there_at_its_number_and_a_stray_one_is_not() {
        let (handed, _peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
        // A fd without FD_CLOEXEC, as a supervisor may inherit one. It is
        // /dev/null, harmless should it leak into another test's child.
        let stray = std::fs::File::open("/dev/null").unwrap();
        nix::fcntl::fcntl(
            &stray,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .unwrap();
        let (h, s) = (handed.as_raw_fd(), stray.as_raw_fd());
        // readlink is a child of the shell: it sees what the check got.
        let script = format!(
            "readlink /proc/self/fd/{h} || echo none; readlink /proc/self/fd/{s} || echo none"
        );
        let out = sh(&script, &[h], GENEROUS).await.unwrap();
        let text = out.stdout.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, [socket_link(&handed).as_str(), "none"], "{text}");
        // Untouched here: still open, FD_CLOEXEC still set.
        let flags = nix::fcntl::fcntl(&handed, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_eq!(flags, libc::FD_CLOEXEC);
    }

    #[tokio::test]
    async fn several_fds_each_land_at_their_own_number() {
        // Named out of order: each still lands at its own number.
        let (a, _a) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let (b, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
        let script = format!("readlink /proc/self/fd/{fa}; readlink /proc/self/fd/{fb}");
        let out = sh(&script, &[fb, fa], GENEROUS).await.unwrap();
        let expected = format!("{}\n{}", socket_link(&a), socket_link(&b));
        assert_eq!(out.stdout.text(), expected);
    }

    #[test]
    fn a_current_thread_runtime_keeps_running_while_the_check_runs() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("ticked");
        let ticks = Arc::new(AtomicU64::new(0));
        rt.block_on(async {
            // Another task of the loop: after three ticks it leaves a file
            // the check waits for. A runner that blocks the thread never
            // lets it tick, and the check times out.
            let counter = ticks.clone();
            let path = flag.clone();
            let ticker = tokio::spawn(async move {
                let mut interval = tokio::time::interval(Duration::from_millis(10));
                loop {
                    interval.tick().await;
                    if counter.fetch_add(1, Ordering::SeqCst) == 3 {
                        std::fs::write(&path, b"").unwrap();
                    }
                }
            });
            let script = format!(
                "while ! test -e '{}'; do sleep 0.01; done; echo saw it",
                flag.display()
            );
            let out = sh(&script, &[], GENEROUS).await.unwrap();
            assert_eq!(out.stdout.text(), "saw it");
            ticker.abort();
        });
        assert!(ticks.load(Ordering::SeqCst) > 3);
    }

    #[test]
    fn the_check_starts_with_no_signal_blocked_or_ignored() {
        use nix::sys::signal::{SigSet, Signal};
        // An upgrade runs the check with the supervisor's signals blocked;
        // whoever started the supervisor may have left some ignored. A
        // real-time signal no test uses, so that ignoring it for the
        // process a moment disturbs no other test.
        let rt_signal = libc::SIGRTMIN() + 5;
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGUSR1);
        blocked.thread_block().unwrap();
        // SAFETY: SIG_IGN installs no handler code; nothing else in the
        // tests uses this signal.
        let old = unsafe { libc::signal(rt_signal, libc::SIG_IGN) };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = rt.block_on(sh(
            "exec grep -E '^Sig(Blk|Ign)' /proc/self/status",
            &[],
            GENEROUS,
        ));
        // SAFETY: puts back what was there.
        unsafe { libc::signal(rt_signal, old) };
        blocked.thread_unblock().unwrap();
        assert_eq!(
            out.unwrap().stdout.text(),
            "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000"
        );
    }

    #[test]
    fn captured_keeps_the_tail_and_counts_the_rest() {
        let mut c = Captured::default();
        for _ in 0..5 {
            c.push(&[b'a'; KEEP]);
        }
        c.push("é end".as_bytes());
        let len = "é end".len();
        assert_eq!(c.bytes().len(), KEEP);
        assert_eq!(c.dropped(), (5 * KEEP + len - KEEP) as u64);
        assert!(c.bytes().ends_with("é end".as_bytes()));
        // A cut inside a character drops its remains, not a U+FFFD.
        let mut c = Captured::default();
        // Two-byte characters, then one byte: the last KEEP bytes (an even
        // number) begin with the second half of an é.
        c.push("é".repeat(KEEP).as_bytes());
        c.push(b"!");
        assert!(c.dropped() > 0);
        assert_eq!(c.bytes()[0] & 0xC0, 0x80);
        assert!(c.text().starts_with("…é"), "{}", &c.text()[..8]);
    }
}
