//! The signals the supervisor acts on, registered before anything else so
//! that none is lost; and the ones it forwards to the workers
//! (`forward_signals`), registered once the config is known.
//!
//! Signals coalesce (tokio's, like the kernel's): a storm of SIGUSR1 may be
//! read as fewer, but never as none: one that arrives after the last read
//! is always read again, so the workers get at least one after the last
//! one sent to handoff. For log reopening, which is what forwarding is for,
//! that is what matters.

use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

/// What a signal sent to handoff asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// SIGHUP: restart (or reload, with `sighup = "reload"`).
    Hangup,
    /// SIGTERM or SIGINT: stop gracefully (a second one: at once).
    Stop(Signal),
    /// SIGUSR2: upgrade handoff in place.
    Upgrade,
    /// One of `forward_signals`: for the serving workers.
    Forward(Signal),
}

pub struct Signals {
    hangup: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
    /// The forwarded signals listened to. A handler, once installed, stays
    /// (tokio cannot remove one): a signal a reload took off the list is
    /// still read, and then ignored with a log line, rather than meeting
    /// its default action, which for most would kill handoff.
    forwarded: Vec<(Signal, tokio::signal::unix::Signal)>,
}

/// The forwarded signals with a handler, as a bit mask (bit n: signal n),
/// for `sys::block_signals`: an upgrade holds them pending across its exec
/// like its own signals, and the new supervisor lets them in once its
/// handlers are in place (a SIGUSR1 that met its default action in
/// between would kill it).
static FORWARDED: AtomicU64 = AtomicU64::new(0);

/// The forwarded signals that have a handler in this process.
pub fn forwarded() -> impl Iterator<Item = Signal> {
    let mask = FORWARDED.load(Ordering::Relaxed);
    Signal::iterator().filter(move |s| (*s as i32) < 64 && mask & (1 << *s as i32) != 0)
}

/// Whether `signal` may be in `forward_signals`, and if not, why not.
pub fn forwardable(signal: Signal) -> Result<(), String> {
    use Signal::*;
    let why = match signal {
        SIGHUP => "handoff restarts (or reloads) on SIGHUP itself",
        SIGUSR2 => "handoff upgrades itself on SIGUSR2",
        SIGTERM | SIGINT => "handoff stops gracefully on it",
        // Not one handoff handles, but it stops most servers (nginx,
        // gunicorn), and handoff would respawn them as crashed: a stop is
        // `handoff stop` or SIGTERM to handoff.
        SIGQUIT => "it stops most servers, which handoff would then respawn as crashed; stop handoff with SIGTERM instead",
        SIGKILL | SIGSTOP => "it cannot be caught",
        // The kernel sends these to the process that faulted: forwarding
        // one would tell the workers of a crash that is not theirs.
        SIGSEGV | SIGBUS | SIGILL | SIGFPE | SIGTRAP | SIGABRT | SIGSYS => {
            "it reports a fault of the process it is sent to, not a request"
        }
        SIGCHLD => "it tells handoff that a child exited",
        // Rust ignores SIGPIPE so that a write to a closed pipe is an
        // error; a handler would not change that, but nobody sends it.
        SIGPIPE => "it reports a write to a closed pipe, not a request",
        _ => return Ok(()),
    };
    Err(format!("{signal} cannot be forwarded: {why}"))
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            user2: signal(SignalKind::user_defined2())?,
            forwarded: Vec::new(),
        })
    }

    /// Listens to each of `list` not yet listened to (at start, after an
    /// upgrade, and after a reload that added some), and lets it in: an
    /// upgrading supervisor held it pending across its exec.
    pub fn forward(&mut self, list: &[Signal]) {
        for &signal in list {
            if self.forwarded.iter().any(|(s, _)| *s == signal) {
                continue;
            }
            // The config refused the others; checked again, as an upgrade's
            // state comes from another binary.
            if let Err(e) = forwardable(signal) {
                tracing::error!("forward_signals: {e}");
                continue;
            }
            match tokio::signal::unix::signal(SignalKind::from_raw(signal as i32)) {
                Ok(listener) => {
                    self.forwarded.push((signal, listener));
                    FORWARDED.fetch_or(1 << signal as i32, Ordering::Relaxed);
                    let _ = nix::sys::signal::SigSet::from(signal).thread_unblock();
                    tracing::debug!("{signal}: forwarded to the serving workers");
                }
                Err(e) => tracing::error!("forward_signals: cannot listen to {signal}: {e}"),
            }
        }
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Received {
        tokio::select! {
            _ = self.terminate.recv() => Received::Stop(Signal::SIGTERM),
            _ = self.interrupt.recv() => Received::Stop(Signal::SIGINT),
            _ = self.hangup.recv() => Received::Hangup,
            _ = self.user2.recv() => Received::Upgrade,
            signal = next_forwarded(&mut self.forwarded) => Received::Forward(signal),
        }
    }

    /// The signals already received but not yet read, without waiting.
    /// Forwarded ones are left to `recv`: an upgrade that reads these to
    /// call itself off need not give way to a log reopen.
    pub fn received(&mut self) -> Vec<Received> {
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

/// The next of the forwarded signals (never, with none).
async fn next_forwarded(listeners: &mut [(Signal, tokio::signal::unix::Signal)]) -> Signal {
    std::future::poll_fn(|cx| {
        for (signal, listener) in listeners.iter_mut() {
            if listener.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*signal);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

impl std::fmt::Display for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Received::Hangup => f.write_str("SIGHUP"),
            Received::Stop(signal) | Received::Forward(signal) => write!(f, "{signal}"),
            Received::Upgrade => f.write_str("SIGUSR2"),
        }
    }
}

impl Received {
    /// The signal itself.
    pub fn signal(&self) -> Signal {
        match self {
            Received::Hangup => Signal::SIGHUP,
            Received::Stop(signal) | Received::Forward(signal) => *signal,
            Received::Upgrade => Signal::SIGUSR2,
        }
    }
}

/// Lists of signals by name (`["SIGUSR1"]`) in serialized state.
pub mod names {
    use nix::sys::signal::Signal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(signals: &[Signal], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(signals.iter().map(|signal| signal.as_str()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Signal>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|name| {
                name.parse()
                    .map_err(|_| serde::de::Error::custom(format!("unknown signal {name}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoffs_own_signals_and_faults_are_not_forwardable() {
        for refused in [
            Signal::SIGHUP,
            Signal::SIGUSR2,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGQUIT,
            Signal::SIGKILL,
            Signal::SIGSTOP,
            Signal::SIGSEGV,
            Signal::SIGCHLD,
            Signal::SIGPIPE,
        ] {
            let e = forwardable(refused).unwrap_err();
            assert!(
                e.starts_with(&format!("{refused} cannot be forwarded: ")),
                "{e}"
            );
        }
        for allowed in [
            Signal::SIGUSR1,
            Signal::SIGWINCH,
            Signal::SIGTTIN,
            Signal::SIGTTOU,
            Signal::SIGALRM,
        ] {
            assert_eq!(forwardable(allowed), Ok(()));
        }
    }

    #[test]
    fn names_round_trip() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct S(#[serde(with = "names")] Vec<Signal>);
        let s = S(vec![Signal::SIGUSR1, Signal::SIGWINCH]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["SIGUSR1","SIGWINCH"]"#);
        assert_eq!(serde_json::from_str::<S>(&json).unwrap(), s);
        assert!(serde_json::from_str::<S>(r#"["SIGNOPE"]"#).is_err());
    }
}
