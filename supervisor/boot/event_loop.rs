//! The event loop: one event at a time, handled to the end, until a
//! graceful stop has finished. Nothing polls: between events the
//! supervisor sleeps. It returns why handoff gave up, if it stopped on its
//! own (`respawn_limit`).

use std::path::PathBuf;

use crate::control::Stop;
use crate::core::shutting_down;
use crate::engine::{Event, Inbox, Supervisor};
use crate::file_watch::FileWatch;
use crate::protocol::Response;
use crate::reaper::{self, Reaper};
use crate::signals::{Received, Signals};
use crate::systemd;
use crate::upgrade::hand_over;

pub async fn serve(
    mut sup: Supervisor,
    mut signals: Signals,
    mut reaper: Reaper,
    mut inbox: Inbox,
    mut files: Option<FileWatch>,
) -> Option<String> {
    // Pinged from the loop itself: a stuck loop stops the pings, and
    // systemd restarts the service.
    let mut watchdog = systemd::watchdog_interval().map(tokio::time::interval);
    // Signals that came while an upgrade's check ran: they are for
    // whichever supervisor is in charge once it is decided (the new one
    // gets them pending across the exec).
    let mut deferred: Vec<Received> = Vec::new();
    signals.forward(&sup.source.forward_signals);
    while !sup.is_finished() {
        tokio::select! {
            Some(event) = inbox.events.recv() => match event {
                Event::UpgradeChecked(verdict) => {
                    let signals_then = std::mem::take(&mut deferred);
                    match verdict {
                        Ok(said) => {
                            hand_over::hand_over(&mut sup, &mut signals, &mut inbox, &said, &signals_then)
                                .await
                        }
                        Err(message) => {
                            sup.core.abandon_upgrade(
                                &mut sup.fx,
                                crate::protocol::ErrorKind::UpgradeFailed,
                                message,
                            );
                            for signal in signals_then {
                                if sup.on_signal(signal) {
                                    hand_over::begin(&mut sup, None);
                                }
                            }
                        }
                    }
                }
                event => sup.handle(event),
            },
            Some(call) = inbox.calls.recv() => {
                if let Some(asker) = sup.handle_call(call) {
                    hand_over::begin(&mut sup, Some(asker));
                }
            }
            signal = signals.recv() => {
                // A forwarded signal changes nothing an upgrade hands on.
                if sup.core.is_upgrading() && !matches!(signal, Received::Forward(_)) {
                    tracing::info!("{signal}: held until the upgrade's check is done");
                    deferred.push(signal);
                } else if sup.on_signal(signal) {
                    hand_over::begin(&mut sup, None);
                }
            }
            changed = changes(&mut files) => match changed {
                Ok(changed) => sup.on_change(&changed),
                Err(e) => {
                    tracing::error!("watch: {e}; files are no longer watched");
                    files = None;
                }
            },
            _ = tick(&mut watchdog) => sup.manager.watchdog(),
            () = reaper.due() => {
                reaper::reap_orphans();
            }
        }
        sup.report_to_manager();
        // A reload may have added some.
        signals.forward(&sup.source.forward_signals);
        // Or changed what is watched.
        if files.as_ref().map(FileWatch::settings) != sup.source.watch.as_ref() {
            files = watch_files(&sup).unwrap_or_else(|e| {
                tracing::error!("watch: {e}; files are not watched");
                None
            });
        }
    }
    // Requests still queued get their answer rather than silence.
    while let Ok(call) = inbox.calls.try_recv() {
        let _ = call.reply.send(shutting_down());
    }
    // Every worker is gone; dropping the rest drops the last references to
    // the sockets (removing the unix socket files handoff created) and the
    // runtime directory, before anyone hears that the stop is done.
    let Supervisor { core, fx, .. } = sup;
    let gave_up = core.gave_up().map(str::to_string);
    let waiters = core.into_stop_waiters();
    drop(fx);
    for w in waiters {
        let _ = w.send(Response::Stopped {
            pid: std::process::id(),
        });
    }
    // The answers are written, the control socket closes and its file goes.
    inbox
        .stop_control(Stop::Close, |call| {
            let _ = call.reply.send(shutting_down());
        })
        .await;
    tracing::info!("stopped");
    gave_up
}

/// The file watch the configuration asks for (`--watch`), if any.
pub fn watch_files(sup: &Supervisor) -> std::io::Result<Option<FileWatch>> {
    let Some(settings) = &sup.source.watch else {
        return Ok(None);
    };
    // handoff's own files are no change of the user's.
    // Absolute, as the events' paths are (`--control ./dev.sock`).
    let own = [sup.control.path.as_path(), sup.fx.runtime_dir()]
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
        .collect();
    FileWatch::start(settings, own).map(Some)
}

/// The next changes of the watched files (never, without a watch).
async fn changes(files: &mut Option<FileWatch>) -> std::io::Result<Vec<PathBuf>> {
    match files {
        Some(files) => files.changes().await,
        None => std::future::pending().await,
    }
}

/// Waits for the next tick of an optional interval (forever without one).
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
