//! The client commands: `restart`, `status`, `stop`, `signal`, ... Each sends one request
//! on the control socket, prints the answer, and maps it to an exit code.
//!
//! Output never panics: `println!` panics when stdout is gone (`handoff
//! status | head -0`: EPIPE). What cannot be written is dropped, and the
//! command ends as it would have: the exit code says what the supervisor
//! did, because that is what a script acts on. A restart whose report
//! could not be printed still happened; a non-zero exit would make a
//! `set -o pipefail` script retry it. (`cat` would die of SIGPIPE there;
//! Rust ignores SIGPIPE, so the choice is ours.)

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{default_control_path, Target};
use crate::config::{self, Overrides};
use crate::control::{self, ClientError};
use crate::exit::Exit;
use crate::protocol::{ErrorKind, Request, Response, Status};

/// How long `stop` waits for the supervisor process to be gone after it
/// said it stopped (it only has to return from main by then).
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// The default --timeout of `status` and `scale`, answered at once by a
/// supervisor that works.
const QUICK: Duration = Duration::from_secs(10);

/// The default --timeout of `restart`, `reload`, `stop` and `upgrade`,
/// which answer when the work is done: a restart can take the config's
/// ready_timeout (30 s by default) per batch of a rolling restart, plus
/// drain_timeout with --drained; a stop takes the drain. Generous, so that
/// only a supervisor that is stuck hits it.
const LONG: Duration = Duration::from_secs(15 * 60);

/// Prints to stdout; a closed stdout is not an error (see the module doc).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// Prints a line to stderr, or nothing if stderr is gone.
macro_rules! complain {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), "handoff: {}", format_args!($($arg)*));
    }};
}

/// Which control socket a client talks to: --control, HANDOFF_CONTROL
/// (both in `target.control`), the config's `control`, the default.
pub fn control_path(target: &Target) -> Result<PathBuf, Exit> {
    if let Some(path) = &target.control {
        return Ok(path.clone());
    }
    if let Some(file) = &target.config {
        match config::load(Some(file), Overrides::default()) {
            Ok(c) => return Ok(c.control.unwrap_or_else(default_control_path)),
            Err(errors) => {
                for e in errors.0 {
                    complain!("{e}");
                }
                return Err(Exit::Config);
            }
        }
    }
    Ok(default_control_path())
}

/// Sends `request` and waits for the answer, for --timeout or `default`.
fn ask(target: &Target, request: Request, default: Duration) -> Result<Response, Exit> {
    let path = control_path(target)?;
    let limit = match target.timeout {
        Some(Duration::ZERO) => None,
        Some(limit) => Some(limit),
        None => Some(default),
    };
    control::call_within(&path, &request, limit).map_err(|e| {
        complain!("{e}");
        match e {
            ClientError::Unreachable { .. } | ClientError::Foreign { .. } => Exit::Unreachable,
            ClientError::TimedOut { .. } => Exit::TimedOut,
            _ => Exit::Refused,
        }
    })
}

/// An answer that is an error, printed, as an exit code.
fn refused(response: Response) -> Exit {
    match response {
        Response::Error { kind, message } => {
            complain!("{message}");
            match kind {
                ErrorKind::RestartFailed | ErrorKind::UpgradeFailed => Exit::RestartFailed,
                ErrorKind::ConfigInvalid => Exit::Config,
                ErrorKind::ShuttingDown | ErrorKind::BadRequest | ErrorKind::Busy => Exit::Refused,
                ErrorKind::NoWorkers => Exit::NoWorkers,
                ErrorKind::NotServing => Exit::NotServing,
            }
        }
        other => {
            complain!("unexpected answer: {other:?}");
            Exit::Refused
        }
    }
}

pub fn restart(target: &Target, drained: bool) -> Exit {
    restarted(ask(target, Request::Restart { drained }, LONG))
}

pub fn reload(target: &Target, drained: bool) -> Exit {
    restarted(ask(target, Request::Reload { drained }, LONG))
}

fn restarted(answer: Result<Response, Exit>) -> Exit {
    match answer {
        Ok(Response::Restarted(r)) => {
            say!("generation {} ready in {} ms", r.generation, r.ready_ms);
            match r.drained_ms {
                Some(ms) => say!("; old workers gone after {ms} ms\n"),
                None => say!("\n"),
            }
            Exit::Ok
        }
        Ok(other) => refused(other),
        Err(exit) => exit,
    }
}

pub fn upgrade(target: &Target) -> Exit {
    match ask(target, Request::Upgrade {}, LONG) {
        Ok(Response::Upgraded {
            version,
            from_version,
            pid,
            upgrades,
        }) => {
            say!(
                "upgraded from handoff {from_version} to {version} (pid {pid}, upgrade {upgrades})\n"
            );
            Exit::Ok
        }
        Ok(other) => refused(other),
        Err(exit) => exit,
    }
}

pub fn scale(target: &Target, workers: usize) -> Exit {
    match ask(target, Request::Scale { workers }, QUICK) {
        Ok(Response::Scaled { workers }) => {
            say!("scaled to {workers} worker(s)\n");
            Exit::Ok
        }
        Ok(other) => refused(other),
        Err(exit) => exit,
    }
}

pub fn stop(target: &Target) -> Exit {
    match ask(target, Request::Stop {}, LONG) {
        Ok(Response::Stopped { pid }) => {
            if let Ok(false) = crate::sys::wait_for_exit(pid, EXIT_WAIT) {
                complain!("the supervisor (pid {pid}) said it stopped but has not exited yet");
                return Exit::Refused;
            }
            say!("stopped handoff (pid {pid})\n");
            Exit::Ok
        }
        Ok(other) => refused(other),
        Err(exit) => exit,
    }
}

/// `handoff signal SIG [--generation N] [--group]`: prints the pids the
/// signal reached (or the answer, with --json).
pub fn signal(target: &Target, args: &crate::cli::SignalArgs) -> Exit {
    let request = Request::Signal {
        signal: args.signal.as_str().to_string(),
        generation: args.generation,
        group: args.group,
    };
    match ask(target, request, QUICK) {
        Ok(answer @ Response::Signalled { .. }) if args.json => {
            say!(
                "{}\n",
                serde_json::to_string_pretty(&answer).expect("protocol types always serialize")
            );
            signalled_exit(&answer)
        }
        Ok(answer @ Response::Signalled { .. }) => {
            if let Response::Signalled {
                signal,
                group,
                workers,
                failed,
            } = &answer
            {
                let to = if *group { "process group of " } else { "" };
                for w in workers {
                    say!(
                        "{signal} sent to {to}pid {} (generation {}, slot {}, {})\n",
                        w.pid,
                        w.generation,
                        w.slot,
                        w.state
                    );
                }
                for f in failed {
                    complain!("cannot send {signal} to pid {}: {}", f.pid, f.error);
                }
            }
            signalled_exit(&answer)
        }
        Ok(other) => refused(other),
        Err(exit) => exit,
    }
}

/// A signal that reached no worker it was for failed; one that reached
/// some did what could be done (the others are named on stderr).
fn signalled_exit(answer: &Response) -> Exit {
    match answer {
        Response::Signalled { workers, .. } if workers.is_empty() => Exit::Refused,
        _ => Exit::Ok,
    }
}

pub fn status(target: &Target, json: bool) -> Exit {
    match ask(target, Request::Status {}, QUICK) {
        Ok(Response::Status(status)) => {
            if json {
                // The protocol's answer whole, `"result":"status"` included,
                // as the README shows it: one format for scripts, not two.
                let answer = Response::Status(status);
                say!(
                    "{}\n",
                    serde_json::to_string_pretty(&answer).expect("protocol types always serialize")
                );
            } else {
                say!("{}", render(&status));
            }
            Exit::Ok
        }
        Ok(other) => refused(other),
        Err(exit) => exit,
    }
}

/// "steer: generation 1 (0 queued, 0%), generation 2 (3 queued, 100%)", or
/// "shared (why)".
fn handover_line(k: &crate::protocol::SocketStatus) -> String {
    let socket = |g: &crate::protocol::GenerationSocket| {
        let who = match g.generations.as_slice() {
            [] => "next generation".to_string(),
            [one] => format!("generation {one}"),
            many => format!(
                "generations {}",
                many.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut what = Vec::new();
        if let Some(q) = g.queued {
            what.push(format!("{q} queued"));
        }
        if let Some(share) = g.share {
            let of = if k.listen.starts_with("udp:") {
                "datagrams"
            } else {
                "new connections"
            };
            what.push(format!("{share}% of {of}"));
        }
        if what.is_empty() {
            who
        } else {
            format!("{who} ({})", what.join(", "))
        }
    };
    let sockets: Vec<String> = k.generations.iter().map(socket).collect();
    match &k.shared_because {
        Some(why) => format!("shared by {} ({why})", sockets.join("; ")),
        None => format!("steer: {}", sockets.join("; ")),
    }
}

/// The human form of `status`.
pub fn render(s: &Status) -> String {
    let serving = match s.generation {
        0 => "not serving yet: no generation has become ready".to_string(),
        g => format!("generation {g}"),
    };
    let mut out = format!(
        "handoff {} (pid {}), up {}, {serving}",
        s.version,
        s.pid,
        crate::ms(Duration::from_millis(s.uptime_ms)),
    );
    // Always, 0 included: a script or a reader looks for it in one place.
    out += &format!(", upgraded {} time(s)", s.upgrades);
    if let Some(g) = s.restarting {
        out += &format!(", restarting to generation {g}");
    }
    if s.shutting_down {
        out += ", shutting down";
    }
    if let Some(paths) = &s.watching {
        out += &format!(
            "\nwatching {}: a change restarts the server",
            paths
                .iter()
                .map(|p| crate::file_watch::shown(std::path::Path::new(p)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out += "\n\nSOCKET   FD  ADDRESS                 LISTEN\n";
    for k in &s.sockets {
        let mut trouble = String::new();
        if !k.listening {
            trouble += "  NOT LISTENING (a child shut it down; see the log)";
        }
        if k.revived > 0 {
            trouble += &format!("  (a child shut it down; listening again, {}x)", k.revived);
        }
        out += &format!(
            "{:<8} {:<3} {:<23} {}{trouble}\n",
            k.name, k.fd, k.address, k.listen
        );
        out += &format!("         {}\n", handover_line(k));
        if !k.options.is_empty() {
            out += &format!("         options: {}\n", k.options);
        }
    }
    if let Some(migrate) = s.tcp_migrate_req {
        out += &format!(
            "net.ipv4.tcp_migrate_req = {}: {}\n",
            u8::from(migrate),
            if migrate {
                "what waits on an old generation's socket when it closes moves to a newer one"
            } else {
                "what waits on an old generation's socket when it closes is reset (see the README)"
            }
        );
    }
    out += "\nSLOT  PID      GEN  STATE       FOR        RESTARTS  STATUS\n";
    for w in &s.workers {
        let pid = w.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        out += &format!(
            "{:<5} {:<8} {:<4} {:<11} {:<10} {:<9} {}\n",
            w.slot,
            pid,
            w.generation,
            w.state,
            crate::ms(Duration::from_millis(w.for_ms)),
            w.restarts,
            w.status.as_deref().unwrap_or("")
        );
    }
    out
}
