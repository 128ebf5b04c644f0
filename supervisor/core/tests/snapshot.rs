//! The state handed to an upgraded binary: taken, restored, resumed, and
//! checked.

use std::sync::Arc;

use super::fake::*;
use crate::core::snapshot::{RestoreError, StateSnapshot, WorkerSnapshot};
use crate::core::{Core, CoreSnapshot, Timer};
use crate::sockets::BoundSocket;

fn no_socket(_: &Arc<BoundSocket>) -> usize {
    unreachable!("the tests' generations have no sockets")
}

/// Serving 3 workers of 4 after a scale down (worker 4 drains), slot 1
/// respawned (worker 5 still starting), slot 2 waiting to respawn; 7.1 s
/// after the start.
fn busy_core() -> Harness {
    let mut h = Harness::serving(quick(4, 0));
    h.core.scale(&mut h.fx, 3);
    h.advance(ms(1000));
    h.exit(2, 1);
    h.fire(Timer::RespawnDue { slot: 1, token: 1 });
    h.advance(ms(5000));
    h.exit(3, 1);
    h.advance(ms(1000));
    h.take();
    h
}

#[test]
fn snapshot_restore_resume_arms_what_is_left_of_each_deadline() {
    let h = busy_core();
    let now = h.fx.now;
    let snapshot = h.core.snapshot(now, &mut no_socket);
    // Through its wire format, as the new binary reads it.
    let json = serde_json::to_string(&snapshot).expect("serializable");
    let read: CoreSnapshot = serde_json::from_str(&json).expect("its own format");
    let mut fx = Fx::new();
    fx.now = now;
    let mut core = Core::restore(&read, &[], now).expect("a valid snapshot");
    core.resume(&mut fx);
    assert_eq!(
        fx.take(),
        vec![
            // Worker 5 started at 1.1 s: 24 s of its 30 s are left.
            Effect::Timer(ms(24_000), Timer::ReadyDeadline(5)),
            // Worker 4 was told to stop at 0 s: 22.9 s of its 30 s.
            Effect::Timer(ms(22_900), Timer::DrainDeadline(4)),
            // Slot 2's respawn, after the initial delay.
            respawn_due(ms(100), 2, 1),
        ]
    );
    let again = core.snapshot(now, &mut no_socket);
    assert_eq!(
        serde_json::to_value(&again).expect("serializable"),
        serde_json::to_value(&snapshot).expect("serializable"),
        "restore keeps everything the snapshot says"
    );
    // The restored core carries on: ids are not reused, timers work.
    core.on_timer(&mut fx, Timer::RespawnDue { slot: 2, token: 1 });
    assert_eq!(fx.take(), vec![launch(6, 1, 2), ready_deadline(6)]);
    core.on_timer(&mut fx, Timer::DrainDeadline(4));
    assert_eq!(fx.take(), vec![sigkill(4)]);
    assert_eq!(core.slots()[2].crashes.restarts, 1);
}

fn worker(id: u64, slot: usize, generation: u64) -> WorkerSnapshot {
    WorkerSnapshot {
        id,
        pid: 1000 + id as u32,
        slot,
        generation,
        state: StateSnapshot::Ready { ready_in: ms(5) },
        started_ago: ms(10),
        since_ago: ms(5),
        status: None,
    }
}

#[test]
fn validate_names_what_does_not_hold_together() {
    let base = Harness::serving(quick(2, 0))
        .core
        .snapshot(std::time::Instant::now(), &mut no_socket);
    base.validate(0)
        .expect("a snapshot of a running core is valid");
    let broken = |change: &dyn Fn(&mut CoreSnapshot)| {
        let mut s = base.clone();
        change(&mut s);
        s.validate(0).expect_err("broken").to_string()
    };
    assert_eq!(
        broken(&|s| s.serving = 9),
        "the state names generation 9 but does not describe it"
    );
    assert_eq!(
        broken(&|s| s.next.sockets = vec![0]),
        "the state names socket 0 of 0"
    );
    assert_eq!(
        broken(&|s| s.slots[1].active = None),
        "slot 1 has neither a worker nor a pending respawn"
    );
    assert_eq!(
        broken(&|s| s.slots[1].active = Some(worker(2, 0, 1))),
        "worker 2 is in slot 1 but says slot 0"
    );
    assert_eq!(
        broken(&|s| s.draining.push(worker(1, 0, 1))),
        "worker 1 appears twice"
    );
    assert_eq!(
        broken(&|s| s.draining.push(worker(3, 2, 1))),
        "worker 3 has id 3, not below the next id 3"
    );
    assert_eq!(
        broken(&|s| s.slots[0].active = Some(worker(1, 0, 4))),
        "the state names generation 4 but does not describe it"
    );
    let mut s = base.clone();
    s.serving = 9;
    let err = Core::restore(&s, &[], std::time::Instant::now()).expect_err("invalid");
    assert!(matches!(err, RestoreError::UnknownGeneration(9)));
}

#[test]
fn respawn_limit_counts_the_respawns_from_before_an_upgrade() {
    let mut h = Harness::serving(crate::config::ProgramSpec {
        respawn_limit: Some(crate::config::RespawnLimit {
            count: 2,
            within: ms(60_000),
        }),
        ..quick(1, 0)
    });
    // Two crashes, each respawned: the limit's count is reached.
    h.exit(1, 1);
    h.fire(Timer::RespawnDue { slot: 0, token: 1 });
    h.advance(ms(1000));
    h.exit(2, 1);
    h.fire(Timer::RespawnDue { slot: 0, token: 2 });
    h.advance(ms(1000));
    h.take();
    assert_eq!(h.core.gave_up(), None);
    // The upgrade: the new binary's core, from the snapshot's JSON.
    let now = h.fx.now;
    let json = serde_json::to_string(&h.core.snapshot(now, &mut no_socket)).expect("json");
    let read: CoreSnapshot = serde_json::from_str(&json).expect("its own format");
    h.core = Core::restore(&read, &[], now).expect("a valid snapshot");
    h.core.resume(&mut h.fx);
    h.take();
    // The third crash within the minute is past the limit, upgrade or not.
    h.exit(3, 1);
    assert!(
        h.core
            .gave_up()
            .is_some_and(|m| m.contains("crashed 3 times")),
        "{:?}",
        h.core.gave_up()
    );
}
