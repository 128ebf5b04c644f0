//! Reaping the processes handoff did not start: a server's orphans.
//!
//! As the init of a container's pid namespace, and as a child subreaper
//! elsewhere (`PR_SET_CHILD_SUBREAPER`, set by [`Reaper::start`]), handoff
//! inherits every process its servers leave behind when their parent dies.
//! Nobody waits for those, so they would stay zombies.
//!
//! The rule: a child handoff spawned itself (a worker, a readiness probe,
//! an upgrade's check) is waited for by its owner, and the reaper never
//! touches it: reaping it here would steal its exit status from the
//! watcher (`sys::reap`) or from tokio. Every other child is an orphan and
//! is reaped here. So each spawn point registers the pid through [`spawn`],
//! which holds the registry's lock from before the fork until the pid is
//! recorded; a pass of the reaper holds the same lock, so it can never see
//! a child of ours that is forked but not yet recorded.
//!
//! A pid leaves the registry when its owner says it has reaped it
//! ([`reaped`]), or, for an owner that cannot say (tokio reaps a dropped
//! child on its own), when the kernel says it is no longer our child.
//! Until then a registered pid is never waited for here, whoever holds it.
//!
//! A pass runs on SIGCHLD (signals coalesce: a pass takes every exited
//! orphan, not one) and on a slow timer, as a net for what the children
//! list of /proc may miss while it changes.

use std::collections::HashSet;
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

/// How often a pass runs without a SIGCHLD.
const NET: Duration = Duration::from_secs(5);

/// The pids of the children handoff spawned and someone waits for.
static OWNED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn owned() -> MutexGuard<'static, Option<HashSet<u32>>> {
    // A panic while holding it leaves a set that is still a set.
    OWNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Spawns a child with `spawn` and registers its pid (`pid_of` reads it
/// from what `spawn` returned), with no reaper pass in between.
pub fn spawn<T>(
    spawn: impl FnOnce() -> io::Result<T>,
    pid_of: impl FnOnce(&T) -> Option<u32>,
) -> io::Result<T> {
    let mut owned = owned();
    let child = spawn()?;
    if let Some(pid) = pid_of(&child) {
        owned.get_or_insert_with(HashSet::new).insert(pid);
    }
    Ok(child)
}

/// Registers children spawned by another process: the workers an upgraded
/// supervisor takes over.
pub fn own(pids: impl IntoIterator<Item = u32>) {
    owned().get_or_insert_with(HashSet::new).extend(pids);
}

/// Its owner has reaped child `pid`: the pid may be reused for an orphan.
pub fn reaped(pid: u32) {
    if let Some(set) = owned().as_mut() {
        set.remove(&pid);
    }
}

/// SIGCHLD and the timer that wake the reaper.
pub struct Reaper {
    sigchld: tokio::signal::unix::Signal,
    net: tokio::time::Interval,
}

impl Reaper {
    /// Becomes a child subreaper (pointless, and so skipped, as pid 1: the
    /// namespace's orphans come to its init anyway) and listens for
    /// SIGCHLD. Registered before the first pass, so no exit is missed.
    pub fn start() -> io::Result<Reaper> {
        if std::process::id() != 1 {
            if let Err(e) = crate::sys::become_subreaper() {
                // Still correct without it: orphans go to init instead.
                tracing::warn!(
                    "cannot become a child subreaper: {e}; orphans of the server go to init"
                );
            }
        }
        let sigchld = signal(SignalKind::child())?;
        let mut net = tokio::time::interval(NET);
        net.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Reaper { sigchld, net })
    }

    /// Waits for a reason to look (SIGCHLD or the timer).
    pub async fn due(&mut self) {
        tokio::select! {
            _ = self.sigchld.recv() => {}
            _ = self.net.tick() => {}
        }
    }
}

/// Reaps every exited child that is not registered, and forgets the
/// registered pids that are no longer children. Returns the orphans reaped.
pub fn reap_orphans() -> Vec<(u32, std::process::ExitStatus)> {
    let mut guard = owned();
    let set = guard.get_or_insert_with(HashSet::new);
    let children = crate::sys::children();
    let mut done = Vec::new();
    for &pid in children.iter().filter(|p| !set.contains(p)) {
        match crate::sys::reap_if_exited(pid) {
            Ok(Some(status)) => {
                tracing::debug!(
                    "reaped pid {pid}, an orphan of the server: {}",
                    crate::describe_exit(&status)
                );
                done.push((pid, status));
            }
            Ok(None) => {}
            // Gone already, or not ours after all (a stale list).
            Err(e) => tracing::debug!("cannot reap pid {pid}: {e}"),
        }
    }
    set.retain(|&pid| children.contains(&pid) || crate::sys::is_child(pid));
    done
}
