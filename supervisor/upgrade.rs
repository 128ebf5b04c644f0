//! Upgrading handoff itself: `handoff upgrade` or SIGUSR2 replaces the
//! running supervisor with the binary now on disk, in place.
//!
//! The supervisor writes down its whole state (a [`Snapshot`]: sockets,
//! generations, workers, slots) and asks the new binary to check it
//! (`handoff __resume --check FILE`, which must start and accept it). Only
//! then does it clear FD_CLOEXEC on the fds the new one needs (listening
//! sockets, control socket, the children's notify sockets, the asking
//! client's connection) and `execve` the new binary with `__resume FILE`.
//!
//! Re-executing in place, rather than starting a second supervisor, keeps
//! the pid: the children stay its children (their exits are still its to
//! reap, PR_SET_PDEATHSIG does not fire), and systemd sees the same main
//! process, so the unit stays active with no MAINPID= to send. The kernel
//! sockets are never closed, so no connection is lost. If the check fails
//! or the exec does, the old supervisor carries on and says why.
//!
//! Signals are blocked across the exec and unblocked by the new process once
//! its handlers are in place, so a SIGTERM in between is delayed, not fatal.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::config::{Overrides, ProgramSpec, SighupAction};
use crate::control::ControlServer;
use crate::notify::NotifySocket;
use crate::protocol::{self, ErrorKind, Response};
use crate::sockets::{BoundSocket, SocketSet, SocketSnapshot};
use crate::startup;
use crate::supervisor::{
    self, error, Inbox, RunError, RuntimeDir, Signals, Slot, Source, Supervisor,
};
use crate::systemd::ServiceManager;
use crate::worker::{Generation, Watch, Worker, WorkerState};

/// Bumped when the snapshot changes incompatibly; a binary refuses a
/// snapshot of another format in its check, before the old one execs it.
pub const FORMAT: u32 = 1;

/// How long the new binary's check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The path this handoff was started as (argv[0], found in PATH if it has
/// no `/`), not following symlinks: a deploy that re-points a link, or
/// replaces the file, is what an upgrade must run.
pub fn own_binary() -> PathBuf {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let env: Vec<_> = std::env::vars_os().collect();
    crate::spawn::resolve_program(&argv0.to_string_lossy(), &env)
        .or_else(|_| std::env::current_exe())
        .unwrap_or_else(|_| PathBuf::from("/proc/self/exe"))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub format: u32,
    pub from_version: String,
    pub upgrades: u32,
    pub binary: PathBuf,
    pub control_path: PathBuf,
    pub control: SocketSnapshot,
    /// The asking client's connection, answered by the new supervisor.
    pub reply_fd: Option<RawFd>,
    pub runtime_dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub overrides: Overrides,
    pub sighup: SighupAction,
    pub fdstore: bool,
    /// Every socket some generation has, by index.
    pub sockets: Vec<SocketSnapshot>,
    /// Every generation some worker (or the next restart) runs.
    pub generations: Vec<GenerationSnapshot>,
    pub next_spec: ProgramSpec,
    pub next_sockets: Vec<usize>,
    pub serving: u64,
    pub serving_ready: bool,
    pub last_generation: u64,
    pub slots: Vec<SlotSnapshot>,
    pub draining: Vec<WorkerSnapshot>,
    pub next_worker: u64,
    pub uptime_ms: u64,
    pub manager_ready: bool,
    pub last_failure: Option<String>,
    /// Process groups whose worker is gone but not the rest (absent in
    /// the snapshots of binaries that did not track them).
    #[serde(default)]
    pub leftovers: Vec<GroupSnapshot>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GroupSnapshot {
    pub pgid: u32,
    pub owner: String,
    pub deadline_in: Duration,
    pub killed_ago: Option<Duration>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GenerationSnapshot {
    pub number: u64,
    pub spec: ProgramSpec,
    pub sockets: Vec<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SlotSnapshot {
    pub active: Option<WorkerSnapshot>,
    /// A respawn was pending, of this generation.
    pub respawn: Option<u64>,
    pub restarts: u32,
    pub backoff: Option<Duration>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    pub id: u64,
    pub pid: u32,
    pub slot: usize,
    pub generation: u64,
    pub state: StateSnapshot,
    pub started_ago: Duration,
    pub since_ago: Duration,
    pub status: Option<String>,
    pub notify_fd: RawFd,
    pub notify_path: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum StateSnapshot {
    Starting,
    Ready { ready_in: Duration },
    Draining { deadline_in: Duration },
    Killed { reason: String },
}

/// Who asked for an upgrade: the reply channel, and the connection the new
/// supervisor answers on.
pub type Asker = (oneshot::Sender<Response>, Option<OwnedFd>);

fn refuse(asker: Option<Asker>, kind: ErrorKind, message: String) {
    tracing::error!("upgrade: {message}; this supervisor stays in charge");
    if let Some((reply, _)) = asker {
        let _ = reply.send(error(kind, message));
    }
}

/// `handoff upgrade` or SIGUSR2, run by the event loop between events.
/// Returns only if the upgrade did not happen.
pub(crate) async fn upgrade(
    sup: &mut Supervisor,
    signals: &mut Signals,
    inbox: &mut Inbox,
    asker: Option<Asker>,
) {
    // From here on a signal stays pending in the kernel: through the check,
    // and across the exec, to the new supervisor's handlers.
    crate::sys::block_signals();
    // What already happened must be handled first: a READY=1 or an exit
    // the snapshot has to include, a signal that must not be lost. Yielding
    // lets the runtime's driver and the workers' watchers run once.
    tokio::task::yield_now().await;
    while let Ok(event) = inbox.events.try_recv() {
        sup.handle(event);
    }
    let arrived = signals.received();
    if !arrived.is_empty() {
        crate::sys::unblock_signals();
        for signal in &arrived {
            match *signal {
                "SIGTERM" | "SIGINT" => sup.begin_shutdown(None, signal),
                "SIGHUP" => sup.on_sighup(),
                _ => {}
            }
        }
        return refuse(
            asker,
            ErrorKind::Busy,
            format!("{} arrived first", arrived.join(", ")),
        );
    }
    let refusal = if sup.is_shutting_down() {
        Some((
            ErrorKind::ShuttingDown,
            "the supervisor is shutting down".to_string(),
        ))
    } else if let Some(r) = &sup.rollout {
        Some((
            ErrorKind::Busy,
            format!(
                "a restart (generation {}) is in progress: upgrade once it is done",
                r.generation.number
            ),
        ))
    } else if !sup.drain_waits.is_empty() {
        Some((
            ErrorKind::Busy,
            "a restart --drained is waiting for old workers to exit: upgrade once it is answered"
                .to_string(),
        ))
    } else {
        None
    };
    if let Some((kind, message)) = refusal {
        crate::sys::unblock_signals();
        return refuse(asker, kind, message);
    }
    sup.check_sockets();
    let err = sup.upgrade_now(asker);
    crate::sys::unblock_signals();
    if let Some((asker, kind, message)) = err {
        refuse(asker, kind, message);
    }
}

impl Supervisor {
    /// Snapshot, check, snapshot again (so the times are fresh), exec.
    /// Returns what to refuse with if the exec did not happen.
    fn upgrade_now(&mut self, asker: Option<Asker>) -> Option<(Option<Asker>, ErrorKind, String)> {
        let reply_fd = asker
            .as_ref()
            .and_then(|(_, s)| s.as_ref().map(|s| s.as_raw_fd()));
        let state = self.runtime_dir.0.join("upgrade.json");
        if let Err(e) = write(&self.snapshot(reply_fd), &state) {
            return Some((asker, ErrorKind::UpgradeFailed, e));
        }
        // The check blocks the loop: keep the watchdog fed and the check
        // shorter than the watchdog's interval.
        self.manager.watchdog();
        let timeout =
            crate::systemd::watchdog_interval().map_or(CHECK_TIMEOUT, |w| w.min(CHECK_TIMEOUT));
        let first = self.snapshot(reply_fd);
        if let Err(message) = check(&self.binary, &state, timeout, &handed_on(&first)) {
            return Some((asker, ErrorKind::UpgradeFailed, message));
        }
        let snapshot = self.snapshot(reply_fd);
        if let Err(e) = write(&snapshot, &state) {
            return Some((asker, ErrorKind::UpgradeFailed, e));
        }
        let fds = handed_on(&snapshot);
        tracing::info!(
            "upgrade: {} accepted the state; handing over {} fds and {} workers",
            self.binary.display(),
            fds.len(),
            snapshot.slots.iter().filter(|s| s.active.is_some()).count() + snapshot.draining.len()
        );
        self.manager.watchdog();
        // The log's writer thread does not survive the exec.
        crate::logging::flush();
        let err = crate::sys::exec_keeping(
            &self.binary,
            &["__resume".as_ref(), state.as_os_str()],
            &fds,
        );
        Some((
            asker,
            ErrorKind::UpgradeFailed,
            format!("cannot execute {}: {err}", self.binary.display()),
        ))
    }

    fn snapshot(&self, reply_fd: Option<RawFd>) -> Snapshot {
        // Every socket and generation still in use, by identity.
        let mut sockets: Vec<Arc<BoundSocket>> = Vec::new();
        let mut socket_index =
            |s: &Arc<BoundSocket>| match sockets.iter().position(|k| Arc::ptr_eq(k, s)) {
                Some(i) => i,
                None => {
                    sockets.push(s.clone());
                    sockets.len() - 1
                }
            };
        let mut generations: BTreeMap<u64, GenerationSnapshot> = BTreeMap::new();
        let mut note =
            |g: &Arc<Generation>, socket_index: &mut dyn FnMut(&Arc<BoundSocket>) -> usize| {
                generations
                    .entry(g.number)
                    .or_insert_with(|| GenerationSnapshot {
                        number: g.number,
                        spec: (*g.spec).clone(),
                        sockets: g.sockets.iter().map(socket_index).collect(),
                    });
            };
        note(&self.serving, &mut socket_index);
        let worker = |w: &Worker| WorkerSnapshot {
            id: w.id,
            pid: w.pid,
            slot: w.slot,
            generation: w.generation.number,
            state: match &w.state {
                WorkerState::Starting => StateSnapshot::Starting,
                WorkerState::Ready { ready_in } => StateSnapshot::Ready {
                    ready_in: *ready_in,
                },
                WorkerState::Draining { deadline } => StateSnapshot::Draining {
                    deadline_in: deadline.saturating_duration_since(Instant::now()),
                },
                WorkerState::Killed { reason } => StateSnapshot::Killed {
                    reason: reason.clone(),
                },
            },
            started_ago: w.started.elapsed(),
            since_ago: w.since.elapsed(),
            status: w.status.clone(),
            notify_fd: w.notify_fd,
            notify_path: w.notify_path.clone(),
        };
        let mut slots = Vec::new();
        for s in &self.slots {
            if let Some(w) = &s.active {
                note(&w.generation, &mut socket_index);
            }
            if let Some(r) = &s.respawn {
                note(&r.generation, &mut socket_index);
            }
            slots.push(SlotSnapshot {
                active: s.active.as_ref().map(worker),
                respawn: s.respawn.as_ref().map(|r| r.generation.number),
                restarts: s.restarts,
                backoff: s.backoff,
            });
        }
        for w in &self.draining {
            note(&w.generation, &mut socket_index);
        }
        let next_sockets = self.next_sockets.iter().map(&mut socket_index).collect();
        Snapshot {
            format: FORMAT,
            from_version: env!("CARGO_PKG_VERSION").to_string(),
            upgrades: self.upgrades,
            binary: self.binary.clone(),
            control_path: self.control_path.clone(),
            control: self.control_snapshot.clone(),
            reply_fd,
            runtime_dir: self.runtime_dir.0.clone(),
            config_file: self.source.file.clone(),
            overrides: self.source.overrides.clone(),
            sighup: self.source.sighup,
            fdstore: self.source.fdstore,
            sockets: sockets.iter().map(|s| s.snapshot()).collect(),
            generations: generations.into_values().collect(),
            next_spec: (*self.next_spec).clone(),
            next_sockets,
            serving: self.serving.number,
            serving_ready: self.serving_ready,
            last_generation: self.last_generation,
            slots,
            draining: self.draining.iter().map(worker).collect(),
            next_worker: self.next_worker,
            uptime_ms: supervisor::ms_u64(self.started.elapsed()),
            manager_ready: self.manager.is_ready(),
            last_failure: self.last_failure.clone(),
            leftovers: self
                .leftovers
                .groups()
                .iter()
                .map(|g| GroupSnapshot {
                    pgid: g.pgid,
                    owner: g.owner.clone(),
                    deadline_in: g.deadline.saturating_duration_since(Instant::now()),
                    killed_ago: g.killed.map(|at| at.elapsed()),
                })
                .collect(),
        }
    }
}

/// Every fd the new supervisor needs.
fn handed_on(s: &Snapshot) -> Vec<RawFd> {
    let mut fds: Vec<RawFd> = s.sockets.iter().map(|k| k.fd).collect();
    fds.push(s.control.fd);
    fds.extend(s.reply_fd);
    let workers = s
        .slots
        .iter()
        .filter_map(|s| s.active.as_ref())
        .chain(&s.draining);
    fds.extend(workers.map(|w| w.notify_fd));
    fds
}

/// Writes the state for the new binary. It holds the config's `env`: the
/// file is created anew, mode 0600, never through a symlink planted there.
fn write(snapshot: &Snapshot, state: &Path) -> Result<(), String> {
    let json = serde_json::to_vec(snapshot).map_err(|e| e.to_string())?;
    crate::runtime_dir::create_private_file(state)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &json))
        .map_err(|e| format!("cannot write {}: {e}", state.display()))
}

/// Runs `binary __resume --check STATE`: the new binary must start, read
/// the state and accept it.
///
/// The check gets the very fds the new supervisor will, at the same
/// numbers, and rebuilds everything from them as the take-over would.
fn check(binary: &Path, state: &Path, timeout: Duration, fds: &[RawFd]) -> Result<(), String> {
    use command_fds::{CommandFdExt, FdMapping};
    let mut mappings = Vec::with_capacity(fds.len());
    for &fd in fds {
        // SAFETY: every fd in the snapshot is open in this process for as
        // long as this function runs.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let parent_fd = borrowed
            .try_clone_to_owned()
            .map_err(|e| format!("cannot hand fd {fd} to the check: {e}"))?;
        mappings.push(FdMapping {
            parent_fd,
            child_fd: fd,
        });
    }
    let mut cmd = std::process::Command::new(binary);
    cmd.args(["__resume", "--check"])
        .arg(state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.fd_mappings(mappings).map_err(|e| e.to_string())?;
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run the new binary {}: {e}", binary.display()))?;
    drop(cmd);
    match crate::sys::wait_for_exit(child.id(), timeout) {
        Ok(true) => {}
        _ => {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the new binary {} did not finish its check within {timeout:?}",
                binary.display()
            ));
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot read the new binary's check: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.trim();
    Err(format!(
        "the new binary {} refused the current state ({}){}",
        binary.display(),
        crate::describe_exit(&out.status),
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    ))
}

/// `handoff __resume --check STATE`, run by the old supervisor with the fds
/// the snapshot names: this binary rebuilds the whole supervisor from them,
/// as the take-over will, then exits at once. It must not run a single
/// task (a notify reader would take a child's READY=1 meant for the old
/// supervisor) nor drop a socket (which would remove its file): it exits
/// without returning, so no destructor runs.
pub async fn check_takeover(state: &Path) -> ! {
    // Whatever fails below, the running supervisor's files stay.
    crate::sockets::keep_files();
    let result = read(state).and_then(|snapshot| {
        let taken = take_over(&snapshot).map_err(|e| e.to_string())?;
        std::mem::forget(taken);
        Ok(format!(
            "handoff {} can take over from {} ({} sockets, {} generations)",
            env!("CARGO_PKG_VERSION"),
            snapshot.from_version,
            snapshot.sockets.len(),
            snapshot.generations.len()
        ))
    });
    match result {
        Ok(said) => {
            println!("{said}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("handoff: {e}");
            std::process::exit(1)
        }
    }
}

fn read(state: &Path) -> Result<Snapshot, String> {
    let mut text = Vec::new();
    crate::runtime_dir::open_private_file(state)
        .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut text))
        .map_err(|e| format!("cannot read {}: {e}", state.display()))?;
    let snapshot: Snapshot = serde_json::from_slice(&text)
        .map_err(|e| format!("cannot understand {}: {e}", state.display()))?;
    if snapshot.format != FORMAT {
        return Err(format!(
            "state format {} is not this binary's ({FORMAT}): upgrade through a version that knows both",
            snapshot.format
        ));
    }
    Ok(snapshot)
}

/// Takes ownership of an fd handed on across the exec.
fn take_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the old supervisor handed this fd to us across the exec and
    // nothing else in this process has it; the snapshot names each fd once.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    crate::sys::set_cloexec(fd.as_fd());
    fd
}

/// `handoff __resume STATE`: the new supervisor takes over and serves.
pub async fn resume(state: &Path) -> Result<(), RunError> {
    let signals = Signals::install()?;
    // The old supervisor blocked signals across the exec; handlers are in
    // place now, so let any that came meanwhile in.
    crate::sys::unblock_signals();
    let snapshot = read(state).map_err(RunError::Resume)?;
    let _ = std::fs::remove_file(state);
    // The asking client hears how it went, whichever way it goes.
    let mut reply = snapshot
        .reply_fd
        .map(|fd| std::os::unix::net::UnixStream::from(take_fd(fd)));
    let (sup, inbox) = match take_over(&snapshot) {
        Ok(taken) => taken,
        Err(e) => {
            // Nothing can serve now: say so, and leave no files behind. The
            // children get SIGTERM when this process exits (PDEATHSIG).
            let message =
                format!("the new supervisor could not take over ({e}); handoff has stopped");
            tracing::error!("upgrade: {message}");
            if let Some(stream) = &mut reply {
                let _ = std::io::Write::write_all(
                    stream,
                    &protocol::encode(&error(ErrorKind::UpgradeFailed, message)),
                );
            }
            if let Some(file) = &snapshot.control.created_file {
                let _ = std::fs::remove_file(&file.path);
            }
            let _ = std::fs::remove_dir_all(&snapshot.runtime_dir);
            return Err(e);
        }
    };
    tracing::info!(
        "upgraded from handoff {} to {}: took over {} sockets and {} workers",
        snapshot.from_version,
        env!("CARGO_PKG_VERSION"),
        snapshot.sockets.len(),
        sup.slots.iter().filter(|s| s.active.is_some()).count() + sup.draining.len()
    );
    if let Some(stream) = &mut reply {
        let answer = Response::Upgraded {
            version: env!("CARGO_PKG_VERSION").to_string(),
            from_version: snapshot.from_version.clone(),
            pid: std::process::id(),
            upgrades: sup.upgrades,
        };
        let _ = std::io::Write::write_all(stream, &protocol::encode(&answer));
    }
    drop(reply);
    reap_strays(&sup);
    supervisor::serve(sup, signals, inbox).await
}

/// Children of this process that are not workers were the old supervisor's
/// own helpers (a readiness probe that was running at the exec): nothing
/// here waits for them, so end and reap them rather than leave zombies.
fn reap_strays(sup: &Supervisor) {
    let workers: Vec<u32> = sup
        .slots
        .iter()
        .filter_map(|s| s.active.as_ref())
        .chain(&sup.draining)
        .map(|w| w.pid)
        .collect();
    for pid in crate::sys::children()
        .into_iter()
        .filter(|p| !workers.contains(p))
    {
        // SIGKILL ends it at once, so waiting for it here is brief.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        match crate::sys::reap(pid) {
            Ok(_) => tracing::info!(
                "ended pid {pid}, a helper of the old supervisor (a readiness probe)"
            ),
            Err(e) => tracing::warn!("cannot reap pid {pid}, a helper of the old supervisor: {e}"),
        }
    }
}

/// Rebuilds the supervisor from a snapshot: the fds it names, its
/// generations, its workers (watched again), its slots.
fn take_over(snapshot: &Snapshot) -> Result<(Supervisor, Inbox), RunError> {
    let resume_error = |e: std::io::Error| RunError::Resume(e.to_string());

    let control = ControlServer::restore(snapshot.control.clone(), take_fd(snapshot.control.fd))
        .map_err(resume_error)?;
    let control_snapshot = control.snapshot();
    let sockets: Vec<Arc<BoundSocket>> = snapshot
        .sockets
        .iter()
        .map(|k| Arc::new(BoundSocket::restore(k.clone(), take_fd(k.fd))))
        .collect();
    let set =
        |indices: &[usize]| -> SocketSet { indices.iter().map(|&i| sockets[i].clone()).collect() };
    let generations: BTreeMap<u64, Arc<Generation>> = snapshot
        .generations
        .iter()
        .map(|g| {
            let generation = Generation {
                number: g.number,
                spec: Arc::new(g.spec.clone()),
                sockets: set(&g.sockets),
            };
            (g.number, Arc::new(generation))
        })
        .collect();
    let generation = |n: u64| {
        generations.get(&n).cloned().ok_or_else(|| {
            RunError::Resume(format!(
                "the state names generation {n} but does not describe it"
            ))
        })
    };
    let (inbox, sink) = startup::inbox(control);
    let mut manager = ServiceManager::from_env(snapshot.fdstore);
    manager.set_ready(snapshot.manager_ready);

    let now = Instant::now();
    let mut take_worker = |w: &WorkerSnapshot| -> Result<Worker, RunError> {
        let notify = NotifySocket::from_fd(w.notify_path.clone(), take_fd(w.notify_fd))
            .map_err(resume_error)?;
        let state = match &w.state {
            StateSnapshot::Starting => WorkerState::Starting,
            StateSnapshot::Ready { ready_in } => WorkerState::Ready {
                ready_in: *ready_in,
            },
            StateSnapshot::Draining { deadline_in } => WorkerState::Draining {
                deadline: now + *deadline_in,
            },
            StateSnapshot::Killed { reason } => WorkerState::Killed {
                reason: reason.clone(),
            },
        };
        let watch = Watch {
            id: w.id,
            pid: w.pid,
            slot: w.slot,
            generation: generation(w.generation)?,
            state,
            started: now.checked_sub(w.started_ago).unwrap_or(now),
            since: now.checked_sub(w.since_ago).unwrap_or(now),
            status: w.status.clone(),
        };
        Ok(Worker::watch(watch, notify, &sink))
    };
    let mut slots = Vec::with_capacity(snapshot.slots.len());
    let mut respawns = Vec::new();
    for (i, s) in snapshot.slots.iter().enumerate() {
        let active = s.active.as_ref().map(&mut take_worker).transpose()?;
        if let Some(g) = s.respawn {
            respawns.push((i, generation(g)?));
        }
        slots.push(Slot {
            active,
            incoming: None,
            respawn: None,
            restarts: s.restarts,
            backoff: s.backoff,
        });
    }
    let draining = snapshot
        .draining
        .iter()
        .map(&mut take_worker)
        .collect::<Result<Vec<_>, _>>()?;
    let mut sup = Supervisor {
        next_spec: Arc::new(snapshot.next_spec.clone()),
        next_sockets: set(&snapshot.next_sockets),
        serving: generation(snapshot.serving)?,
        serving_ready: snapshot.serving_ready,
        last_generation: snapshot.last_generation,
        slots,
        draining,
        rollout: None,
        queued: Vec::new(),
        drain_waits: Vec::new(),
        queued_signal: false,
        shutdown: None,
        source: Source {
            file: snapshot.config_file.clone(),
            overrides: snapshot.overrides.clone(),
            sighup: snapshot.sighup,
            fdstore: snapshot.fdstore,
        },
        control_path: snapshot.control_path.clone(),
        control_snapshot,
        runtime_dir: RuntimeDir(snapshot.runtime_dir.clone()),
        next_worker: snapshot.next_worker,
        next_token: 1,
        sink,
        started: now
            .checked_sub(Duration::from_millis(snapshot.uptime_ms))
            .unwrap_or(now),
        manager,
        last_failure: snapshot.last_failure.clone(),
        binary: snapshot.binary.clone(),
        upgrades: snapshot.upgrades + 1,
        pending_upgrade: None,
        leftovers: Default::default(),
        groups_check_due: false,
    };
    for (slot, generation) in respawns {
        sup.respawn_soon(slot, generation);
    }
    sup.leftovers
        .restore(snapshot.leftovers.iter().map(|g| crate::groups::Group {
            pgid: g.pgid,
            owner: g.owner.clone(),
            deadline: now + g.deadline_in,
            killed: g.killed_ago.map(|ago| now.checked_sub(ago).unwrap_or(now)),
        }));
    sup.arm_groups_check();
    Ok((sup, inbox))
}
