//! Running the servers: under handoff, and the naive way.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use handoff::protocol::{Request, Response, Status};

use crate::load::{Load, Mode};
use crate::startup;
use crate::stats::{figures, Figures, RestartTiming};
use crate::{Plan, Server};

pub struct Binaries {
    pub handoff: PathBuf,
    pub hello: PathBuf,
}

impl Binaries {
    /// The handoff binary as `cargo install` builds it, and the release
    /// example server. Not `CARGO_BIN_EXE_handoff`: cargo bench builds that
    /// one with the dev-dependencies' features unified in (tokio's
    /// multi-threaded runtime among them, which links libm), a binary 60 KB
    /// larger that maps 270 KB more than the one users run. So the example
    /// is built first and the binary last, on its own, which leaves
    /// target/release/handoff the installed one.
    pub fn build() -> Binaries {
        cargo_build(&["--example", "hello"]);
        cargo_build(&["--bin", "handoff"]);
        let release = PathBuf::from(env!("CARGO_BIN_EXE_handoff"))
            .parent()
            .expect("target/release")
            .to_path_buf();
        Binaries {
            handoff: release.join("handoff"),
            hello: release.join("examples/hello"),
        }
    }
}

fn cargo_build(what: &[&str]) {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release"])
        .args(what)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cannot build {what:?}");
}

/// Samples of the supervisor's own resource use.
pub struct Usage {
    pub rss_peak_kib: u64,
    pub cpu: Duration,
}

pub fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_peak_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    // Time on a CPU, in nanoseconds (the first field of schedstat).
    let cpu_ns: u64 = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Usage {
        rss_peak_kib,
        cpu: Duration::from_nanos(cpu_ns),
    }
}

pub struct Measured {
    pub figures: Figures,
    pub usage: Option<Usage>,
}

/// A supervisor started for the benchmark, stopped on drop.
struct Supervisor {
    child: Child,
    control: PathBuf,
    workers: usize,
    /// Its children's stdout: when each new worker is ready.
    startup: startup::Watch,
    _dir: tempfile::TempDir,
}

impl Supervisor {
    fn start(bins: &Binaries, server: &Server, workers: usize, sockets: usize) -> Supervisor {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut config = String::new();
        for i in 0..sockets {
            config += &format!(
                "[[socket]]\nname = \"s{i}\"\nlisten = \"tcp://127.0.0.1:0\"\n{}",
                server.socket_config
            );
        }
        let command: Vec<String> = std::iter::once(bins.hello.display().to_string())
            .chain(server.args.iter().map(|a| a.to_string()))
            .collect();
        config +=
            &format!("[program]\ncommand = {command:?}\nworkers = {workers}\nready = \"notify\"\n");
        let file = dir.path().join("handoff.toml");
        std::fs::write(&file, config).expect("write config");
        let control = dir.path().join("control.sock");
        let log = std::fs::File::create(dir.path().join("handoff.log")).expect("log file");
        let mut child = Command::new(&bins.handoff)
            .args(["run", "--config"])
            .arg(&file)
            .arg("--control")
            .arg(&control)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("handoff starts");
        let out = child.stdout.take().expect("piped");
        let sup = Supervisor {
            child,
            control,
            workers,
            startup: startup::Watch::start(out),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while sup.status().is_none_or(|s| s.generation == 0) {
            assert!(Instant::now() < deadline, "handoff did not get ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        sup
    }

    fn status(&self) -> Option<Status> {
        match handoff::control::call(&self.control, &Request::Status {}) {
            Ok(Response::Status(s)) => Some(s),
            _ => None,
        }
    }

    /// One restart, waiting for the old generation to be gone; `asked` is
    /// measured from `epoch`.
    fn restart(&self, epoch: Instant) -> RestartTiming {
        let asked = epoch.elapsed();
        match handoff::control::call(&self.control, &Request::Restart { drained: true }) {
            Ok(Response::Restarted(r)) => RestartTiming {
                asked,
                ready: us(r.ready_us),
                child: Some(us(r.child_ready_us)),
                old_gone: Duration::from_millis(r.drained_ms.unwrap_or(r.ready_ms)),
                startup_cpu: self.startup.take(r.generation, self.workers),
            },
            other => panic!("restart failed: {other:?}"),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = handoff::control::call(&self.control, &Request::Stop {});
        let _ = self.child.wait();
        // HANDOFF_BENCH_LOG=DIR keeps each supervisor's log there.
        if let Some(dir) = std::env::var_os("HANDOFF_BENCH_LOG") {
            let to = Path::new(&dir).join(format!("handoff-{}.log", self.child.id()));
            let _ = std::fs::copy(self._dir.path().join("handoff.log"), to);
        }
    }
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

pub fn under_handoff(bins: &Binaries, server: &Server, plan: &Plan, mode: Mode) -> Measured {
    let sup = Supervisor::start(bins, server, 1, 1);
    let addr = sup.status().expect("status").sockets[0].address.clone();
    let load = Load::start(&addr, mode, plan.clients);
    std::thread::sleep(plan.warmup);
    let mut restarts = Vec::with_capacity(plan.restarts);
    for _ in 0..plan.restarts {
        restarts.push(sup.restart(load.epoch));
        std::thread::sleep(plan.interval);
    }
    std::thread::sleep(plan.warmup);
    let usage = usage(sup.child.id());
    let records = load.stop();
    Measured {
        figures: figures(&records, &restarts),
        usage: Some(usage),
    }
}

/// A server that binds the port itself, stopped and started again; with
/// its start-up CPU time, read once it serves (see `startup`).
fn start_naive(hello: &Path, server: &Server, addr: &str) -> (Child, Option<Duration>) {
    let mut child = Command::new(hello)
        .args(["--bind", addr])
        .args(server.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the example starts");
    // It prints "serving on" once it accepts: its own readiness.
    let out = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        if line.expect("its stdout").contains("serving on") {
            break;
        }
    }
    let cpu = startup::cpu_time(child.id());
    std::thread::spawn(move || for _ in lines {});
    (child, cpu)
}

pub fn naive(bins: &Binaries, server: &Server, plan: &Plan, mode: Mode) -> Measured {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (mut process, _) = start_naive(&bins.hello, server, &addr);
    let load = Load::start(&addr, mode, plan.clients);
    std::thread::sleep(plan.warmup);
    let mut restarts = Vec::with_capacity(plan.restarts);
    for _ in 0..plan.restarts {
        let asked = load.epoch.elapsed();
        let t0 = Instant::now();
        let pid = nix::unistd::Pid::from_raw(process.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = process.wait();
        let old_gone = t0.elapsed();
        let (next, startup_cpu) = start_naive(&bins.hello, server, &addr);
        process = next;
        restarts.push(RestartTiming {
            asked,
            ready: t0.elapsed(),
            child: None,
            old_gone,
            startup_cpu,
        });
        std::thread::sleep(plan.interval);
    }
    std::thread::sleep(plan.warmup);
    let records = load.stop();
    let _ = process.kill();
    let _ = process.wait();
    Measured {
        figures: figures(&records, &restarts),
        usage: None,
    }
}

/// Restart cost without load, for a given number of workers and sockets.
pub fn scaling(bins: &Binaries, restarts: usize, workers: usize, sockets: usize) -> Figures {
    let sup = Supervisor::start(bins, &Server::CAREFUL, workers, sockets);
    let mut timings = Vec::with_capacity(restarts);
    let epoch = Instant::now();
    for _ in 0..restarts {
        timings.push(sup.restart(epoch));
    }
    figures(&[], &timings)
}
