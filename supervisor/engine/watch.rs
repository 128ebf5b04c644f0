//! The tasks that watch one worker process: its exit, its notify socket,
//! and its readiness probe or delay. They only report, as events, to the
//! event loop; the core decides what happens.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;

use super::Event;
use crate::config::Readiness;
use crate::core::workers::WorkerEvent;
use crate::core::{Generation, LaunchError, Launched, WorkerId};
use crate::notify::NotifySocket;
use crate::spawn::{self, ChildContext};

/// What watches one worker; dropping it stops the watching (but not the
/// exit watcher: the loop must hear of every exit, to reap it).
#[derive(Debug)]
pub struct Watchers {
    /// Readiness probe or delay, and the core's timers for this worker;
    /// aborted when the worker's state changes.
    timers: Vec<AbortHandle>,
    notify_task: AbortHandle,
    /// Shared with `notify_task`, and kept here so that its fd stays open
    /// (and its number ours) for as long as the worker is watched, whatever
    /// the task does: an upgrade hands this fd on.
    notify: Arc<NotifySocket>,
}

impl Watchers {
    pub fn notify(&self) -> &NotifySocket {
        &self.notify
    }

    pub fn add_timer(&mut self, timer: AbortHandle) {
        self.timers.retain(|t| !t.is_finished());
        self.timers.push(timer);
    }

    pub fn cancel_timers(&mut self) {
        for t in self.timers.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        self.cancel_timers();
        self.notify_task.abort();
    }
}

/// What the watchers need to know of a worker.
pub struct Watched<'a> {
    pub id: WorkerId,
    pub pid: u32,
    pub slot: usize,
    pub generation: &'a Arc<Generation>,
    /// Still starting: its readiness probe or delay runs.
    pub starting: bool,
    pub started: Instant,
}

/// Starts a worker process with its notify socket, and watches it.
pub fn launch(
    id: WorkerId,
    generation: &Arc<Generation>,
    slot: usize,
    runtime_dir: &Path,
    events: &UnboundedSender<Event>,
) -> Result<(Launched, Watchers), LaunchError> {
    let path = runtime_dir.join(format!("notify-{id}.sock"));
    let notify =
        NotifySocket::bind(path.clone()).map_err(|source| LaunchError::Notify { path, source })?;
    let ctx = ChildContext {
        sockets: &generation.sockets,
        notify_socket: notify.path(),
        generation: generation.number,
        slot,
    };
    // The child's own time starts at the fork: exec and the server's
    // start-up are the child's, whatever supervises it.
    let started = Instant::now();
    let pid = spawn::spawn(&generation.spec, &ctx)?;
    let watched = Watched {
        id,
        pid,
        slot,
        generation,
        starting: true,
        started,
    };
    Ok((
        Launched {
            pid,
            forked: started,
        },
        watch(&watched, notify, events),
    ))
}

/// Watches a running process: its exit, its notify socket, and (while it
/// starts) its readiness probe or delay, measured from `started`, which may
/// lie in the past when an upgraded supervisor takes it over.
pub fn watch(w: &Watched, notify: NotifySocket, events: &UnboundedSender<Event>) -> Watchers {
    let (id, pid) = (w.id, w.pid);
    // Never aborted: the loop reaps the child when it hears of its exit.
    tokio::spawn({
        let events = events.clone();
        async move {
            let exited = crate::sys::exited(pid).await;
            // The loop only goes away when the supervisor exits.
            let _ = events.send(Event::Exited(id, exited));
        }
    });
    let notify = Arc::new(notify);
    let notify_task = tokio::spawn({
        let events = events.clone();
        let notify = notify.clone();
        async move {
            while let Ok(notices) = notify.recv().await {
                for notice in notices {
                    let _ = events.send(Event::Worker(id, WorkerEvent::Notice(notice)));
                }
            }
        }
    })
    .abort_handle();
    let mut timers = Vec::new();
    if w.starting {
        let report = {
            let events = events.clone();
            move || drop(events.send(Event::Worker(id, WorkerEvent::Ready)))
        };
        match &w.generation.spec.ready {
            Readiness::Notify | Readiness::Listen => {}
            Readiness::Delay(delay) => {
                let left = delay.saturating_sub(w.started.elapsed());
                timers.push(
                    tokio::spawn(async move {
                        tokio::time::sleep(left).await;
                        report();
                    })
                    .abort_handle(),
                );
            }
            Readiness::Exec { command, interval } => {
                let names: Vec<_> = w.generation.sockets.iter().map(|s| s.named()).collect();
                // Checked when the config was read; a name that slipped
                // through (an upgrade's older spec) stays as written.
                let command = command
                    .iter()
                    .map(|a| crate::template::expand(a, &names).unwrap_or_else(|_| a.clone()))
                    .collect();
                // The probe runs with the server's privileges (user, umask,
                // limits): it sees what the server sees, and no more.
                let controls = spawn::ChildControls::new(&w.generation.spec.controls);
                let probe = probe(
                    command,
                    *interval,
                    pid,
                    (w.generation.number, w.slot),
                    controls,
                    report,
                );
                timers.push(tokio::spawn(probe).abort_handle());
            }
        }
    }
    Watchers {
        timers,
        notify_task,
        notify,
    }
}

/// Runs the user's probe until it exits 0. It learns which child to look at
/// from HANDOFF_PID, HANDOFF_GENERATION and HANDOFF_WORKER. A probe still
/// running when the task is aborted is killed (kill_on_drop).
async fn probe(
    command: Vec<String>,
    interval: Duration,
    pid: u32,
    (generation, slot): (u64, usize),
    controls: spawn::ChildControls,
    report: impl FnOnce() + Send + 'static,
) {
    loop {
        let mut cmd = tokio::process::Command::new(&command[0]);
        cmd.args(&command[1..])
            .env("HANDOFF_PID", pid.to_string())
            .env("HANDOFF_GENERATION", generation.to_string())
            .env("HANDOFF_WORKER", slot.to_string())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        // A probe starts like a worker: no signal blocked or ignored, even
        // when it forks inside an upgrade's blocked window, and the same
        // umask, limits and user.
        let controls = controls.clone();
        // SAFETY: the hook runs between fork and exec and only calls
        // sigaction(2), sigprocmask(2) and the system calls of
        // `ChildControls::apply`, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                crate::sys::reset_signals_in_child()?;
                controls.apply()
            });
        }
        // Registered: tokio waits for it, not the reaper.
        let status = match crate::reaper::spawn(|| cmd.spawn(), tokio::process::Child::id) {
            Ok(mut child) => {
                let pid = child.id();
                let status = child.wait().await;
                if let (Ok(_), Some(pid)) = (&status, pid) {
                    crate::reaper::reaped(pid);
                }
                status
            }
            Err(e) => Err(e),
        };
        match status {
            Ok(s) if s.success() => return report(),
            Ok(s) => tracing::debug!("ready probe for pid {pid}: {}", crate::describe_exit(&s)),
            Err(e) => tracing::warn!("ready probe `{}` cannot run: {e}", command[0]),
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::core::tests::fake::spec;

    /// An upgrade hands on each worker's notify fd by number: the number
    /// must stay this socket's for as long as the worker is watched, even
    /// when the task reading it has ended (it once owned the socket, and
    /// its end closed the fd, whose number a later socket could reuse).
    #[tokio::test]
    async fn a_notify_fd_stays_open_after_its_reader_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let notify = NotifySocket::bind(path.clone()).unwrap();
        let fd = notify.as_raw_fd();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let generation = Arc::new(Generation {
            number: 1,
            spec: Arc::new(spec(1)),
            sockets: Arc::from(Vec::new()),
        });
        let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
        let watched = Watched {
            id: 1,
            pid: child.id(),
            slot: 0,
            generation: &generation,
            starting: false,
            started: Instant::now(),
        };
        let watchers = watch(&watched, notify, &events);
        watchers.notify_task.abort();
        while !watchers.notify_task.is_finished() {
            tokio::task::yield_now().await;
        }
        // SAFETY: fcntl(2) F_GETFD on a number only reads its flags.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
        assert!(open, "fd {fd} was closed with its reader");
        assert_eq!(watchers.notify().as_raw_fd(), fd);
        assert!(path.exists(), "the socket file stays while watched");
        drop(watchers);
        assert!(!path.exists(), "and goes with the watchers");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
