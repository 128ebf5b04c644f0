//! The program part of the config: how to run the server and when it is
//! ready ([`ProgramSpec`], the validated form, handed to every generation),
//! the settings as the file and the flags give them ([`ProgramSettings`]),
//! the defaults, and the check that the program can be started at all.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::process::{Id, ProcessControls, Rlimit};
use super::values::{env_entry_cost, signal_name};

/// How a restart replaces the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Start all new workers, wait for all, then drain all old ones: the new
    /// version is proven whole before any old worker stops, and a failure
    /// leaves every old worker in place.
    AllAtOnce,
    /// Replace `batch` slots at a time, each batch ready before its old
    /// workers drain and the next batch starts: memory stays near
    /// workers + batch.
    Rolling { batch: usize },
}

/// The `strategy` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum StrategyKind {
    AllAtOnce,
    Rolling,
}

/// How to run the server and when to consider it ready.
// Serialize: an upgrade hands the running generations' specs to the new
// binary (`upgrade.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramSpec {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_directory: Option<PathBuf>,
    pub ready: Readiness,
    pub ready_timeout: Duration,
    /// How long a restart's new workers must stay up once ready before the
    /// old ones are told to drain: a worker that dies within it fails the
    /// restart, and the old generation, still there, keeps serving.
    #[serde(default = "default_min_ready_time")]
    pub min_ready_time: Duration,
    #[serde(with = "signal_name")]
    pub stop_signal: Signal,
    pub drain_timeout: Duration,
    pub respawn_backoff: Duration,
    pub respawn_backoff_max: Duration,
    pub workers: usize,
    pub strategy: Strategy,
    /// With a steered socket: once the new generation takes its new
    /// connections, the old generation's socket must have had an empty
    /// accept queue for this long before the old generation is told to
    /// stop (a connection whose handshake was under way at the switch
    /// still lands there).
    #[serde(default = "default_handover_settle")]
    pub handover_settle: Duration,
    /// The most that wait may last: a generation that does not accept (it
    /// hangs) is told to stop then, with what is left in its queue.
    #[serde(default = "default_handover_timeout")]
    pub handover_timeout: Duration,
    /// Whether the child gets `LISTEN_FDS`, `LISTEN_FDNAMES` and
    /// `LISTEN_PID`; off for a server that takes its fds by `{fd:NAME}` and
    /// would take them a second time from the variables (gunicorn's
    /// `--bind fd://N`).
    #[serde(default = "yes")]
    pub listen_env: bool,
    /// Which process may take the sockets: the child only, as systemd
    /// says (`LISTEN_PID` = its pid), or any process it starts (no
    /// `LISTEN_PID`: for a wrapper such as `cargo run` or a shell script
    /// that does not exec the server).
    #[serde(default)]
    pub listen_pid: ListenPid,
    /// Hands the sockets over with O_NONBLOCK set (tokio wants them so).
    #[serde(default)]
    pub sockets_nonblocking: bool,
    /// Puts handoff's preload library in the child's `LD_PRELOAD`, so that
    /// a server that binds its own port gets the held socket instead
    /// (`supervisor/preload.rs`).
    #[serde(default)]
    pub preload: bool,
    /// `user`, `group`, `umask`, `rlimits`, `env_file`, `clear_env`.
    #[serde(default)]
    pub controls: ProcessControls,
    /// Stop (and exit non-zero) when workers crash more often than this.
    #[serde(default)]
    pub respawn_limit: Option<RespawnLimit>,
}

/// `respawn_limit = { count = 5, within = "60s" }`: at most `count`
/// respawns of crashed workers within any `within`; the crash that would
/// need one more stops handoff, so that a container's restart policy and
/// alerting see the crash loop rather than a supervisor that retries in
/// silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RespawnLimit {
    pub count: u32,
    pub within: Duration,
}

fn yes() -> bool {
    true
}

/// The `listen_pid` key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenPid {
    /// `LISTEN_PID` is the child's pid: only the child takes the sockets.
    #[default]
    Child,
    /// No `LISTEN_PID`: whichever process the child starts may take them
    /// (libraries that skip the check when it is missing, as the
    /// `listenfd` crate does; `sd_listen_fds` does not).
    Any,
}

/// How a new child proves it serves. A TCP probe cannot: the supervisor owns
/// the socket, so a connect succeeds whoever accepts (docs/design.md,
/// "Readiness: why a TCP probe lies").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Readiness {
    /// The child sends READY=1 on NOTIFY_SOCKET.
    Notify,
    /// A probe command, run every `interval` until it exits 0.
    Exec {
        command: Vec<String>,
        interval: Duration,
    },
    /// The child is considered ready once it has stayed alive this long.
    Delay(Duration),
    /// The server listens on a held socket (`preload`: the library sends
    /// READY=1 for it, as a server that speaks sd_notify would).
    Listen,
}

impl Readiness {
    /// Whether readiness comes as READY=1 on the notify socket.
    pub fn by_notice(&self) -> bool {
        matches!(self, Readiness::Notify | Readiness::Listen)
    }
}

pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Long enough to see a server that says READY=1 and exits at once (it
/// takes a few ms), short enough not to slow a restart down noticeably.
pub const DEFAULT_MIN_READY_TIME: Duration = Duration::from_millis(250);

fn default_min_ready_time() -> Duration {
    DEFAULT_MIN_READY_TIME
}
/// Longer than a handshake under way at the switch takes to land on
/// loopback or a LAN, short enough not to slow a restart down noticeably.
pub const DEFAULT_HANDOVER_SETTLE: Duration = Duration::from_millis(100);
/// A server that accepts at all empties its queue well within it; one that
/// does not (it hangs) should not hold the restart up for long.
pub const DEFAULT_HANDOVER_TIMEOUT: Duration = Duration::from_secs(5);

// The upgrade state of a handoff from before these keys lacks them.
fn default_handover_settle() -> Duration {
    DEFAULT_HANDOVER_SETTLE
}
fn default_handover_timeout() -> Duration {
    DEFAULT_HANDOVER_TIMEOUT
}
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_READY_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_READY_INTERVAL: Duration = Duration::from_millis(200);
pub const DEFAULT_RESPAWN_BACKOFF: Duration = Duration::from_millis(100);
pub const DEFAULT_RESPAWN_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Program settings as either source gives them: every field optional, every
/// value already typed. The file's and the flags' are merged (flags win),
/// then defaults fill the gaps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramSettings {
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub working_directory: Option<PathBuf>,
    pub ready: Option<ReadyKind>,
    pub ready_command: Option<Vec<String>>,
    pub ready_delay: Option<Duration>,
    pub ready_interval: Option<Duration>,
    pub ready_timeout: Option<Duration>,
    pub min_ready_time: Option<Duration>,
    #[serde(with = "signal_name::option")]
    pub stop_signal: Option<Signal>,
    pub drain_timeout: Option<Duration>,
    pub respawn_backoff: Option<Duration>,
    pub respawn_backoff_max: Option<Duration>,
    pub workers: Option<usize>,
    pub strategy: Option<StrategyKind>,
    pub batch: Option<usize>,
    pub handover_settle: Option<Duration>,
    pub handover_timeout: Option<Duration>,
    // An upgrade state from before these keys lacks them: a missing
    // Option reads as None, unset.
    pub listen_env: Option<bool>,
    pub listen_pid: Option<ListenPid>,
    pub sockets_nonblocking: Option<bool>,
    pub preload: Option<bool>,
    pub user: Option<Id>,
    pub group: Option<Id>,
    pub supplementary_groups: Option<Vec<Id>>,
    pub umask: Option<u32>,
    pub rlimits: Option<Vec<Rlimit>>,
    /// Absolute (the file's relative to its directory, the flag's to the
    /// current one), so that a reload reads the same file.
    pub env_file: Option<PathBuf>,
    pub clear_env: Option<bool>,
    #[serde(default)]
    pub respawn_limit: Option<RespawnLimit>,
}

/// The `ready` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum ReadyKind {
    Notify,
    Exec,
    Delay,
    Listen,
}

/// What keeps the program from being started, and the key it is about.
pub(super) fn program_problem(p: &ProgramSpec) -> Result<(), (&'static str, String)> {
    if let Some(dir) = &p.working_directory {
        if !dir.is_dir() {
            return Err((
                "working_directory",
                format!("working_directory {} is not a directory", dir.display()),
            ));
        }
    }
    // The config's PATH first (the env file's before `env`'s, which it
    // overrides): resolve_program takes the first one, and the config's is
    // the one the child gets. With clear_env, handoff's own is not passed.
    let file_vars = p.controls.env_file.iter().flat_map(|f| f.vars.iter().rev());
    let inherited = || std::env::vars_os().filter(|_| !p.controls.clear_env);
    let env: Vec<_> = file_vars
        .map(|(k, v)| (k.into(), v.into()))
        .chain(p.env.iter().map(|(k, v)| (k.into(), v.into())))
        .chain(inherited())
        .collect();
    let path = crate::program_path::resolve_program(&p.command[0], &env)
        .map_err(|e| ("command", format!("program: {e}")))?;
    if p.preload {
        if let Some(problem) = crate::program_kind::preload_problem(&path, &env) {
            return Err(("preload", format!("preload: {problem}")));
        }
    }
    // What execve will be given, as it counts it: the command, the
    // inherited environment less what the config replaces, the config's,
    // and room for the protocol's few variables.
    const PROTOCOL_ROOM: usize = 4096;
    let pointer = std::mem::size_of::<*const u8>();
    let inherited: usize = inherited()
        .filter(|(k, _)| k.to_str().is_none_or(|k| !p.env.contains_key(k)))
        .map(|(k, v)| k.len() + v.len() + 2 + pointer)
        .sum();
    let total = p
        .command
        .iter()
        .map(|a| a.len() + 1 + pointer)
        .sum::<usize>()
        + inherited
        + p.env
            .iter()
            .map(|(k, v)| env_entry_cost(k, v))
            .sum::<usize>()
        + p.controls
            .env_file
            .iter()
            .flat_map(|f| &f.vars)
            .map(|(k, v)| env_entry_cost(k, v))
            .sum::<usize>()
        + PROTOCOL_ROOM;
    let limit = crate::sys::exec_args_limit();
    if total > limit {
        return Err(("command", format!(
            "program: its command line and environment would take about {total} bytes (of which {inherited} inherited from handoff's own environment); execve accepts {limit} here (a quarter of the stack limit, `ulimit -s`)"
        )));
    }
    Ok(())
}
