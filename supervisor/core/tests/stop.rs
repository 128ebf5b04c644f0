//! Stopping: everything drains, a rollout in progress gives way, a second
//! signal kills.

use nix::sys::signal::Signal;

use super::fake::*;
use crate::core::{Leftover, StopCause, Timer};
use crate::protocol::{ErrorKind, Response};

fn shutting_down() -> Response {
    error(ErrorKind::ShuttingDown, "the supervisor is shutting down")
}

#[test]
fn stop_drains_every_worker_and_finishes_once_all_exited() {
    let mut h = Harness::serving(quick(2, 0));
    let (waiter, mut reply) = Reply::pair();
    assert!(h.core.stop(&mut h.fx, Some(waiter), StopCause::Request));
    let mut expected = drain(1).to_vec();
    expected.extend(drain(2));
    assert_eq!(h.take(), expected);
    assert!(h.core.manager_report().is_none(), "it was told STOPPING=1");
    h.exit(1, 0);
    assert!(!h.core.is_finished());
    h.exit(2, 0);
    let leftover = Leftover {
        signal: None,
        deadline: h.at(0) + crate::config::DEFAULT_DRAIN_TIMEOUT,
    };
    assert_eq!(
        h.take(),
        vec![Effect::Gone(1, leftover.clone()), Effect::Gone(2, leftover)]
    );
    assert!(h.core.is_finished());
    assert!(
        reply.pending(),
        "answered once the sockets closed, not before"
    );
    let waiters = h.core.into_stop_waiters();
    assert_eq!(waiters.len(), 1);
}

#[test]
fn stop_during_a_rollout_drains_its_new_workers_and_fails_it() {
    let mut h = Harness::serving(quick(2, 0));
    let mut restart = h.restart(false);
    let mut queued = h.restart(false);
    h.ready(3);
    h.take();
    assert!(h
        .core
        .stop(&mut h.fx, None, StopCause::Signal(Signal::SIGTERM)));
    let mut expected = drain(4).to_vec();
    expected.extend(drain(3));
    expected.extend([
        Effect::Answer(shutting_down()),
        Effect::Answer(shutting_down()),
    ]);
    expected.extend(drain(1));
    expected.extend(drain(2));
    assert_eq!(h.take(), expected, "new workers drain, none is killed");
    assert_eq!(restart.get(), Some(shutting_down()));
    assert_eq!(queued.get(), Some(shutting_down()));
    assert_eq!(h.core.draining().len(), 4);
    for id in 1..=4 {
        h.exit(id, 0);
    }
    assert!(h.core.is_finished());
}

#[test]
fn stop_during_a_reload_that_added_slots() {
    let mut h = Harness::serving(quick(1, 0));
    let (reply, _rx) = Reply::pair();
    let next = crate::core::Next {
        spec: std::sync::Arc::new(quick(2, 0)),
        sockets: std::sync::Arc::from(Vec::new()),
    };
    let asked = crate::core::Asked::Client(crate::core::RestartWaiter {
        reply,
        drained: false,
    });
    h.core.reload(&mut h.fx, next, asked);
    h.take();
    h.core.stop(&mut h.fx, None, StopCause::Request);
    let mut expected = drain(3).to_vec();
    expected.extend(drain(2));
    expected.push(Effect::Answer(shutting_down()));
    expected.extend(drain(1));
    assert_eq!(h.take(), expected);
    assert!(h.core.slots().is_empty());
}

#[test]
fn a_second_signal_while_stopping_kills_what_is_left() {
    let mut h = Harness::serving(quick(2, 0));
    h.core
        .stop(&mut h.fx, None, StopCause::Signal(Signal::SIGTERM));
    h.exit(1, 0);
    h.take();
    // Another stop request only waits too.
    let (waiter, _reply) = Reply::pair();
    assert!(!h.core.stop(&mut h.fx, Some(waiter), StopCause::Request));
    assert_eq!(h.take(), vec![]);
    assert!(!h
        .core
        .stop(&mut h.fx, None, StopCause::Signal(Signal::SIGINT)));
    assert_eq!(h.take(), vec![sigkill(2)]);
    h.deliver(Timer::DrainDeadline(2));
    assert_eq!(h.take(), vec![], "killed already");
    h.killed(2, Signal::SIGKILL);
    assert!(h.core.is_finished());
    assert_eq!(h.core.into_stop_waiters().len(), 1);
}

#[test]
fn nothing_starts_while_stopping() {
    let mut h = Harness::serving(quick(2, 0));
    h.exit(2, 1);
    h.take();
    h.core.stop(&mut h.fx, None, StopCause::Request);
    assert_eq!(h.take(), drain(1).to_vec(), "the respawn is dropped");
    h.fire(Timer::RespawnDue { slot: 1, token: 1 });
    h.sighup();
    assert_eq!(h.take(), vec![]);
    let mut restart = h.restart(false);
    assert_eq!(restart.get(), Some(shutting_down()));
    assert_eq!(h.core.scale(&mut h.fx, 3), shutting_down());
    assert_eq!(h.core.refuses_reload(), Some(shutting_down()));
    assert_eq!(h.take(), vec![Effect::Answer(shutting_down())]);
    h.exit(1, 0);
    assert!(h.core.is_finished());
}
