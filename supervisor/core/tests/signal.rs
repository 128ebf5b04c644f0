//! `handoff signal` and forwarded signals: which workers they reach.

use nix::sys::signal::Signal;

use super::fake::*;
use crate::core::{SignalAsk, StopCause};
use crate::protocol::{ErrorKind, Response, SignalledWorker};

impl Harness {
    fn send(&mut self, signal: Signal, generation: Option<u64>) -> Response {
        let ask = SignalAsk {
            signal,
            generation,
            group: false,
        };
        self.core.signal_workers(&mut self.fx, ask)
    }
}

/// The (pid, generation, state) of each worker an answer names.
fn reached(answer: &Response) -> Vec<(u32, u64, &str)> {
    match answer {
        Response::Signalled { workers, .. } => workers
            .iter()
            .map(|w: &SignalledWorker| (w.pid, w.generation, w.state.as_str()))
            .collect(),
        other => panic!("not signalled: {other:?}"),
    }
}

fn kind(answer: &Response) -> ErrorKind {
    match answer {
        Response::Error { kind, .. } => *kind,
        other => panic!("not an error: {other:?}"),
    }
}

fn message(answer: &Response) -> &str {
    match answer {
        Response::Error { message, .. } => message,
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn the_ready_workers_get_it_and_nothing_else_changes() {
    let mut h = Harness::serving(quick(2, 0));
    let answer = h.send(Signal::SIGUSR1, None);
    assert_eq!(
        reached(&answer),
        vec![(1000, 1, "ready"), (1001, 1, "ready")]
    );
    // No timer cancelled or armed, no state changed: only the signals.
    assert_eq!(
        h.take(),
        vec![
            Effect::Send(1, Signal::SIGUSR1, false),
            Effect::Send(2, Signal::SIGUSR1, false)
        ]
    );
    assert!(h.core.workers().all(|w| w.is_ready()));
}

#[test]
fn to_the_process_group_when_asked() {
    let mut h = Harness::serving(quick(1, 0));
    let ask = SignalAsk {
        signal: Signal::SIGHUP,
        generation: None,
        group: true,
    };
    let answer = h.core.signal_workers(&mut h.fx, ask);
    assert!(matches!(answer, Response::Signalled { group: true, .. }));
    assert_eq!(h.take(), vec![Effect::Send(1, Signal::SIGHUP, true)]);
}

#[test]
fn a_restarts_starting_workers_are_left_alone() {
    let mut h = Harness::serving(quick(2, 0));
    h.restart(false);
    h.take();
    // Workers 3 and 4 of generation 2 are starting: their handler may not
    // be in place yet.
    let answer = h.send(Signal::SIGUSR1, None);
    assert_eq!(
        reached(&answer),
        vec![(1000, 1, "ready"), (1001, 1, "ready")]
    );
    let answer = h.send(Signal::SIGUSR1, Some(2));
    assert_eq!(kind(&answer), ErrorKind::NoWorkers);
    assert!(
        message(&answer).contains("its 2 worker(s) are starting"),
        "{answer:?}"
    );
}

#[test]
fn draining_workers_only_when_their_generation_is_named() {
    let mut h = Harness::serving(quick(2, 0));
    h.restart(false);
    h.ready(3);
    h.ready(4);
    h.take();
    assert_eq!(h.core.draining().len(), 2);
    let answer = h.send(Signal::SIGUSR1, None);
    assert_eq!(
        reached(&answer),
        vec![(1002, 2, "ready"), (1003, 2, "ready")],
        "not the draining generation 1"
    );
    h.take();
    let answer = h.send(Signal::SIGUSR1, Some(1));
    assert_eq!(
        reached(&answer),
        vec![(1000, 1, "draining"), (1001, 1, "draining")]
    );
    assert_eq!(
        h.take(),
        vec![
            Effect::Send(1, Signal::SIGUSR1, false),
            Effect::Send(2, Signal::SIGUSR1, false)
        ]
    );
    let answer = h.send(Signal::SIGUSR1, Some(2));
    assert_eq!(reached(&answer).len(), 2);
}

#[test]
fn no_ready_worker_is_not_serving() {
    let mut h = Harness::new(quick(2, 0));
    h.core.start(&mut h.fx).expect("the fake launches");
    h.take();
    let answer = h.send(Signal::SIGUSR1, None);
    assert_eq!(kind(&answer), ErrorKind::NotServing);
    assert!(message(&answer).contains("2 starting"), "{answer:?}");
    assert!(h.take().is_empty(), "nothing sent");
}

#[test]
fn a_respawning_slot_is_skipped() {
    let mut h = Harness::serving(quick(2, 0));
    h.exit(1, 1);
    h.take();
    let answer = h.send(Signal::SIGUSR1, None);
    assert_eq!(reached(&answer), vec![(1001, 1, "ready")]);
}

#[test]
fn an_unknown_generation_names_those_there_are() {
    let mut h = Harness::serving(quick(1, 0));
    let answer = h.send(Signal::SIGUSR1, Some(7));
    assert_eq!(kind(&answer), ErrorKind::NoWorkers);
    assert_eq!(
        message(&answer),
        "generation 7 has no workers (generations with workers: 1)"
    );
    assert!(h.take().is_empty());
}

#[test]
fn sigstop_is_refused() {
    let mut h = Harness::serving(quick(1, 0));
    let answer = h.send(Signal::SIGSTOP, None);
    assert_eq!(kind(&answer), ErrorKind::BadRequest);
    assert!(message(&answer).contains("SIGSTOP"), "{answer:?}");
    assert!(h.take().is_empty());
}

#[test]
fn while_stopping_only_a_named_generation() {
    let mut h = Harness::serving(quick(1, 0));
    h.core.stop(&mut h.fx, None, StopCause::Request);
    h.take();
    assert_eq!(
        kind(&h.send(Signal::SIGUSR1, None)),
        ErrorKind::ShuttingDown
    );
    assert_eq!(
        reached(&h.send(Signal::SIGUSR1, Some(1))),
        vec![(1000, 1, "draining")]
    );
}
