//! `handoff run`'s development-mode flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::{self, WatchSettings};

/// Development mode: restart when a file changes.
#[derive(Debug, Clone, Default, Args)]
pub struct WatchArgs {
    /// Restart when a file under PATH changes, as `handoff restart` does:
    /// the running server serves until the new one is ready, and a new one
    /// that fails is rolled back. PATH is a file or a directory (watched
    /// with everything under it); repeat for more. Ignored: .gitignore'd
    /// paths, .git, target, node_modules, __pycache__, venv, editor swap
    /// files.
    /// Makes --listen-pid any and --ready-timeout 5min the defaults.
    #[arg(long = "watch", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// With --watch: changes to paths that match GLOB restart nothing
    /// (`*.log`, `docs/**`; a GLOB without `/` matches a file's name at any
    /// depth). Repeatable.
    #[arg(long = "watch-ignore", value_name = "GLOB", value_parser = parse_glob)]
    pub ignore: Vec<String>,
    /// With --watch: how long the files must stay quiet before a restart.
    /// [default: 200ms]
    #[arg(long = "watch-debounce", value_name = "DURATION", value_parser = config::parse_duration)]
    pub debounce: Option<Duration>,
}

impl WatchArgs {
    pub fn settings(&self) -> WatchSettings {
        WatchSettings {
            paths: self.paths.clone(),
            ignore: self.ignore.clone(),
            debounce: self.debounce,
        }
    }
}

fn parse_glob(s: &str) -> Result<String, String> {
    config::check_glob(s).map(|()| s.to_string())
}
