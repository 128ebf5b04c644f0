//! The process controls as the child applies them to itself, between fork
//! and exec: umask, resource limits, then supplementary groups, gid and
//! uid, in that order (limits and groups need root, which the last step
//! gives up). The same for a server and for its `ready_command` probe,
//! which runs with the server's privileges: a probe reads what the server
//! can read, and no more.
//!
//! Everything is prepared before the fork (ids resolved when the config
//! was read, the group list laid out as setgroups wants it), so the child
//! only makes system calls: no allocation, no lock, no file read.
//!
//! The ids are changed with the raw system calls, not libc's wrappers:
//! glibc's setgroups/setresuid, in a process that had threads, run a
//! "setxid" handshake that signals every thread the parent had and waits
//! for each, which is not async-signal-safe; the kernel call changes the
//! calling thread, the only one the child has.

use std::io;

use crate::config::{ProcessControls, Resource};

/// What the child applies, laid out before the fork.
#[derive(Debug, Clone, Default)]
pub struct ChildControls {
    umask: Option<libc::mode_t>,
    rlimits: Vec<(Resource, libc::rlimit)>,
    ids: Option<Ids>,
}

#[derive(Debug, Clone)]
struct Ids {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl ChildControls {
    pub fn new(controls: &ProcessControls) -> ChildControls {
        ChildControls {
            umask: controls.umask,
            rlimits: controls
                .rlimits
                .iter()
                .map(|l| {
                    let limit = |n: u64| {
                        if n == u64::MAX {
                            libc::RLIM_INFINITY
                        } else {
                            n as libc::rlim_t
                        }
                    };
                    (
                        l.resource,
                        libc::rlimit {
                            rlim_cur: limit(l.soft),
                            rlim_max: limit(l.hard),
                        },
                    )
                })
                .collect(),
            ids: controls.credentials.as_ref().map(|c| Ids {
                uid: c.uid,
                gid: c.gid,
                groups: c.groups.clone(),
            }),
        }
    }

    /// Runs in the forked child. Async-signal-safe: system calls only.
    pub fn apply(&self) -> io::Result<()> {
        if let Some(mask) = self.umask {
            // SAFETY: umask takes a mode and cannot fail.
            unsafe { libc::umask(mask) };
        }
        for (resource, limit) in &self.rlimits {
            // SAFETY: setrlimit reads the struct we own; a resource the
            // kernel does not know gives EINVAL.
            if unsafe { libc::setrlimit(raw_resource(*resource), limit) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let Some(ids) = &self.ids else {
            return Ok(());
        };
        // Groups first, gid next, uid last: each step but the last needs
        // the root the last gives up. setres*id sets real, effective and
        // saved ids, so the server can never get root back.
        // SAFETY: setgroups reads `len` gids from the pointer, which points
        // into a Vec we own and do not change.
        check(unsafe {
            libc::syscall(
                libc::SYS_setgroups,
                ids.groups.len() as libc::size_t,
                ids.groups.as_ptr(),
            )
        })?;
        // SAFETY: setresgid takes three ids by value.
        check(unsafe { libc::syscall(libc::SYS_setresgid, ids.gid, ids.gid, ids.gid) })?;
        // SAFETY: setresuid takes three ids by value.
        check(unsafe { libc::syscall(libc::SYS_setresuid, ids.uid, ids.uid, ids.uid) })
    }
}

fn check(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(target_env = "gnu")]
type RawResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type RawResource = libc::c_int;

fn raw_resource(r: Resource) -> RawResource {
    match r {
        Resource::Nofile => libc::RLIMIT_NOFILE,
        Resource::Core => libc::RLIMIT_CORE,
        Resource::Nproc => libc::RLIMIT_NPROC,
        Resource::Memlock => libc::RLIMIT_MEMLOCK,
        Resource::As => libc::RLIMIT_AS,
        Resource::Cpu => libc::RLIMIT_CPU,
        Resource::Data => libc::RLIMIT_DATA,
        Resource::Fsize => libc::RLIMIT_FSIZE,
        Resource::Stack => libc::RLIMIT_STACK,
        Resource::Rss => libc::RLIMIT_RSS,
        Resource::Locks => libc::RLIMIT_LOCKS,
        Resource::Sigpending => libc::RLIMIT_SIGPENDING,
        Resource::Msgqueue => libc::RLIMIT_MSGQUEUE,
        Resource::Nice => libc::RLIMIT_NICE,
        Resource::Rtprio => libc::RLIMIT_RTPRIO,
        Resource::Rttime => libc::RLIMIT_RTTIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every resource maps to its own setrlimit number.
    #[test]
    fn resources_are_distinct() {
        let mut raw: Vec<_> = Resource::ALL.iter().map(|r| raw_resource(*r)).collect();
        raw.sort_unstable();
        raw.dedup();
        assert_eq!(raw.len(), Resource::ALL.len());
    }
}
