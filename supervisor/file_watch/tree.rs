//! The watched paths as inotify watches: every directory under a watched
//! directory (new ones added as they appear), and the directory of a
//! watched file (editors save by writing a new file and renaming it over
//! the old one, which a watch on the file itself would lose).
//!
//! Hand-written on nix's inotify rather than with the `notify` crate: what
//! handoff needs is this one backend and a few dozen lines, and `notify`
//! (its thread, channels and directory walker) would add to the code every
//! supervisor maps in, watching or not.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;

use super::ignore::Ignore;

/// What a change is: a file written, created, removed or renamed, or a
/// directory's entries changed.
fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

/// The inotify instance as tokio polls it (nix's type has no `AsRawFd`).
struct Watches(Inotify);

impl AsRawFd for Watches {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One watched directory.
#[derive(Debug)]
struct Dir {
    path: PathBuf,
    /// Every entry counts (a directory under a watched directory), or
    /// only these names (the directory of watched files).
    all: bool,
    only: Vec<OsString>,
}

pub struct Tree {
    fd: AsyncFd<Watches>,
    dirs: HashMap<WatchDescriptor, Dir>,
    /// The watched directories themselves.
    roots: Vec<PathBuf>,
}

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Created, or renamed to this name.
    Appeared,
    /// Deleted, or renamed away.
    Gone,
    /// Written, or its attributes changed.
    Written,
}

/// What one read of the watches gave.
#[derive(Debug, Default)]
pub struct Read {
    /// Paths that changed, not yet filtered by the ignore rules.
    pub changed: Vec<(PathBuf, Change)>,
    /// The kernel's queue overflowed: changes were lost.
    pub overflowed: bool,
}

impl Tree {
    /// Watches `paths` (each a directory or a file that exists), skipping
    /// the directories `ignore` rules out.
    pub fn watch(paths: &[PathBuf], ignore: &Ignore) -> io::Result<Tree> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
        // SAFETY: the AsyncFd owns the inotify instance, so its fd stays
        // open and the same until the AsyncFd is dropped.
        let fd = unsafe {
            AsyncFd::register_with_interest(Watches(inotify), tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        let mut tree = Tree {
            fd,
            dirs: HashMap::new(),
            roots: Vec::new(),
        };
        for path in paths {
            if path.is_dir() {
                tree.add_all(path, ignore, true)?;
                // Its directory too, for this name: a watched directory
                // removed and made again (a branch switch) is watched again.
                if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
                    tree.add(parent, Some(name.to_os_string()))?;
                    tree.roots.push(path.clone());
                }
            } else {
                let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                    continue;
                };
                tree.add(parent, Some(name.to_os_string()))?;
            }
        }
        Ok(tree)
    }

    /// How many directories are watched with everything in them (not
    /// those watched for a name or two).
    pub fn len(&self) -> usize {
        self.dirs.values().filter(|d| d.all).count()
    }

    /// `dir` and every directory under it that `ignore` does not rule out,
    /// level by level; with `git`, also those git ignores (asked once a
    /// level: at start, off any event's path, so a big ignored `build/` or
    /// `venv/` costs no watches). A directory that vanished meanwhile is no
    /// error.
    fn add_all(&mut self, dir: &Path, ignore: &Ignore, git: bool) -> io::Result<()> {
        let mut level = vec![dir.to_path_buf()];
        while !level.is_empty() {
            let mut next = Vec::new();
            for dir in &level {
                match self.add(dir, None) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    // Not followed: a symlink to a directory is watched as
                    // the entry it is, not for what it points to (no loops).
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    let path = entry.path();
                    if is_dir && !ignore.rules_out_dir(&path) {
                        next.push(path);
                    }
                }
            }
            if git && !next.is_empty() {
                super::ignore::drop_git_ignored(&ignore.git_roots(), &mut next);
            }
            level = next;
        }
        Ok(())
    }

    /// One directory: all of it (`only` None), or those names in it.
    fn add(&mut self, dir: &Path, only: Option<OsString>) -> io::Result<()> {
        let wd = self
            .fd
            .get_ref()
            .0
            .add_watch(dir, mask())
            .map_err(|e| match e {
                nix::errno::Errno::ENOSPC => io::Error::other(format!(
                    "cannot watch {}: the limit of inotify watches is reached (raise fs.inotify.max_user_watches, or watch fewer directories)",
                    dir.display()
                )),
                e => io::Error::other(format!("cannot watch {}: {e}", dir.display())),
            })?;
        // The same directory twice (a file's and a tree's) is one watch.
        let entry = self.dirs.entry(wd).or_insert_with(|| Dir {
            path: dir.to_path_buf(),
            all: false,
            only: Vec::new(),
        });
        match only {
            None => {
                entry.all = true;
                // The same directory under a new name (it was renamed: the
                // watch follows the inode): events name it as it is now.
                entry.path = dir.to_path_buf();
            }
            Some(name) => entry.only.push(name),
        }
        Ok(())
    }

    /// Waits for the watches to have something, and reads it. New
    /// directories are watched as they appear.
    pub async fn read(&mut self, ignore: &Ignore) -> io::Result<Read> {
        let events = loop {
            let mut ready = self.fd.readable().await?;
            match ready.get_inner().0.read_events() {
                Ok(events) => break events,
                Err(nix::errno::Errno::EAGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        };
        let mut read = Read::default();
        for event in events {
            if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                read.overflowed = true;
                continue;
            }
            if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                // The directory is gone (or no longer watched).
                self.dirs.remove(&event.wd);
                continue;
            }
            let Some(dir) = self.dirs.get(&event.wd) else {
                continue;
            };
            let path = match &event.name {
                Some(name) if dir.all || dir.only.contains(name) => dir.path.join(name),
                Some(_) => continue,
                // The watched directory itself was deleted: a change if
                // it was watched whole.
                None if dir.all => dir.path.clone(),
                None => continue,
            };
            let new_dir = event.mask.contains(AddWatchFlags::IN_ISDIR)
                && event
                    .mask
                    .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
            let a_root = self.roots.contains(&path);
            if new_dir && ((dir.all && !ignore.rules_out_dir(&path)) || a_root) {
                if let Err(e) = self.add_all(&path, ignore, false) {
                    tracing::warn!("watch: {e}");
                }
            }
            let change = if event
                .mask
                .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
            {
                Change::Appeared
            } else if event.mask.intersects(
                AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_DELETE_SELF,
            ) {
                Change::Gone
            } else {
                Change::Written
            };
            read.changed.push((path, change));
        }
        Ok(read)
    }
}
