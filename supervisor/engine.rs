//! The supervisor at run time: the pure [`Core`] joined to the world. The
//! executor carries out the core's effects; the service manager hears where
//! things stand; control requests, signals and the workers' watchers reach
//! the core through here as [`Event`]s and calls. The loop that feeds them
//! in is in `boot/event_loop.rs`.

mod executor;
pub mod inbox;
mod reload;
mod status;
mod watch;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use executor::Executor;
pub use inbox::Inbox;

use crate::config::{Overrides, SighupAction};
use crate::control::ControlCall;
use crate::core::snapshot::RestoreError;
use crate::core::workers::WorkerEvent;
use crate::core::{
    error, Asked, Asker, Core, CoreSnapshot, RestartWaiter, SignalAsk, StopCause, Timer, WorkerId,
};
use crate::groups::Leftovers;
use crate::protocol::{ErrorKind, Request, Response};
use crate::runtime_dir::RuntimeDir;
use crate::signals::Received;
use crate::sockets::{BoundSocket, SocketSnapshot};
use crate::systemd::ServiceManager;

/// Everything that reaches the loop besides signals and control calls.
#[derive(Debug)]
pub enum Event {
    /// A worker's watcher: READY=1 and other notices, a probe's success.
    Worker(WorkerId, WorkerEvent),
    /// A worker exited (not reaped yet).
    Exited(WorkerId, io::Result<()>),
    Timer(Timer),
    /// Time to look at the process groups workers left behind.
    CheckGroups,
    /// A reload's configuration has been read (off the loop's thread).
    Reloaded {
        asked: Asked<RestartWaiter>,
        config: Box<Result<crate::config::Config, crate::config::ConfigErrors>>,
    },
    /// The new binary's check of an upgrade's state has finished: what it
    /// said, or the refusal as the asker is told it (a message only).
    UpgradeChecked(Result<String, String>),
}

/// How the supervisor was configured, kept to re-read the file on reload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
    pub sighup: SighupAction,
    pub fdstore: bool,
    /// `forward_signals`: signals sent to handoff that go to the serving
    /// workers. (default: the state of a handoff from before it lacks it.)
    #[serde(default, with = "crate::signals::names")]
    pub forward_signals: Vec<nix::sys::signal::Signal>,
    /// `--watch`: development mode. (default: as above.)
    #[serde(default)]
    pub watch: Option<crate::config::Watch>,
}

/// The control socket, as an upgrade hands it on (the control task owns the
/// socket itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControlInfo {
    pub path: PathBuf,
    pub socket: SocketSnapshot,
}

pub struct Supervisor {
    pub core: Core,
    pub fx: Executor,
    /// systemd (or another service manager), if one started us.
    pub manager: ServiceManager,
    pub source: Source,
    pub control: ControlInfo,
    /// The handoff binary, as it was when this one started: `upgrade`
    /// executes what is at that path now.
    pub binary: PathBuf,
    /// How often this supervisor was upgraded in place.
    pub upgrades: u32,
    pub started: Instant,
    /// Reloads whose file is being read: the service manager is not told
    /// READY=1 until they are through.
    reading: u32,
    /// The sockets in the service manager's fd store (with `fdstore`):
    /// the next generation's, kept in step by [`Supervisor::sync_fdstore`].
    stored: Vec<Arc<BoundSocket>>,
}

/// What a supervisor is built from, at boot and after an upgrade alike.
pub struct Parts {
    pub core: CoreSnapshot,
    /// The sockets `core` names by index.
    pub sockets: Vec<Arc<BoundSocket>>,
    pub runtime_dir: RuntimeDir,
    pub leftovers: Leftovers,
    pub manager: ServiceManager,
    pub source: Source,
    pub control: ControlInfo,
    pub binary: PathBuf,
    pub upgrades: u32,
    pub started: Instant,
}

impl Supervisor {
    /// The one constructor: boot and upgrade-resume both come here.
    pub fn assemble(parts: Parts, inbox: &Inbox) -> Result<Supervisor, RestoreError> {
        let core = Core::restore(&parts.core, &parts.sockets, Instant::now())?;
        // Boot stored these; an upgrade inherits what the old one stored.
        let stored = storable(&core);
        Ok(Supervisor {
            core,
            fx: Executor::new(parts.runtime_dir, inbox.sender(), parts.leftovers),
            manager: parts.manager,
            source: parts.source,
            control: parts.control,
            binary: parts.binary,
            upgrades: parts.upgrades,
            started: parts.started,
            reading: 0,
            stored,
        })
    }

    pub fn handle(&mut self, event: Event) {
        let fx = &mut self.fx;
        match event {
            Event::Worker(id, event) => self.core.on_worker(fx, id, event),
            Event::Exited(id, exited) => {
                // A worker the core no longer knows was already reaped.
                let Some(pid) = self.core.worker(id).map(|w| w.pid) else {
                    return;
                };
                // Only a process known to have exited is reaped (waitpid
                // would block otherwise); if even waiting failed, the core
                // hears that.
                let status = exited.and_then(|()| crate::sys::reap(pid));
                if status.is_ok() {
                    crate::reaper::reaped(pid);
                }
                self.core.on_worker(fx, id, WorkerEvent::Exited(status));
            }
            Event::Timer(timer) => self.core.on_timer(fx, timer),
            Event::CheckGroups => fx.check_groups(),
            Event::Reloaded { asked, config } => self.reloaded(asked, *config),
            // The loop handles it: it holds what an exec needs.
            Event::UpgradeChecked(_) => {}
        }
    }

    /// A control request. `Upgrade` is returned to the loop, which carries
    /// it out.
    pub fn handle_call(&mut self, call: ControlCall) -> Option<Asker> {
        let fx = &mut self.fx;
        let reply = call.reply;
        match call.request {
            Request::Status {} => {
                let status = self.status();
                let _ = reply.send(Response::Status(status));
            }
            Request::Restart { drained } => self
                .core
                .restart(fx, Asked::Client(RestartWaiter { reply, drained })),
            Request::Reload { drained } => {
                self.reload(Asked::Client(RestartWaiter { reply, drained }))
            }
            Request::Scale { workers } => {
                let answer = self.core.scale(fx, workers);
                let _ = reply.send(answer);
            }
            Request::Stop {} => self.stop(Some(reply), StopCause::Request),
            Request::Signal {
                signal,
                generation,
                group,
            } => {
                let answer = match crate::config::parse_signal(&signal) {
                    Ok(signal) => self.core.signal_workers(
                        fx,
                        SignalAsk {
                            signal,
                            generation,
                            group,
                        },
                    ),
                    Err(message) => error(ErrorKind::BadRequest, message),
                };
                let _ = reply.send(answer);
            }
            Request::Upgrade {} => {
                return Some(Asker {
                    reply,
                    stream: call.stream,
                })
            }
        }
        None
    }

    /// A signal; SIGUSR2 is returned to the loop, which carries it out.
    pub fn on_signal(&mut self, signal: Received) -> bool {
        match signal {
            Received::Hangup => self.on_sighup(),
            Received::Stop(signal) => self.stop(None, StopCause::Signal(signal)),
            Received::Upgrade => {
                tracing::info!("SIGUSR2: upgrading handoff");
                return true;
            }
            Received::Forward(signal) => self.forward(signal),
        }
        false
    }

    /// Watched files changed (`--watch`): a restart, as `handoff restart`
    /// does, said in one line a developer reads in the terminal.
    pub fn on_change(&mut self, changed: &[PathBuf]) {
        let what = crate::file_watch::describe(changed);
        tracing::debug!(
            "changed: {}",
            changed
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        match self.core.phase() {
            crate::core::Phase::Steady => tracing::info!(
                "change in {what}: building generation {}",
                self.core.next_generation_number()
            ),
            // The core says what becomes of it.
            _ => tracing::info!("change in {what}"),
        }
        self.core.restart(&mut self.fx, Asked::Change);
    }

    /// A signal of `forward_signals` goes to the serving workers, as
    /// `handoff signal` sends it.
    fn forward(&mut self, signal: nix::sys::signal::Signal) {
        if !self.source.forward_signals.contains(&signal) {
            tracing::warn!(
                "{signal} ignored: a reload took it off forward_signals (its handler stays, so it no longer has its default action)"
            );
            return;
        }
        let ask = SignalAsk {
            signal,
            generation: None,
            group: false,
        };
        // Who got it is logged by the core; only a refusal is news here.
        if let Response::Error { message, .. } = self.core.signal_workers(&mut self.fx, ask) {
            tracing::warn!("{signal} not forwarded: {message}");
        }
    }

    fn on_sighup(&mut self) {
        // RELOADING=1 only when a reload can happen: not while stopping,
        // not before the first READY=1.
        if !self.core.is_stopping() && self.manager.is_ready() {
            self.manager.reloading();
        }
        let asked = Asked::Signal(nix::sys::signal::Signal::SIGHUP);
        match self.source.sighup {
            SighupAction::Restart => {
                tracing::info!("SIGHUP: restarting");
                self.core.restart(&mut self.fx, asked);
            }
            SighupAction::Reload => {
                tracing::info!("SIGHUP: reloading the configuration");
                self.reload(asked);
            }
        }
    }

    /// A stop asked for. The service manager hears STOPPING=1 from
    /// `report_to_manager`, after this event as after any that began one.
    pub fn stop(&mut self, waiter: Option<crate::core::Waiter>, cause: StopCause) {
        let began = self.core.stop(&mut self.fx, waiter, cause);
        if !began && matches!(cause, StopCause::Signal(_)) {
            self.fx.kill_leftovers();
        }
    }

    /// A reload's file is being read.
    pub fn is_reading(&self) -> bool {
        self.reading > 0
    }

    /// Stopping, and nothing left to wait for.
    pub fn is_finished(&self) -> bool {
        self.core.is_finished() && self.fx.leftovers().is_empty()
    }

    /// Tells the service manager where things stand (after every event).
    pub fn report_to_manager(&mut self) {
        // Once a stop began, asked for or the core's own (respawn_limit).
        if self.core.is_stopping() {
            self.manager.stopping();
        }
        self.sync_fdstore();
        if let Some(report) = self.core.manager_report() {
            let settled = report.settled && self.reading == 0;
            self.manager.update(report.status, report.serving, settled);
        }
    }
}

impl Supervisor {
    /// Keeps the fd store holding the next generation's sockets: a reload
    /// adds and removes some, and a steered address's socket changes once
    /// the generation that had the old one is gone (that one no longer
    /// listens, and a handoff started again by the service manager must get
    /// one that does).
    fn sync_fdstore(&mut self) {
        let next = storable(&self.core);
        let same = next.len() == self.stored.len()
            && next
                .iter()
                .zip(&self.stored)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if same {
            return;
        }
        // Removals first: FDSTOREREMOVE goes by name.
        for old in &self.stored {
            if !next.iter().any(|s| Arc::ptr_eq(s, old)) {
                self.manager.unstore(&old.spec.name);
            }
        }
        for socket in next.iter() {
            if !self.stored.iter().any(|s| Arc::ptr_eq(s, socket)) {
                self.manager
                    .store(&socket.spec.name, std::os::fd::AsFd::as_fd(&**socket));
            }
        }
        self.stored = next;
    }
}

/// The next generation's sockets that belong in the fd store: not those of
/// an address an activator passed in (a socket unit, or the fd store
/// itself), whose own socket stays listening in the group and comes back
/// at the next start; a second one under the same name would too.
fn storable(core: &Core) -> Vec<Arc<BoundSocket>> {
    core.next()
        .sockets
        .iter()
        .filter(|s| !s.from_activator && !core.steering().group_of(s).any(|m| m.from_activator))
        .cloned()
        .collect()
}

/// "socket http listening on 127.0.0.1:8080 (fd 3 in children, backlog 4096)";
/// `how` says whether handoff bound it or adopted it.
pub fn log_socket(socket: &BoundSocket, index: usize, how: &str) {
    tracing::info!(
        "socket {} {how} {} (fd {} in children{})",
        socket.spec.name,
        socket.local,
        crate::template::FIRST_FD + index,
        socket
            .backlog()
            .map(|b| format!(", backlog {b}"))
            .unwrap_or_default()
    );
}
