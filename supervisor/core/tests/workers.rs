//! A worker's life outside restarts: respawn with backoff, deadlines, late
//! and unknown events.

use nix::sys::signal::Signal;

use super::fake::*;
use crate::config::{ProgramSpec, DEFAULT_DRAIN_TIMEOUT};
use crate::core::workers::STABLE_AFTER;
use crate::core::{Leftover, Timer};
use crate::notify::Notice;

/// The leftover of a worker that exited on its own at `at`.
fn exited_at(at: std::time::Instant) -> Leftover {
    Leftover {
        signal: Some(Signal::SIGTERM),
        deadline: at + DEFAULT_DRAIN_TIMEOUT,
    }
}

fn backoff(initial: u64, max: u64) -> ProgramSpec {
    ProgramSpec {
        respawn_backoff: ms(initial),
        respawn_backoff_max: ms(max),
        ..quick(1, 0)
    }
}

#[test]
fn respawn_backoff_doubles_up_to_its_cap() {
    let mut h = Harness::serving(backoff(100, 300));
    let delays = [100, 200, 300, 300];
    for (i, delay) in delays.into_iter().enumerate() {
        let (id, token) = (i as u64 + 1, i as u64 + 1);
        h.exit(id, 1);
        let now = h.fx.now;
        assert_eq!(
            h.take(),
            vec![
                Effect::Gone(id, exited_at(now)),
                respawn_due(ms(delay), 0, token)
            ],
            "crash {}",
            i + 1
        );
        assert_eq!(
            h.core.worker_rows(now, std::time::SystemTime::now())[0].state,
            "respawning"
        );
        h.fire(Timer::RespawnDue { slot: 0, token });
        assert_eq!(h.take(), vec![launch(id + 1, 1, 0), ready_deadline(id + 1)]);
    }
    assert_eq!(h.core.slots()[0].crashes.restarts, 4);
}

#[test]
fn backoff_starts_over_after_a_stable_run() {
    let mut h = Harness::serving(backoff(100, 10_000));
    h.exit(1, 1);
    h.fire(Timer::RespawnDue { slot: 0, token: 1 });
    h.ready(2);
    h.advance(STABLE_AFTER - ms(1));
    h.exit(2, 1);
    assert_eq!(
        h.take()[6..],
        [respawn_due(ms(200), 0, 2)],
        "not stable yet"
    );
    h.fire(Timer::RespawnDue { slot: 0, token: 2 });
    h.ready(3);
    h.advance(STABLE_AFTER);
    h.take();
    h.exit(3, 1);
    let now = h.fx.now;
    assert_eq!(
        h.take(),
        vec![Effect::Gone(3, exited_at(now)), respawn_due(ms(100), 0, 3)]
    );
}

#[test]
fn a_committed_restart_resets_the_backoff() {
    let mut h = Harness::serving(backoff(100, 10_000));
    h.exit(1, 1);
    h.fire(Timer::RespawnDue { slot: 0, token: 1 });
    h.exit(2, 1);
    h.fire(Timer::RespawnDue { slot: 0, token: 2 });
    h.ready(3);
    assert_eq!(h.core.slots()[0].crashes.restarts, 2);
    h.restart(false);
    h.ready(4);
    assert_eq!(h.core.slots()[0].crashes.restarts, 0);
    h.take();
    h.exit(4, 1);
    let now = h.fx.now;
    // Tokens 1 and 2 named the respawns, 3 the restart's batch.
    assert_eq!(
        h.take(),
        vec![Effect::Gone(4, exited_at(now)), respawn_due(ms(100), 0, 4)]
    );
}

#[test]
fn a_respawn_that_cannot_launch_is_tried_again_later() {
    let mut h = Harness::serving(backoff(100, 10_000));
    h.exit(1, 1);
    h.take();
    h.fx.fail_launches(1);
    h.fire(Timer::RespawnDue { slot: 0, token: 1 });
    assert_eq!(
        h.take(),
        vec![
            Effect::LaunchFailed {
                id: 2,
                generation: 1,
                slot: 0
            },
            respawn_due(ms(200), 0, 2)
        ]
    );
    h.fire(Timer::RespawnDue { slot: 0, token: 2 });
    assert_eq!(h.take(), vec![launch(3, 1, 0), ready_deadline(3)]);
    assert_eq!(h.core.slots()[0].crashes.restarts, 2);
}

#[test]
fn a_stale_respawn_timer_is_ignored() {
    let mut h = Harness::serving(quick(1, 0));
    h.exit(1, 1);
    h.fire(Timer::RespawnDue { slot: 0, token: 1 });
    h.take();
    h.deliver(Timer::RespawnDue { slot: 0, token: 1 });
    h.deliver(Timer::RespawnDue { slot: 0, token: 9 });
    h.deliver(Timer::RespawnDue { slot: 5, token: 1 });
    assert_eq!(h.take(), vec![]);
    assert_eq!(h.core.slots()[0].active().map(|w| w.id), Some(2));
}

#[test]
fn a_serving_worker_missing_its_ready_deadline_is_killed_then_respawned() {
    let mut h = Harness::new(quick(1, 0));
    h.core.start(&mut h.fx).expect("the fake launches");
    h.take();
    h.fire(Timer::ReadyDeadline(1));
    assert_eq!(h.take(), vec![sigkill(1)]);
    h.killed(1, Signal::SIGKILL);
    let now = h.fx.now;
    let leftover = Leftover {
        signal: Some(Signal::SIGKILL),
        deadline: now,
    };
    assert_eq!(
        h.take(),
        vec![Effect::Gone(1, leftover), respawn_due(ms(100), 0, 1)]
    );
    assert_eq!(h.core.serving_generation(), 0);
}

#[test]
fn the_drain_deadline_kills_and_a_stale_one_is_ignored() {
    let mut h = Harness::serving(quick(1, 0));
    h.restart(false);
    h.ready(2);
    h.take();
    h.fire(Timer::DrainDeadline(1));
    assert_eq!(h.take(), vec![sigkill(1)]);
    assert_eq!(h.fx.now, h.at(0) + DEFAULT_DRAIN_TIMEOUT);
    h.deliver(Timer::DrainDeadline(1));
    assert_eq!(h.take(), vec![], "killed already");
    h.killed(1, Signal::SIGKILL);
    let leftover = Leftover {
        signal: Some(Signal::SIGKILL),
        deadline: h.fx.now,
    };
    assert_eq!(h.take(), vec![Effect::Gone(1, leftover)]);
    h.deliver(Timer::DrainDeadline(1));
    assert_eq!(h.take(), vec![], "gone");
}

#[test]
fn late_events_for_unknown_workers_are_ignored() {
    let mut h = Harness::serving(quick(1, 0));
    h.restart(false);
    h.ready(2);
    h.exit(1, 0);
    h.take();
    // Worker 1 is gone, 99 never was.
    for id in [1, 99] {
        h.ready(id);
        h.exit(id, 0);
        h.event(id, crate::core::workers::WorkerEvent::Ready);
        h.deliver(Timer::ReadyDeadline(id));
        h.deliver(Timer::DrainDeadline(id));
    }
    assert_eq!(h.take(), vec![]);
    assert_eq!(h.core.workers().count(), 1);
}

#[test]
fn a_status_notice_is_kept_for_status() {
    let mut h = Harness::serving(quick(1, 0));
    let status = Notice::Status("warming caches".into());
    h.event(1, crate::core::workers::WorkerEvent::Notice(status));
    assert_eq!(h.take(), vec![]);
    let rows = h.core.worker_rows(h.fx.now, std::time::SystemTime::now());
    assert_eq!(rows[0].status.as_deref(), Some("warming caches"));
}
