//! Scale and reload.

use std::sync::Arc;

use super::fake::*;
use crate::config::ProgramSpec;
use crate::core::{Asked, Next, RestartWaiter, Timer};
use crate::protocol::{ErrorKind, Response};

fn next(spec: ProgramSpec) -> Next {
    Next {
        spec: Arc::new(spec),
        sockets: Arc::from(Vec::new()),
    }
}

impl Harness {
    fn reload(&mut self, spec: ProgramSpec, drained: bool) -> Reply {
        let (reply, rx) = Reply::pair();
        let asked = Asked::Client(RestartWaiter { reply, drained });
        self.core.reload(&mut self.fx, next(spec), asked);
        rx
    }

    fn scale(&mut self, workers: usize) -> Response {
        self.core.scale(&mut self.fx, workers)
    }
}

#[test]
fn scale_up_starts_the_serving_generation_in_new_slots() {
    let mut h = Harness::serving(quick(1, 0));
    assert_eq!(h.scale(3), Response::Scaled { workers: 3 });
    assert_eq!(
        h.take(),
        vec![
            launch(2, 1, 1),
            ready_deadline(2),
            launch(3, 1, 2),
            ready_deadline(3)
        ]
    );
    assert_eq!(
        h.core.next().spec.workers,
        3,
        "the next generation keeps it"
    );
    h.restart(false);
    assert_eq!(h.take().len(), 6, "a restart starts 3 workers");
}

#[test]
fn scale_down_drains_the_highest_slots() {
    let mut h = Harness::serving(quick(3, 0));
    assert_eq!(h.scale(1), Response::Scaled { workers: 1 });
    let mut expected = drain(2).to_vec();
    expected.extend(drain(3));
    assert_eq!(h.take(), expected);
    assert_eq!(h.core.slots().len(), 1);
    assert_eq!(h.core.slots()[0].active().map(|w| w.id), Some(1));
}

#[test]
fn scale_during_a_respawn() {
    let mut h = Harness::serving(quick(2, 0));
    h.exit(2, 1);
    h.take();
    // Down: the respawning slot goes, and its timer finds nothing.
    assert_eq!(h.scale(1), Response::Scaled { workers: 1 });
    assert_eq!(h.take(), vec![]);
    h.fire(Timer::RespawnDue { slot: 1, token: 1 });
    assert_eq!(h.take(), vec![]);
    // Up while slot 0 waits to respawn: the new slot starts now, slot 0 when due.
    h.exit(1, 1);
    h.take();
    assert_eq!(h.scale(2), Response::Scaled { workers: 2 });
    assert_eq!(h.take(), vec![launch(3, 1, 1), ready_deadline(3)]);
    h.fire(Timer::RespawnDue { slot: 0, token: 2 });
    assert_eq!(h.take(), vec![launch(4, 1, 0), ready_deadline(4)]);
}

#[test]
fn scale_is_refused_during_a_rollout_and_for_bad_counts() {
    let mut h = Harness::serving(quick(1, 0));
    for bad in [0, 4097] {
        let message = format!("workers must be between 1 and 4096, not {bad}");
        assert_eq!(h.scale(bad), error(ErrorKind::BadRequest, &message));
    }
    h.restart(false);
    h.take();
    let busy = "a restart (generation 2) is in progress: scale once it is done";
    assert_eq!(h.scale(2), error(ErrorKind::Busy, busy));
    assert_eq!(h.take(), vec![]);
    assert_eq!(h.core.next().spec.workers, 1);
}

#[test]
fn scale_that_cannot_launch_says_how_many_run() {
    let mut h = Harness::serving(quick(1, 0));
    h.fx.fail_launches_after(1, 1);
    let message = "cannot start worker 2: cannot create the notify socket /fake/notify: \
                   scripted failure; now 2 workers";
    assert_eq!(h.scale(3), error(ErrorKind::RestartFailed, message));
    assert_eq!(
        h.take(),
        vec![
            launch(2, 1, 1),
            ready_deadline(2),
            Effect::LaunchFailed {
                id: 3,
                generation: 1,
                slot: 2
            }
        ]
    );
    assert_eq!(h.core.slots().len(), 2);
}

#[test]
fn reload_with_more_workers_adds_slots() {
    let mut h = Harness::serving(quick(1, 0));
    let mut reply = h.reload(quick(3, 0), false);
    assert_eq!(
        h.take(),
        vec![
            launch(2, 2, 0),
            ready_deadline(2),
            launch(3, 2, 1),
            ready_deadline(3),
            launch(4, 2, 2),
            ready_deadline(4)
        ]
    );
    assert_eq!(h.core.slots().len(), 3);
    h.ready(2);
    h.ready(3);
    h.ready(4);
    let effects = h.take();
    assert_eq!(effects[3..5], drain(1));
    assert_eq!(effects.len(), 6, "{effects:?}");
    assert!(matches!(reply.get(), Some(Response::Restarted(r)) if r.workers == 3));
    let ids: Vec<u64> = h
        .core
        .slots()
        .iter()
        .map(|s| s.active().unwrap().id)
        .collect();
    assert_eq!(ids, vec![2, 3, 4]);
}

#[test]
fn reload_with_fewer_workers_drains_the_extra_slots_at_the_end() {
    let mut h = Harness::serving(quick(3, 0));
    let mut reply = h.reload(quick(1, 0), true);
    assert_eq!(h.take(), vec![launch(4, 2, 0), ready_deadline(4)]);
    h.ready(4);
    let mut expected = vec![Effect::Ready(4)];
    expected.extend(drain(1));
    expected.extend(drain(3));
    expected.extend(drain(2));
    assert_eq!(h.take(), expected);
    assert_eq!(h.core.slots().len(), 1);
    h.exit(1, 0);
    h.exit(3, 0);
    assert!(reply.pending(), "worker 2 still drains");
    h.exit(2, 0);
    assert!(matches!(reply.get(), Some(Response::Restarted(r)) if r.drained_ms == Some(0)));
}

#[test]
fn a_failed_reload_removes_the_slots_it_added() {
    let mut h = Harness::serving(quick(1, 0));
    let mut reply = h.reload(quick(3, 0), false);
    h.take();
    h.exit(3, 1);
    let effects = h.take();
    let message = "generation 2 worker 1 (pid 1002) exited with code 1 before it was ready; \
                   generation 1 keeps serving";
    let failed = error(ErrorKind::RestartFailed, message);
    assert!(matches!(effects[0], Effect::Gone(3, _)));
    assert_eq!(
        effects[1..],
        [sigkill(4), sigkill(2), Effect::Answer(failed.clone())]
    );
    assert_eq!(reply.get(), Some(failed));
    assert_eq!(h.core.slots().len(), 1);
    assert_eq!(h.core.slots()[0].active().map(|w| w.id), Some(1));
}

#[test]
fn reload_during_a_rollout_is_coalesced_and_runs_the_new_spec() {
    let mut h = Harness::serving(quick(1, 0));
    let mut first = h.restart(false);
    let mut reload = h.reload(quick(2, 0), false);
    h.take();
    h.ready(2);
    let effects = h.take();
    assert!(matches!(first.get(), Some(Response::Restarted(r)) if r.generation == 2));
    assert_eq!(
        effects[effects.len() - 4..],
        [
            launch(3, 3, 0),
            ready_deadline(3),
            launch(4, 3, 1),
            ready_deadline(4)
        ]
    );
    h.ready(3);
    h.ready(4);
    assert!(matches!(reload.get(), Some(Response::Restarted(r)) if r.generation == 3));
}
