//! handoff's own stderr gone bad (issue 7 item 10): closed by the reader
//! (`handoff run ... 2>&1 | head -3`), or full because nobody reads it.
//! Either way the supervisor keeps supervising, and stops cleanly.
//!
//! The harness reads handoff's output all the time, so these tests start
//! handoff themselves, with its output in a pipe they control.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::{
    example, handoff_bin, run_command, temp_dir, wait_timeout, write_script, DEADLINE,
};

/// A pipe; both ends close on exec, a child gets the write end as stdio.
fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
}

/// `handoff run` with `stderr`, and `stdout` if given, else /dev/null.
/// Killed when dropped, unless it exited.
struct Piped {
    child: Child,
    dir: std::path::PathBuf,
    exited: bool,
}

impl Piped {
    fn start(dir: &Path, args: &[&str], stderr: OwnedFd, stdout: Option<OwnedFd>) -> Piped {
        let mut cmd = run_command(handoff_bin(), dir);
        cmd.args(args)
            .stderr(Stdio::from(stderr))
            .stdout(stdout.map_or_else(Stdio::null, Stdio::from));
        let child = cmd.spawn().expect("handoff starts");
        // `cmd` holds our copies of the write ends: only handoff (and its
        // children) may keep the pipe open for writing.
        drop(cmd);
        Piped {
            child,
            dir: dir.to_path_buf(),
            exited: false,
        }
    }

    fn control(&self) -> String {
        self.dir
            .join("control.sock")
            .to_str()
            .expect("utf-8")
            .to_owned()
    }

    /// `handoff COMMAND --control ...`, with a deadline: a supervisor stuck
    /// on a write would never answer. Returns (exit code, stdout+stderr).
    fn client(&self, command: &str) -> (i32, String) {
        let child = Command::new(handoff_bin())
            .args([command, "--control", &self.control()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the client starts");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        match rx.recv_timeout(DEADLINE) {
            Ok(Ok(out)) => (
                out.status.code().unwrap_or(-1),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ),
            Ok(Err(e)) => panic!("`handoff {command}`: {e}"),
            Err(_) => {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                panic!("`handoff {command}` got no answer within {DEADLINE:?}: the supervisor is stuck")
            }
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let status = wait_timeout(&mut self.child, DEADLINE)
            .unwrap_or_else(|| panic!("handoff did not exit within {DEADLINE:?}"));
        self.exited = true;
        status
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads lines until one contains `needle`, with a deadline; returns the
/// reader (what it already buffered stays unread by the test).
fn read_until(reader: BufReader<File>, needle: &str) -> BufReader<File> {
    let wanted = needle.to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Err(seen));
                    return;
                }
                Ok(_) if line.contains(&wanted) => {
                    let _ = tx.send(Ok(reader));
                    return;
                }
                Ok(_) => seen.push_str(&line),
            }
        }
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(reader)) => reader,
        Ok(Err(seen)) => panic!("the log ended before a line with {needle:?}:\n{seen}"),
        Err(_) => panic!("no log line with {needle:?} within {DEADLINE:?}"),
    }
}

/// hello behind DIR/server.sh, its own output in DIR/children.log: the
/// children's drain must be visible whatever happens to handoff's stderr.
fn quiet_hello(dir: &Path) -> String {
    let script = dir.join("server.sh");
    write_script(
        &script,
        &format!(
            "{} >>{} 2>&1",
            example("hello").display(),
            dir.join("children.log").display()
        ),
    );
    script.to_str().expect("utf-8").to_owned()
}

#[test]
fn a_closed_log_pipe_does_not_kill_the_supervisor() {
    let dir = temp_dir();
    let server = quiet_hello(dir.path());
    let (read, write) = pipe();
    let also = write.try_clone().expect("dup");
    // `handoff run ... 2>&1 | head`
    let mut h = Piped::start(
        dir.path(),
        &["--listen", "http=tcp://127.0.0.1:0", "--", &server],
        write,
        Some(also),
    );
    let reader = read_until(BufReader::new(File::from(read)), "generation 1 ready");
    // `head` has read its lines and exits.
    drop(reader);

    const GENERATIONS: u64 = 6;
    for g in 2..=GENERATIONS {
        let (code, out) = h.client("restart");
        assert_eq!(code, 0, "restart to generation {g}: {out}");
        assert!(out.contains(&format!("generation {g} ready")), "{out}");
    }
    let (code, out) = h.client("status");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("generation {GENERATIONS}")), "{out}");
    let (code, out) = h.client("stop");
    assert_eq!(code, 0, "{out}");
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "handoff {status}");
    assert!(
        !dir.path().join("control.sock").exists(),
        "the control socket file is removed"
    );

    // Every generation was told to drain, and drained, before handoff
    // exited: not SIGTERM from a dying parent.
    let children = std::fs::read_to_string(dir.path().join("children.log")).expect("children.log");
    let drained = children.matches("drained, exiting").count();
    assert_eq!(drained as u64, GENERATIONS, "{children}");
}

/// Whether a write to the pipe would block: no room left, whatever its
/// size (64 KiB by default) and however densely the writes filled it.
fn is_full(write_end: impl AsFd) -> bool {
    let mut poll = libc::pollfd {
        fd: write_end.as_fd().as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one pollfd, which lives across the call; timeout 0.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    assert!(ready >= 0, "poll: {}", std::io::Error::last_os_error());
    ready == 0
}

#[test]
fn a_log_pipe_nobody_reads_does_not_block_the_supervisor() {
    let dir = temp_dir();
    let server = quiet_hello(dir.path());
    let (read, write) = pipe();
    // Only to ask whether the pipe is full; never written to.
    let probe = write.try_clone().expect("dup");
    // Two workers: more log lines per restart; no min_ready_time, so
    // the many restarts it takes to fill the pipe go fast.
    let mut h = Piped::start(
        dir.path(),
        &[
            "--workers",
            "2",
            "--min-ready-time",
            "0",
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--",
            &server,
        ],
        write,
        None,
    );
    let reader = read_until(BufReader::new(File::from(read)), "generation 1 ready");

    // Nobody reads from here on. Restart until the pipe is full...
    let mut generation = 1;
    let restart = |generation: &mut u64| {
        *generation += 1;
        let (code, out) = h.client("restart");
        assert_eq!(code, 0, "restart to generation {generation}: {out}");
    };
    while !is_full(&probe) {
        restart(&mut generation);
        assert!(generation < 10_000, "the pipe never filled");
    }
    // ...and as long again: whatever handoff buffers, it must now drop.
    let full_at = generation;
    while generation < 2 * full_at {
        restart(&mut generation);
    }
    let (code, out) = h.client("status");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("generation {generation}")), "{out}");
    assert!(is_full(&probe), "nobody read the pipe, and yet it has room");

    // A reader comes back: the log goes on, and says what it lost.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    restart(&mut generation);
    let wanted = [
        "log line(s) lost".to_owned(),
        format!("generation {generation} ready"),
    ];
    let mut found = 0;
    let mut seen = Vec::new();
    while found < wanted.len() {
        match rx.recv_timeout(DEADLINE) {
            Ok(line) => {
                if line.contains(&wanted[found]) {
                    found += 1;
                }
                seen.push(line);
            }
            Err(_) => panic!(
                "no log line with {:?} within {DEADLINE:?}; read since:\n{}",
                wanted[found],
                seen.join("\n")
            ),
        }
    }

    let (code, out) = h.client("stop");
    assert_eq!(code, 0, "{out}");
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "handoff {status}");
    assert!(!dir.path().join("control.sock").exists());
}
