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
use std::os::fd::{AsFd, OwnedFd, RawFd};
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
    fds: Vec<(OwnedFd, RawFd)>,
    timeout: Duration,
) -> Result<CheckOutput, CheckError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut cmd = command(binary, args, fds)?;
    // Registered, so that the reaper leaves it to tokio.
    let mut child =
        crate::reaper::spawn(|| cmd.spawn(), tokio::process::Child::id).map_err(|source| {
            CheckError::Start {
                binary: binary.to_path_buf(),
                source,
            }
        })?;
    let pid = child.id();
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
    if let Some(pid) = pid {
        crate::reaper::reaped(pid);
    }
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
fn command(
    binary: &Path,
    args: &[&OsStr],
    fds: Vec<(OwnedFd, RawFd)>,
) -> Result<Command, CheckError> {
    let mut mappings = Vec::with_capacity(fds.len());
    for (parent_fd, fd) in fds {
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
            parent_fd,
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
        cmd.pre_exec(crate::sys::mark_fds_cloexec_in_child);
    }
    cmd.fd_mappings(mappings)
        .expect("the child fds were checked to be distinct above");
    Ok(cmd)
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
mod tests;
