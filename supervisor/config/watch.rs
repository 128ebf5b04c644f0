//! Development mode: `--watch PATH` and the file's `[watch]`. A change
//! under a watched path restarts the server as `handoff restart` does;
//! `file_watch.rs` does the watching.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Location};

/// How long the watched files must stay quiet before a restart starts: an
/// editor's save or a `git checkout` is many events.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);

/// A longer debounce is a mistake: nobody waits ten seconds after a save.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(10);

/// With `--watch`, the default `ready_timeout`: the new generation's time to
/// become ready includes the build (`cargo run` compiles first), and a build
/// can take minutes. The old generation serves meanwhile.
pub const WATCH_READY_TIMEOUT: Duration = Duration::from_secs(300);

/// What the flags or the file say about watching, not yet merged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchSettings {
    /// Files or directories (directories are watched with everything
    /// under them).
    pub paths: Vec<PathBuf>,
    /// Globs of paths never to restart for, besides the defaults.
    pub ignore: Vec<String>,
    pub debounce: Option<Duration>,
}

/// Watching, merged and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    /// Absolute.
    pub paths: Vec<PathBuf>,
    pub ignore: Vec<String>,
    pub debounce: Duration,
}

/// The flags' paths replace the file's (`--watch .` on a file that watches
/// `src`); both sides' ignore globs apply. `at` finds a `[watch]` key in the
/// file.
pub(super) fn merge(
    file: &WatchSettings,
    flags: &WatchSettings,
    at: &dyn Fn(&str) -> Option<Location>,
    errors: &mut Vec<ConfigError>,
) -> Option<Watch> {
    let (paths, said, location) = if flags.paths.is_empty() {
        (&file.paths, "watch.paths", at("watch.paths"))
    } else {
        (&flags.paths, "--watch", None)
    };
    if paths.is_empty() {
        if !file.ignore.is_empty() || !flags.ignore.is_empty() || flags.debounce.is_some() {
            errors.push(ConfigError {
                location: at("watch.ignore").or(at("watch.debounce")),
                message: "watch ignore and debounce settings need a path to watch: --watch PATH (paths = [...] in [watch])".into(),
            });
        }
        return None;
    }
    let mut absolute = Vec::new();
    for path in paths {
        // Canonical: `../examples` from a file in config/ is shown, and
        // matched against events, as the directory it is.
        match std::fs::canonicalize(path) {
            Ok(path) => absolute.push(path),
            Err(e) => errors.push(ConfigError {
                location: location.clone(),
                message: format!("{said} {}: {e}", path.display()),
            }),
        }
    }
    // The file's globs were checked where they stand (`file/watch.rs`);
    // the flags' here, for an `Overrides` that did not come through clap.
    let mut ignore = file.ignore.clone();
    for glob in &flags.ignore {
        match check_glob(glob) {
            Ok(()) => ignore.push(glob.clone()),
            Err(e) => errors.push(ConfigError {
                location: None,
                message: format!("--watch-ignore `{glob}`: {e}"),
            }),
        }
    }
    let debounce = flags.debounce.or(file.debounce).unwrap_or(DEFAULT_DEBOUNCE);
    if debounce > MAX_DEBOUNCE {
        let (said, location) = match flags.debounce {
            Some(_) => ("--watch-debounce", None),
            None => ("watch.debounce", at("watch.debounce")),
        };
        errors.push(ConfigError {
            location,
            message: format!(
                "{said} {} is longer than the most, {}",
                humantime::format_duration(debounce),
                humantime::format_duration(MAX_DEBOUNCE)
            ),
        });
    }
    Some(Watch {
        paths: absolute,
        ignore,
        debounce,
    })
}

/// A glob as `--watch-ignore` takes it: `*`, `?`, `[...]` and `**`.
pub fn check_glob(glob: &str) -> Result<(), String> {
    if glob.is_empty() {
        return Err("an empty pattern matches nothing".into());
    }
    glob::Pattern::new(glob)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
