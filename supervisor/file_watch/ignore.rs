//! Which changes restart nothing: what version control, builds and editors
//! write (`.git`, `target`, swap files), the user's `--watch-ignore` globs,
//! handoff's own files (its control socket, a log file it writes to), and
//! what git ignores (asked of git itself, `git check-ignore`, so nested
//! `.gitignore` files, `.git/info/exclude` and the global excludes all
//! count as they do for git).

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;

use glob::{MatchOptions, Pattern};

/// Directories never watched, wherever they are.
const DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "target",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
];

/// Files that never restart anything: editors' swap, backup and lock
/// files (vim, emacs, JetBrains), and compiled Python.
const FILES: &[&str] = &[
    "*.swp",
    "*.swo",
    "*.swx",
    "*~",
    ".#*",
    "#*#",
    "4913",
    "*___jb_tmp___",
    "*___jb_old___",
    ".DS_Store",
    "*.pyc",
    "*.pyo",
];

const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

pub struct Ignore {
    /// The watched directories (git is asked about what is under them).
    roots: Vec<PathBuf>,
    /// Globs matched against a file's name (and each directory's above it).
    names: Vec<Pattern>,
    /// Globs with a `/`, matched against the path under its root.
    paths: Vec<Pattern>,
    /// handoff's own files, by path.
    own: Vec<PathBuf>,
    /// handoff's own files, by device and inode: where its stdout and
    /// stderr go, when that is a file (a log in the project would restart
    /// the server at every line otherwise).
    own_inodes: HashSet<(u64, u64)>,
    /// Roots where git said this is no repository: not asked again.
    not_git: HashSet<PathBuf>,
}

impl Ignore {
    /// `globs` are the user's (checked already); `own` handoff's files.
    pub fn new(roots: &[PathBuf], globs: &[String], own: Vec<PathBuf>) -> Ignore {
        let mut names = Vec::new();
        let mut paths = Vec::new();
        for glob in FILES
            .iter()
            .copied()
            .chain(globs.iter().map(String::as_str))
        {
            let Ok(pattern) = Pattern::new(glob.trim_end_matches('/')) else {
                continue;
            };
            if glob.trim_end_matches('/').contains('/') {
                paths.push(pattern);
            } else {
                names.push(pattern);
            }
        }
        Ignore {
            roots: roots.iter().filter(|r| r.is_dir()).cloned().collect(),
            names,
            paths,
            own,
            own_inodes: own_output_files(),
            not_git: HashSet::new(),
        }
    }

    /// Whether a directory is not to be watched at all.
    pub fn rules_out_dir(&self, dir: &Path) -> bool {
        dir.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| DIRS.contains(&n))
            || self.matches(dir)
    }

    /// Whether a change of `path` restarts nothing, by the rules that need
    /// no git.
    pub fn rules_out(&self, path: &Path) -> bool {
        if self.own.iter().any(|own| path.starts_with(own)) {
            return true;
        }
        let under_ignored_dir = path.components().any(
            |c| matches!(c, Component::Normal(n) if n.to_str().is_some_and(|n| DIRS.contains(&n))),
        );
        if under_ignored_dir || self.matches(path) {
            return true;
        }
        if !self.own_inodes.is_empty() {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                return self.own_inodes.contains(&(meta.dev(), meta.ino()));
            }
        }
        false
    }

    /// The user's and the default globs: a name glob against the name of
    /// the file and of each directory above it (under its root), a path
    /// glob against the path under its root.
    fn matches(&self, path: &Path) -> bool {
        let under = self
            .roots
            .iter()
            .find_map(|root| path.strip_prefix(root).ok())
            .unwrap_or(path);
        let name_matches = under.components().any(|c| match c {
            Component::Normal(name) => name
                .to_str()
                .is_some_and(|n| self.names.iter().any(|p| p.matches_with(n, MATCH))),
            _ => false,
        });
        name_matches || self.paths.iter().any(|p| p.matches_path_with(under, MATCH))
    }

    /// The watched directories git may be asked about.
    pub fn git_roots(&self) -> Vec<PathBuf> {
        self.roots
            .iter()
            .filter(|r| !self.not_git.contains(*r))
            .cloned()
            .collect()
    }

    /// `root` is no git work tree (or there is no git): not asked again.
    pub fn not_git(&mut self, root: PathBuf) {
        tracing::debug!(
            "watch: {} is not in a git work tree: .gitignore not used",
            root.display()
        );
        self.not_git.insert(root);
    }
}

/// Drops from `changed` what git ignores, asking git once per watched
/// directory in `roots`; returns the roots where git could not tell (no
/// git, not a work tree). Blocking: run off the event loop.
pub fn drop_git_ignored(roots: &[PathBuf], changed: &mut Vec<PathBuf>) -> Vec<PathBuf> {
    let mut not_git = Vec::new();
    for root in roots {
        let under: Vec<&PathBuf> = changed.iter().filter(|p| p.starts_with(root)).collect();
        if under.is_empty() {
            continue;
        }
        match git_check_ignore(root, &under) {
            Some(ignored) => changed.retain(|p| !ignored.contains(p)),
            None => not_git.push(root.clone()),
        }
    }
    not_git
}

/// handoff's stdout and stderr, when they are files.
fn own_output_files() -> HashSet<(u64, u64)> {
    ["/proc/self/fd/1", "/proc/self/fd/2"]
        .iter()
        .filter_map(|fd| std::fs::metadata(fd).ok())
        .filter(|m| m.is_file())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// The paths of `paths` that git ignores, or None when git cannot say
/// (no git, not a work tree).
fn git_check_ignore(root: &Path, paths: &[&PathBuf]) -> Option<HashSet<PathBuf>> {
    let mut cmd = std::process::Command::new("git");
    cmd.arg("-C")
        .arg(root)
        .args(["check-ignore", "--stdin", "-z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: the hook runs between fork and exec and only calls
    // sigaction(2) and sigprocmask(2), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(crate::sys::reset_signals_in_child);
    }
    let mut child = crate::reaper::spawn(|| cmd.spawn(), |c| Some(c.id())).ok()?;
    let pid = child.id();
    let mut input = Vec::new();
    for path in paths {
        input.extend_from_slice(path.as_os_str().as_encoded_bytes());
        input.push(0);
    }
    // A write error (git gone early) shows in its exit status.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&input);
    }
    let output = child.wait_with_output();
    if output.is_ok() {
        crate::reaper::reaped(pid);
    }
    let output = output.ok()?;
    // 0: some are ignored, 1: none is; anything else: git could not tell.
    match output.status.code() {
        Some(0) => Some(
            output
                .stdout
                .split(|b| *b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    // SAFETY: git echoes back bytes this process gave it
                    // from OsStr::as_encoded_bytes.
                    PathBuf::from(unsafe { std::ffi::OsStr::from_encoded_bytes_unchecked(p) })
                })
                .collect(),
        ),
        Some(1) => Some(HashSet::new()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(globs: &[&str]) -> Ignore {
        let globs: Vec<String> = globs.iter().map(|g| g.to_string()).collect();
        Ignore::new(&[], &globs, vec![PathBuf::from("/p/handoff.sock")])
    }

    #[test]
    fn defaults_rule_out_vcs_builds_and_editor_files() {
        let i = ignore(&[]);
        for path in [
            "/p/.git/index",
            "/p/target/debug/app",
            "/p/web/node_modules/x/index.js",
            "/p/src/.main.rs.swp",
            "/p/src/main.rs~",
            "/p/src/.#main.rs",
            "/p/src/#main.rs#",
            "/p/src/4913",
            "/p/app/__pycache__/m.cpython-311.pyc",
            "/p/.venv/lib/python3.11/site.py",
            "/p/venv/bin/activate",
            "/p/handoff.sock",
        ] {
            assert!(i.rules_out(Path::new(path)), "{path}");
        }
        for path in [
            "/p/src/main.rs",
            "/p/Cargo.toml",
            "/p/targets.rs",
            "/p/src/swp.rs",
        ] {
            assert!(!i.rules_out(Path::new(path)), "{path}");
        }
        assert!(i.rules_out_dir(Path::new("/p/target")));
        assert!(!i.rules_out_dir(Path::new("/p/src")));
    }

    #[test]
    fn name_globs_match_at_any_depth_and_path_globs_under_the_root() {
        let globs: Vec<String> = ["*.log", "docs/**", "tmp"]
            .iter()
            .map(|g| g.to_string())
            .collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let i = Ignore::new(std::slice::from_ref(&root), &globs, Vec::new());
        assert!(i.rules_out(&root.join("server.log")));
        assert!(i.rules_out(&root.join("a/b/server.log")));
        assert!(i.rules_out(&root.join("docs/guide/intro.md")));
        assert!(i.rules_out(&root.join("tmp/x.rs")));
        assert!(i.rules_out_dir(&root.join("tmp")));
        assert!(!i.rules_out(&root.join("src/docs/x.rs")));
        assert!(!i.rules_out(&root.join("src/main.rs")));
    }
}
