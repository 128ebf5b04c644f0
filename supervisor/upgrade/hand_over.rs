//! The old supervisor's side of an upgrade: start the new binary's check
//! without stopping the loop, then, if it passed, hand everything over and
//! exec.

use std::ffi::OsStr;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use super::run_check::{run_check, CheckError};
use super::State;
use crate::control::Stop;
use crate::core::{error, Asker};
use crate::engine::{Event, Inbox, Supervisor};
use crate::protocol::{ErrorKind, Request, Response};
use crate::signals::{Received, Signals};

/// How long the new binary's check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upgrade did not happen, for the asker and the log.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    State(#[from] super::state::StateError),
    #[error("cannot hand fd {fd} to the check: {source}")]
    Dup {
        fd: RawFd,
        #[source]
        source: std::io::Error,
    },
    #[error("the control server did not hand its socket back")]
    Control,
    /// Something handled just before the exec called it off (and said why).
    #[error("called off")]
    CalledOff,
    #[error("{0} arrived first")]
    Signals(String),
    #[error("cannot execute {}: {source}", binary.display())]
    Exec {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the state file goes.
fn state_path(sup: &Supervisor) -> PathBuf {
    sup.fx.runtime_dir().join("upgrade.json")
}

/// An upgrade was asked for: if the core agrees, writes the state and
/// starts the new binary's check; [`Event::UpgradeChecked`] brings its
/// verdict back to the loop, which then calls [`hand_over`].
pub fn begin(sup: &mut Supervisor, asker: Option<Asker>) {
    // A reload whose file is being read would be cut by the exec, its
    // client unanswered and its change lost.
    if sup.is_reading() {
        let message = "a reload is reading its configuration: upgrade once it is answered";
        tracing::error!("upgrade: {message}; this supervisor stays in charge");
        if let Some(asker) = asker {
            let _ = asker.reply.send(error(ErrorKind::Busy, message));
        }
        return;
    }
    if !sup.core.begin_upgrade(&mut sup.fx, asker) {
        return;
    }
    sup.check_sockets();
    if let Err(e) = start_check(sup) {
        sup.core
            .abandon_upgrade(&mut sup.fx, ErrorKind::UpgradeFailed, e.to_string());
    }
}

fn start_check(sup: &mut Supervisor) -> Result<(), UpgradeError> {
    let state = State::of(sup, sup.core.upgrade_stream());
    let path = state_path(sup);
    state.write(&path)?;
    // The check gets the very fds the new supervisor will, at the same
    // numbers. Duplicated now: the loop goes on meanwhile, and a worker
    // that exits closes its notify socket (and frees its number).
    let mut fds: Vec<(OwnedFd, RawFd)> = Vec::new();
    for fd in state.fds() {
        // SAFETY: every fd the state names is open in this process now
        // (the loop has not run since the state was taken).
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let dup = borrowed
            .try_clone_to_owned()
            .map_err(|source| UpgradeError::Dup { fd, source })?;
        fds.push((dup, fd));
    }
    let binary = sup.binary.clone();
    let events = sup.fx.events();
    // The check must finish well within the watchdog's interval.
    let timeout =
        crate::systemd::watchdog_interval().map_or(CHECK_TIMEOUT, |w| w.min(CHECK_TIMEOUT));
    tokio::spawn(async move {
        let args: [&OsStr; 3] = ["__resume".as_ref(), "--check".as_ref(), path.as_os_str()];
        let verdict = run_check(&binary, &args, fds, timeout)
            .await
            .map(|out| out.stdout.text())
            .map_err(|e| refusal(&e));
        let _ = events.send(Event::UpgradeChecked(verdict));
    });
    Ok(())
}

/// The check passed: hands over and execs. Returns only if the upgrade did
/// not happen (the core has been told why).
///
/// `deferred` are the signals that came while the check ran: they go to the
/// new supervisor, pending across the exec (or, if the upgrade does not
/// happen, to this one).
pub async fn hand_over(
    sup: &mut Supervisor,
    signals: &mut Signals,
    inbox: &mut Inbox,
    said: &str,
    deferred: &[Received],
) {
    if !sup.core.is_upgrading() {
        // Called off while the check ran.
        for signal in deferred {
            if sup.on_signal(*signal) {
                begin(sup, None);
            }
        }
        return;
    }
    tracing::info!("upgrade: {}", said.trim());
    let (control, e) = exec(sup, signals, inbox, deferred).await;
    crate::sys::unblock_signals();
    if let Some(control) = control {
        inbox.serve_control(control);
    }
    if sup.core.is_upgrading() {
        sup.core
            .abandon_upgrade(&mut sup.fx, ErrorKind::UpgradeFailed, e.to_string());
    }
}

/// Blocks signals, lets the control server finish, writes the state and
/// execs. Returns only if the upgrade did not happen: why, and the control
/// server if it was stopped (to serve again).
async fn exec(
    sup: &mut Supervisor,
    signals: &mut Signals,
    inbox: &mut Inbox,
    deferred: &[Received],
) -> (Option<crate::control::ControlServer>, UpgradeError) {
    // From here on a signal stays pending in the kernel: across the exec,
    // to the new supervisor's handlers.
    crate::sys::block_signals();
    // Those held while the check ran are made pending again, on this
    // thread: a thread's pending signals survive its exec.
    for signal in deferred {
        if *signal == Received::Upgrade {
            continue; // the upgrade it asks for is this one
        }
        if let Err(e) =
            nix::sys::pthread::pthread_kill(nix::sys::pthread::pthread_self(), signal.signal())
        {
            tracing::warn!("upgrade: cannot hold {signal} for the new supervisor: {e}");
        }
    }
    // What already happened must be handled first: a READY=1 or an exit
    // the state has to include, a signal that must not be lost. Yielding
    // lets the runtime's driver and the workers' watchers run once.
    tokio::task::yield_now().await;
    drain_events(sup, inbox);
    // Another SIGUSR2 asks for what is happening anyway.
    let arrived: Vec<Received> = signals
        .received()
        .into_iter()
        .filter(|s| *s != Received::Upgrade)
        .collect();
    if !arrived.is_empty() {
        crate::sys::unblock_signals();
        let names: Vec<String> = arrived.iter().map(|s| s.to_string()).collect();
        for signal in arrived {
            sup.on_signal(signal);
        }
        return (None, UpgradeError::Signals(names.join(", ")));
    }
    if !sup.core.is_upgrading() {
        return (None, UpgradeError::CalledOff);
    }
    // Calls on their way are answered (status as ever, the rest `busy`):
    // the connections are cut at the exec. New connections wait in the
    // socket's queue for the new supervisor.
    let control = inbox
        .stop_control(Stop::HandOver, |call| {
            let answer = match call.request {
                Request::Status {} => Response::Status(sup.status()),
                _ => error(
                    ErrorKind::Busy,
                    "handoff is upgrading itself: try again in a moment",
                ),
            };
            let _ = call.reply.send(answer);
        })
        .await;
    let Some(control) = control else {
        return (None, UpgradeError::Control);
    };
    drain_events(sup, inbox);
    if !sup.core.is_upgrading() {
        return (Some(control), UpgradeError::CalledOff);
    }
    let state = State::of(sup, sup.core.upgrade_stream());
    let path = state_path(sup);
    if let Err(e) = state.write(&path) {
        return (Some(control), e.into());
    }
    let fds = state.fds();
    tracing::info!(
        "upgrade: {} accepted the state; handing over {} fds and {} workers",
        sup.binary.display(),
        fds.len(),
        sup.core.workers().count()
    );
    sup.manager.watchdog();
    // The log's writer thread does not survive the exec.
    crate::logging::flush();
    let source =
        crate::sys::exec_keeping(&sup.binary, &["__resume".as_ref(), path.as_os_str()], &fds);
    (
        Some(control),
        UpgradeError::Exec {
            binary: sup.binary.clone(),
            source,
        },
    )
}

/// Handles the events already queued, so that the state includes them.
fn drain_events(sup: &mut Supervisor, inbox: &mut Inbox) {
    while let Ok(event) = inbox.events.try_recv() {
        sup.handle(event);
    }
}

/// What the asker is told when the check did not pass.
fn refusal(e: &CheckError) -> String {
    let colon = |text: String| {
        if text.is_empty() {
            text
        } else {
            format!(": {text}")
        }
    };
    match e {
        CheckError::Start { binary, source } => {
            format!("cannot run the new binary {}: {source}", binary.display())
        }
        CheckError::Failed {
            binary,
            exit,
            stderr,
            ..
        } => format!(
            "the new binary {} refused the current state ({exit}){}",
            binary.display(),
            colon(stderr.clone())
        ),
        CheckError::TimedOut {
            binary,
            timeout,
            said,
        } => format!(
            "the new binary {} did not finish its check within {}{}",
            binary.display(),
            crate::ms(*timeout),
            colon(said.what())
        ),
        CheckError::HandFd { .. } | CheckError::Wait { .. } => e.to_string(),
    }
}
