//! The restart report's numbers, on the fake clock: `ready_ms` and
//! `total_ms` from the restart's start, and of `ready_ms` the part that
//! was the children's own (`child_ready_ms`), `min_ready_time` included.

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
    // The batch was ready (and proven) 400 ms in: 150 ms to READY=1 and
    // the 250 ms it had to stay up, both the children's own time.
    let answer = restarted(2, 2, 400, 400, 400);
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
    // 40 + 250 + 60 + 250 ms, all of it the children's.
    let answer = restarted(2, 2, 600, 600, 600);
    let mut expected = drain(2).to_vec();
    expected.push(Effect::Answer(answer.clone()));
    assert_eq!(h.take(), expected);
    assert_eq!(reply.get(), Some(answer));
}
