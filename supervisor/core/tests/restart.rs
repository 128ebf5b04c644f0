//! All-at-once restarts: commit, the report's numbers, min_ready_time,
//! rollback, `--drained`, and coalescing.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::fake::*;
use crate::core::{Leftover, Timer};
use crate::protocol::{ErrorKind, Response};

#[test]
fn restart_starts_the_next_generation_then_drains_the_old_one() {
    let mut h = Harness::serving(quick(2, 0));
    let mut reply = h.restart(false);
    assert_eq!(
        h.take(),
        vec![
            launch(3, 2, 0),
            ready_deadline(3),
            launch(4, 2, 1),
            ready_deadline(4)
        ]
    );
    assert!(reply.pending());
    assert_eq!(h.core.restarting(), Some(2));
    h.advance(ms(100));
    h.ready(3);
    assert_eq!(h.take(), vec![Effect::Ready(3)]);
    h.advance(ms(50));
    h.ready(4);
    let answer = restarted(2, 2, 150, 150, 150);
    let mut expected = vec![Effect::Ready(4)];
    expected.extend(drain(1));
    expected.extend(drain(2));
    expected.push(Effect::Answer(answer.clone()));
    assert_eq!(h.take(), expected);
    assert_eq!(reply.get(), Some(answer));
    assert_eq!(h.core.serving_generation(), 2);
    assert_eq!(h.core.restarting(), None);
    let draining: Vec<u64> = h.core.draining().iter().map(|w| w.id).collect();
    assert_eq!(draining, vec![1, 2]);
}

#[test]
fn old_workers_get_the_specs_stop_signal() {
    let mut h = Harness::serving(crate::config::ProgramSpec {
        stop_signal: Signal::SIGQUIT,
        drain_timeout: ms(700),
        ..quick(1, 0)
    });
    h.restart(false);
    h.take();
    h.ready(2);
    let effects = h.take();
    assert_eq!(
        effects[..3],
        [
            Effect::Ready(2),
            Effect::Signal(1, Signal::SIGQUIT),
            Effect::Timer(ms(700), Timer::DrainDeadline(1)),
        ]
    );
}

#[test]
fn new_worker_dying_within_min_ready_time_fails_the_restart() {
    let mut h = Harness::serving(spec(2));
    let mut reply = h.restart(false);
    h.advance(ms(150));
    h.ready(3);
    h.ready(4);
    h.take();
    h.advance(ms(100));
    h.exit(4, 1);
    let message = "generation 2 worker 1 (pid 1003) exited with code 1 100 ms after it was ready \
                   (a new worker must stay up for min_ready_time, 250 ms); generation 1 keeps serving";
    let failed = error(ErrorKind::RestartFailed, message);
    let leftover = Leftover {
        signal: Some(Signal::SIGTERM),
        deadline: h.at(250) + crate::config::DEFAULT_DRAIN_TIMEOUT,
    };
    assert_eq!(
        h.take(),
        vec![
            Effect::Gone(4, leftover),
            sigkill(3),
            Effect::Answer(failed.clone())
        ]
    );
    assert_eq!(reply.get(), Some(failed));
    // Its min_ready_time timer comes anyway, and changes nothing.
    h.fire(Timer::Settled {
        generation: 2,
        token: 1,
    });
    assert_eq!(h.take(), vec![]);
    let serving: Vec<u64> = h
        .core
        .slots()
        .iter()
        .map(|s| s.active().unwrap().id)
        .collect();
    assert_eq!(serving, vec![1, 2]);
}

#[test]
fn a_settled_timer_of_another_batch_is_ignored() {
    let mut h = Harness::serving(spec(1));
    h.restart(false);
    h.ready(2);
    h.take();
    h.deliver(Timer::Settled {
        generation: 2,
        token: 7,
    });
    h.deliver(Timer::Settled {
        generation: 1,
        token: 1,
    });
    assert_eq!(h.take(), vec![], "neither names the batch that settles");
    assert_eq!(h.core.restarting(), Some(2));
    h.fire(Timer::Settled {
        generation: 2,
        token: 1,
    });
    assert_eq!(h.take()[..2], drain(1));
    h.deliver(Timer::Settled {
        generation: 2,
        token: 1,
    });
    assert_eq!(h.take(), vec![], "the batch was committed already");
}

#[test]
fn a_new_worker_exiting_rolls_back_and_the_old_ones_keep_serving() {
    let mut h = Harness::serving(quick(3, 0));
    let mut reply = h.restart(false);
    h.ready(4);
    h.take();
    h.exit(5, 3);
    let message =
        "generation 2 worker 1 (pid 1004) exited with code 3 before it was ready; generation 1 keeps serving";
    let failed = error(ErrorKind::RestartFailed, message);
    let leftover = Leftover {
        signal: Some(Signal::SIGTERM),
        deadline: h.at(0) + crate::config::DEFAULT_DRAIN_TIMEOUT,
    };
    // The exited worker is not signalled (its pid is no longer its own);
    // the rest of its batch is killed.
    assert_eq!(
        h.take(),
        vec![
            Effect::Gone(5, leftover),
            sigkill(6),
            sigkill(4),
            Effect::Answer(failed.clone())
        ]
    );
    assert_eq!(reply.get(), Some(failed));
    let serving: Vec<u64> = h
        .core
        .slots()
        .iter()
        .map(|s| s.active().unwrap().id)
        .collect();
    assert_eq!(serving, vec![1, 2, 3]);
    assert_eq!(h.core.serving_generation(), 1);
    h.killed(6, Signal::SIGKILL);
    let leftover = Leftover {
        signal: Some(Signal::SIGKILL),
        deadline: h.at(0),
    };
    assert_eq!(h.take(), vec![Effect::Gone(6, leftover)]);
}

#[test]
fn a_new_worker_missing_its_ready_deadline_rolls_back() {
    let mut h = Harness::serving(quick(2, 0));
    let mut reply = h.restart(false);
    h.ready(3);
    h.take();
    h.fire(Timer::ReadyDeadline(4));
    let message =
        "generation 2 worker 1 (pid 1003) not ready within 30 s (ready = \"notify\": it never \
                   sent READY=1 on NOTIFY_SOCKET; for a server that does not speak sd_notify use \
                   ready = \"exec\" or \"delay\"); generation 1 keeps serving";
    let failed = error(ErrorKind::RestartFailed, message);
    assert_eq!(
        h.take(),
        vec![sigkill(4), sigkill(3), Effect::Answer(failed.clone())]
    );
    assert_eq!(reply.get(), Some(failed));
    h.fire(Timer::ReadyDeadline(3));
    assert_eq!(h.take(), vec![], "worker 3 was ready, and is killed now");
}

#[test]
fn restart_drained_is_answered_once_the_old_workers_exited() {
    let mut h = Harness::serving(quick(2, 0));
    let mut reply = h.restart(true);
    h.take();
    h.advance(ms(100));
    h.ready(3);
    h.ready(4);
    let mut expected = vec![Effect::Ready(3), Effect::Ready(4)];
    expected.extend(drain(1));
    expected.extend(drain(2));
    assert_eq!(h.take(), expected);
    assert!(reply.pending());
    assert!(h.core.awaits_drain());
    let deadline = h.at(100) + crate::config::DEFAULT_DRAIN_TIMEOUT;
    h.advance(ms(200));
    h.exit(1, 0);
    let leftover = Leftover {
        signal: None,
        deadline,
    };
    assert_eq!(h.take(), vec![Effect::Gone(1, leftover.clone())]);
    assert!(reply.pending(), "worker 2 still drains");
    h.advance(ms(100));
    h.exit(2, 0);
    let Response::Restarted(mut expected) = restarted(2, 2, 100, 100, 100) else {
        unreachable!()
    };
    expected.drained_ms = Some(400);
    let answer = Response::Restarted(expected);
    assert_eq!(
        h.take(),
        vec![Effect::Gone(2, leftover), Effect::Answer(answer.clone())]
    );
    assert_eq!(reply.get(), Some(answer));
    assert!(!h.core.awaits_drain());
}

#[test]
fn restarts_asked_during_a_rollout_are_answered_by_one_more() {
    let mut h = Harness::serving(quick(1, 0));
    let mut first = h.restart(false);
    assert_eq!(h.take(), vec![launch(2, 2, 0), ready_deadline(2)]);
    let mut queued: Vec<Reply> = (0..3).map(|_| h.restart(false)).collect();
    assert_eq!(h.take(), vec![], "queued, not started");
    h.ready(2);
    let second = restarted(2, 1, 0, 0, 0);
    let mut expected = vec![Effect::Ready(2)];
    expected.extend(drain(1));
    expected.push(Effect::Answer(second.clone()));
    expected.extend([launch(3, 3, 0), ready_deadline(3)]);
    assert_eq!(h.take(), expected);
    assert_eq!(first.get(), Some(second));
    assert!(queued.iter_mut().all(|r| r.pending()));
    h.ready(3);
    let third = restarted(3, 1, 0, 0, 0);
    let mut expected = vec![Effect::Ready(3)];
    expected.extend(drain(2));
    expected.extend([0, 1, 2].map(|_| Effect::Answer(third.clone())));
    assert_eq!(h.take(), expected);
    for mut r in queued {
        assert_eq!(r.get(), Some(third.clone()));
    }
    assert_eq!(h.core.restarting(), None, "exactly one more rollout");
}

#[test]
fn sighups_during_a_rollout_start_exactly_one_more() {
    let mut h = Harness::serving(quick(1, 0));
    h.sighup();
    assert_eq!(h.take(), vec![launch(2, 2, 0), ready_deadline(2)]);
    h.sighup();
    h.sighup();
    assert_eq!(h.take(), vec![]);
    h.ready(2);
    let mut expected = vec![Effect::Ready(2)];
    expected.extend(drain(1));
    expected.extend([launch(3, 3, 0), ready_deadline(3)]);
    assert_eq!(h.take(), expected);
    h.ready(3);
    let mut expected = vec![Effect::Ready(3)];
    expected.extend(drain(2));
    assert_eq!(h.take(), expected);
    assert_eq!(h.core.restarting(), None);
}

#[test]
fn a_change_during_a_build_stops_it_and_builds_the_new_one_at_once() {
    let mut h = Harness::serving(quick(1, 0));
    h.change();
    assert_eq!(h.take(), vec![launch(2, 2, 0), ready_deadline(2)]);
    let mut client = h.restart(false);
    // Generation 2 is still building: it is out of date, stopped (its
    // whole group killed) and generation 3 starts now, not after it.
    h.change();
    assert_eq!(
        h.take(),
        vec![
            Effect::Signal(2, Signal::SIGKILL),
            launch(3, 3, 0),
            ready_deadline(3)
        ]
    );
    assert!(client.pending(), "its asker waits for the newer one");
    assert_eq!(
        h.core.serving_generation(),
        1,
        "generation 1 serves meanwhile"
    );
    h.exit(2, 137);
    h.ready(3);
    assert_eq!(client.get(), Some(restarted(3, 1, 0, 0, 0)));
    assert_eq!(h.core.restarting(), None, "nothing more queued");
}

#[test]
fn a_change_once_the_new_generation_is_ready_waits_for_it() {
    let mut h = Harness::serving(crate::config::ProgramSpec {
        min_ready_time: Duration::from_secs(1),
        ..quick(1, 0)
    });
    h.change();
    h.take();
    h.ready(2);
    h.take();
    // Ready, held for min_ready_time: it may have connections, so it is
    // not stopped; one more restart follows it.
    h.change();
    assert_eq!(h.take(), vec![]);
    assert_eq!(h.core.restarting(), Some(2));
}

#[test]
fn a_failed_rollout_still_starts_the_one_queued_behind_it() {
    let mut h = Harness::serving(quick(1, 0));
    let mut first = h.restart(false);
    let mut second = h.restart(false);
    h.take();
    h.exit(2, 1);
    let effects = h.take();
    assert_eq!(effects.len(), 4, "{effects:?}");
    assert!(matches!(effects[0], Effect::Gone(2, _)));
    assert!(matches!(
        first.get(),
        Some(Response::Error {
            kind: ErrorKind::RestartFailed,
            ..
        })
    ));
    assert_eq!(effects[2..], [launch(3, 3, 0), ready_deadline(3)]);
    h.ready(3);
    assert_eq!(second.get(), Some(restarted(3, 1, 0, 0, 0)));
}

#[test]
fn a_restart_failing_before_any_generation_was_ready_says_none_was_kept() {
    let mut h = Harness::new(quick(1, 0));
    h.core.start(&mut h.fx).expect("the fake launches");
    let mut reply = h.restart(false);
    h.take();
    h.exit(2, 1);
    let message = "generation 2 worker 0 (pid 1001) exited with code 1 before it was ready; \
                   no generation has become ready yet, so none was kept: generation 1's workers \
                   keep being retried";
    assert_eq!(reply.get(), Some(error(ErrorKind::RestartFailed, message)));
    assert_eq!(h.core.serving_generation(), 0);
    assert_eq!(h.core.slots()[0].active().map(|w| w.id), Some(1));
}

#[test]
fn restart_drained_with_no_old_worker_left_is_answered_at_once() {
    let mut h = Harness::serving(quick(1, 0));
    h.exit(1, 1); // slot 0 waits to respawn: nothing to drain
    h.take();
    let mut reply = h.restart(true);
    h.advance(ms(80));
    h.ready(2);
    let Some(Response::Restarted(report)) = reply.get() else {
        panic!("answered when committed")
    };
    assert_eq!((report.ready_ms, report.drained_ms), (80, Some(80)));
    assert_eq!(
        h.take(),
        vec![
            launch(2, 2, 0),
            ready_deadline(2),
            Effect::Ready(2),
            Effect::Answer(Response::Restarted(report))
        ],
        "the pending respawn no longer applies; nothing is signalled"
    );
    h.fire(crate::core::Timer::RespawnDue { slot: 0, token: 1 });
    assert_eq!(h.take(), vec![]);
}

#[test]
fn an_old_worker_respawns_while_its_replacement_starts() {
    let mut h = Harness::serving(quick(1, 0));
    h.restart(false);
    h.exit(1, 1);
    h.take();
    h.fire(crate::core::Timer::RespawnDue { slot: 0, token: 1 });
    assert_eq!(h.take(), vec![launch(3, 1, 0), ready_deadline(3)]);
    h.ready(2);
    let mut expected = vec![Effect::Ready(2)];
    expected.extend(drain(3));
    expected.push(Effect::Answer(restarted(2, 1, 100, 100, 100)));
    assert_eq!(h.take(), expected, "the respawned old worker drains too");
}
