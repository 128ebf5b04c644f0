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
//! The design notes the code relies on (the protocol, why the sockets are
//! shared and held, why a TCP probe proves nothing) are in
//! `docs/design.md`. The modules, from the leaves up:
//!
//! - `config` (`config/`: `file.rs` the TOML with positions, read by hand
//!   every mistake in one pass, `values.rs`, `program.rs`, `merge.rs`), `cli`:
//!   the file and the flags, validated into typed values with file:line
//!   errors; `completions` are generated from them.
//! - `sockets`: binds what the config asks for and holds it. A shared
//!   socket (unix, or `handover = "shared"`) is one kernel socket for every
//!   generation: an old child closing its copy loses nothing that waits in
//!   the queue. A steered one gets a socket per generation in one
//!   SO_REUSEPORT group (`sibling`), and leaves the group when its
//!   generation is gone.
//! - `spawn` and `template`: start a child with fds 3.. and the protocol
//!   variables, with `LISTEN_PID` filled in by the child itself just
//!   before exec; `program_path` finds the program as execvp would,
//!   before the fork (also used by `config` to check it); `notify`: one
//!   datagram socket per child for READY=1 and STATUS=.
//! - `preload` (`preload/`: the library's own source, built by
//!   `supervisor/build.rs` and embedded): `preload = true`, for a server
//!   that binds its own port; `program_kind` tells from the program's file
//!   whether LD_PRELOAD can reach it (not a static or Go binary).
//! - `signals`, `runtime_dir`, `logging`, `sys`, `groups`: run-time pieces
//!   (the signals handoff acts on; its private 0700 directory; its own log
//!   through a bounded buffer, so a closed stderr neither kills nor stalls
//!   it; the raw syscalls no crate wraps; the process groups a worker left
//!   behind); `reaper`: the orphans a server leaves, which come to handoff
//!   as a subreaper or a container's init, reaped without touching a child
//!   someone else waits for.
//! - `core`: the supervisor's state and every decision (restart batches,
//!   rollback, coalescing, respawn with backoff, scale, reload, stop, the
//!   phases of an upgrade, which generation's socket gets new connections
//!   and when an old one is quiet enough to stop), as a state machine that asks an `Effects`
//!   implementation to launch, signal, arm timers and answer. It does no
//!   I/O, so its decisions are unit-tested with a fake.
//! - `engine`: the core joined to the world: the executor that carries out
//!   its effects (processes, signals, tokio timers), the tasks that watch
//!   each worker, the status report, reload's reading of the file.
//! - `control` and `protocol`: the control socket and its JSON-lines
//!   protocol, which `handoff restart/status/stop` speak (`client`).
//! - `steer`: per-generation sockets in one SO_REUSEPORT group: the
//!   group's order as the kernel keeps it, the classic BPF programs that
//!   steer new connections, a listener's accept-queue length, whether the
//!   kernel migrates a closing listener's queue.
//! - `systemd`: adopting sockets passed in LISTEN_FDS, and sd_notify to
//!   the service manager (READY, STATUS, RELOADING, STOPPING, WATCHDOG, the
//!   fd store).
//! - `upgrade`: replacing the supervisor with a new
//!   binary in place: the state as data, the new binary's check of it,
//!   the hand-over and exec, the take-over.
//! - `file_watch`: development mode's `--watch`: inotify watches on the
//!   project, the changes that do not count (git's ignores, build output,
//!   editors' swap files), gathered until quiet into one restart.
//! - `boot`: starting a supervisor, fresh or after an upgrade, and the event
//!   loop; depended on by nothing but `main`.

pub mod boot;
pub mod cli;
pub mod client;
pub mod completions;
pub mod config;
pub mod control;
pub mod core;
pub mod engine;
pub mod exit;
pub mod file_watch;
pub mod groups;
pub mod logging;
pub mod notify;
pub mod preload;
pub mod program_kind;
pub mod program_path;
pub mod protocol;
pub mod reaper;
pub mod runtime_dir;
pub mod signals;
pub mod sockets;
pub mod spawn;
pub mod steer;
pub mod sys;
pub mod systemd;
pub mod template;
pub mod upgrade;

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
