//! Starting a supervisor: signals first, then the control socket, then the
//! sockets (adopted from a service manager or bound), then the first
//! generation; then the event loop in `supervisor.rs` takes over. An
//! upgraded supervisor starts from `upgrade::resume` instead.

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, Overrides};
use crate::control::{ControlCall, ControlServer};
pub(crate) use crate::runtime_dir::RuntimeDir;
use crate::sockets::{BindError, BoundSocket, SocketSet};
use crate::supervisor::{
    log_socket, serve, Event, RunError, Slot, Source, Supervisor, CONTROL_GRACE,
};
use crate::systemd::{Inherited, ServiceManager};
use crate::worker::{EventSink, Generation};

/// The signals the supervisor acts on, registered before anything else so
/// that none is lost.
pub(crate) struct Signals {
    pub(crate) hangup: tokio::signal::unix::Signal,
    pub(crate) terminate: tokio::signal::unix::Signal,
    pub(crate) interrupt: tokio::signal::unix::Signal,
    pub(crate) user2: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn install() -> Result<Signals, RunError> {
        let on = |kind| signal(kind).map_err(RunError::Signals);
        Ok(Signals {
            hangup: on(SignalKind::hangup())?,
            terminate: on(SignalKind::terminate())?,
            interrupt: on(SignalKind::interrupt())?,
            user2: on(SignalKind::user_defined2())?,
        })
    }

    /// The signals already received but not yet read, without waiting.
    pub(crate) fn received(&mut self) -> Vec<&'static str> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut got = Vec::new();
        for (signal, name) in [
            (&mut self.terminate, "SIGTERM"),
            (&mut self.interrupt, "SIGINT"),
            (&mut self.hangup, "SIGHUP"),
            (&mut self.user2, "SIGUSR2"),
        ] {
            while signal.poll_recv(&mut cx).is_ready() {
                got.push(name);
            }
        }
        got
    }
}

/// What the event loop listens to besides signals.
pub(crate) struct Inbox {
    pub events: mpsc::UnboundedReceiver<Event>,
    pub calls: mpsc::UnboundedReceiver<ControlCall>,
    pub stop_control: watch::Sender<bool>,
    pub control_task: tokio::task::JoinHandle<()>,
}

/// Starts the control server's task and the channels of the event loop.
pub(crate) fn inbox(control: ControlServer) -> (Inbox, EventSink<Event>) {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (calls_tx, calls) = mpsc::unbounded_channel::<ControlCall>();
    let (stop_control, control_stopped) = watch::channel(false);
    let control_task = tokio::spawn(control.serve(calls_tx, control_stopped, CONTROL_GRACE));
    let inbox = Inbox {
        events,
        calls,
        stop_control,
        control_task,
    };
    (inbox, (events_tx, Event::Worker))
}

/// Binds the sockets, starts the first generation and supervises until a
/// graceful stop. `overrides` are the flags, kept for reloads.
pub async fn run(
    config: Config,
    overrides: Overrides,
    control_path: &Path,
) -> Result<(), RunError> {
    let signals = Signals::install()?;
    // Whoever started us may have blocked some of these (a parent that
    // blocked SIGTERM and forgot to unblock it before exec): they would stay
    // pending for ever, and `kill` could not stop us. (Ignored ones, as
    // `nohup` leaves SIGHUP, are already undone: the handlers replaced
    // them.) The handlers are in place, so let them in. An upgraded
    // supervisor does this in `upgrade::resume`.
    crate::sys::unblock_signals();
    // The control socket first: if another handoff runs there, say so
    // before touching its ports.
    let control = ControlServer::bind(control_path).map_err(RunError::Control)?;
    tracing::info!("control socket {}", control_path.display());
    let manager = ServiceManager::from_env(config.fdstore);
    // Sockets a service manager passed to us are adopted, not bound again.
    // First everything passed in is matched, so that a passed socket the
    // config does not name is reported as such, not as a bind failure.
    let mut inherited = Inherited::from_env().map_err(RunError::Adopt)?;
    let passed = config
        .sockets
        .iter()
        .enumerate()
        .map(|(i, spec)| inherited.take(spec, i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(RunError::Adopt)?;
    inherited.finish(&manager).map_err(RunError::Adopt)?;
    let mut sockets = Vec::with_capacity(config.sockets.len());
    for (i, (spec, passed)) in config.sockets.iter().zip(passed).enumerate() {
        let socket = match passed {
            Some(fd) => {
                let socket = BoundSocket::adopt(spec, fd).map_err(|source| {
                    RunError::Bind(BindError {
                        name: spec.name.clone(),
                        listen: spec.listen.clone(),
                        what: "cannot adopt the socket passed in LISTEN_FDS",
                        source,
                    })
                })?;
                log_socket(&socket, i, "adopted from the service manager:");
                socket
            }
            None => {
                let socket = BoundSocket::bind(spec).map_err(RunError::Bind)?;
                manager.store(&spec.name, socket.as_fd());
                log_socket(&socket, i, "listening on");
                socket
            }
        };
        sockets.push(Arc::new(socket));
    }
    crate::sys::raise_fd_limit(sockets.len(), config.program.workers);
    let runtime_dir = RuntimeDir::create()?;
    let control_snapshot = control.snapshot();
    let (inbox, sink) = inbox(control);

    let spec = Arc::new(config.program);
    let sockets: SocketSet = sockets.into();
    let first = Arc::new(Generation {
        number: 1,
        spec: spec.clone(),
        sockets: sockets.clone(),
    });
    let mut sup = Supervisor {
        next_spec: spec,
        next_sockets: sockets,
        serving: first.clone(),
        serving_ready: false,
        last_generation: 1,
        slots: (0..first.spec.workers).map(|_| Slot::default()).collect(),
        draining: Vec::new(),
        rollout: None,
        queued: Vec::new(),
        drain_waits: Vec::new(),
        queued_signal: false,
        shutdown: None,
        source: Source {
            file: config.file,
            overrides,
            sighup: config.sighup,
            fdstore: config.fdstore,
        },
        control_path: control_path.to_path_buf(),
        control_snapshot,
        runtime_dir,
        next_worker: 1,
        next_token: 1,
        sink,
        started: Instant::now(),
        manager,
        last_failure: None,
        binary: crate::upgrade::own_binary(),
        upgrades: 0,
        pending_upgrade: None,
        leftovers: Default::default(),
        groups_check_due: false,
    };
    tracing::info!("starting generation 1: {}", first.spec.command.join(" "));
    // The loop below runs as long as the supervisor does: a reference to
    // the first generation held here would keep its sockets open after a
    // reload removed them.
    drop(first);
    for slot in 0..sup.slots.len() {
        match sup.launch(sup.serving.clone(), slot) {
            Ok(worker) => sup.slots[slot].active = Some(worker),
            Err(e) => {
                // Those already started go with the supervisor.
                for mut worker in sup.slots.iter_mut().filter_map(|s| s.active.take()) {
                    worker.kill("the server could not be started".into());
                }
                return Err(RunError::Start(e));
            }
        }
    }
    serve(sup, signals, inbox).await
}
