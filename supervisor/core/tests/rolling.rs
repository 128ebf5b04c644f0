//! Rolling restarts: batch after batch, and how far a failed one got.

use nix::sys::signal::Signal;

use super::fake::*;
use crate::core::Leftover;
use crate::protocol::{ErrorKind, Response, RestartReport};

#[test]
fn each_batch_starts_only_once_the_previous_one_is_committed() {
    let mut h = Harness::serving(quick(3, 1));
    let mut reply = h.restart(false);
    assert_eq!(h.take(), vec![launch(4, 2, 0), ready_deadline(4)]);
    h.advance(ms(100));
    h.ready(4);
    let mut expected = vec![Effect::Ready(4)];
    expected.extend(drain(1));
    expected.extend([launch(5, 2, 1), ready_deadline(5)]);
    assert_eq!(h.take(), expected);
    h.advance(ms(30));
    h.ready(5);
    let mut expected = vec![Effect::Ready(5)];
    expected.extend(drain(2));
    expected.extend([launch(6, 2, 2), ready_deadline(6)]);
    assert_eq!(h.take(), expected);
    assert!(reply.pending());
    h.advance(ms(70));
    h.ready(6);
    // The children's time: the slowest of each batch (100 + 30 + 70).
    let answer = Response::Restarted(RestartReport {
        generation: 2,
        ready_ms: 200,
        total_ms: 200,
        workers: 3,
        child_ready_ms: 200,
        drained_ms: None,
        ready_us: 200_000,
        child_ready_us: 200_000,
    });
    let mut expected = vec![Effect::Ready(6)];
    expected.extend(drain(3));
    expected.push(Effect::Answer(answer.clone()));
    assert_eq!(h.take(), expected);
    assert_eq!(reply.get(), Some(answer));
}

#[test]
fn rolling_batches_of_two_wait_for_both() {
    let mut h = Harness::serving(quick(3, 2));
    h.restart(false);
    assert_eq!(
        h.take(),
        vec![
            launch(4, 2, 0),
            ready_deadline(4),
            launch(5, 2, 1),
            ready_deadline(5)
        ]
    );
    h.ready(5);
    assert_eq!(h.take(), vec![Effect::Ready(5)]);
    h.ready(4);
    let mut expected = vec![Effect::Ready(4)];
    expected.extend(drain(1));
    expected.extend(drain(2));
    expected.extend([launch(6, 2, 2), ready_deadline(6)]);
    assert_eq!(h.take(), expected);
}

#[test]
fn a_failure_in_the_second_batch_says_how_far_it_got() {
    let mut h = Harness::serving(quick(3, 1));
    let mut reply = h.restart(false);
    h.ready(4);
    h.take();
    h.exit(5, 1);
    let message = "generation 2 worker 1 (pid 1004) exited with code 1 before it was ready; \
                   1 of 3 workers had been replaced by generation 2, the other 2 keep their old workers";
    let failed = error(ErrorKind::RestartFailed, message);
    let leftover = Leftover {
        signal: Some(Signal::SIGTERM),
        deadline: h.at(0) + crate::config::DEFAULT_DRAIN_TIMEOUT,
    };
    assert_eq!(
        h.take(),
        vec![Effect::Gone(5, leftover), Effect::Answer(failed.clone())]
    );
    assert_eq!(reply.get(), Some(failed));
    let serving: Vec<(u64, u64)> = h
        .core
        .slots()
        .iter()
        .map(|s| s.active().map(|w| (w.id, w.generation.number)).unwrap())
        .collect();
    assert_eq!(serving, vec![(4, 2), (2, 1), (3, 1)]);
    let report = h.core.manager_report().expect("not stopping");
    assert!(report.status.contains("generation 2 failed"), "{report:?}");
}
