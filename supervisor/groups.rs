//! What is left of a worker's process group after the worker itself has
//! exited.
//!
//! Every worker is started as the leader of its own process group, and the
//! processes it forks stay in that group unless they leave it (`setsid`,
//! `setpgid`). They inherit the listening sockets: a `sh -c 'helper &
//! exec server'` leaves a helper holding fd 3 after the server is gone, and
//! with it the port, so that `stop` would return while the port still
//! listens and clients hang. So a worker's stop signal goes to its whole
//! group, and when the worker exits while others of its group live on,
//! the group is kept here: told to stop (if it was not already), SIGKILLed
//! at the worker's drain deadline, and waited for. The supervisor does not
//! finish stopping until every such group is gone.
//!
//! The kernel says nothing when a process group empties (a pidfd is per
//! process, and the members are not our children), so the groups are
//! checked every [`CHECK_EVERY`] while any is left, and only then. A group
//! id cannot be reused while the group has a member (the kernel keeps the
//! number allocated), so signalling it while it is known to be non-empty
//! never reaches a stranger.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How often leftover groups are checked while there are any.
pub(crate) const CHECK_EVERY: Duration = Duration::from_millis(50);

/// How long a group SIGKILL did not end is still waited for (a process in
/// uninterruptible sleep); then it is given up with a warning, so that a
/// stuck process can never stop the supervisor from stopping.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// One leftover group.
#[derive(Debug)]
pub struct Group {
    pub pgid: u32,
    /// Whose group it was: "generation 3 worker 0 (pid 1234)".
    pub owner: String,
    /// When it gets SIGKILL.
    pub deadline: Instant,
    /// When it got SIGKILL.
    pub killed: Option<Instant>,
}

/// What a check found, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Gone { owner: String, pgid: u32 },
    Killed { owner: String, pgid: u32 },
    GivenUp { owner: String, pgid: u32 },
}

/// A leftover group as an upgrade hands it on.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GroupSnapshot {
    pub pgid: u32,
    pub owner: String,
    pub deadline_in: Duration,
    pub killed_ago: Option<Duration>,
}

#[derive(Debug, Default)]
pub struct Leftovers {
    groups: Vec<Group>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// A worker (the leader of group `pgid`) has exited and been reaped.
    /// If others of its group live on, they get `signal` (unless
    /// `signalled`: they had it with the worker's own) and are kept until
    /// they are gone, SIGKILLed at `deadline`. Returns how many live on.
    pub fn adopt(
        &mut self,
        pgid: u32,
        owner: String,
        signal: Option<Signal>,
        deadline: Instant,
    ) -> usize {
        let members = live_members(pgid);
        if members == 0 {
            return 0;
        }
        if let Some(signal) = signal {
            if let Err(e) = killpg(Pid::from_raw(pgid as i32), signal) {
                tracing::debug!("process group {pgid}: cannot send {signal}: {e}");
            }
        }
        self.groups.push(Group {
            pgid,
            owner,
            deadline,
            killed: None,
        });
        members
    }

    /// Forgets the groups that are gone, SIGKILLs those past their
    /// deadline, gives up on those SIGKILL did not end.
    pub fn check(&mut self, now: Instant) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        self.groups.retain_mut(|g| {
            let (owner, pgid) = (g.owner.clone(), g.pgid);
            if live_members(g.pgid) == 0 {
                outcomes.push(Outcome::Gone { owner, pgid });
                return false;
            }
            match g.killed {
                None if now >= g.deadline => {
                    let _ = killpg(Pid::from_raw(g.pgid as i32), Signal::SIGKILL);
                    g.killed = Some(now);
                    outcomes.push(Outcome::Killed { owner, pgid });
                    true
                }
                Some(at) if now.duration_since(at) >= AFTER_KILL => {
                    outcomes.push(Outcome::GivenUp { owner, pgid });
                    false
                }
                _ => true,
            }
        });
        outcomes
    }

    /// SIGKILL to every group now (a second stop request).
    pub fn kill_all(&mut self, now: Instant) {
        for g in &mut self.groups {
            g.deadline = g.deadline.min(now);
        }
    }

    /// The groups as data, for an upgrade.
    pub fn snapshot(&self, now: Instant) -> Vec<GroupSnapshot> {
        self.groups
            .iter()
            .map(|g| GroupSnapshot {
                pgid: g.pgid,
                owner: g.owner.clone(),
                deadline_in: g.deadline.saturating_duration_since(now),
                killed_ago: g.killed.map(|at| now.duration_since(at)),
            })
            .collect()
    }

    /// Takes over the groups an upgraded supervisor was waiting for.
    pub fn restore(groups: &[GroupSnapshot], now: Instant) -> Leftovers {
        Leftovers {
            groups: groups
                .iter()
                .map(|g| Group {
                    pgid: g.pgid,
                    owner: g.owner.clone(),
                    deadline: now + g.deadline_in,
                    killed: g.killed_ago.map(|ago| now.checked_sub(ago).unwrap_or(now)),
                })
                .collect(),
        }
    }
}

/// How many processes of group `pgid` are alive (zombies, which hold no
/// fd and wait only for their parent to reap them, do not count).
pub(crate) fn live_members(pgid: u32) -> usize {
    let Ok(raw) = i32::try_from(pgid) else {
        return 0;
    };
    // The cheap answer first: no process at all in the group.
    if killpg(Pid::from_raw(raw), None) == Err(Errno::ESRCH) {
        return 0;
    }
    group_members(pgid)
        .into_iter()
        .filter(|&(_, zombie)| !zombie)
        .count()
}

/// The processes of group `pgid`, each with whether it is a zombie, from
/// /proc (no syscall lists a group's members).
fn group_members(pgid: u32) -> Vec<(u32, bool)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and
            // parentheses, so read after its last ')'.
            let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
            let state = fields.next()?;
            let pgrp: u32 = fields.nth(1)?.parse().ok()?;
            (pgrp == pgid).then_some((pid, state == "Z" || state == "X"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// A shell in a group of its own that leaves a `sleep` behind, exits,
    /// and is reaped: the sleep is the group's leftover.
    fn group_with_a_leftover(trap: &str) -> (u32, std::process::Child) {
        let mut leader = Command::new("/bin/sh")
            .args(["-c", &format!("{trap} sleep 300 >/dev/null 2>&1 &")])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = leader.id();
        leader.wait().unwrap();
        (pgid, leader)
    }

    #[test]
    fn a_group_whose_leader_left_members_is_stopped_and_forgotten_once_gone() {
        let (pgid, _leader) = group_with_a_leftover("");
        assert_eq!(live_members(pgid), 1);
        let mut left = Leftovers::default();
        let far = Instant::now() + Duration::from_secs(60);
        let n = left.adopt(pgid, "w".into(), Some(Signal::SIGTERM), far);
        assert_eq!(n, 1);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = left.check(Instant::now());
            if out
                == vec![Outcome::Gone {
                    owner: "w".into(),
                    pgid,
                }]
            {
                break;
            }
            assert!(out.is_empty(), "{out:?}");
            assert!(Instant::now() < deadline, "the sleep ignored SIGTERM?");
            std::thread::park_timeout(Duration::from_millis(10));
        }
        assert!(left.is_empty());
    }

    #[test]
    fn a_member_that_ignores_its_stop_signal_is_killed_at_the_deadline() {
        let (pgid, _leader) = group_with_a_leftover("trap '' TERM;");
        let mut left = Leftovers::default();
        let now = Instant::now();
        left.adopt(pgid, "w".into(), Some(Signal::SIGTERM), now);
        assert_eq!(
            left.check(now),
            vec![Outcome::Killed {
                owner: "w".into(),
                pgid
            }]
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !left.check(Instant::now()).contains(&Outcome::Gone {
            owner: "w".into(),
            pgid,
        }) {
            assert!(Instant::now() < deadline, "SIGKILL did not end it");
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }

    #[test]
    fn an_empty_group_is_not_kept() {
        let (pgid, _leader) = group_with_a_leftover("exit 0;");
        let mut left = Leftovers::default();
        assert_eq!(left.adopt(pgid, "w".into(), None, Instant::now()), 0);
        assert!(left.is_empty());
    }
}
