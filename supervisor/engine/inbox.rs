//! What the event loop listens to besides signals: the events of workers
//! and timers, and the control server's calls (its task runs apart).

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::Event;
use crate::control::{ControlCall, ControlServer, Stop};

/// How long answers to control requests get to be written at shutdown.
pub const CONTROL_GRACE: Duration = Duration::from_secs(2);

pub struct Inbox {
    pub events: mpsc::UnboundedReceiver<Event>,
    events_tx: mpsc::UnboundedSender<Event>,
    pub calls: mpsc::UnboundedReceiver<ControlCall>,
    calls_tx: mpsc::UnboundedSender<ControlCall>,
    stop_control: watch::Sender<Stop>,
    control_task: Option<JoinHandle<Option<ControlServer>>>,
}

impl Inbox {
    /// The channels, and the control server's task serving `control`.
    pub fn open(control: ControlServer) -> Inbox {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (stop_control, _) = watch::channel(Stop::No);
        let mut inbox = Inbox {
            events,
            events_tx,
            calls,
            calls_tx,
            stop_control,
            control_task: None,
        };
        inbox.serve_control(control);
        inbox
    }

    pub fn sender(&self) -> mpsc::UnboundedSender<Event> {
        self.events_tx.clone()
    }

    /// (Again) serves the control socket.
    pub fn serve_control(&mut self, control: ControlServer) {
        self.stop_control.send_replace(Stop::No);
        let task = control.serve(
            self.calls_tx.clone(),
            self.stop_control.subscribe(),
            CONTROL_GRACE,
        );
        self.control_task = Some(tokio::spawn(task));
    }

    /// Stops the control server: it accepts no more connections and waits
    /// (up to its grace) for answers on their way. With `Stop::HandOver`
    /// the listening socket is kept open and returned (its queue of new
    /// connections goes to the next supervisor); with `Stop::Close` it is
    /// closed and its file removed. Calls that arrive meanwhile are passed
    /// to `meanwhile`.
    pub async fn stop_control(
        &mut self,
        how: Stop,
        mut meanwhile: impl FnMut(ControlCall),
    ) -> Option<ControlServer> {
        self.stop_control.send_replace(how);
        let mut task = self.control_task.take()?;
        loop {
            tokio::select! {
                done = &mut task => return done.ok().flatten(),
                Some(call) = self.calls.recv() => meanwhile(call),
            }
        }
    }
}
