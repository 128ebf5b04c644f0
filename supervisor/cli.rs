//! Command-line flags. Every `[program]` key of the config has a flag of the
//! same name (`ready_timeout` is `--ready-timeout`); flags win over the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nix::sys::signal::Signal;

use crate::config::{self, Overrides, ProgramSettings, ReadyKind, SighupAction, StrategyKind};
use crate::sockets::{self, Handover, ListenAddr, SocketSpec};

mod watch;
pub use watch::WatchArgs;

/// Each subcommand's examples, shown after its flags in `--help`.
const EXAMPLES: &str = "\
Examples:
  handoff run --listen http=tcp://127.0.0.1:8080 -- ./server --port-fd '{fd:http}'
  handoff run --config handoff.toml
  handoff check handoff.toml
  handoff status
  handoff restart
  handoff stop

`handoff COMMAND --help` shows each command's flags and examples.";

const RUN_EXAMPLES: &str = "\
Examples:
  # One socket, the server reads LISTEN_FDS (fd 3) or is given '{fd:http}':
  handoff run --listen http=tcp://127.0.0.1:8080 -- ./server
  # Four workers, replaced two at a time, each ready once it stayed up 2s:
  handoff run --listen http=tcp://0.0.0.0:80 --workers 4 --strategy rolling --batch 2 \\
      --ready delay --ready-delay 2s -- ./server
  # A config file, with a flag that overrides it (a --listen socket
  # replaces the file's socket of the same name):
  handoff run --config handoff.toml --listen http=tcp://127.0.0.1:9090";

const RESTART_EXAMPLES: &str = "\
Examples:
  handoff restart                    # the control socket by default
  handoff restart --config handoff.toml --drained
  handoff restart --timeout 2m || echo 'rolled back or timed out'";

const RELOAD_EXAMPLES: &str = "\
Examples:
  handoff reload --config handoff.toml
  handoff reload --drained";

const SCALE_EXAMPLES: &str = "\
Examples:
  handoff scale 8
  handoff scale 2 --control /run/handoff.sock";

const STATUS_EXAMPLES: &str = "\
Examples:
  handoff status
  handoff status --json | jq .generation
  HANDOFF_CONTROL=/run/handoff.sock handoff status";

const STOP_EXAMPLES: &str = "\
Examples:
  handoff stop
  handoff stop --config handoff.toml --timeout 1m";

const UPGRADE_EXAMPLES: &str = "\
Examples:
  cargo install --path . && handoff upgrade";

const SIGNAL_EXAMPLES: &str = "\
Examples:
  handoff signal USR1                  # reopen logs: the ready workers
  handoff signal SIGUSR1 --generation 3  # generation 3's, draining ones too
  handoff signal TTIN --json | jq '.workers[].pid'";

const CHECK_EXAMPLES: &str = "\
Examples:
  handoff check handoff.toml
  handoff check --config handoff.toml
  # A config for another machine, whose server is not installed here:
  handoff check --skip-program-check config/systemd/example.toml";

#[derive(Debug, Parser)]
#[command(
    name = "handoff",
    version,
    about = "A graceful-restart supervisor: handoff holds a server's listening sockets and restarts it by overlapping old and new generations, so no connection is refused.",
    after_help = EXAMPLES
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
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Start a new generation; exit 0 once it is ready, 1 if it was rolled back.
    #[command(after_help = RESTART_EXAMPLES)]
    Restart {
        #[command(flatten)]
        target: Target,
        /// Answer only once the old workers have exited, too.
        #[arg(long)]
        drained: bool,
    },
    /// Re-read the config file and start a new generation with it; an
    /// invalid file changes nothing (exit 3).
    #[command(after_help = RELOAD_EXAMPLES)]
    Reload {
        #[command(flatten)]
        target: Target,
        /// Answer only once the old workers have exited, too.
        #[arg(long)]
        drained: bool,
    },
    /// Change the number of workers now; removed workers drain.
    #[command(after_help = SCALE_EXAMPLES)]
    Scale {
        /// The new number of workers.
        workers: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Show the generation, upgrades, sockets and workers.
    #[command(after_help = STATUS_EXAMPLES)]
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the protocol's answer, as JSON (a stable format, see the README).
        #[arg(long)]
        json: bool,
    },
    /// Stop gracefully: drain every worker, close the sockets, exit.
    #[command(after_help = STOP_EXAMPLES)]
    Stop(Target),
    /// Replace the running supervisor with the handoff binary now on disk,
    /// keeping its sockets and children; exit 1 if the new one refused.
    #[command(after_help = UPGRADE_EXAMPLES)]
    Upgrade(Target),
    /// Send a signal to the serving workers (their ready workers; not the
    /// draining or starting ones) and print the pids it reached.
    #[command(after_help = SIGNAL_EXAMPLES)]
    Signal(SignalArgs),
    /// (internal) The new binary's side of an upgrade.
    #[command(name = "__resume", hide = true)]
    Resume {
        /// Only check that the state can be taken over.
        #[arg(long)]
        check: bool,
        state: PathBuf,
    },
    /// Validate a config file and exit: 0 if valid, 3 with every error if not.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
}

/// `handoff signal SIG [--generation N] [--group] [--json]`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// The signal: SIGUSR1, USR1, usr1 or its number (10). SIGSTOP is
    /// refused: a stopped worker holds its connections.
    #[arg(value_name = "SIGNAL", value_parser = parse_user_signal)]
    pub signal: Signal,
    /// Every ready or draining worker of this generation instead (see
    /// `handoff status`).
    #[arg(long, value_name = "N")]
    pub generation: Option<u64>,
    /// To each worker's process group, not only its pid: for a server
    /// whose own children do not hear from it (a shell script's).
    #[arg(long)]
    pub group: bool,
    /// Print the protocol's answer, as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

/// A signal by name (as in the config) or number, that handoff will send.
fn parse_user_signal(s: &str) -> Result<Signal, String> {
    let signal = match s.parse::<i32>() {
        Ok(n) => Signal::try_from(n).map_err(|_| format!("{n} is not a signal number"))?,
        Err(_) => config::parse_signal(s)?,
    };
    crate::core::signal::sendable(signal)?;
    Ok(signal)
}

/// `handoff check FILE` or `handoff check --config FILE`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file to check.
    #[arg(
        value_name = "FILE",
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub file: Option<PathBuf>,
    /// The same, spelled as `run` takes it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Do not look the program up: for a config written for another
    /// machine, where the server is installed but not here yet.
    #[arg(long)]
    pub skip_program_check: bool,
}

impl CheckArgs {
    pub fn file(&self) -> &Path {
        self.file
            .as_deref()
            .or(self.config.as_deref())
            .expect("clap requires FILE or --config")
    }
}

/// The variables that stand for flags. Set but empty, they mean unset, as
/// a shell's `HANDOFF_CONTROL= handoff status` intends; clap would take an
/// empty one as a flag given without its value.
const FLAG_VARIABLES: &[&str] = &["HANDOFF_CONTROL", "HANDOFF_LOG"];

/// Removes the empty [`FLAG_VARIABLES`] before the flags are parsed. Called
/// first thing in `main`, while the process has one thread (the
/// environment is not safe to change once others may read it).
pub fn unset_empty_env() {
    for var in FLAG_VARIABLES {
        if std::env::var_os(var).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(var);
        }
    }
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
    /// How long to wait for the supervisor's answer, e.g. 30s or 20m; 0:
    /// as long as it takes. Past it, exit 7. [default: 10s for status and
    /// scale, 15m for restart, reload, stop and upgrade]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (TOML). Flags given as well override it; a
    /// --listen socket replaces the file's socket of the same name.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where to create the control socket. [default: the config's
    /// `control`, then $XDG_RUNTIME_DIR/handoff.sock, /run/handoff.sock for
    /// root, /tmp/handoff-UID.sock otherwise]
    #[arg(long, env = "HANDOFF_CONTROL")]
    pub control: Option<PathBuf>,
    /// A socket to listen on: NAME=tcp://HOST:PORT, NAME=udp://HOST:PORT or
    /// NAME=unix:///path. Repeat for more; fds follow this order.
    #[arg(long = "listen", value_name = "NAME=ADDRESS", value_parser = parse_listen)]
    pub listen: Vec<SocketSpec>,
    /// Listen backlog for the --listen sockets. [default: net.core.somaxconn]
    #[arg(long)]
    pub backlog: Option<u32>,
    /// Set SO_REUSEPORT on the --listen sockets.
    #[arg(long)]
    pub reuse_port: bool,
    /// File mode of the --listen unix sockets, in octal (e.g. 0660).
    /// [default: as the umask leaves it]
    #[arg(long, value_parser = config::parse_octal_mode)]
    pub mode: Option<u32>,
    /// How a restart hands the sockets over to the new generation (the
    /// config file's top-level `handover`): for every socket without a
    /// `handover` of its own, --listen's and the file's; a `[[socket]]`'s
    /// own `handover` wins over this flag. Unix sockets and reuse_port
    /// sockets are always shared. [default: steer where it works]
    #[arg(long, value_enum)]
    pub handover: Option<Handover>,
    /// Number of worker processes sharing the sockets. [default: 1]
    #[arg(long)]
    pub workers: Option<usize>,
    /// How a restart replaces the workers. [default: all-at-once]
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyKind>,
    /// With --strategy rolling: how many workers to replace at a time.
    /// [default: 1]
    #[arg(long)]
    pub batch: Option<usize>,
    /// What SIGHUP does: restart, or reload (re-read --config first).
    /// [default: restart]
    #[arg(long, value_enum)]
    pub sighup: Option<SighupAction>,
    /// Hand the sockets to systemd's fd store, so a crash of handoff loses none.
    #[arg(long)]
    pub fdstore: bool,
    /// How a new child proves it is ready: it sends READY=1 (notify), a
    /// probe exits 0 (exec), it stays alive --ready-delay (delay), or,
    /// with --preload, it listens on its socket (listen). [default: notify]
    #[arg(long, value_enum)]
    pub ready: Option<ReadyKind>,
    /// With --ready exec: the probe, run with `sh -c`, until it exits 0.
    #[arg(long)]
    pub ready_command: Option<String>,
    /// With --ready delay: how long the child must stay alive. [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub ready_delay: Option<Duration>,
    /// With --ready exec: how often to run the probe. [default: 200ms]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub ready_interval: Option<Duration>,
    /// How long a new child has to become ready. [default: 30s; 5min with
    /// --watch]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub ready_timeout: Option<Duration>,
    /// How long a restart's new workers must stay up once ready before
    /// the old ones drain; one that dies sooner fails the restart (0
    /// commits at once). [default: 250ms]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub min_ready_time: Option<Duration>,
    /// With a steered socket: once the new generation takes the new
    /// connections, how long the old generation's socket must have had
    /// an empty accept queue before the old generation is told to stop.
    /// At most --handover-timeout. [default: 100ms]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub handover_settle: Option<Duration>,
    /// With a steered socket: the longest a restart waits for the old
    /// generation's queue to stay empty for --handover-settle; past it the
    /// old generation is told to stop anyway. [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub handover_timeout: Option<Duration>,
    /// Give the child no LISTEN_FDS, LISTEN_FDNAMES or LISTEN_PID: for a
    /// server that takes its sockets by `{fd:NAME}` alone and would take
    /// them a second time from the variables (`gunicorn --bind
    /// fd://{fd:http}`).
    #[arg(long)]
    pub no_listen_env: bool,
    /// Which process may take the sockets: the child (LISTEN_PID is its
    /// pid), or any it starts (no LISTEN_PID: for a wrapper that does not
    /// exec the server, such as `cargo run`, `npm start` or a shell
    /// script; the server's library must accept a missing LISTEN_PID, as
    /// Rust's listenfd does). [default: child; any with --watch]
    #[arg(long, value_enum)]
    pub listen_pid: Option<config::ListenPid>,
    /// Hand the sockets over with O_NONBLOCK set (tokio servers want them
    /// so: a blocking listener makes tokio panic in debug builds).
    #[arg(long)]
    pub sockets_nonblocking: bool,
    /// Put handoff's preload library in the child's LD_PRELOAD: a server
    /// that binds its own port (it knows nothing of LISTEN_FDS) gets the
    /// socket handoff holds instead. Not for static or Go programs.
    #[arg(long)]
    pub preload: bool,
    /// Run the children as this user (a name or a uid), with its groups;
    /// handoff itself must then run as root: it binds the sockets (port
    /// 443 too), its control socket stays its own. [default: handoff's user]
    #[arg(long, value_name = "USER", value_parser = config::Id::parse)]
    pub user: Option<config::Id>,
    /// The children's group (a name or a gid). [default: the user's
    /// primary group]
    #[arg(long, value_name = "GROUP", value_parser = config::Id::parse)]
    pub group: Option<config::Id>,
    /// The children's umask, in octal, e.g. 027. [default: handoff's]
    #[arg(long, value_name = "OCTAL", value_parser = config::parse_umask)]
    pub umask: Option<u32>,
    /// A file of KEY=VALUE lines for the children, read again on every
    /// reload; its values override --env's.
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// Start the children from an empty environment (plus --env,
    /// --env-file and the protocol's variables), not handoff's.
    #[arg(long)]
    pub clear_env: bool,
    /// The signal that asks a child to drain and exit. [default: SIGTERM]
    #[arg(long, value_name = "SIGNAL", value_parser = config::parse_signal)]
    pub stop_signal: Option<Signal>,
    /// How long a draining child has before SIGKILL. [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// First delay before respawning a dead child; it doubles each time.
    /// [default: 100ms]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub respawn_backoff: Option<Duration>,
    /// Cap on the respawn delay. [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub respawn_backoff_max: Option<Duration>,
    /// An environment variable for the child, KEY=VALUE. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// The child's working directory. [default: handoff's]
    #[arg(long)]
    pub working_directory: Option<PathBuf>,
    #[command(flatten)]
    pub watch: WatchArgs,
    /// The server's command line.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

// The flags' parsers and checks return messages (`String`): clap shows
// them under the flag (or `main` prints them) and nothing branches on them.
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
        handover: None,
        options: Default::default(),
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
            handover: self.handover,
            watch: self.watch.settings(),
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
                handover_settle: self.handover_settle,
                handover_timeout: self.handover_timeout,
                listen_env: self.no_listen_env.then_some(false),
                listen_pid: self.listen_pid,
                sockets_nonblocking: self.sockets_nonblocking.then_some(true),
                preload: self.preload.then_some(true),
                user: self.user.clone(),
                group: self.group.clone(),
                supplementary_groups: None,
                umask: self.umask,
                rlimits: None,
                // Absolute: a reload reads it again, and the same file
                // must be meant whatever the cwd then.
                env_file: self
                    .env_file
                    .as_ref()
                    .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone())),
                clear_env: self.clear_env.then_some(true),
                // A file setting only: no flag.
                respawn_limit: None,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::{Cli, Command};
    use crate::config::ListenPid;
    use crate::sockets::Handover;

    /// The overrides `handoff run FLAGS -- x` makes.
    fn run_flags(flags: &[&str]) -> crate::config::Overrides {
        let args = ["handoff", "run"].iter().chain(flags).chain(&["--", "x"]);
        match Cli::try_parse_from(args) {
            Ok(Cli {
                command: Command::Run(run),
                ..
            }) => run.overrides().expect("valid flags"),
            Ok(other) => panic!("not run: {other:?}"),
            Err(e) => panic!("{flags:?}: {e}"),
        }
    }

    #[test]
    fn the_handover_flags_become_overrides() {
        let o = run_flags(&[
            "--handover",
            "shared",
            "--handover-settle",
            "50ms",
            "--handover-timeout",
            "2s",
        ]);
        assert_eq!(o.handover, Some(Handover::Shared));
        assert_eq!(o.program.handover_settle, Some(Duration::from_millis(50)));
        assert_eq!(o.program.handover_timeout, Some(Duration::from_secs(2)));
        let o = run_flags(&[]);
        assert_eq!(o.handover, None);
        assert_eq!(o.program.handover_settle, None);
        let bad = Cli::try_parse_from(["handoff", "run", "--handover", "steered"])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("[possible values: steer, shared]"), "{bad}");
    }

    #[test]
    fn the_protocol_flags_become_overrides() {
        let o = run_flags(&["--no-listen-env", "--sockets-nonblocking"]);
        assert_eq!(o.program.listen_env, Some(false));
        assert_eq!(o.program.listen_pid, None);
        assert_eq!(o.program.sockets_nonblocking, Some(true));
        let o = run_flags(&["--listen-pid", "any"]);
        assert_eq!(o.program.listen_pid, Some(ListenPid::Any));
        // Not given: unset, so that the file's value stands.
        assert_eq!(o.program.listen_env, None);
        assert_eq!(o.program.sockets_nonblocking, None);
        let bad = Cli::try_parse_from(["handoff", "run", "--listen-pid", "parent"])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("[possible values: child, any]"), "{bad}");
    }
}
