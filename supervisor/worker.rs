//! One child process of one generation, in one slot, and the small tasks
//! that watch it: its exit, its notify socket, its readiness check and its
//! deadlines. Each task only reports to the supervisor's event loop; the
//! loop alone decides what happens (see `supervisor.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;

use crate::config::{ProgramSpec, Readiness};
use crate::notify::{Notice, NotifySocket};
use crate::sockets::SocketSet;
use crate::spawn::{self, ChildContext, SpawnError};

/// A worker's identity for the life of the supervisor; never reused, so a
/// late event about a worker that is gone is simply ignored.
pub type WorkerId = u64;

/// Where a worker is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// Started, not yet ready.
    Starting,
    /// Ready; it took `ready_in` to get there.
    Ready { ready_in: Duration },
    /// Told to stop (its stop signal); SIGKILL at `deadline`.
    Draining { deadline: Instant },
    /// Sent SIGKILL, for `reason`; waiting for it to be reaped.
    Killed { reason: String },
}

impl WorkerState {
    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready { .. } => "ready",
            WorkerState::Draining { .. } => "draining",
            WorkerState::Killed { .. } => "killed",
        }
    }
}

/// What a worker's tasks report.
#[derive(Debug)]
pub enum WorkerEvent {
    /// The process exited; it is reaped when the event is handled.
    Exited(std::io::Result<()>),
    Notice(Notice),
    /// The exec probe succeeded, or the delay passed.
    Ready,
    ReadyTimeout,
    DrainTimeout,
}

/// What one generation runs: its number, its program, its sockets. Workers
/// share it; a socket closes once no generation that has it is left.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub spec: Arc<ProgramSpec>,
    pub sockets: SocketSet,
}

pub struct Worker {
    pub id: WorkerId,
    pub pid: u32,
    pub slot: usize,
    pub generation: Arc<Generation>,
    pub state: WorkerState,
    /// When the state last changed (and when the process started).
    pub since: Instant,
    pub since_wall: SystemTime,
    pub started: Instant,
    /// The last STATUS= the child sent.
    pub status: Option<String>,
    /// Readiness and deadline tasks; aborted when they no longer apply.
    timers: Vec<AbortHandle>,
    /// The notify socket reader; it owns the socket.
    notify_task: AbortHandle,
    /// The notify socket (owned by `notify_task`), for an upgrade to hand on.
    pub notify_fd: std::os::fd::RawFd,
    pub notify_path: std::path::PathBuf,
}

/// What `Worker::watch` needs to know of a running process.
pub struct Watch {
    pub id: WorkerId,
    pub pid: u32,
    pub slot: usize,
    pub generation: Arc<Generation>,
    pub state: WorkerState,
    pub started: Instant,
    pub since: Instant,
    pub status: Option<String>,
}

impl std::fmt::Display for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "generation {} worker {} (pid {})",
            self.generation.number, self.slot, self.pid
        )
    }
}

/// Where the supervisor wants a worker's events: a function that wraps them
/// into its own event type.
pub type EventSink<E> = (UnboundedSender<E>, fn(WorkerId, WorkerEvent) -> E);

pub struct LaunchRequest<'a> {
    pub id: WorkerId,
    pub generation: Arc<Generation>,
    pub slot: usize,
    pub runtime_dir: &'a std::path::Path,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot create the notify socket {path}: {source}")]
    Notify {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

impl Worker {
    /// Starts the process and its watchers.
    pub fn launch<E: Send + 'static>(
        req: LaunchRequest,
        sink: &EventSink<E>,
    ) -> Result<Worker, LaunchError> {
        let path = req.runtime_dir.join(format!("notify-{}.sock", req.id));
        let notify = NotifySocket::bind(path.clone())
            .map_err(|source| LaunchError::Notify { path, source })?;
        let gen = &req.generation;
        let ctx = ChildContext {
            sockets: &gen.sockets,
            notify_socket: notify.path(),
            generation: gen.number,
            slot: req.slot,
        };
        // The child's own time starts at the fork: exec and the server's
        // start-up are the child's, whatever supervises it.
        let forked = Instant::now();
        let pid = spawn::spawn(&gen.spec, &ctx)?;
        Ok(Worker::watch(
            Watch {
                id: req.id,
                pid,
                slot: req.slot,
                generation: req.generation,
                state: WorkerState::Starting,
                started: forked,
                since: forked,
                status: None,
            },
            notify,
            sink,
        ))
    }

    /// Watches a running process: its exit, its notify socket, and the
    /// deadlines of its state (measured from `started` and `since`, which
    /// may lie in the past when an upgraded supervisor takes it over).
    pub fn watch<E: Send + 'static>(w: Watch, notify: NotifySocket, sink: &EventSink<E>) -> Worker {
        let Watch {
            id,
            pid,
            slot,
            generation,
            state,
            started,
            since,
            status,
        } = w;
        let report = {
            let (tx, wrap) = sink.clone();
            move |event: WorkerEvent| {
                // The loop only goes away when the supervisor exits.
                let _ = tx.send(wrap(id, event));
            }
        };
        // Never aborted: the loop reaps the child when it hears of its exit.
        tokio::spawn({
            let report = report.clone();
            async move { report(WorkerEvent::Exited(crate::sys::exited(pid).await)) }
        });
        let notify_fd = std::os::fd::AsRawFd::as_raw_fd(&notify);
        let notify_path = notify.path().to_path_buf();
        let notify_task = tokio::spawn({
            let report = report.clone();
            async move {
                while let Ok(notices) = notify.recv().await {
                    for notice in notices {
                        report(WorkerEvent::Notice(notice));
                    }
                }
            }
        })
        .abort_handle();

        let left = |total: Duration, from: Instant| total.saturating_sub(from.elapsed());
        let mut timers = Vec::new();
        let spec = &generation.spec;
        match &state {
            WorkerState::Starting => {
                timers.push(after(
                    left(spec.ready_timeout, started),
                    report.clone(),
                    WorkerEvent::ReadyTimeout,
                ));
                match &spec.ready {
                    Readiness::Notify => {}
                    Readiness::Delay(delay) => timers.push(after(
                        left(*delay, started),
                        report.clone(),
                        WorkerEvent::Ready,
                    )),
                    Readiness::Exec { command, interval } => {
                        let probe = probe(
                            command.clone(),
                            *interval,
                            pid,
                            generation.number,
                            slot,
                            report,
                        );
                        timers.push(tokio::spawn(probe).abort_handle());
                    }
                }
            }
            WorkerState::Draining { deadline } => {
                let wait = deadline.saturating_duration_since(Instant::now());
                timers.push(after(wait, report, WorkerEvent::DrainTimeout));
            }
            WorkerState::Ready { .. } | WorkerState::Killed { .. } => {}
        }
        let since_wall = SystemTime::now()
            .checked_sub(since.elapsed())
            .unwrap_or_else(SystemTime::now);
        Worker {
            id,
            pid,
            slot,
            generation,
            state,
            since,
            since_wall,
            started,
            status,
            timers,
            notify_task,
            notify_fd,
            notify_path,
        }
    }

    fn set_state(&mut self, state: WorkerState) {
        self.state = state;
        self.since = Instant::now();
        self.since_wall = SystemTime::now();
    }

    /// Starting -> Ready. Returns how long it took, or None if the worker
    /// was not starting (a late or repeated READY=1).
    pub fn mark_ready(&mut self) -> Option<Duration> {
        if self.state != WorkerState::Starting {
            return None;
        }
        self.cancel_timers();
        let ready_in = self.started.elapsed();
        self.set_state(WorkerState::Ready { ready_in });
        Some(ready_in)
    }

    /// Sends the stop signal and arms the SIGKILL deadline.
    pub fn drain<E: Send + 'static>(&mut self, sink: &EventSink<E>) {
        if matches!(
            self.state,
            WorkerState::Draining { .. } | WorkerState::Killed { .. }
        ) {
            return;
        }
        self.cancel_timers();
        let signal = self.generation.spec.stop_signal;
        // The whole process group, as the SIGKILL that follows a missed
        // deadline: processes the child forked hold its sockets too (a
        // shell wrapper's server, a helper), and must stop with it. A
        // server with workers of its own (a gunicorn arbiter) has them
        // told directly as well, which is how `kill -TERM -PGID` from a
        // terminal or a service manager's KillMode=control-group works.
        // The pid is not reaped yet, so the group id is still ours.
        if let Err(e) = killpg(Pid::from_raw(self.pid as i32), signal) {
            tracing::debug!("{self}: cannot send {signal}: {e}");
        }
        let timeout = self.generation.spec.drain_timeout;
        let (tx, wrap) = sink.clone();
        let id = self.id;
        self.timers.push(after(
            timeout,
            move |e| drop(tx.send(wrap(id, e))),
            WorkerEvent::DrainTimeout,
        ));
        self.set_state(WorkerState::Draining {
            deadline: Instant::now() + timeout,
        });
    }

    /// SIGKILL to the worker's process group.
    pub fn kill(&mut self, reason: String) {
        self.cancel_timers();
        // The pid is ours until the exit event has been handled: the child
        // is reaped only then, so the pid cannot have been reused.
        if let Err(e) = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL) {
            tracing::debug!("{self}: cannot kill: {e}");
        }
        self.set_state(WorkerState::Killed { reason });
    }

    fn cancel_timers(&mut self) {
        for t in self.timers.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.cancel_timers();
        self.notify_task.abort();
    }
}

fn after<F>(delay: Duration, report: F, event: WorkerEvent) -> AbortHandle
where
    F: FnOnce(WorkerEvent) + Send + 'static,
{
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        report(event);
    })
    .abort_handle()
}

/// Runs the user's probe until it exits 0. It learns which child to look at
/// from HANDOFF_PID, HANDOFF_GENERATION and HANDOFF_WORKER. A probe still
/// running when the task is aborted is killed (kill_on_drop).
async fn probe<F>(
    command: Vec<String>,
    interval: Duration,
    pid: u32,
    generation: u64,
    slot: usize,
    report: F,
) where
    F: FnOnce(WorkerEvent) + Send + 'static,
{
    loop {
        let mut cmd = tokio::process::Command::new(&command[0]);
        cmd.args(&command[1..])
            .env("HANDOFF_PID", pid.to_string())
            .env("HANDOFF_GENERATION", generation.to_string())
            .env("HANDOFF_WORKER", slot.to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // A probe starts like a worker: no signal blocked or ignored, even
        // when it forks inside an upgrade's blocked window.
        // SAFETY: the hook runs between fork and exec and only calls
        // sigaction(2) and sigprocmask(2), which are async-signal-safe.
        unsafe {
            cmd.pre_exec(crate::sys::reset_signals_in_child);
        }
        let status = cmd.status().await;
        match status {
            Ok(s) if s.success() => return report(WorkerEvent::Ready),
            Ok(s) => tracing::debug!("ready probe for pid {pid}: {}", crate::describe_exit(&s)),
            Err(e) => tracing::warn!("ready probe `{}` cannot run: {e}", command[0]),
        }
        tokio::time::sleep(interval).await;
    }
}
