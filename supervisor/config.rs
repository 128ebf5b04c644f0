//! The configuration: a TOML file and/or command-line flags, parsed into raw
//! values and then validated into typed ones ([`Config`]).
//!
//! Every problem is reported, with the file, line and column where it has
//! one. Unknown keys are errors, never ignored. Relative paths in a file
//! (unix socket paths, `control`, `working_directory`, a `command` or
//! `ready_command` program that contains a `/`) are relative to the file's
//! directory, so a config means
//! the same thing whatever directory handoff is started from; on the command
//! line they are relative to the current directory.

//!
//! One file per concept: `program.rs` the program's settings and spec,
//! `values.rs` the single values (durations, signals, modes, env entries),
//! `file.rs` the TOML with the place of every value (`position.rs` turns
//! those into file:line:column; `file/reader.rs` types the values, every
//! mistake in one pass), `merge.rs` the file and the flags
//! made one, `errors.rs` the problems and their places, `process.rs` the
//! child's credentials, umask and limits, `env_file.rs` the env file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sockets::{Handover, SocketSpec};

mod env_file;
mod errors;
mod file;
mod merge;
mod position;
mod process;
mod program;
#[cfg(test)]
mod tests;
mod values;
mod watch;

pub use env_file::EnvFile;
pub use errors::{ConfigError, ConfigErrors, Location};
pub use process::{
    parse_umask, show_limit, Credentials, Id, ProcessControls, Resource, Rlimit, INFINITY,
};
pub use program::{
    ListenPid, ProgramSettings, ProgramSpec, Readiness, ReadyKind, RespawnLimit, Strategy,
    StrategyKind, DEFAULT_DRAIN_TIMEOUT, DEFAULT_HANDOVER_SETTLE, DEFAULT_HANDOVER_TIMEOUT,
    DEFAULT_MIN_READY_TIME, DEFAULT_READY_DELAY, DEFAULT_READY_INTERVAL, DEFAULT_READY_TIMEOUT,
    DEFAULT_RESPAWN_BACKOFF, DEFAULT_RESPAWN_BACKOFF_MAX,
};
pub use values::{
    check_env_entry, env_entry_cost, parse_duration, parse_octal_mode, parse_signal, MAX_DURATION,
    MAX_ENV_BYTES, MAX_ENV_ENTRY, MAX_WORKERS,
};

pub use watch::{check_glob, Watch, WatchSettings, DEFAULT_DEBOUNCE, WATCH_READY_TIMEOUT};

use errors::sorted;
use file::{parse_file, FileConfig};
use merge::finish;

/// The validated configuration of one supervisor.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// The control socket path, if the file or a flag named one.
    pub control: Option<PathBuf>,
    pub sockets: Vec<SocketSpec>,
    pub program: ProgramSpec,
    /// What SIGHUP does.
    pub sighup: SighupAction,
    /// Hand the sockets to systemd's fd store (FDSTORE=1).
    pub fdstore: bool,
    /// Signals sent to handoff that it sends on to the serving workers
    /// (`forward_signals`, top-level: they are handoff's own, like
    /// `sighup`); none of those handoff acts on itself.
    pub forward_signals: Vec<nix::sys::signal::Signal>,
    /// `--watch` / `[watch]`: restart on file changes (development mode).
    pub watch: Option<Watch>,
}

/// What SIGHUP does: a restart with the config in memory, or a reload that
/// re-reads the config file first (like `handoff reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
pub enum SighupAction {
    #[default]
    Restart,
    Reload,
}

/// Settings that do not come from `[program]`: the flags' share of the
/// config (`--control`, `--listen`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    pub control: Option<PathBuf>,
    pub sighup: Option<SighupAction>,
    pub fdstore: Option<bool>,
    pub sockets: Vec<SocketSpec>,
    pub program: ProgramSettings,
    /// `--handover`: in place of the file's top-level `handover`, the
    /// value of every socket that has none of its own.
    // default: the upgrade state of a handoff from before this flag lacks it.
    #[serde(default)]
    pub handover: Option<Handover>,
    /// `--watch`, `--watch-ignore`, `--watch-debounce`.
    #[serde(default)]
    pub watch: WatchSettings,
}

/// Reads and validates a config file, then applies the flags. The program
/// is not looked up: see [`load_checked`].
pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigErrors> {
    load_with(file, overrides, false)
}

/// [`load`], and the program looked up as it will be for the child; every
/// problem, that one included, in one run, sorted by line.
pub fn load_checked(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigErrors> {
    load_with(file, overrides, true)
}

fn load_with(
    file: Option<&Path>,
    overrides: Overrides,
    look_up_program: bool,
) -> Result<Config, ConfigErrors> {
    let (parsed, mut errors) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigErrors::one(format!("cannot read config file {}: {e}", path.display()))
            })?;
            parse_file(path, &text).map_err(sorted)?
        }
        None => (FileConfig::default(), Vec::new()),
    };
    match finish(file, parsed, overrides, look_up_program) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(sorted(ConfigErrors(errors))),
        Err(more) => {
            errors.extend(more.0);
            Err(sorted(ConfigErrors(errors)))
        }
    }
}
