//! The signals the supervisor acts on, registered before anything else so
//! that none is lost.

use tokio::signal::unix::{signal, SignalKind};

/// What a signal sent to handoff asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// SIGHUP: restart (or reload, with `sighup = "reload"`).
    Hangup,
    /// SIGTERM or SIGINT: stop gracefully (a second one: at once).
    Stop(nix::sys::signal::Signal),
    /// SIGUSR2: upgrade handoff in place.
    Upgrade,
}

pub struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            user2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Received {
        use nix::sys::signal::Signal;
        tokio::select! {
            _ = self.terminate.recv() => Received::Stop(Signal::SIGTERM),
            _ = self.interrupt.recv() => Received::Stop(Signal::SIGINT),
            _ = self.hangup.recv() => Received::Hangup,
            _ = self.user2.recv() => Received::Upgrade,
        }
    }

    /// The signals already received but not yet read, without waiting.
    pub fn received(&mut self) -> Vec<Received> {
        use nix::sys::signal::Signal;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut got = Vec::new();
        for (signal, what) in [
            (&mut self.terminate, Received::Stop(Signal::SIGTERM)),
            (&mut self.interrupt, Received::Stop(Signal::SIGINT)),
            (&mut self.hangup, Received::Hangup),
            (&mut self.user2, Received::Upgrade),
        ] {
            while signal.poll_recv(&mut cx).is_ready() {
                got.push(what);
            }
        }
        got
    }
}

impl std::fmt::Display for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Received::Hangup => f.write_str("SIGHUP"),
            Received::Stop(signal) => write!(f, "{signal}"),
            Received::Upgrade => f.write_str("SIGUSR2"),
        }
    }
}

impl Received {
    /// The signal itself.
    pub fn signal(&self) -> nix::sys::signal::Signal {
        use nix::sys::signal::Signal;
        match self {
            Received::Hangup => Signal::SIGHUP,
            Received::Stop(signal) => *signal,
            Received::Upgrade => Signal::SIGUSR2,
        }
    }
}
