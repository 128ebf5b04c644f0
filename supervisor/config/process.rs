//! The process controls of `[program]` (issue 12): who the child runs as
//! (`user`, `group`, `supplementary_groups`), its `umask` and its
//! `rlimits`. The environment file is `env_file.rs`'s.
//!
//! Names are resolved to ids here, when the config is read (and again on
//! every reload), never in the child: between fork and exec the child may
//! only make async-signal-safe calls, and getpwnam or getgrouplist read
//! files and take locks. The child only applies the numbers
//! (`spawn/controls.rs`).

use std::ffi::CString;

use serde::{Deserialize, Serialize};
use toml::de::DeValue;

use super::file::{describe, int_of};

/// What the child is started with besides its command and environment:
/// its credentials, umask and resource limits, the env file read for it,
/// and whether it inherits handoff's environment. All empty by default.
// default: the upgrade state of a handoff from before these keys lacks
// them (a ProgramSpec is serialized, `upgrade.rs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessControls {
    /// None: the child runs as handoff does.
    pub credentials: Option<Credentials>,
    pub umask: Option<u32>,
    pub rlimits: Vec<Rlimit>,
    /// Its variables override `env`'s, as systemd's EnvironmentFile=
    /// overrides Environment=.
    pub env_file: Option<super::env_file::EnvFile>,
    /// Start from an empty environment, not handoff's.
    pub clear_env: bool,
}

/// A user or group as the config or a flag names it: a name, or a number
/// (`65534`, or `"65534"` as a flag gives it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Id {
    Name(String),
    Number(u32),
}

impl Id {
    /// A flag's text: all digits is a number, anything else a name.
    pub fn parse(s: &str) -> Result<Id, String> {
        if s.is_empty() {
            return Err("a user or group needs a name or a number".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Id::Number)
                .map_err(|_| format!("`{s}` is not a user or group id (at most {})", u32::MAX));
        }
        Ok(Id::Name(s.to_string()))
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Name(n) => write!(f, "`{n}`"),
            Id::Number(n) => write!(f, "{n}"),
        }
    }
}

/// Who the child runs as, resolved: the child calls setgroups(`groups`),
/// setresgid(`gid`), setresuid(`uid`), in that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// For messages: the user's name (or number) as the config gave it.
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Resolves `user`, `group` and `supplementary_groups` (any of them may be
/// missing). Each problem comes with the key it is about.
///
/// - `group` defaults to the user's primary group;
/// - `supplementary_groups` to the user's groups in the group database
///   (getgrouplist), or, with `group` but no `user`, to none: a child that
///   keeps root's uid should not keep root's groups either.
/// - Without any of the three the child runs as handoff does (None).
pub(super) fn resolve_credentials(
    user: Option<&Id>,
    group: Option<&Id>,
    supplementary: Option<&[Id]>,
) -> Result<Option<Credentials>, Vec<(&'static str, String)>> {
    if user.is_none() && group.is_none() && supplementary.is_none() {
        return Ok(None);
    }
    let mut problems = Vec::new();
    // The user: its uid, its primary group, and its name for getgrouplist.
    let (uid, primary, name) = match user {
        None => {
            let uid = nix::unistd::geteuid().as_raw();
            (Some(uid), nix::unistd::getegid().as_raw(), None)
        }
        Some(id) => match look_up_user(id) {
            Ok((uid, gid, name)) => (Some(uid), gid, name),
            Err(e) => {
                problems.push(("user", e));
                (None, 0, None)
            }
        },
    };
    let gid = match group {
        None => Some(primary),
        Some(id) => match look_up_group(id) {
            Ok(gid) => Some(gid),
            Err(e) => {
                problems.push(("group", e));
                None
            }
        },
    };
    let groups = match supplementary {
        Some(ids) => {
            let mut groups = Vec::with_capacity(ids.len());
            for id in ids {
                match look_up_group(id) {
                    Ok(g) => groups.push(g),
                    Err(e) => problems.push(("supplementary_groups", e)),
                }
            }
            Some(groups)
        }
        None => match (&name, gid) {
            // The database's groups of the user, with its primary group
            // (getgrouplist adds the one it is given).
            (Some(name), Some(gid)) => match user_groups(name, gid) {
                Ok(groups) => Some(groups),
                Err(e) => {
                    problems.push(("user", e));
                    None
                }
            },
            // A user by number with no entry, or no user at all: the
            // group alone.
            (None, Some(gid)) if user.is_some() => Some(vec![gid]),
            _ => Some(Vec::new()),
        },
    };
    match (uid, gid, groups) {
        (Some(uid), Some(gid), Some(groups)) if problems.is_empty() => Ok(Some(Credentials {
            user: match user {
                Some(Id::Name(n)) => n.clone(),
                Some(Id::Number(n)) => n.to_string(),
                None => uid.to_string(),
            },
            uid,
            gid,
            groups,
        })),
        _ => Err(problems),
    }
}

/// A user's uid, primary gid and name. A number without an entry in the
/// user database is taken as it is (as systemd's `User=` does not, but
/// `setpriv --reuid` does), with its own number as its group.
fn look_up_user(id: &Id) -> Result<(u32, u32, Option<String>), String> {
    match id {
        Id::Number(uid) => match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*uid)) {
            Ok(Some(u)) => Ok((*uid, u.gid.as_raw(), Some(u.name))),
            Ok(None) => Ok((*uid, *uid, None)),
            Err(e) => Err(format!("user {uid}: cannot read the user database: {e}")),
        },
        Id::Name(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw(), Some(u.name))),
            Ok(None) => Err(format!(
                "user `{}`: no such user in the user database (getent passwd)",
                name.escape_debug()
            )),
            Err(e) => Err(format!(
                "user `{}`: cannot read the user database: {e}",
                name.escape_debug()
            )),
        },
    }
}

/// A group's gid; a number is taken as it is.
fn look_up_group(id: &Id) -> Result<u32, String> {
    match id {
        Id::Number(gid) => Ok(*gid),
        Id::Name(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            Ok(None) => Err(format!(
                "group `{}`: no such group in the group database (getent group)",
                name.escape_debug()
            )),
            Err(e) => Err(format!(
                "group `{}`: cannot read the group database: {e}",
                name.escape_debug()
            )),
        },
    }
}

fn user_groups(name: &str, gid: u32) -> Result<Vec<u32>, String> {
    let cname = CString::new(name).map_err(|_| format!("user `{name}`: the name has a NUL"))?;
    nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(gid))
        .map(|groups| groups.into_iter().map(|g| g.as_raw()).collect())
        .map_err(|e| format!("user `{name}`: cannot list its groups (getgrouplist): {e}"))
}

/// Why these credentials cannot be taken by a handoff running with
/// effective uid `euid`: only root may change to another user or group.
/// None when they can (root, or the ones the process has already).
pub(super) fn privilege_problem(c: &Credentials, euid: u32, egid: u32) -> Option<String> {
    if euid == 0 || (c.uid == euid && c.gid == egid) {
        return None;
    }
    Some(format!(
        "the program should run as user {} (uid {}, gid {}), but handoff runs as uid {euid}, not as root: only root can start a program as another user or group; run handoff as root (it binds the sockets, then starts the server as that user) or remove `user`/`group`",
        c.user, c.uid, c.gid
    ))
}

/// The resources `rlimits` may set: the names setrlimit(2) knows, without
/// `RLIMIT_`, in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Nofile,
    Core,
    Nproc,
    Memlock,
    As,
    Cpu,
    Data,
    Fsize,
    Stack,
    Rss,
    Locks,
    Sigpending,
    Msgqueue,
    Nice,
    Rtprio,
    Rttime,
}

impl Resource {
    pub const ALL: [Resource; 16] = [
        Resource::Nofile,
        Resource::Core,
        Resource::Nproc,
        Resource::Memlock,
        Resource::As,
        Resource::Cpu,
        Resource::Data,
        Resource::Fsize,
        Resource::Stack,
        Resource::Rss,
        Resource::Locks,
        Resource::Sigpending,
        Resource::Msgqueue,
        Resource::Nice,
        Resource::Rtprio,
        Resource::Rttime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resource::Nofile => "nofile",
            Resource::Core => "core",
            Resource::Nproc => "nproc",
            Resource::Memlock => "memlock",
            Resource::As => "as",
            Resource::Cpu => "cpu",
            Resource::Data => "data",
            Resource::Fsize => "fsize",
            Resource::Stack => "stack",
            Resource::Rss => "rss",
            Resource::Locks => "locks",
            Resource::Sigpending => "sigpending",
            Resource::Msgqueue => "msgqueue",
            Resource::Nice => "nice",
            Resource::Rtprio => "rtprio",
            Resource::Rttime => "rttime",
        }
    }

    pub fn from_name(name: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// One `rlimits` entry: soft and hard limits, `u64::MAX` for "infinity"
/// (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// The word for RLIM_INFINITY in the config.
pub const INFINITY: &str = "infinity";

/// One limit's value: a number or "infinity".
fn limit_value(value: &DeValue) -> Result<u64, String> {
    match value {
        DeValue::Integer(n) => int_of(n)
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| *n != u64::MAX)
            .ok_or_else(|| format!("{n} is not a limit: a number from 0, or \"{INFINITY}\"")),
        DeValue::String(s) if s == INFINITY => Ok(u64::MAX),
        other => Err(format!(
            "{} is not a limit: a number from 0, or \"{INFINITY}\"",
            describe(other)
        )),
    }
}

/// An `rlimits` entry: `nofile = 65536` (soft and hard alike),
/// `core = "infinity"`, or `nofile = { soft = 1024, hard = 65536 }`.
pub(super) fn parse_rlimit(name: &str, value: &DeValue) -> Result<Rlimit, String> {
    let resource = Resource::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Resource::ALL.iter().map(|r| r.name()).collect();
        format!(
            "rlimits: `{}` is not a resource setrlimit knows: expected one of {}",
            name.escape_debug(),
            names.join(", ")
        )
    })?;
    let (soft, hard) = match value {
        DeValue::Table(t) => {
            if let Some(key) = t
                .keys()
                .find(|k| *k.get_ref() != "soft" && *k.get_ref() != "hard")
            {
                return Err(format!(
                    "rlimits.{name}: unknown key `{}`: expected `soft` and `hard`",
                    key.get_ref().escape_debug()
                ));
            }
            let (Some(soft), Some(hard)) = (t.get("soft"), t.get("hard")) else {
                return Err(format!(
                    "rlimits.{name}: a table needs both `soft` and `hard`, as in {name} = {{ soft = 1024, hard = 65536 }}"
                ));
            };
            let soft =
                limit_value(soft.get_ref()).map_err(|e| format!("rlimits.{name}.soft: {e}"))?;
            let hard =
                limit_value(hard.get_ref()).map_err(|e| format!("rlimits.{name}.hard: {e}"))?;
            (soft, hard)
        }
        value => {
            let limit = limit_value(value).map_err(|e| format!("rlimits.{name}: {e}"))?;
            (limit, limit)
        }
    };
    if soft > hard {
        return Err(format!(
            "rlimits.{name}: the soft limit ({}) is above the hard limit ({})",
            show_limit(soft),
            show_limit(hard)
        ));
    }
    Ok(Rlimit {
        resource,
        soft,
        hard,
    })
}

/// A limit as the config writes it.
pub fn show_limit(limit: u64) -> String {
    if limit == u64::MAX {
        INFINITY.to_string()
    } else {
        limit.to_string()
    }
}

/// Why these limits cannot be set by this process: a hard limit above
/// the current one needs CAP_SYS_RESOURCE (which root in a container often
/// lacks). Checked when the config is read, so that it is refused at its
/// line rather than as an EPERM from every spawn.
pub(super) fn rlimit_problem(limits: &[Rlimit]) -> Option<String> {
    if has_cap_sys_resource() {
        return None;
    }
    limits.iter().find_map(|l| {
        let (_, hard) = nix::sys::resource::getrlimit(nix_resource(l.resource)).ok()?;
        let current = if hard == libc::RLIM_INFINITY { u64::MAX } else { hard };
        (l.hard > current).then(|| {
            format!(
                "rlimits.{}: the hard limit {} is above handoff's own ({}), and raising one needs CAP_SYS_RESOURCE, which handoff does not have; give a hard limit of at most {}",
                l.resource.name(),
                show_limit(l.hard),
                show_limit(current),
                show_limit(current)
            )
        })
    })
}

/// From /proc/self/status; when unknown, assumed (the spawn reports it).
fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_none_or(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

fn nix_resource(r: Resource) -> nix::sys::resource::Resource {
    use nix::sys::resource::Resource as R;
    match r {
        Resource::Nofile => R::RLIMIT_NOFILE,
        Resource::Core => R::RLIMIT_CORE,
        Resource::Nproc => R::RLIMIT_NPROC,
        Resource::Memlock => R::RLIMIT_MEMLOCK,
        Resource::As => R::RLIMIT_AS,
        Resource::Cpu => R::RLIMIT_CPU,
        Resource::Data => R::RLIMIT_DATA,
        Resource::Fsize => R::RLIMIT_FSIZE,
        Resource::Stack => R::RLIMIT_STACK,
        Resource::Rss => R::RLIMIT_RSS,
        Resource::Locks => R::RLIMIT_LOCKS,
        Resource::Sigpending => R::RLIMIT_SIGPENDING,
        Resource::Msgqueue => R::RLIMIT_MSGQUEUE,
        Resource::Nice => R::RLIMIT_NICE,
        Resource::Rtprio => R::RLIMIT_RTPRIO,
        Resource::Rttime => R::RLIMIT_RTTIME,
    }
}

/// The most a umask can be.
const MAX_UMASK: u32 = 0o777;

/// A `umask`: `0o027` in the file, `027` or `0027` as a flag (octal).
pub fn parse_umask(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mask = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("`{s}` is not an octal umask like 027"))?;
    check_umask(mask)
}

pub(super) fn check_umask(mask: u32) -> Result<u32, String> {
    if mask > MAX_UMASK {
        return Err(format!("umask {mask:o} is not a umask (at most 0o777)"));
    }
    Ok(mask)
}
