//! The process exit codes of every `handoff` command.
//!
//! They are part of the interface: a deploy script must be able to tell
//! "the restart failed but the old generation still serves" from "I typed
//! the command wrong" from "no supervisor is running". Each failure has its
//! own code and no two failures share one. The README lists them.

/// A documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The command did what was asked.
    Ok = 0,
    /// `restart`: the new generation failed to become ready and was rolled
    /// back; the old generation keeps serving.
    RestartFailed = 1,
    /// Bad flags or arguments (clap's own code for usage errors).
    Usage = 2,
    /// The configuration is invalid (`check`, `run`).
    Config = 3,
    /// No supervisor answered on the control socket.
    Unreachable = 4,
    /// `run`: the supervisor could not set up (a socket could not be bound,
    /// the control socket is in use, ...).
    Setup = 5,
    /// The supervisor answered but refused the request (it is shutting down,
    /// it did not understand the request, or it is busy: every control
    /// connection is waiting for an answer, or it is out of fds).
    Refused = 6,
    /// A client command got no answer within its `--timeout`; the
    /// supervisor may still carry the request out (the message says what
    /// it may still be doing).
    TimedOut = 7,
    /// `signal --generation N`: generation N has no worker that can take a
    /// signal (it is gone, or its workers are all still starting).
    NoWorkers = 8,
    /// `signal`: no worker is ready yet to take it (the first generation
    /// is starting, or every worker is being respawned); worth a retry.
    NotServing = 9,
    /// `run`: workers crashed more often than `respawn_limit` allows;
    /// handoff stopped gracefully (sockets closed) so that a container's
    /// restart policy or the service manager sees the crash loop.
    RespawnLimit = 10,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}
