//! The real [`Effects`]: the core's decisions carried out with processes,
//! signals and tokio timers. It also keeps what watches each worker, and
//! the process groups workers left behind (`groups.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::mpsc::UnboundedSender;

use super::watch::{self, Watched, Watchers};
use super::Event;
use crate::core::{
    Attach, Effects, Generation, LaunchError, Launched, Leftover, Timer, Waiter, Worker, WorkerId,
    WorkerState,
};
use crate::groups::{Leftovers, Outcome};
use crate::notify::NotifySocket;
use crate::protocol::Response;
use crate::runtime_dir::RuntimeDir;
use crate::sockets::{BindError, BoundSocket};

pub struct Executor {
    runtime_dir: RuntimeDir,
    events: UnboundedSender<Event>,
    watchers: HashMap<WorkerId, Watchers>,
    /// Process groups whose worker exited while others of the group live
    /// on, and whether a check of them is already due.
    leftovers: Leftovers,
    groups_check_due: bool,
}

impl Executor {
    pub fn new(
        runtime_dir: RuntimeDir,
        events: UnboundedSender<Event>,
        leftovers: Leftovers,
    ) -> Self {
        let mut executor = Executor {
            runtime_dir,
            events,
            watchers: HashMap::new(),
            leftovers,
            groups_check_due: false,
        };
        executor.arm_groups_check();
        executor
    }

    pub fn runtime_dir(&self) -> &std::path::Path {
        &self.runtime_dir.0
    }

    /// Where events for the loop go (a task's report).
    pub fn events(&self) -> UnboundedSender<Event> {
        self.events.clone()
    }

    pub fn leftovers(&self) -> &Leftovers {
        &self.leftovers
    }

    /// Watches a worker taken over from an upgraded supervisor.
    pub fn adopt(&mut self, worker: &Worker, notify: NotifySocket) {
        let watched = Watched {
            id: worker.id,
            pid: worker.pid,
            slot: worker.slot,
            generation: &worker.generation,
            starting: worker.state == WorkerState::Starting,
            started: worker.started,
        };
        let watchers = watch::watch(&watched, notify, &self.events);
        self.watchers.insert(worker.id, watchers);
    }

    /// The notify socket of each watched worker, for an upgrade.
    pub fn notify_sockets(&self) -> impl Iterator<Item = (WorkerId, &NotifySocket)> {
        self.watchers.iter().map(|(id, w)| (*id, w.notify()))
    }

    /// Time to look at the leftover process groups.
    pub fn check_groups(&mut self) {
        self.groups_check_due = false;
        for outcome in self.leftovers.check(Instant::now()) {
            match outcome {
                Outcome::Gone { owner, pgid } => {
                    tracing::info!("the rest of process group {pgid} ({owner}) is gone")
                }
                Outcome::Killed { owner, pgid } => tracing::warn!(
                    "process group {pgid} ({owner}) still runs at its drain deadline; sending SIGKILL"
                ),
                Outcome::GivenUp { owner, pgid } => tracing::error!(
                    "process group {pgid} ({owner}) is still there after SIGKILL (uninterruptible sleep?); no longer waiting for it"
                ),
            }
        }
        self.arm_groups_check();
    }

    /// A second stop signal: every leftover group gets SIGKILL now.
    pub fn kill_leftovers(&mut self) {
        self.leftovers.kill_all(Instant::now());
        self.check_groups();
    }

    fn arm_groups_check(&mut self) {
        if self.leftovers.is_empty() || self.groups_check_due {
            return;
        }
        self.groups_check_due = true;
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(crate::groups::CHECK_EVERY).await;
            let _ = events.send(Event::CheckGroups);
        });
    }
}

impl Effects for Executor {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn launch(
        &mut self,
        id: WorkerId,
        generation: &Arc<Generation>,
        slot: usize,
    ) -> Result<Launched, LaunchError> {
        let (launched, watchers) =
            watch::launch(id, generation, slot, &self.runtime_dir.0, &self.events)?;
        self.watchers.insert(id, watchers);
        Ok(launched)
    }

    fn ready(&mut self, worker: &Worker) {
        if let Some(w) = self.watchers.get_mut(&worker.id) {
            w.cancel_timers();
        }
    }

    fn signal(&mut self, worker: &Worker, signal: Signal) {
        if let Some(w) = self.watchers.get_mut(&worker.id) {
            w.cancel_timers();
        }
        // The whole process group: processes the child forked hold its
        // sockets too (a shell wrapper's server, a helper), and must stop
        // with it. A server with workers of its own (a gunicorn arbiter)
        // has them told directly as well, which is how `kill -TERM -PGID`
        // from a terminal or systemd's KillMode=control-group works. The
        // pid is not reaped until the loop handles its exit, so the group
        // id is still ours.
        if let Err(e) = killpg(Pid::from_raw(worker.pid as i32), signal) {
            tracing::debug!("{worker}: cannot send {signal}: {e}");
        }
    }

    fn send(&mut self, worker: &Worker, signal: Signal, group: bool) -> Result<(), String> {
        // As in `signal`: the pid is not reaped until the loop handles its
        // exit, so it (and its group id) is still this worker's.
        let pid = Pid::from_raw(worker.pid as i32);
        let sent = if group {
            killpg(pid, signal)
        } else {
            kill(pid, signal)
        };
        sent.map_err(|e| e.to_string())
    }

    fn timer(&mut self, after: Duration, timer: Timer) {
        let worker = timer.worker();
        let events = self.events.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = events.send(Event::Timer(timer));
        })
        .abort_handle();
        if let Some(w) = worker.and_then(|id| self.watchers.get_mut(&id)) {
            w.add_timer(task);
        }
    }

    fn gone(&mut self, worker: &Worker, leftover: Leftover) {
        self.watchers.remove(&worker.id);
        let spec = &worker.generation.spec;
        let left = self.leftovers.adopt(
            worker.pid,
            worker.to_string(),
            leftover.signal,
            leftover.deadline,
        );
        if left > 0 {
            tracing::warn!(
                "{worker} is gone, but {left} process(es) of its process group live on (holding its sockets); {}",
                match leftover.signal {
                    Some(Signal::SIGKILL) => "sent them SIGKILL".to_string(),
                    Some(s) => format!("sent them {s}, SIGKILL in {}", crate::ms(spec.drain_timeout)),
                    None => format!(
                        "SIGKILL in {}",
                        crate::ms(leftover.deadline.saturating_duration_since(Instant::now()))
                    ),
                }
            );
            self.arm_groups_check();
        }
    }

    fn answer(&mut self, reply: Waiter, response: Response) {
        // A client that went away does not want its answer.
        let _ = reply.send(response);
    }

    /// Makes every held TCP listener that a child shut down listen again,
    /// loudly (see [`BoundSocket::relisten_if_shut_down`]).
    fn check_sockets(&mut self, sockets: &[Arc<BoundSocket>]) -> Vec<Arc<BoundSocket>> {
        let mut revived = Vec::new();
        for socket in sockets {
            match socket.relisten_if_shut_down() {
                Ok(false) => {}
                Ok(true) => {
                    tracing::error!(
                        "socket {} ({}) had stopped listening: a child called shutdown() on the listener, \
                         which refuses every new connection for all the generations that share it \
                         (a server must only close its copy); it listens again (revived {} time(s))",
                        socket.spec.name,
                        socket.local,
                        socket.revived()
                    );
                    revived.push(socket.clone());
                }
                Err(e) => tracing::error!(
                    "socket {} ({}) is not listening and cannot listen again: {e}; restart handoff to bind it anew",
                    socket.spec.name,
                    socket.local
                ),
            }
        }
        revived
    }

    fn sibling(&mut self, socket: &Arc<BoundSocket>) -> Result<Arc<BoundSocket>, BindError> {
        let sibling = socket.sibling()?;
        tracing::debug!(
            "socket {}: a new socket on {} for the next generation",
            socket.spec.name,
            socket.local
        );
        Ok(Arc::new(sibling))
    }

    fn release(&mut self, socket: &Arc<BoundSocket>) {
        tracing::debug!(
            "socket {} ({}): the socket of a generation that is gone leaves the group",
            socket.spec.name,
            socket.local
        );
        let queued = socket.queued().unwrap_or(0);
        if let Err(e) = socket.leave_group() {
            tracing::error!(
                "socket {} ({}): cannot take an old generation's socket out of its group: {e}",
                socket.spec.name,
                socket.local
            );
        }
        if queued > 0 {
            tracing::warn!(
                "socket {} ({}): {queued} connection(s) still waited on an old generation's socket when it closed: {}",
                socket.spec.name,
                socket.local,
                match crate::steer::migrate_req() {
                    Some(true) => "net.ipv4.tcp_migrate_req = 1 moved them to another socket of the group (the kernel picks it by hash)",
                    _ => "they were reset (net.ipv4.tcp_migrate_req = 1 would move them to another socket of the group)",
                }
            );
        }
    }

    fn steer(&mut self, attach: &Attach) -> bool {
        let Some(first) = attach.members.first() else {
            return false;
        };
        let (name, local) = (&first.spec.name, &first.local);
        let program = match attach.targets.as_slice() {
            [(index, _)] => crate::steer::to(*index),
            targets => match crate::steer::split(targets) {
                Ok(program) => program,
                Err(e) => {
                    tracing::error!("socket {name} ({local}): cannot steer: {e}");
                    return false;
                }
            },
        };
        // Through a member that listens: one a child shut down is out of
        // the group until it is revived.
        let Some(via) = attach.members.iter().find(|m| m.is_listening()) else {
            tracing::error!(
                "socket {name} ({local}): no socket of the group listens; cannot steer"
            );
            return false;
        };
        match crate::steer::attach(&**via, &program) {
            Ok(()) => {
                tracing::debug!(
                    "socket {name} ({local}): new connections go to {:?} (index, weight)",
                    attach.targets
                );
                true
            }
            Err(e) => {
                tracing::error!(
                    "socket {name} ({local}): cannot steer new connections between the generations' sockets: {e}; \
                     tried again at the next event"
                );
                false
            }
        }
    }

    fn queued(&mut self, sockets: &[Arc<BoundSocket>]) -> u32 {
        sockets.iter().filter_map(|s| s.queued()).sum()
    }
}
