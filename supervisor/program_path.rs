//! Finding the program a child will run, as execvp(3) would, but in the
//! supervisor, before anything forks: a missing program is then an error
//! `handoff check` and `reload` report with its place in the file, and
//! `spawn` reports before a fork rather than from a child that failed to
//! exec.
//!
//! A leaf: both `config` (which checks the program) and `spawn` (which runs
//! it) use it, and it uses neither.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The program cannot be run: missing, not a file, not executable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot find `{program}`: {reason}")]
pub struct ProgramNotFound {
    /// The name as the config or the command line gave it.
    pub program: String,
    /// Why, for the user: the path and what is wrong with it, or the PATH
    /// searched.
    pub reason: String,
}

/// Where execve will find `name`. A name with a `/` is taken as a path;
/// otherwise it is searched in `env`'s PATH (the child's, which is the one
/// execvp would use), or the default PATH when it has none.
pub fn resolve_program(
    name: &str,
    env: &[(OsString, OsString)],
) -> Result<PathBuf, ProgramNotFound> {
    let not_found = |reason: String| ProgramNotFound {
        program: name.to_string(),
        reason,
    };
    if name.contains('/') {
        // Relative to the supervisor's directory, not the child's: a config
        // file's relative command was made absolute against the file's
        // directory already, and on the command line `./server` means the
        // one here.
        let path = std::path::absolute(name).map_err(|e| not_found(e.to_string()))?;
        return check_executable(&path).map(|()| path).map_err(not_found);
    }
    let search = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    let mut last_problem = None;
    for dir in std::env::split_paths(&search) {
        let candidate = dir.join(name);
        match check_executable(&candidate) {
            Ok(()) => return std::path::absolute(&candidate).map_err(|e| not_found(e.to_string())),
            Err(problem) if candidate.exists() => last_problem = Some(problem),
            Err(_) => {}
        }
    }
    Err(not_found(last_problem.unwrap_or_else(|| {
        format!("not in PATH ({})", search.to_string_lossy())
    })))
}

/// Why `path` cannot be executed, as a message: it only ever becomes the
/// `reason` of a [`ProgramNotFound`], and no caller tells the cases apart.
fn check_executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_programs_like_execvp() {
        let env = vec![(
            OsString::from("PATH"),
            OsString::from("/nonexistent:/bin:/usr/bin"),
        )];
        let sh = resolve_program("sh", &env).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        let err = resolve_program("no-such-program-xyz", &env).unwrap_err();
        assert!(err.to_string().contains("not in PATH"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve_program(plain.to_str().unwrap(), &env).unwrap_err();
        assert!(err.to_string().contains("not executable"), "{err}");
        let err = resolve_program("plain", &env).unwrap_err();
        assert!(err.to_string().contains("not in PATH"), "{err}");
        // A relative path is the supervisor's, not a working directory's.
        let err = resolve_program("./no-such-file-xyz", &env).unwrap_err();
        let here = std::env::current_dir().unwrap().join("no-such-file-xyz");
        assert!(
            err.to_string().contains(&here.display().to_string()),
            "{err}"
        );
    }
}
