//! # handoff: restart a server without refusing a connection
//!
//! handoff binds a server's listening sockets itself and runs the server as
//! its child, handing the sockets down by fd inheritance with the systemd
//! socket-activation protocol (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID,
//! NOTIFY_SOCKET). To restart, it starts the next generation of the server
//! on the *same* kernel sockets, waits until that generation says it is
//! ready, and only then tells the old one to drain. The sockets never close,
//! so no client is refused; a new generation that fails is killed and the
//! old one keeps serving.
//!
//! ## Theory of operation
//!
//! - `sockets`: binds what the config asks for and holds it for the life of
//!   the supervisor. One kernel socket means one accept queue: an old child
//!   closing its copy loses nothing that waits in the queue.
//! - `spawn`: starts a child with fds 3.. and the protocol variables, with
//!   `LISTEN_PID` filled in by the child itself just before exec.
//!   `program_path`: finding the program as execvp would, before the fork
//!   (also used by `config` to check it).
//! - `notify`: one datagram socket per child for READY=1 and STATUS=.
//! - `runtime_dir`: the private (0700) directory of those sockets, and
//!   the clean-up of those a killed supervisor left.
//! - `worker`: one child and the tasks that watch it (exit, notify socket,
//!   readiness probe, deadlines). They only report events.
//! - `startup`: signals, control socket, sockets (adopted or bound), the
//!   first generation; then the loop.
//! - `supervisor`: the single event loop that owns all state; `children`:
//!   what happens to a worker (ready, timeouts, exit, respawn with backoff);
//!   `status`: the status report.
//! - `rollout`: restarts: start, wait for ready, commit or roll back, all at
//!   once or in rolling batches.
//! - `reconfigure`: `scale` and `reload` of a running supervisor.
//! - `control` and `protocol`: the control socket and its JSON-lines
//!   protocol, which `handoff restart/status/stop` speak.
//! - `config` (`config/`: `file.rs` the TOML with positions, `recover.rs`
//!   going on past a mistake, `values.rs`, `program.rs`, `merge.rs`), `cli`:
//!   the file and the flags, validated into typed values with file:line
//!   errors.
//!   `completions`: the shell completions and man page generated from them.
//! - `systemd`: adopting sockets passed in LISTEN_FDS, and sd_notify to
//!   the service manager (READY, STATUS, RELOADING, STOPPING, WATCHDOG, the
//!   fd store).
//! - `upgrade`: replacing the supervisor with a new binary in place
//!   (snapshot, check, exec with the fds kept, resume).
//! - `logging`: handoff's own log on stderr, through a small bounded
//!   buffer and a writer thread, so that a stderr that is closed or that
//!   nobody reads neither kills nor stalls the supervisor.
//! - `sys`: the raw syscalls no crate wraps.

pub mod children;
pub mod cli;
pub mod client;
pub mod completions;
pub mod config;
pub mod control;
pub mod exit;
pub mod groups;
pub mod logging;
pub mod notify;
pub mod program_path;
pub mod protocol;
pub mod reconfigure;
pub mod rollout;
pub mod runtime_dir;
pub mod sockets;
pub mod spawn;
pub mod startup;
pub mod status;
pub mod supervisor;
pub mod sys;
pub mod systemd;
pub mod template;
pub mod upgrade;
pub mod worker;

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

/// "exited with code 3", "was killed by SIGKILL".
pub fn describe_exit(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(sig) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(s) => format!("was killed by {s}"),
            Err(_) => format!("was killed by signal {sig}"),
        },
        None => format!("ended ({status})"),
    }
}

/// A duration for a log line: "212 ms", "30 s", "1.5 s".
pub fn ms(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 {
        format!("{ms} ms")
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
