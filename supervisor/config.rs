//! The configuration: a TOML file and/or command-line flags, parsed into raw
//! values and then validated into typed ones ([`Config`]).
//!
//! Every problem is reported, with the file, line and column where it has
//! one. Unknown keys are errors, never ignored. Relative paths in a file
//! (unix socket paths, `control`, `working_directory`, a `command` that
//! contains a `/`) are relative to the file's directory, so a config means
//! the same thing whatever directory handoff is started from; on the command
//! line they are relative to the current directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::sockets::SocketSpec;

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
}

/// What SIGHUP does: a restart with the config in memory, or a reload that
/// re-reads the config file first (like `handoff reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
pub enum SighupAction {
    #[default]
    Restart,
    Reload,
}

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
}

/// How a new child proves it serves. A TCP probe cannot: the supervisor owns
/// the socket, so a connect succeeds whoever accepts (DESIGN.md).
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
}

pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Long enough to see a server that says READY=1 and exits at once (it
/// takes a few ms), short enough not to slow a restart down noticeably.
pub const DEFAULT_MIN_READY_TIME: Duration = Duration::from_millis(250);

fn default_min_ready_time() -> Duration {
    DEFAULT_MIN_READY_TIME
}
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_READY_DELAY: Duration = Duration::from_secs(1);
pub const DEFAULT_READY_INTERVAL: Duration = Duration::from_millis(200);
pub const DEFAULT_RESPAWN_BACKOFF: Duration = Duration::from_millis(100);
pub const DEFAULT_RESPAWN_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where a value came from: a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Option<Location>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn one(message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            location: None,
            message: message.into(),
        }])
    }
}

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
}

/// The `ready` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum ReadyKind {
    Notify,
    Exec,
    Delay,
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
}

mod file;

use file::{parse_file, FileConfig};

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

/// In the order of the file; the problems that have no place after those.
fn sorted(mut errors: ConfigErrors) -> ConfigErrors {
    errors.0.sort_by_key(|e| {
        e.location
            .as_ref()
            .map_or((1, 0, 0), |l| (0, l.line, l.column))
    });
    errors
}

/// `"0660"` or `"660"` (always octal, as chmod reads it).
pub fn parse_octal_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("`{s}` is not an octal file mode like \"0660\""))?;
    if mode > 0o7777 {
        return Err(format!("`{s}` is not a file mode (at most 7777)"));
    }
    Ok(mode)
}

/// What keeps the program from being started, and the key it is about.
fn program_problem(p: &ProgramSpec) -> Result<(), (&'static str, String)> {
    if let Some(dir) = &p.working_directory {
        if !dir.is_dir() {
            return Err((
                "working_directory",
                format!("working_directory {} is not a directory", dir.display()),
            ));
        }
    }
    // The config's PATH first: resolve_program takes the first one, and
    // the config's is the one the child gets.
    let env: Vec<_> = p
        .env
        .iter()
        .map(|(k, v)| (k.into(), v.into()))
        .chain(std::env::vars_os())
        .collect();
    crate::program_path::resolve_program(&p.command[0], &env)
        .map_err(|e| ("command", format!("program: {e}")))?;
    // What execve will be given, as it counts it: the command, the
    // inherited environment less what the config replaces, the config's,
    // and room for the protocol's few variables.
    const PROTOCOL_ROOM: usize = 4096;
    let pointer = std::mem::size_of::<*const u8>();
    let inherited: usize = std::env::vars_os()
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
        + PROTOCOL_ROOM;
    let limit = crate::sys::exec_args_limit();
    if total > limit {
        return Err(("command", format!(
            "program: its command line and environment would take about {total} bytes (of which {inherited} inherited from handoff's own environment); execve accepts {limit} here (a quarter of the stack limit, `ulimit -s`)"
        )));
    }
    Ok(())
}

/// Signals by name ("SIGTERM") in serialized specs.
mod signal_name {
    use nix::sys::signal::Signal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(signal: &Signal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(signal.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
        let name = String::deserialize(d)?;
        name.parse()
            .map_err(|_| serde::de::Error::custom(format!("unknown signal {name}")))
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(signal: &Option<Signal>, s: S) -> Result<S::Ok, S::Error> {
            match signal {
                Some(sig) => s.serialize_some(sig.as_str()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Signal>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(name) => name
                    .parse()
                    .map(Some)
                    .map_err(|_| serde::de::Error::custom(format!("unknown signal {name}"))),
                None => Ok(None),
            }
        }
    }
}

/// execve(2) refuses any one argument or `NAME=value` string longer than
/// this, NUL included (the kernel's MAX_ARG_STRLEN: 32 pages).
pub const MAX_ENV_ENTRY: usize = 128 * 1024;

/// The most the config's `env` may take, counted as execve does: each
/// `NAME=value` string with its NUL, plus a pointer to it. execve takes the
/// arguments and the environment together up to a quarter of the stack
/// limit: 2 MiB with the usual 8 MiB, which is what this allows. A bigger
/// stack limit lets execve take up to 6 MiB, but a config that works only
/// under a raised `ulimit -s` breaks where it is not raised; and
/// The program lookup (`load_checked`) measures the real budget, with the command and the
/// inherited environment, where the server is started.
pub const MAX_ENV_BYTES: usize = 2 * 1024 * 1024;

/// What one environment entry costs in execve's budget.
pub fn env_entry_cost(name: &str, value: &str) -> usize {
    name.len() + 1 + value.len() + 1 + std::mem::size_of::<*const u8>()
}

/// A name and value that a child can be given as they are: a name that is
/// not empty and has no `=` (the child would split it there: `A=B` = `c`
/// reads as `A` = `B=c`), and no NUL anywhere (it would end the string).
pub fn check_env_entry(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a variable needs a name (the name is empty)".into());
    }
    if name.contains('=') {
        return Err(format!(
            "`{name}`: a variable name cannot contain `=` (the program would see `{}`)",
            name.split('=').next().unwrap_or_default()
        ));
    }
    if name.contains('\0') {
        return Err(format!(
            "`{}`: a variable name cannot contain a NUL byte",
            name.escape_debug()
        ));
    }
    if value.contains('\0') {
        return Err(format!(
            "`{name}`: the value contains a NUL byte, where the program would see it end"
        ));
    }
    let len = name.len() + 1 + value.len() + 1;
    if len > MAX_ENV_ENTRY {
        return Err(format!(
            "`{name}`: NAME=value is {len} bytes; a program can be given at most {MAX_ENV_ENTRY} per variable (execve's MAX_ARG_STRLEN)"
        ));
    }
    Ok(())
}

/// A sanity bound, far above what one machine runs.
pub const MAX_WORKERS: usize = 4096;

/// The longest duration accepted: long enough for any timeout, short
/// enough that deadlines computed from it never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `10s`, `500ms`, `2m`, `1h 30m`, at most a year.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    // humantime's own messages spell units its way ("for example 30sec");
    // these say them as the README and the defaults in --help do.
    let d = humantime::parse_duration(s).map_err(|e| {
        use humantime::DurationError as E;
        let why = match e {
            E::UnknownUnit { unit, value, .. } if unit.is_empty() => {
                format!("a number needs a unit, as in {value}s or {value}ms")
            }
            E::UnknownUnit { unit, .. } => {
                format!("`{unit}` is not a unit: use ms, s, m, h or d")
            }
            E::Empty => "it is empty".to_string(),
            E::NumberOverflow => "too large, or finer than 1ns".to_string(),
            E::InvalidCharacter(_) | E::NumberExpected(_) => {
                "expected a number and a unit, as in 10s or 1h 30m".to_string()
            }
        };
        format!("`{s}` is not a duration like \"10s\" or \"500ms\": {why}")
    })?;
    if d > MAX_DURATION {
        return Err(format!("`{s}` is longer than a year"));
    }
    Ok(d)
}

/// `SIGTERM`, `TERM` or `term`.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("`{s}` is not a signal name like \"SIGTERM\" or \"SIGQUIT\""))
}

/// Merges the file and the flags, fills in defaults and checks what can only
/// be checked on the whole.
fn finish(
    file: Option<&Path>,
    parsed: FileConfig,
    overrides: Overrides,
    look_up_program: bool,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let at = |key: &str| parsed.keys.get(key).cloned();
    // A value the file refused was reported where it stands; what follows
    // from it is no second mistake.
    let refused = |key: &str| parsed.refused.contains(key);
    // A --listen socket replaces the file's of the same name, where it
    // stood (so its fd number stays): flags override the file.
    let mut sockets: Vec<(SocketSpec, Option<Location>)> = parsed.sockets;
    for flag in overrides.sockets {
        match sockets
            .iter_mut()
            .find(|(s, at)| at.is_some() && s.name == flag.name)
        {
            Some(slot) => *slot = (flag, None),
            None => sockets.push((flag, None)),
        }
    }
    for (i, (spec, location)) in sockets.iter().enumerate() {
        if sockets[..i]
            .iter()
            .any(|(other, _)| other.name == spec.name)
        {
            errors.push(ConfigError {
                location: location.clone(),
                message: format!(
                    "socket name `{}` is used twice: names must be unique",
                    spec.name
                ),
            });
        }
    }
    let file_program = parsed.program;
    let flags = overrides.program;
    let mut env = file_program.env;
    // The file's entries were checked where they stand; --env's here (the
    // flag's parser already refuses an empty name or one without `=`).
    for (name, value) in &flags.env {
        if let Err(e) = check_env_entry(name, value) {
            errors.push(ConfigError {
                location: None,
                message: format!("--env {e}"),
            });
        }
    }
    env.extend(flags.env);
    let env_bytes: usize = env.iter().map(|(k, v)| env_entry_cost(k, v)).sum();
    if env_bytes > MAX_ENV_BYTES {
        errors.push(ConfigError {
            location: at("env"),
            message: format!(
                "env: {} variables take {env_bytes} bytes (each NAME=value, its NUL and a pointer, as execve counts them); at most {MAX_ENV_BYTES} (2 MiB) is accepted: execve takes the arguments and environment together up to a quarter of the stack limit, 2 MiB with the usual 8 MiB",
                env.len()
            ),
        });
    }
    let command = flags.command.or(file_program.command);
    let ready_kind = flags
        .ready
        .or(file_program.ready)
        .unwrap_or(ReadyKind::Notify);
    let ready_command = flags.ready_command.or(file_program.ready_command);
    let ready_delay = flags.ready_delay.or(file_program.ready_delay);
    let ready_interval = flags.ready_interval.or(file_program.ready_interval);
    let ready_known = !refused("ready");
    let ready = match ready_kind {
        ReadyKind::Notify => Readiness::Notify,
        ReadyKind::Delay => Readiness::Delay(ready_delay.unwrap_or(DEFAULT_READY_DELAY)),
        ReadyKind::Exec => match ready_command.clone() {
            Some(command) => Readiness::Exec {
                command,
                interval: ready_interval.unwrap_or(DEFAULT_READY_INTERVAL),
            },
            None => {
                if !refused("ready_command") {
                    errors.push(ConfigError {
                    location: at("ready"),
                    message: "ready = \"exec\" needs a probe: ready_command = [\"/path/to/probe\"] (--ready-command)".into(),
                });
                }
                Readiness::Notify
            }
        },
    };
    if ready_known && ready_command.is_some() && ready_kind != ReadyKind::Exec {
        errors.push(ConfigError {
            location: at("ready_command"),
            message: "ready_command is only used with ready = \"exec\"".into(),
        });
    }
    if ready_known && ready_delay.is_some() && ready_kind != ReadyKind::Delay {
        errors.push(ConfigError {
            location: at("ready_delay"),
            message: "ready_delay is only used with ready = \"delay\"".into(),
        });
    }
    if ready_known && ready_interval.is_some() && ready_kind != ReadyKind::Exec {
        errors.push(ConfigError {
            location: at("ready_interval"),
            message: "ready_interval is only used with ready = \"exec\"".into(),
        });
    }
    let respawn_backoff = flags
        .respawn_backoff
        .or(file_program.respawn_backoff)
        .unwrap_or(DEFAULT_RESPAWN_BACKOFF);
    let respawn_backoff_max = flags
        .respawn_backoff_max
        .or(file_program.respawn_backoff_max)
        .unwrap_or(DEFAULT_RESPAWN_BACKOFF_MAX);
    if !refused("respawn_backoff")
        && !refused("respawn_backoff_max")
        && (respawn_backoff.is_zero() || respawn_backoff > respawn_backoff_max)
    {
        errors.push(ConfigError {
            location: at("respawn_backoff"),
            message: format!(
                "respawn_backoff ({}) must be above zero and at most respawn_backoff_max ({})",
                humantime::format_duration(respawn_backoff),
                humantime::format_duration(respawn_backoff_max)
            ),
        });
    }
    let ready_timeout = flags
        .ready_timeout
        .or(file_program.ready_timeout)
        .unwrap_or(DEFAULT_READY_TIMEOUT);
    if ready_timeout.is_zero() {
        errors.push(ConfigError {
            location: at("ready_timeout"),
            message: "ready_timeout must be above zero".into(),
        });
    }
    if sockets.is_empty() && parsed.socket_names.is_empty() {
        errors.push(ConfigError {
            location: None,
            message: match file {
                Some(f) => format!(
                    "{}: no socket: add a [[socket]] with name and listen, or --listen",
                    f.display()
                ),
                None => "no socket: give one with --listen NAME=tcp://HOST:PORT".into(),
            },
        });
    }
    let Some(command) = command else {
        if refused("command") {
            return Err(ConfigErrors(errors));
        }
        errors.push(ConfigError {
            location: None,
            message: match file {
                Some(f) => format!("{}: no program: add [program] with command = [\"./server\"], or give the command after --", f.display()),
                None => "no program to run: give its command after --, e.g. handoff run --listen http=tcp://127.0.0.1:8080 -- ./server".into(),
            },
        });
        return Err(ConfigErrors(errors));
    };
    let program = ProgramSpec {
        command,
        env,
        working_directory: flags.working_directory.or(file_program.working_directory),
        ready,
        ready_timeout,
        min_ready_time: flags
            .min_ready_time
            .or(file_program.min_ready_time)
            .unwrap_or(DEFAULT_MIN_READY_TIME),
        stop_signal: flags
            .stop_signal
            .or(file_program.stop_signal)
            .unwrap_or(Signal::SIGTERM),
        drain_timeout: flags
            .drain_timeout
            .or(file_program.drain_timeout)
            .unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        respawn_backoff,
        respawn_backoff_max,
        workers: flags.workers.or(file_program.workers).unwrap_or(1),
        strategy: Strategy::AllAtOnce,
    };
    let batch = flags.batch.or(file_program.batch);
    let program = match flags.strategy.or(file_program.strategy) {
        Some(StrategyKind::Rolling) => ProgramSpec {
            strategy: Strategy::Rolling {
                batch: batch.unwrap_or(1),
            },
            ..program
        },
        _ => {
            if batch.is_some() && !refused("strategy") {
                errors.push(ConfigError {
                    location: at("batch"),
                    message: "batch is only used with strategy = \"rolling\"".into(),
                });
            }
            program
        }
    };
    let names: Vec<&str> = sockets
        .iter()
        .map(|(s, _)| s.name.as_str())
        .chain(parsed.socket_names.iter().map(String::as_str))
        .collect();
    for arg in &program.command {
        if let Err(e) = crate::template::check(arg, &names) {
            errors.push(ConfigError {
                location: at("command"),
                message: e,
            });
        }
    }
    let probe = match &program.ready {
        Readiness::Exec { command, .. } => command.as_slice(),
        _ => &[],
    };
    for (key, arg) in program
        .command
        .iter()
        .map(|a| ("command", a))
        .chain(probe.iter().map(|a| ("ready_command", a)))
    {
        if arg.contains('\0') {
            errors.push(ConfigError {
                location: at(key),
                message: format!(
                    "{key}: `{}` contains a NUL byte, where the program would see it end",
                    arg.escape_debug()
                ),
            });
        }
    }
    for (name, value) in &program.env {
        if let Err(e) = crate::template::check(value, &names) {
            errors.push(ConfigError {
                location: parsed
                    .env_at
                    .get(name)
                    .map(|&offset| parsed.lines.at(offset))
                    .or_else(|| at("env")),
                message: format!("env: `{name}`: {e}"),
            });
        }
    }
    if look_up_program {
        if let Err((key, message)) = program_problem(&program) {
            errors.push(ConfigError {
                location: at(key),
                message: match (at(key), file) {
                    (None, Some(f)) => format!("{}: {message}", f.display()),
                    _ => message,
                },
            });
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        file: file.map(Path::to_path_buf),
        control: overrides.control.or(parsed.control),
        sighup: overrides.sighup.or(parsed.sighup).unwrap_or_default(),
        fdstore: overrides.fdstore.or(parsed.fdstore).unwrap_or(false),
        sockets: sockets.into_iter().map(|(s, _)| s).collect(),
        program,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockets::ListenAddr;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        parse_with(text, Overrides::default())
    }

    /// As `load` does it, with the file's text given.
    fn parse_with(text: &str, overrides: Overrides) -> Result<Config, ConfigErrors> {
        let (parsed, mut errors) = parse_file(Path::new("t.toml"), text).map_err(sorted)?;
        match finish(Some(Path::new("t.toml")), parsed, overrides, false) {
            Ok(c) if errors.is_empty() => Ok(c),
            Ok(_) => Err(sorted(ConfigErrors(errors))),
            Err(more) => {
                errors.extend(more.0);
                Err(sorted(ConfigErrors(errors)))
            }
        }
    }

    const GOOD: &str = r#"
control = "/tmp/h.sock"

[[socket]]
name = "http"
listen = "tcp://127.0.0.1:0"
backlog = 512

[[socket]]
name = "admin"
listen = "unix://admin.sock"
mode = 0o600

[program]
command = ["./server", "--fd", "{fd:http}"]
env = { RUST_LOG = "info" }
ready = "exec"
ready_command = ["true"]
ready_timeout = "5s"
stop_signal = "QUIT"
drain_timeout = "500ms"
workers = 2
"#;

    #[test]
    fn a_good_file() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.sockets.len(), 2);
        assert_eq!(c.sockets[0].backlog, Some(512));
        let here = std::env::current_dir().unwrap();
        assert_eq!(
            c.sockets[1].listen,
            ListenAddr::Unix(here.join("admin.sock"))
        );
        assert_eq!(c.sockets[1].mode, Some(0o600));
        assert_eq!(Path::new(&c.program.command[0]), here.join("./server"));
        assert_eq!(c.program.stop_signal, Signal::SIGQUIT);
        assert_eq!(c.program.ready_timeout, Duration::from_secs(5));
        assert_eq!(c.program.drain_timeout, Duration::from_millis(500));
        assert_eq!(c.program.workers, 2);
        assert!(matches!(c.program.ready, Readiness::Exec { .. }));
    }

    fn errors(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_names_its_line() {
        let e = errors("[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\"]\nredy_timeout = \"1s\"\n");
        assert!(
            e.starts_with("t.toml:6:1: unknown field `redy_timeout`"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_each_name_their_line() {
        let e = errors(
            "[[socket]]\nname = \"a:b\"\nlisten = \"tcp://127.0.0.1\"\n[program]\ncommand = [\"x\"]\nready_timeout = \"soon\"\nstop_signal = \"SIGNOPE\"\n",
        );
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 4, "{e}");
        assert!(lines[0].starts_with("t.toml:2:8: socket name `a:b`"), "{e}");
        assert!(
            lines[1].starts_with("t.toml:3:10: `tcp://127.0.0.1`: no port"),
            "{e}"
        );
        assert!(
            lines[2].starts_with("t.toml:6:17: ready_timeout: `soon`"),
            "{e}"
        );
        assert!(
            lines[3].starts_with("t.toml:7:15: `SIGNOPE` is not a signal"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_names_its_line() {
        let e = errors("[program]\ncommand = [\"x\"\nready = \"delay\"\n");
        assert!(
            e.starts_with("t.toml:3:1: invalid array, expected `]`"),
            "{e}"
        );
    }

    #[test]
    fn exec_without_probe_is_refused_at_the_ready_key() {
        let e = errors("[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\"]\nready = \"exec\"\n");
        assert!(
            e.starts_with("t.toml:6:9: ready = \"exec\" needs a probe"),
            "{e}"
        );
    }

    #[test]
    fn unknown_template_socket_is_refused() {
        let e = errors("[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\", \"--fd={fd:b}\"]\n");
        assert!(e.contains("t.toml:5:11:") && e.contains("`b`"), "{e}");
    }

    #[test]
    fn duplicate_names_and_missing_parts() {
        let e = errors("[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:2\"\n");
        assert!(
            e.contains("t.toml:4:1: socket name `a` is used twice"),
            "{e}"
        );
        assert!(e.contains("no program"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let overrides = Overrides {
            program: ProgramSettings {
                workers: Some(5),
                ready: Some(ReadyKind::Exec),
                ..ProgramSettings::default()
            },
            ..Overrides::default()
        };
        let c = parse_with(GOOD, overrides).unwrap();
        assert_eq!(c.program.workers, 5);
    }

    #[test]
    fn a_flag_socket_replaces_the_file_socket_where_it_stood() {
        let overrides = Overrides {
            sockets: vec![SocketSpec {
                name: "http".into(),
                listen: "tcp://127.0.0.1:9".parse().unwrap(),
                backlog: None,
                reuse_port: false,
                mode: None,
            }],
            ..Overrides::default()
        };
        let text = GOOD
            .replace("\"admin\"", "\"http\"")
            .replacen("\"http\"", "\"first\"", 1);
        let c = parse_with(&text, overrides).unwrap();
        let names: Vec<&str> = c.sockets.iter().map(|s| s.name.as_str()).collect();
        // Same place, so the same fd: the command's {fd:http} still holds.
        assert_eq!(names, ["first", "http"]);
        assert_eq!(c.sockets[1].listen.to_string(), "tcp://127.0.0.1:9");
    }

    #[test]
    fn env_entries_are_checked_where_they_stand() {
        let e = errors(
            "[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\"]\n[program.env]\nGOOD = \"1\"\n\"A=B\" = \"2\"\n\"\" = \"3\"\nC = \"c\\u0000d\"\n",
        );
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(
            lines[0].starts_with("t.toml:8:1: env: `A=B`: a variable name cannot contain `=`"),
            "{e}"
        );
        assert!(
            lines[1].starts_with("t.toml:9:1: env: a variable needs a name"),
            "{e}"
        );
        assert!(
            lines[2].starts_with("t.toml:10:1: env: `C`: the value contains a NUL byte"),
            "{e}"
        );
    }

    #[test]
    fn env_flags_are_checked_too() {
        let overrides = Overrides {
            program: ProgramSettings {
                env: [("X".to_string(), "a\0b".to_string())].into(),
                ..ProgramSettings::default()
            },
            ..Overrides::default()
        };
        let e = parse_with(GOOD, overrides).unwrap_err().to_string();
        assert!(
            e.starts_with("--env `X`: the value contains a NUL byte"),
            "{e}"
        );
    }

    #[test]
    fn env_size_is_capped_at_the_table() {
        // Each entry costs 2,000 bytes of value plus its name, NUL, `=` and
        // pointer: 1,100 of them are over 2 MiB.
        let value = "v".repeat(2000);
        let mut text = String::from("[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\"]\n[program.env]\n");
        for i in 0..1100 {
            text.push_str(&format!("V{i} = \"{value}\"\n"));
        }
        let e = errors(&text);
        assert!(e.starts_with("t.toml:6:1: env: 1100 variables take"), "{e}");
        assert!(e.contains(&MAX_ENV_BYTES.to_string()), "{e}");
        // One string past MAX_ARG_STRLEN is refused on its own line.
        let text = format!(
            "[[socket]]\nname = \"a\"\nlisten = \"tcp://127.0.0.1:1\"\n[program]\ncommand = [\"x\"]\nenv = {{ BIG = \"{}\" }}\n",
            "v".repeat(MAX_ENV_ENTRY)
        );
        let e = errors(&text);
        assert!(
            e.starts_with("t.toml:6:9: env: `BIG`: NAME=value is"),
            "{e}"
        );
    }

    #[test]
    fn located_errors_far_into_a_file() {
        let lines = file::Lines::for_test("t.toml", "a\nbc\n\ndef");
        let at = |o| {
            let l = lines.at(o);
            (l.line, l.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(1), (1, 2));
        assert_eq!(at(2), (2, 1));
        assert_eq!(at(5), (3, 1));
        assert_eq!(at(6), (4, 1));
        assert_eq!(at(8), (4, 3));
    }

    #[test]
    fn durations_and_signals() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("10").is_err());
        assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("SIGFOO").is_err());
    }
}
