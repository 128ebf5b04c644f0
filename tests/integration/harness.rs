//! Starting handoff under test, following its log, asking its status.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use handoff::protocol::{Request, Response, Status};

/// Generous: the tests must pass on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn handoff_bin() -> &'static str {
    env!("CARGO_BIN_EXE_handoff")
}

/// An example binary; `cargo test` builds the examples next to the test
/// binaries' directory.
/// `BINARY run --control DIR/control.sock`, logging at debug level with
/// stdin closed: how every test starts a supervisor; callers add their
/// flags (and the program) after it.
pub fn run_command(binary: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("run")
        .arg("--control")
        .arg(dir.join("control.sock"))
        .env("HANDOFF_LOG", "debug")
        .stdin(Stdio::null());
    cmd
}

/// A copy of the handoff binary that a test can replace, as a deploy
/// replaces the installed one. Copied by `cp`, not in this process: a file
/// open for writing here is inherited by whatever another test thread
/// forks meanwhile, and executing it then fails with ETXTBSY until that
/// child has exec'd.
pub fn installed_copy(dir: &Path) -> PathBuf {
    let path = dir.join("handoff");
    let copied = Command::new("cp")
        .arg(handoff_bin())
        .arg(&path)
        .status()
        .expect("cp runs");
    assert!(copied.success(), "copy the binary: {copied}");
    path
}

/// `INSTALLED run --listen http=tcp://127.0.0.1:0 -- hello`, serving.
pub fn start_installed(installed: &Path, dir: &Path) -> Handoff {
    let mut cmd = run_command(installed, dir);
    cmd.args(["--listen", "http=tcp://127.0.0.1:0", "--"])
        .arg(example("hello"));
    let mut h = Handoff::spawn(cmd, dir);
    h.wait_generation(1);
    h
}

pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --examples`",
        path.display()
    );
    path
}

/// A temp dir that lives as long as the test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("handoff-test-")
        .tempdir()
        .expect("a temp dir")
}

/// Lines of output shared between reader threads and the test.
#[derive(Default)]
struct Log {
    /// The lines so far, and how many of the streams reached their end.
    lines: Mutex<(Vec<String>, usize)>,
    grew: Condvar,
}

impl Log {
    fn follow(self: &Arc<Self>, stream: impl std::io::Read + Send + 'static) {
        let log = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                log.lines.lock().expect("log lock").0.push(line);
                log.grew.notify_all();
            }
            log.lines.lock().expect("log lock").1 += 1;
            log.grew.notify_all();
        });
    }

    /// Waits for a line (at index `from` or later) that contains every one
    /// of `needles`.
    fn wait_for(
        &self,
        needles: &[&str],
        from: usize,
        timeout: Duration,
    ) -> Option<(usize, String)> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock().expect("log lock");
        loop {
            let mut found = lines.0.iter().enumerate().skip(from);
            if let Some((i, l)) = found.find(|(_, l)| needles.iter().all(|n| l.contains(n))) {
                return Some((i, l.clone()));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.grew.wait_timeout(lines, left).expect("log lock").0;
        }
    }

    /// Waits until `streams` streams have ended (the process and every
    /// child that shared its stdout/stderr are gone).
    fn wait_closed(&self, streams: usize, timeout: Duration) -> bool {
        let lines = self.lines.lock().expect("log lock");
        let (_guard, result) = self
            .grew
            .wait_timeout_while(lines, timeout, |l| l.1 < streams)
            .expect("log lock");
        !result.timed_out()
    }

    fn dump(&self) -> String {
        self.lines.lock().expect("log lock").0.join("\n")
    }
}

/// A running `handoff run`, stopped (SIGTERM, then SIGKILL) when dropped.
/// When a test fails, its log is printed.
pub struct Handoff {
    pub child: Child,
    pub control: PathBuf,
    log: Arc<Log>,
    /// Where in the log `wait_log` looks from.
    cursor: usize,
    exited: Option<ExitStatus>,
}

impl Handoff {
    /// `handoff run --control DIR/control.sock ARGS...`
    pub fn start(dir: &Path, args: &[&str]) -> Handoff {
        let mut cmd = run_command(handoff_bin(), dir);
        cmd.args(args);
        Handoff::spawn(cmd, dir)
    }

    /// Runs a prepared command whose control socket is DIR/control.sock.
    pub fn spawn(mut cmd: Command, dir: &Path) -> Handoff {
        let control = dir.join("control.sock");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("handoff starts");
        let log = Arc::new(Log::default());
        log.follow(child.stdout.take().expect("piped"));
        log.follow(child.stderr.take().expect("piped"));
        Handoff {
            child,
            control,
            log,
            cursor: 0,
            exited: None,
        }
    }

    /// Waits for a log line containing `needle` after the last one waited
    /// for, and returns it.
    pub fn wait_log(&mut self, needle: &str) -> String {
        self.wait_log_all(&[needle])
    }

    /// Waits for a log line containing all of `needles`, after the last one
    /// waited for.
    pub fn wait_log_all(&mut self, needles: &[&str]) -> String {
        match self.log.wait_for(needles, self.cursor, DEADLINE) {
            Some((i, line)) => {
                self.cursor = i + 1;
                line
            }
            None => panic!(
                "no log line with {needles:?} within {DEADLINE:?}; log:\n{}",
                self.log.dump()
            ),
        }
    }

    /// Waits for several log lines, each containing all of its needles, in
    /// any order, after the last line waited for.
    pub fn wait_log_each(&mut self, lines: &[&[&str]]) {
        let from = self.cursor;
        let mut last = from;
        for needles in lines {
            match self.log.wait_for(needles, from, DEADLINE) {
                Some((i, _)) => last = last.max(i + 1),
                None => panic!(
                    "no log line with {needles:?} within {DEADLINE:?}; log:\n{}",
                    self.log.dump()
                ),
            }
        }
        self.cursor = last;
    }

    /// Waits for a log line containing all of `needles`, from the first
    /// line on, without moving the cursor: for what a child printed
    /// before a line already waited for (its output and handoff's come
    /// through different pipes, in either order).
    pub fn wait_log_since_start(&self, needles: &[&str]) -> String {
        match self.log.wait_for(needles, 0, DEADLINE) {
            Some((_, line)) => line,
            None => panic!(
                "no log line with {needles:?} within {DEADLINE:?}; log:\n{}",
                self.log.dump()
            ),
        }
    }

    pub fn log(&self) -> String {
        self.log.dump()
    }

    /// Waits until generation `g` serves.
    pub fn wait_generation(&mut self, g: u64) {
        self.wait_log(&format!("generation {g} ready"));
    }

    pub fn status(&self) -> Status {
        match handoff::control::call(&self.control, &Request::Status {}) {
            Ok(Response::Status(s)) => s,
            other => panic!("status: {other:?}; log:\n{}", self.log.dump()),
        }
    }

    /// The bound address of socket `name`.
    pub fn addr(&self, name: &str) -> String {
        let status = self.status();
        let socket = status
            .sockets
            .iter()
            .find(|s| s.name == name)
            .expect("the socket exists");
        socket.address.clone()
    }

    /// Pids of the workers in `state`.
    pub fn pids(&self, state: &str) -> Vec<u32> {
        self.status()
            .workers
            .iter()
            .filter(|w| w.state == state)
            .filter_map(|w| w.pid)
            .collect()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("handoff is alive");
    }

    /// Waits for handoff to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(s) = self.exited {
            return s;
        }
        let status = wait_timeout(&mut self.child, DEADLINE).unwrap_or_else(|| {
            panic!(
                "handoff did not exit within {DEADLINE:?}; log:\n{}",
                self.log.dump()
            )
        });
        self.exited = Some(status);
        assert!(
            self.log.wait_closed(2, DEADLINE),
            "handoff exited but something still holds its stdout/stderr (a leaked child?); log:\n{}",
            self.log.dump()
        );
        status
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- handoff log ----\n{}\n---- end of log ----",
                self.log.dump()
            );
        }
        if self.exited.is_none() {
            let asked = Instant::now();
            self.signal(nix::sys::signal::Signal::SIGTERM);
            if wait_timeout(&mut self.child, DEADLINE).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            if asked.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "slow stop ({:?}); log:\n{}",
                    asked.elapsed(),
                    self.log.dump()
                );
            }
        }
    }
}

/// Waits for a child to exit, without polling (a pidfd), then reaps it.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    match handoff::sys::wait_for_exit(child.id(), timeout) {
        Ok(true) => child.wait().ok(),
        _ => None,
    }
}

/// Runs a `handoff` client command; returns (exit code, stdout, stderr).
pub fn client(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(handoff_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("handoff runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `handoff restart` against this supervisor.
pub fn restart(h: &Handoff) -> (i32, String, String) {
    client(&[
        "restart",
        "--control",
        h.control.to_str().expect("utf-8 path"),
    ])
}

/// One HTTP/1.1 GET with `Connection: close`; returns (status, body).
pub fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    crate::load::request(addr, path)
}

/// GETs `path` until generation `g` answers it (an old generation may
/// answer a last request or two while it drains), and returns the body.
pub fn get_from_generation(addr: &str, path: &str, g: u64) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = get(addr, path).expect("served");
        assert_eq!(status, 200, "{body}");
        if body.contains(&format!("generation {g} "))
            || body.contains(&format!("\"generation\":\"{g}\""))
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "generation {g} never answered: {body}"
        );
    }
}

/// `handoff run --listen http=tcp://127.0.0.1:0 EXTRA -- hello`, once
/// generation 1 serves.
pub fn serve_hello(dir: &Path, extra: &[&str]) -> Handoff {
    serve(dir, extra, &example("hello"))
}

/// The same, with hello behind DIR/server.sh, a script the test rewrites
/// to "deploy" a new version.
pub fn serve_hello_script(dir: &Path, extra: &[&str]) -> Handoff {
    let script = dir.join("server.sh");
    write_script(&script, example("hello").to_str().expect("utf-8 path"));
    serve(dir, extra, &script)
}

fn serve(dir: &Path, extra: &[&str], server: &Path) -> Handoff {
    let mut args = vec!["--listen", "http=tcp://127.0.0.1:0"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", server.to_str().expect("utf-8 path")]);
    let mut h = Handoff::start(dir, &args);
    h.wait_generation(1);
    h
}

/// A shell script that `exec`s a command: tests "deploy" a new version by
/// rewriting it, as a real deploy replaces a binary.
pub fn write_script(path: &Path, command: &str) {
    write_executable(path, &format!("#!/bin/sh\nexec {command}\n"));
}

/// Replaces `path` with an executable file, atomically (no half-written
/// script is ever run).
pub fn write_executable(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).expect("write script");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
    std::fs::rename(&tmp, path).expect("replace script");
}

/// Waits until `cond` holds, checking again each time it does not, and
/// panics naming `what` after `DEADLINE`. For conditions no log line
/// announces (a port refused, a process gone, a queue's length): the pause
/// between checks is a back-off that keeps the check from spinning, not a
/// synchronisation; the condition decides.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        std::thread::park_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// `unshare` makes a pid namespace only for root (or with user
/// namespaces); elsewhere a test says so and passes.
pub fn can_unshare() -> bool {
    Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fails with the way out when a program the test runs (a real server,
/// systemd's activator) is not installed.
pub fn require(program: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: install the test dependencies with scripts/install-test-deps"
    );
}
