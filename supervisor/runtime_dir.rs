//! The supervisor's private runtime directory: the children's notify
//! sockets and, while an upgrade runs, the state handed to the new binary
//! (which includes the config's `env`, often secrets).
//!
//! It must be private whatever the umask the supervisor was started with:
//! with a permissive one, another user could send READY=1 to a child's
//! notify socket, read the state, or plant a symlink named `upgrade.json`
//! that the next upgrade would write through. So the directory is 0700
//! (created so, then set so, as a umask can also remove the owner's bits),
//! and files in it are created with O_EXCL|O_NOFOLLOW and mode 0600.
//!
//! One exception: when a child runs as another user, the directory becomes
//! 0711 ([`open_to_children`]) so that the child can reach its own notify
//! socket by path (handed to its user, `notify.rs`). 0711 lets a process
//! through, not list: every other file stays 0600 and the supervisor's.
//!
//! A supervisor killed with SIGKILL leaves its directory behind. The
//! directory's name says which process made it, `handoff-PID-START-NS-XXXXXX`
//! (START: the process's start time, which an upgrade's exec keeps and a
//! reused pid does not share; NS: its pid namespace's inode), so the next
//! supervisor to start in the same base removes the directories of this
//! user whose supervisor is gone, and never a live one's, nor one of
//! another pid namespace (PID 1 of a container that shares the base),
//! whose pid means nothing here.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const PREFIX: &str = "handoff-";
/// tempfile's default number of random characters in a name.
const RANDOM_CHARS: usize = 6;

#[derive(Debug, thiserror::Error)]
#[error("cannot create a runtime directory in {}: {source}", dir.display())]
pub struct CreateError {
    pub dir: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The supervisor's private directory (mode 0700). Removed when the
/// supervisor stops; kept across an upgrade (same process, same name).
pub struct RuntimeDir(pub PathBuf);

impl RuntimeDir {
    /// Creates a new directory in $XDG_RUNTIME_DIR (or the temp dir), after
    /// removing the ones that supervisors now gone left there.
    pub(crate) fn create() -> Result<RuntimeDir, CreateError> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        remove_stale(&base);
        let error = |source| CreateError {
            dir: base.clone(),
            source,
        };
        let pid = std::process::id();
        let start = start_time(pid);
        // Created 0700 & ~umask: never more than the owner's, so there is
        // no moment when another user could put a file in it.
        let dir = tempfile::Builder::new()
            .prefix(&format!(
                "{PREFIX}{pid}-{}-{}-",
                start.unwrap_or(0),
                pid_namespace().unwrap_or(0)
            ))
            .rand_bytes(RANDOM_CHARS)
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(&base)
            .map_err(error)?
            .keep();
        let dir = RuntimeDir(dir);
        // Then exactly 0700: a umask such as 0277 would leave the owner
        // unable to create the sockets. Through an fd opened without
        // following a symlink, so it is our directory that changes.
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&dir.0)
            .and_then(|d| d.set_permissions(Permissions::from_mode(0o700)))
            .map_err(error)?;
        Ok(dir)
    }
}

/// Makes the runtime directory traversable by the children's user (0711),
/// through an fd opened without following a symlink, as `create` does.
pub(crate) fn open_to_children(dir: &Path) -> io::Result<()> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    if dir.metadata()?.mode() & 0o7777 != 0o711 {
        dir.set_permissions(Permissions::from_mode(0o711))?;
    }
    Ok(())
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates `path` (in the runtime directory) for writing, mode 0600:
/// whatever was there is removed first, and the new file is created with
/// O_EXCL|O_NOFOLLOW, so a symlink planted there is never followed.
pub(crate) fn create_private_file(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // Exactly 0600 whatever the umask: the new binary must be able to read
    // it back.
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Opens a file of the runtime directory for reading, not following a
/// symlink.
pub(crate) fn open_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Removes the runtime directories in `base` left by supervisors of this
/// user that are gone. Only real directories (a symlink is not followed),
/// owned by this user, named exactly as `create` names them.
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let uid = nix::unistd::geteuid().as_raw();
    let namespace = pid_namespace();
    for entry in entries.filter_map(Result::ok) {
        let Some(Made { pid, start, ns }) = parse_name(&entry.file_name()) else {
            continue;
        };
        // A supervisor of another pid namespace (a container sharing this
        // directory, a handoff that is PID 1 there): its pid means nothing
        // here, so whether it lives cannot be told, and it must be left
        // alone. (The name of a handoff from before the namespace was in
        // it has none.)
        if ns.is_some_and(|ns| Some(ns) != namespace) {
            continue;
        }
        let path = entry.path();
        // lstat: a symlink is neither a directory nor followed.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_dir() || meta.uid() != uid || owner_alive(pid, start) {
            continue;
        }
        // std's remove_dir_all does not follow symlinks inside the tree.
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(
                "removed {}, left by a supervisor (pid {pid}) that is gone",
                path.display()
            ),
            Err(e) => tracing::warn!(
                "cannot remove {}, left by a supervisor (pid {pid}) that is gone: {e}",
                path.display()
            ),
        }
    }
}

/// What a runtime directory's name says of the supervisor that made it.
#[derive(Debug, PartialEq, Eq)]
struct Made {
    pid: u32,
    start: u64,
    /// Its pid namespace's inode (None in the name of an older handoff).
    ns: Option<u64>,
}

/// `handoff-PID-START-NS-XXXXXX` (or, from an older handoff,
/// `handoff-PID-START-XXXXXX`); anything else → None.
fn parse_name(name: &OsStr) -> Option<Made> {
    let rest = name.to_str()?.strip_prefix(PREFIX)?;
    let parts: Vec<&str> = rest.split('-').collect();
    let (pid, start, ns, random) = match parts[..] {
        [pid, start, ns, random] => (pid, start, Some(ns), random),
        [pid, start, random] => (pid, start, None, random),
        _ => return None,
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid)
        || !digits(start)
        || !ns.is_none_or(digits)
        || random.len() != RANDOM_CHARS
        || !random.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    Some(Made {
        pid: pid.parse().ok()?,
        start: start.parse().ok()?,
        ns: match ns {
            Some(ns) => Some(ns.parse().ok()?),
            None => None,
        },
    })
}

/// The inode of this process's pid namespace: two supervisors with the
/// same pid in different namespaces (PID 1 of two containers) are told
/// apart by it.
fn pid_namespace() -> Option<u64> {
    std::fs::metadata("/proc/self/ns/pid").ok().map(|m| m.ino())
}

/// Whether the process that made a directory still runs. When in doubt
/// (no /proc, a start time not recorded), it does: a live supervisor's
/// directory must never be removed.
fn owner_alive(pid: u32, start: u64) -> bool {
    match proc_stat(pid) {
        // A zombie is gone: it can neither use the directory nor come back.
        Ok(Some(('Z', _))) => false,
        Ok(Some((_, now))) => start == 0 || now == start,
        Ok(None) => true,
        Err(_) => {
            let Ok(pid) = i32::try_from(pid) else {
                return true;
            };
            // No /proc entry: ESRCH says there is no such process, any other
            // answer (EPERM: another user's) that there is.
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                != Err(nix::errno::Errno::ESRCH)
        }
    }
}

/// A process's start time (clock ticks after boot), if /proc tells.
fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).ok().flatten().map(|(_, start)| start)
}

/// From /proc/PID/stat: the state and the start time (fields 3 and 22).
/// Ok(None): the file is there but not understood.
fn proc_stat(pid: u32) -> io::Result<Option<(char, u64)>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: the fields after it start after the last ')'.
    let Some((_, after)) = stat.rsplit_once(')') else {
        return Ok(None);
    };
    let mut fields = after.split_whitespace();
    let state = fields.next().and_then(|s| s.chars().next());
    // Field 3 was the first after the name; field 22 is 18 further on.
    let start = fields.nth(18).and_then(|s| s.parse().ok());
    Ok(state.zip(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_exact_name() {
        let p = |s: &str| parse_name(OsStr::new(s)).map(|m| (m.pid, m.start, m.ns));
        assert_eq!(p("handoff-123-4567-aB3xY9"), Some((123, 4567, None)));
        assert_eq!(
            p("handoff-123-4567-4026531836-aB3xY9"),
            Some((123, 4567, Some(4026531836)))
        );
        assert_eq!(p("handoff-123-4567-40x6-aB3xY9"), None);
        assert_eq!(p("handoff-123-4567-1-2-aB3xY9"), None);
        assert_eq!(p("handoff-123-4567-aB3xY"), None);
        assert_eq!(p("handoff-123-4567-aB3xY9z"), None);
        assert_eq!(p("handoff-123-4567-aB3x-9"), None);
        assert_eq!(p("handoff-12a-4567-aB3xY9"), None);
        assert_eq!(p("handoff--4567-aB3xY9"), None);
        assert_eq!(p("handoff-aB3xY9"), None);
        assert_eq!(p("handoff.sock"), None);
        assert_eq!(p("other-123-4567-aB3xY9"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let pid = std::process::id();
        let start = start_time(pid).expect("this process's start time");
        assert!(owner_alive(pid, start));
        assert!(!owner_alive(pid, start + 1), "a reused pid");
    }

    #[test]
    fn a_private_file_is_0600_and_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").expect("write");
        let path = dir.path().join("state");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let mut file = create_private_file(&path).expect("created");
        io::Write::write_all(&mut file, b"state").expect("write");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        assert!(meta.file_type().is_file());
        assert_eq!(meta.mode() & 0o7777, 0o600);
        std::os::unix::fs::symlink(&target, dir.path().join("link")).expect("symlink");
        assert!(open_private_file(&dir.path().join("link")).is_err());
    }

    #[test]
    fn only_this_users_directories_of_a_gone_supervisor_are_removed() {
        let base = tempfile::tempdir().expect("a temp dir");
        let pid = std::process::id();
        let start = start_time(pid).expect("this process's start time");
        let make = |name: &str| {
            let path = base.path().join(name);
            std::fs::create_dir(&path).expect("mkdir");
            std::fs::write(path.join("notify-1.sock"), "").expect("write");
            path
        };
        let ns = pid_namespace().expect("this process's pid namespace");
        let live = make(&format!("handoff-{pid}-{start}-{ns}-aaaaaa"));
        // The same pid with another start time: the pid was reused.
        let stale = make(&format!("handoff-{pid}-{}-{ns}-bbbbbb", start + 1));
        let stale_old_name = make(&format!("handoff-{pid}-{}-eeeeee", start + 1));
        // The same, of another pid namespace: its pid means nothing here.
        let other_namespace = make(&format!("handoff-{pid}-{}-{}-ffffff", start + 1, ns + 1));
        let odd_name = make(&format!("handoff-{pid}-{}-cc", start + 1));
        let elsewhere = make("elsewhere");
        let link = base
            .path()
            .join(format!("handoff-{pid}-{}-dddddd", start + 1));
        std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
        remove_stale(base.path());
        assert!(!stale.exists());
        assert!(!stale_old_name.exists());
        assert!(other_namespace.join("notify-1.sock").exists());
        assert!(live.join("notify-1.sock").exists());
        assert!(odd_name.exists());
        assert!(std::fs::symlink_metadata(&link).is_ok());
        assert!(elsewhere.join("notify-1.sock").exists());
    }
}
