//! `handoff run`'s flags, and the share of the configuration they make
//! ([`Overrides`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use nix::sys::signal::Signal;

use super::WatchArgs;
use crate::config::{self, Overrides, ProgramSettings, ReadyKind, SighupAction, StrategyKind};
use crate::sockets::{self, Handover, ListenAddr, SocketSpec};

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
    /// How long a new child has to become ready (5min by default with
    /// --watch: the build counts). [default: 30s]
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
    /// Rust's listenfd does; any is the default with --watch). [default:
    /// child]
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
