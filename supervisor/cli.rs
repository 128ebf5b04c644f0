//! Command-line flags. Every `[program]` key of the config has a flag of the
//! same name (`ready_timeout` is `--ready-timeout`); flags win over the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nix::sys::signal::Signal;

use crate::config::{self, Overrides, ProgramSettings, ReadyKind, SighupAction, StrategyKind};
use crate::sockets::{self, ListenAddr, SocketSpec};

#[derive(Debug, Parser)]
#[command(
    name = "handoff",
    version,
    about = "Restart a server without refusing a connection: handoff holds its listening sockets and overlaps old and new generations."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, global = true, env = "HANDOFF_LOG", default_value = "info")]
    pub log_level: tracing::Level,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bind the sockets and run the server under supervision.
    Run(Box<RunArgs>),
    /// Start a new generation; exit 0 once it is ready, 1 if it was rolled back.
    Restart {
        #[command(flatten)]
        target: Target,
        /// Answer only once the old workers have exited, too.
        #[arg(long)]
        drained: bool,
    },
    /// Re-read the config file and start a new generation with it; an
    /// invalid file changes nothing (exit 3).
    Reload {
        #[command(flatten)]
        target: Target,
        /// Answer only once the old workers have exited, too.
        #[arg(long)]
        drained: bool,
    },
    /// Change the number of workers now; removed workers drain.
    Scale {
        /// The new number of workers.
        workers: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Show sockets and workers.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the status as JSON (a stable format, see the README).
        #[arg(long)]
        json: bool,
    },
    /// Stop gracefully: drain every worker, close the sockets, exit.
    Stop(Target),
    /// Replace the running supervisor with the handoff binary now on disk,
    /// keeping its sockets and children; exit 1 if the new one refused.
    Upgrade(Target),
    /// (internal) The new binary's side of an upgrade.
    #[command(name = "__resume", hide = true)]
    Resume {
        /// Only check that the state can be taken over.
        #[arg(long)]
        check: bool,
        state: PathBuf,
    },
    /// Validate a config file and exit: 0 if valid, 3 with every error if not.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the completion script for a shell, e.g.
    /// `handoff completions bash > /etc/bash_completion.d/handoff`.
    Completions { shell: crate::completions::Shell },
    /// Print the man page (roff), e.g.
    /// `handoff man > /usr/local/share/man/man1/handoff.1`.
    Man,
}

/// How a client command finds the supervisor.
#[derive(Debug, Args)]
pub struct Target {
    /// The control socket; default: HANDOFF_CONTROL, then the config's
    /// `control`, then $XDG_RUNTIME_DIR/handoff.sock (or /run/handoff.sock
    /// for root, /tmp/handoff-UID.sock otherwise).
    #[arg(long, env = "HANDOFF_CONTROL")]
    pub control: Option<PathBuf>,
    /// A config file whose `control` to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// How long to wait for the supervisor's answer, e.g. 30s or 20m
    /// (default: 10s for status and scale, 15m for restart, reload, stop
    /// and upgrade); 0: as long as it takes. Past it, exit 7.
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (TOML). Flags given as well override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where to create the control socket (see `handoff status --help`).
    #[arg(long, env = "HANDOFF_CONTROL")]
    pub control: Option<PathBuf>,
    /// A socket to listen on: NAME=tcp://HOST:PORT, NAME=udp://HOST:PORT or
    /// NAME=unix:///path. Repeat for more; fds follow this order.
    #[arg(long = "listen", value_name = "NAME=ADDRESS", value_parser = parse_listen)]
    pub listen: Vec<SocketSpec>,
    /// Listen backlog for the --listen sockets (default: net.core.somaxconn).
    #[arg(long)]
    pub backlog: Option<u32>,
    /// Set SO_REUSEPORT on the --listen sockets.
    #[arg(long)]
    pub reuse_port: bool,
    /// File mode of the --listen unix sockets, in octal (e.g. 0660).
    #[arg(long, value_parser = config::parse_octal_mode)]
    pub mode: Option<u32>,
    /// Number of worker processes sharing the sockets.
    #[arg(long)]
    pub workers: Option<usize>,
    /// How a restart replaces the workers (default all-at-once).
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyKind>,
    /// With --strategy rolling: how many workers to replace at a time (default 1).
    #[arg(long)]
    pub batch: Option<usize>,
    /// What SIGHUP does: restart, or reload (re-read --config first).
    #[arg(long, value_enum)]
    pub sighup: Option<SighupAction>,
    /// Hand the sockets to systemd's fd store, so a crash of handoff loses none.
    #[arg(long)]
    pub fdstore: bool,
    /// How a new child proves it is ready.
    #[arg(long, value_enum)]
    pub ready: Option<ReadyKind>,
    /// With --ready exec: the probe, run with `sh -c`, until it exits 0.
    #[arg(long)]
    pub ready_command: Option<String>,
    /// With --ready delay: how long the child must stay alive.
    #[arg(long, value_parser = config::parse_duration)]
    pub ready_delay: Option<Duration>,
    /// With --ready exec: how often to run the probe.
    #[arg(long, value_parser = config::parse_duration)]
    pub ready_interval: Option<Duration>,
    /// How long a new child has to become ready (default 30s).
    #[arg(long, value_parser = config::parse_duration)]
    pub ready_timeout: Option<Duration>,
    /// How long a restart's new workers must stay up once ready before
    /// the old ones drain; one that dies sooner fails the restart
    /// (default 250ms; 0 commits at once).
    #[arg(long, value_parser = config::parse_duration)]
    pub min_ready_time: Option<Duration>,
    /// The signal that asks a child to drain and exit (default SIGTERM).
    #[arg(long, value_parser = config::parse_signal)]
    pub stop_signal: Option<Signal>,
    /// How long a draining child has before SIGKILL (default 30s).
    #[arg(long, value_parser = config::parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// First delay before respawning a dead child (default 100ms); doubles.
    #[arg(long, value_parser = config::parse_duration)]
    pub respawn_backoff: Option<Duration>,
    /// Cap on the respawn delay (default 30s).
    #[arg(long, value_parser = config::parse_duration)]
    pub respawn_backoff_max: Option<Duration>,
    /// An environment variable for the child, KEY=VALUE. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// The child's working directory.
    #[arg(long)]
    pub working_directory: Option<PathBuf>,
    /// The server's command line.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

fn parse_listen(s: &str) -> Result<SocketSpec, String> {
    let (name, addr) = s
        .split_once('=')
        .filter(|(name, _)| !name.contains("://"))
        .ok_or_else(|| {
            format!("`{s}` needs a name: NAME=ADDRESS, e.g. http=tcp://127.0.0.1:8080")
        })?;
    sockets::validate_name(name)?;
    let listen: ListenAddr = addr
        .parse()
        .map_err(|e: sockets::AddrError| e.to_string())?;
    Ok(SocketSpec {
        name: name.to_string(),
        listen,
        backlog: None,
        reuse_port: false,
        mode: None,
    })
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

impl RunArgs {
    /// The flags' share of the configuration.
    pub fn overrides(&self) -> Result<Overrides, String> {
        let mut sockets = self.listen.clone();
        for s in &mut sockets {
            s.backlog = self.backlog;
            s.reuse_port = self.reuse_port;
            if self.mode.is_some() {
                if !matches!(s.listen, ListenAddr::Unix(_)) {
                    return Err(format!(
                        "--mode applies to unix:// sockets, and `{}` is {}",
                        s.name, s.listen
                    ));
                }
                s.mode = self.mode;
            }
        }
        if let Some(0) = self.workers {
            return Err("--workers must be at least 1".into());
        }
        if let Some(0) = self.batch {
            return Err("--batch must be at least 1".into());
        }
        Ok(Overrides {
            control: self.control.clone(),
            sighup: self.sighup,
            fdstore: self.fdstore.then_some(true),
            sockets,
            program: ProgramSettings {
                command: (!self.command.is_empty()).then(|| self.command.clone()),
                env: self.env.iter().cloned().collect(),
                working_directory: self.working_directory.clone(),
                ready: self.ready,
                ready_command: self
                    .ready_command
                    .as_ref()
                    .map(|c| vec!["/bin/sh".to_string(), "-c".to_string(), c.clone()]),
                ready_delay: self.ready_delay,
                ready_interval: self.ready_interval,
                ready_timeout: self.ready_timeout,
                min_ready_time: self.min_ready_time,
                stop_signal: self.stop_signal,
                drain_timeout: self.drain_timeout,
                respawn_backoff: self.respawn_backoff,
                respawn_backoff_max: self.respawn_backoff_max,
                workers: self.workers,
                strategy: self.strategy,
                batch: self.batch,
            },
        })
    }
}

/// The control socket when nothing names one.
pub fn default_control_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| Path::new(d).is_dir()) {
        return Path::new(&dir).join("handoff.sock");
    }
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        PathBuf::from("/run/handoff.sock")
    } else {
        PathBuf::from(format!("/tmp/handoff-{uid}.sock"))
    }
}
