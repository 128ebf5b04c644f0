//! Command-line flags. Every `[program]` key of the config has a flag of the
//! same name (`ready_timeout` is `--ready-timeout`); flags win over the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nix::sys::signal::Signal;

use crate::config;

mod run;
mod watch;
pub use run::RunArgs;
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
