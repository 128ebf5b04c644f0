//! Boot: the first generation's workers start, and it serves once all are
//! ready.

use super::fake::*;
use crate::config::Readiness;
use crate::core::workers::WorkerEvent;
use crate::core::{LaunchError, SlotState};

#[test]
fn boot_launches_every_worker_with_a_ready_deadline() {
    let mut h = Harness::new(spec(3));
    h.core.start(&mut h.fx).expect("the fake launches");
    assert_eq!(
        h.take(),
        vec![
            launch(1, 1, 0),
            ready_deadline(1),
            launch(2, 1, 1),
            ready_deadline(2),
            launch(3, 1, 2),
            ready_deadline(3),
        ]
    );
    assert_eq!(h.core.slots().len(), 3);
    assert_eq!(h.core.serving_generation(), 0, "nothing is ready yet");
}

#[test]
fn first_generation_serves_once_every_worker_is_ready() {
    let mut h = Harness::new(spec(2));
    h.core.start(&mut h.fx).expect("the fake launches");
    h.take();
    h.advance(ms(40));
    h.ready(2);
    assert_eq!(h.take(), vec![Effect::Ready(2)]);
    assert_eq!(h.core.serving_generation(), 0, "worker 1 is not ready");
    h.ready(2);
    assert_eq!(h.take(), vec![], "a repeated READY=1 changes nothing");
    h.ready(1);
    assert_eq!(h.take(), vec![Effect::Ready(1)]);
    assert_eq!(h.core.serving_generation(), 1);
    let report = h.core.manager_report().expect("not stopping");
    assert_eq!(report.status, "generation 1: 2/2 workers ready");
    assert!(report.serving && report.settled);
}

#[test]
fn boot_launch_failure_kills_the_workers_already_started() {
    let mut h = Harness::new(spec(3));
    h.fx.fail_launches_after(2, 1);
    let err = h.core.start(&mut h.fx).expect_err("the third launch fails");
    assert!(matches!(err, LaunchError::Notify { .. }), "{err}");
    assert_eq!(
        h.take(),
        vec![
            launch(1, 1, 0),
            ready_deadline(1),
            launch(2, 1, 1),
            ready_deadline(2),
            Effect::LaunchFailed {
                id: 3,
                generation: 1,
                slot: 2
            },
            sigkill(1),
            sigkill(2),
        ]
    );
    assert!(h.core.slots().is_empty());
}

#[test]
fn ready_notice_is_ignored_when_a_probe_or_delay_decides() {
    let probes = [
        Readiness::Delay(ms(500)),
        Readiness::Exec {
            command: vec!["true".into()],
            interval: ms(200),
        },
    ];
    for ready in probes {
        let mut h = Harness::new(crate::config::ProgramSpec {
            ready: ready.clone(),
            ..spec(1)
        });
        h.core.start(&mut h.fx).expect("the fake launches");
        h.take();
        h.ready(1);
        assert_eq!(h.take(), vec![], "READY=1 with {ready:?}");
        assert_eq!(h.core.serving_generation(), 0);
        h.event(1, WorkerEvent::Ready);
        assert_eq!(h.take(), vec![Effect::Ready(1)], "the probe with {ready:?}");
        assert_eq!(h.core.serving_generation(), 1);
        assert!(matches!(h.core.slots()[0].state, SlotState::Settled(_)));
    }
}
