//! Development mode's watching: changes under the `--watch` paths, with the
//! ignored ones dropped (`ignore.rs`), gathered until the files have been
//! quiet for the debounce, become one restart. The inotify watches are in
//! `tree.rs`.
//!
//! [`FileWatch::changes`] is cancel-safe: the event loop drops it whenever
//! another event comes first, and what it gathered so far stays here.

mod ignore;
mod tree;

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::Watch;
use ignore::Ignore;
use tree::{Change, Tree};

/// However busy the files stay, a restart starts this many debounces after
/// the first change at the latest (a build writing into a watched
/// directory would put it off for ever otherwise).
const MAX_DEBOUNCES: u32 = 10;

pub struct FileWatch {
    settings: Watch,
    tree: Tree,
    ignore: Ignore,
    /// Changes gathered, waiting for the quiet.
    pending: BTreeSet<PathBuf>,
    /// Of those, the files that appeared meanwhile: one that is gone again
    /// before the quiet (an editor's or `sed -i`'s temporary file, renamed
    /// over the real one) was never a change.
    appeared: BTreeSet<PathBuf>,
    /// When the quiet is long enough, and when the wait ends regardless.
    quiet_at: Option<Instant>,
    give_up_at: Option<Instant>,
    /// A batch being checked with git, off the loop's thread; then the
    /// roots where git could not tell.
    checking: Option<JoinHandle<(Vec<PathBuf>, Vec<PathBuf>)>>,
}

impl FileWatch {
    /// Starts watching. `own` are handoff's own files (its control socket,
    /// its runtime directory): changes to them are not the user's.
    pub fn start(settings: &Watch, own: Vec<PathBuf>) -> io::Result<FileWatch> {
        let ignore = Ignore::new(&settings.paths, &settings.ignore, own);
        let tree = Tree::watch(&settings.paths, &ignore)?;
        tracing::info!(
            "watching {} ({} director{}): a change restarts the server",
            settings
                .paths
                .iter()
                .map(|p| shown(p))
                .collect::<Vec<_>>()
                .join(", "),
            tree.len(),
            if tree.len() == 1 { "y" } else { "ies" }
        );
        Ok(FileWatch {
            settings: settings.clone(),
            tree,
            ignore,
            pending: BTreeSet::new(),
            appeared: BTreeSet::new(),
            quiet_at: None,
            give_up_at: None,
            checking: None,
        })
    }

    pub fn settings(&self) -> &Watch {
        &self.settings
    }

    /// The next batch of changes that should restart the server: waits for
    /// a change that is not ignored, then for the files to be quiet for the
    /// debounce. An error of the watches themselves is returned once they
    /// can no longer be read.
    pub async fn changes(&mut self) -> io::Result<Vec<PathBuf>> {
        loop {
            if let Some(checking) = &mut self.checking {
                tokio::select! {
                    checked = checking => {
                        self.checking = None;
                        let (kept, not_git) = checked.unwrap_or_default();
                        for root in not_git {
                            self.ignore.not_git(root);
                        }
                        if !kept.is_empty() {
                            return Ok(kept);
                        }
                    }
                    read = self.tree.read(&self.ignore) => self.gather(read?),
                }
                continue;
            }
            let due = match (self.quiet_at, self.give_up_at) {
                (Some(quiet), Some(cap)) => Some(quiet.min(cap)),
                _ => None,
            };
            tokio::select! {
                read = self.tree.read(&self.ignore) => self.gather(read?),
                () = sleep_until(due) => self.check(),
            }
        }
    }

    fn gather(&mut self, read: tree::Read) {
        if read.overflowed {
            tracing::warn!(
                "watch: too many changes at once, the kernel dropped some: restarting to be safe"
            );
            self.pending.extend(self.settings.paths.iter().cloned());
        }
        let mut seen = read.overflowed;
        for (path, change) in read.changed {
            if self.ignore.rules_out(&path) {
                continue;
            }
            seen = true;
            match change {
                Change::Gone if self.appeared.remove(&path) => {
                    self.pending.remove(&path);
                }
                Change::Appeared => {
                    if self.pending.insert(path.clone()) {
                        self.appeared.insert(path);
                    }
                }
                _ => {
                    self.pending.insert(path);
                }
            }
        }
        if !seen {
            return;
        }
        let now = Instant::now();
        self.quiet_at = Some(now + self.settings.debounce);
        self.give_up_at
            .get_or_insert(now + self.settings.debounce * MAX_DEBOUNCES);
    }

    /// The quiet came: the batch goes to git, off the loop's thread.
    fn check(&mut self) {
        self.quiet_at = None;
        self.give_up_at = None;
        self.appeared.clear();
        let mut batch: Vec<PathBuf> = std::mem::take(&mut self.pending).into_iter().collect();
        if batch.is_empty() {
            return;
        }
        let roots = self.ignore.git_roots();
        self.checking = Some(tokio::task::spawn_blocking(move || {
            let not_git = ignore::drop_git_ignored(&roots, &mut batch);
            (batch, not_git)
        }));
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A path as the user would write it: relative to the current directory
/// when it is under it.
pub fn shown(path: &Path) -> String {
    let under_cwd = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    match under_cwd {
        Some(p) if p.as_os_str().is_empty() => ".".into(),
        Some(p) => p.display().to_string(),
        None => path.display().to_string(),
    }
}

/// "src/main.rs", "src/main.rs and 3 more".
pub fn describe(changed: &[PathBuf]) -> String {
    match changed {
        [] => "nothing".into(),
        [one] => shown(one),
        [first, rest @ ..] => format!("{} and {} more", shown(first), rest.len()),
    }
}
