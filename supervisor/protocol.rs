//! The control protocol, spoken on the control socket (a unix stream socket,
//! mode 0600): one JSON object per line each way. A client sends a
//! [`Request`] and reads one [`Response`]; it may send more requests on the
//! same connection.
//!
//! ```text
//! > {"command":"status"}
//! < {"result":"status","version":"0.1.0","pid":4410,"generation":3,...}
//! > {"command":"restart"}
//! < {"result":"restarted","generation":4,"ready_ms":212,"total_ms":214}
//! < {"result":"error","kind":"restart_failed","message":"generation 5 worker 0 (pid 4530) exited with code 3 before it was ready; generation 4 keeps serving"}
//! > {"command":"signal","signal":"SIGUSR1"}
//! < {"result":"signalled","signal":"SIGUSR1","group":false,"workers":[{"pid":4601,"slot":0,"generation":5,"state":"ready"}],"failed":[]}
//! ```
//!
//! Field names and values here are stable: scripts rely on them. Fields may
//! be added, never renamed or removed.

use serde::{Deserialize, Serialize};

/// Requests longer than this get an error reply and the connection closes.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
// The commands without fields are empty struct variants, not unit ones:
// serde lets a unit variant of an internally tagged enum through with any
// field (`{"command":"stop","now":true}` stopped the supervisor), while
// deny_unknown_fields holds for struct variants.
pub enum Request {
    /// The supervisor's state.
    Status {},
    /// Start a new generation; the answer comes once it is ready (or rolled
    /// back), or with `drained`, once the old workers have also exited.
    /// Requests that arrive while a restart runs are coalesced into one
    /// more restart after it.
    Restart {
        #[serde(default)]
        drained: bool,
    },
    /// Re-read the config file and start a new generation with it; answered
    /// like `restart`. An invalid file changes nothing.
    Reload {
        #[serde(default)]
        drained: bool,
    },
    /// Change the number of workers now: new slots start the serving
    /// generation, removed slots drain.
    Scale { workers: usize },
    /// Replace the supervisor with the handoff binary now on disk, keeping
    /// the sockets and the children; answered by the new one.
    Upgrade {},
    /// Graceful shutdown; the answer comes once every child is gone.
    Stop {},
    /// Sends `signal` (a name: "SIGUSR1", "USR1") to the ready workers of
    /// the slots, or with `generation`, to that generation's ready and
    /// draining workers; with `group`, to each one's process group.
    Signal {
        signal: String,
        #[serde(default)]
        generation: Option<u64>,
        #[serde(default)]
        group: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Restarted(RestartReport),
    Scaled {
        workers: usize,
    },
    /// Sent by the new supervisor, same pid, once it has taken over.
    Upgraded {
        version: String,
        from_version: String,
        pid: u32,
        upgrades: u32,
    },
    /// The supervisor (this pid) has stopped every child and closed its
    /// sockets; it exits right after this answer.
    Stopped {
        pid: u32,
    },
    /// `signal`: who got it (`workers`), and who could not be sent it
    /// (`failed`, with why).
    Signalled {
        /// Its name, "SIGUSR1".
        signal: String,
        group: bool,
        workers: Vec<SignalledWorker>,
        #[serde(default)]
        failed: Vec<SignalFailure>,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// A worker a `signal` request reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalledWorker {
    pub pid: u32,
    pub slot: usize,
    pub generation: u64,
    /// Its state when it was sent the signal: `ready` or `draining`.
    pub state: String,
}

/// A worker a `signal` request was for, that the kernel refused it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalFailure {
    pub pid: u32,
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The new generation did not become ready; the old one keeps serving.
    RestartFailed,
    /// The supervisor is shutting down and takes no more work.
    ShuttingDown,
    /// The request was not understood (bad JSON, unknown command, too long).
    BadRequest,
    /// `reload`: the config file is invalid; nothing changed.
    ConfigInvalid,
    /// The request cannot be carried out now: `scale` during a restart, or
    /// the control socket is at its limits (every connection is waiting
    /// for an answer, or the supervisor is out of file descriptors).
    Busy,
    /// `upgrade`: the new binary failed its check or could not be
    /// executed; the running supervisor stays in charge.
    UpgradeFailed,
    /// `signal` with `generation`: that generation has no worker that can
    /// take a signal (none left, or only starting ones).
    NoWorkers,
    /// `signal`: no worker is ready yet (the first generation is starting,
    /// or every worker is being respawned).
    NotServing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartReport {
    /// The generation now serving.
    pub generation: u64,
    /// From the restart's start to the last new worker being ready.
    pub ready_ms: u64,
    /// From the restart's start to the last old workers being told to
    /// drain: `ready_ms` and the last batch's `min_ready_time`.
    pub total_ms: u64,
    /// How many workers were replaced.
    pub workers: usize,
    /// Of `ready_ms`, the time the new workers themselves took to become
    /// ready (per batch, the slowest one's, and the `min_ready_time` of
    /// the batches before the last); the rest is the supervisor's.
    pub child_ready_ms: u64,
    /// With `drained`: from the restart's start to the last old worker's
    /// exit.
    pub drained_ms: Option<u64>,
    /// `ready_ms` and `child_ready_ms` in microseconds, for measuring the
    /// supervisor's own share.
    pub ready_us: u64,
    pub child_ready_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    /// The newest generation that became ready (0: none yet).
    pub generation: u64,
    /// The generation a restart in progress is starting, if any.
    pub restarting: Option<u64>,
    pub shutting_down: bool,
    /// How often this supervisor was upgraded in place (same pid).
    pub upgrades: u32,
    pub sockets: Vec<SocketStatus>,
    pub workers: Vec<WorkerStatus>,
    /// `net.ipv4.tcp_migrate_req` (None: this kernel has none): whether a
    /// steered socket that closes hands what waits in its queue to another
    /// socket of its group instead of resetting it.
    #[serde(default)]
    pub tcp_migrate_req: Option<bool>,
    /// `--watch` (development mode): the watched paths, as given to the
    /// supervisor (absolute). None: files are not watched.
    #[serde(default)]
    pub watching: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketStatus {
    pub name: String,
    /// As configured, e.g. `tcp://127.0.0.1:0`.
    pub listen: String,
    /// As bound, e.g. `127.0.0.1:41234`.
    pub address: String,
    /// The fd number children receive it on.
    pub fd: u32,
    pub backlog: Option<u32>,
    /// Whether it accepts connections (false: a child shut it down and it
    /// could not be made to listen again). Always true for UDP.
    #[serde(default = "yes")]
    pub listening: bool,
    /// How often a child shut it down and handoff made it listen again.
    #[serde(default)]
    pub revived: u32,
    /// "steer" (a socket per generation) or "shared" (one for all).
    #[serde(default)]
    pub handover: String,
    /// Why it is shared, when it is.
    #[serde(default)]
    pub shared_because: Option<String>,
    /// The kernel sockets on this address, in the SO_REUSEPORT group's
    /// order for a steered one, and the generations that have each.
    #[serde(default)]
    pub generations: Vec<GenerationSocket>,
    /// The socket options in effect that handoff set (issue 12): each set
    /// one as the config names it, durations in seconds.
    #[serde(default)]
    pub options: crate::sockets::SocketOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationSocket {
    /// The generations that have this socket (one, for a steered socket;
    /// none for one a reload bound for the next generation).
    pub generations: Vec<u64>,
    /// Connections waiting to be accepted (UDP: 1 if a datagram waits).
    pub queued: Option<u32>,
    /// The share of new connections the steering program sends it, in
    /// percent (None: shared, or not steered to yet).
    pub share: Option<u32>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub slot: usize,
    /// None while the slot waits to respawn its worker.
    pub pid: Option<u32>,
    pub generation: u64,
    /// `starting`, `ready`, `draining`, `killed`, or `respawning`.
    pub state: String,
    /// When the worker entered that state, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// How long it has been in that state.
    pub for_ms: u64,
    /// How often this slot's worker has been respawned after dying.
    pub restarts: u32,
    /// The last STATUS= the worker sent, if any.
    pub status: Option<String>,
}

/// Parses one request line.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|e| {
        format!(
            "bad request: {e} (expected one JSON object per line, e.g. {{\"command\":\"status\"}})"
        )
    })
}

/// One response line, newline included.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).expect("protocol types always serialize");
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        assert_eq!(
            parse_request(br#"{"command":"scale","workers":3}"#).unwrap(),
            Request::Scale { workers: 3 }
        );
        assert!(parse_request(br#"{"command":"scale"}"#).is_err());
        assert_eq!(
            parse_request(br#"{"command":"restart"}"#).unwrap(),
            Request::Restart { drained: false }
        );
        assert_eq!(
            parse_request(br#"{"command":"restart","drained":true}"#).unwrap(),
            Request::Restart { drained: true }
        );
        assert_eq!(encode(&Request::Status {}), b"{\"command\":\"status\"}\n");
        assert!(parse_request(br#"{"command":"explode"}"#)
            .unwrap_err()
            .contains("bad request"));
        assert!(parse_request(b"not json").is_err());
        assert_eq!(
            parse_request(br#"{"command":"signal","signal":"SIGUSR1"}"#).unwrap(),
            Request::Signal {
                signal: "SIGUSR1".into(),
                generation: None,
                group: false
            }
        );
        assert_eq!(
            parse_request(br#"{"command":"signal","signal":"HUP","generation":3,"group":true}"#)
                .unwrap(),
            Request::Signal {
                signal: "HUP".into(),
                generation: Some(3),
                group: true
            }
        );
        assert!(parse_request(br#"{"command":"signal"}"#).is_err());
        assert!(parse_request(br#"{"command":"signal","signal":"USR1","pid":1}"#).is_err());
    }

    #[test]
    fn response_wire_format() {
        let e = Response::Error {
            kind: ErrorKind::RestartFailed,
            message: "m".into(),
        };
        assert_eq!(
            String::from_utf8(encode(&e)).unwrap(),
            "{\"result\":\"error\",\"kind\":\"restart_failed\",\"message\":\"m\"}\n"
        );
        let r = Response::Restarted(RestartReport {
            generation: 2,
            ready_ms: 5,
            total_ms: 6,
            workers: 1,
            child_ready_ms: 4,
            drained_ms: None,
            ready_us: 5000,
            child_ready_us: 4000,
        });
        let line = encode(&r);
        assert_eq!(serde_json::from_slice::<Response>(&line).unwrap(), r);
    }
}
