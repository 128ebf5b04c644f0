//! The restart report's numbers, on the fake clock: `ready_ms` (to the
//! last batch's READY=1) and `total_ms` (to the old workers' stop signal,
//! after the last batch's `min_ready_time`) from the restart's start, and
//! of `ready_ms` the part that was the children's own (`child_ready_ms`:
//! their start-up, and the `min_ready_time` of the batches before the
//! last).

use super::fake::*;
use crate::core::Timer;

#[test]
fn min_ready_time_holds_the_commit_and_counts_as_the_childrens_time() {
    let mut h = Harness::serving(spec(2)); // min_ready_time 250 ms
    let mut reply = h.restart(false);
    h.take();
    h.advance(ms(100));
    h.ready(3);
    h.advance(ms(50));
    h.ready(4);
    let settled = Timer::Settled {
        generation: 2,
        token: 1,
    };
    assert_eq!(
        h.take(),
        vec![
            Effect::Ready(3),
            Effect::Ready(4),
            Effect::Timer(ms(250), settled.clone())
        ]
    );
    assert!(reply.pending(), "the old workers still serve");
    h.fire(settled);
    // Ready 150 ms in, all of it the children's; the old workers were
    // told to drain 400 ms in, once the batch had stayed up 250 ms.
    let answer = restarted(2, 2, 150, 400, 150);
    let mut expected = Vec::new();
    expected.extend(drain(1));
    expected.extend(drain(2));
    expected.push(Effect::Answer(answer.clone()));
    assert_eq!(h.take(), expected);
    assert_eq!(reply.get(), Some(answer));
}

#[test]
fn each_rolling_batch_waits_out_min_ready_time() {
    let mut h = Harness::serving(crate::config::ProgramSpec {
        strategy: crate::config::Strategy::Rolling { batch: 1 },
        ..spec(2)
    });
    let mut reply = h.restart(false);
    h.take();
    h.advance(ms(40));
    h.ready(3);
    let first = Timer::Settled {
        generation: 2,
        token: 1,
    };
    assert_eq!(
        h.take(),
        vec![Effect::Ready(3), Effect::Timer(ms(250), first.clone())]
    );
    h.fire(first);
    let mut expected = drain(1).to_vec();
    expected.extend([launch(4, 2, 1), ready_deadline(4)]);
    assert_eq!(h.take(), expected);
    h.advance(ms(60));
    h.ready(4);
    let second = Timer::Settled {
        generation: 2,
        token: 2,
    };
    assert_eq!(
        h.take(),
        vec![Effect::Ready(4), Effect::Timer(ms(250), second.clone())]
    );
    h.fire(second);
    // Ready after 40 + 250 + 60 ms, all of it the children's (the first
    // batch's hold included: the second could not start before); drained
    // after the second batch's 250 ms too.
    let answer = restarted(2, 2, 350, 600, 350);
    let mut expected = drain(2).to_vec();
    expected.push(Effect::Answer(answer.clone()));
    assert_eq!(h.take(), expected);
    assert_eq!(reply.get(), Some(answer));
}
