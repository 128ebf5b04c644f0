//! Per-generation sockets (`core/handover.rs`, `core/steering.rs`): a
//! restart opens the new generation's socket, steers new connections to it
//! once its batch is ready, waits for the old socket to be quiet before the
//! old workers are told to stop, and releases the old socket when its
//! generation is gone. The sockets are real (bound to 127.0.0.1:0); the
//! queue lengths are the fake's.

use std::sync::Arc;

use super::fake::*;
use crate::config::{DEFAULT_HANDOVER_SETTLE, DEFAULT_HANDOVER_TIMEOUT};
use crate::core::Timer;
use crate::protocol::Response;
use crate::sockets::{BoundSocket, Handover};

fn socket(handover: Option<Handover>) -> Arc<BoundSocket> {
    Arc::new(BoundSocket::bind(&http_spec(handover)).expect("binds"))
}

fn steer(via: usize, targets: &[(u32, u32)]) -> Effect {
    Effect::Steer {
        via,
        targets: targets.to_vec(),
    }
}

/// The effects on the groups: programs attached and sockets released.
fn steering(effects: &[Effect]) -> Vec<&Effect> {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::Steer { .. } | Effect::Release(_)))
        .collect()
}

/// The hand-over check the effects armed, if any.
fn check_armed(effects: &[Effect]) -> Option<Timer> {
    effects.iter().rev().find_map(|e| match e {
        Effect::Timer(_, t @ Timer::HandOver { .. }) => Some(t.clone()),
        _ => None,
    })
}

/// Fires the hand-over's checks (the queues empty) until the old worker
/// `old` is told to stop; returns the effects of that last check.
fn settle(h: &mut Harness, check: &Timer, old: u64) -> Vec<Effect> {
    for _ in 0..100 {
        h.fire(check.clone());
        let effects = h.take();
        if signalled(&effects, old) {
            return effects;
        }
    }
    panic!("worker {old} was never told to stop");
}

fn signalled(effects: &[Effect], id: u64) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::Signal(w, _) if *w == id))
}

/// One worker on a steered socket, restarted: generation 2's worker (id 2)
/// is ready and the hand-over has begun. Returns the first check.
fn handing_over(h: &mut Harness) -> Timer {
    h.restart(false);
    let effects = h.take();
    assert_eq!(
        effects,
        vec![
            Effect::Sibling { of: 0, new: 1 },
            launch(2, 2, 0),
            ready_deadline(2)
        ],
        "the new generation gets a socket of its own; nothing is steered to it yet"
    );
    h.advance(ms(40));
    h.ready(2);
    let effects = h.take();
    assert_eq!(effects[..2], [Effect::Ready(2), steer(0, &[(1, 1)])]);
    assert!(
        !signalled(&effects, 1),
        "the old worker is not told to stop the moment new connections go elsewhere"
    );
    check_armed(&effects).expect("a check of the old socket's queue")
}

#[test]
fn boot_attaches_a_program_before_any_second_socket_joins() {
    let mut h = Harness::with_sockets(quick(1, 0), vec![socket(None)]);
    h.core.start(&mut h.fx).expect("starts");
    assert_eq!(
        h.take(),
        vec![launch(1, 1, 0), ready_deadline(1), steer(0, &[(0, 1)])]
    );
}

#[test]
fn a_shared_socket_is_neither_doubled_nor_steered() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(Some(Handover::Shared))]);
    h.restart(false);
    assert_eq!(h.take(), vec![launch(2, 2, 0), ready_deadline(2)]);
    h.ready(2);
    let effects = h.take();
    assert!(signalled(&effects, 1), "committed at once: {effects:?}");
    assert!(check_armed(&effects).is_none());
}

#[test]
fn the_old_worker_stops_once_its_socket_stayed_empty_for_the_settle_time() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    let check = handing_over(&mut h);
    // Connections wait on the old socket: not quiet yet.
    h.fx.queues.insert(0, 2);
    h.fire(check.clone());
    assert!(!signalled(&h.take(), 1));
    // Empty from now on; the settle time counts from the first empty look.
    h.fx.queues.insert(0, 0);
    h.fire(check.clone());
    let empty_since = h.fx.now;
    assert!(!signalled(&h.take(), 1));
    for _ in 0..100 {
        if h.fx.now >= empty_since + DEFAULT_HANDOVER_SETTLE {
            break;
        }
        h.fire(check.clone());
        let effects = h.take();
        if h.fx.now < empty_since + DEFAULT_HANDOVER_SETTLE {
            assert!(
                !signalled(&effects, 1),
                "too early at {:?}",
                h.fx.now - empty_since
            );
        } else {
            assert!(signalled(&effects, 1), "{effects:?}");
            assert!(effects
                .iter()
                .any(|e| matches!(e, Effect::Answer(Response::Restarted(_)))));
        }
    }
    // The old worker exits: its socket leaves the group, and the program
    // follows the new one into the hole.
    h.exit(1, 0);
    let effects = h.take();
    assert_eq!(
        effects[1..],
        [Effect::Release(0), steer(1, &[(0, 1)])],
        "{effects:?}"
    );
}

#[test]
fn a_queue_that_never_empties_is_given_up_on_at_the_timeout() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    let check = handing_over(&mut h);
    let began = h.fx.now;
    h.fx.queues.insert(0, 5);
    loop {
        h.fire(check.clone());
        let effects = h.take();
        if signalled(&effects, 1) {
            break;
        }
        assert!(h.fx.now - began < DEFAULT_HANDOVER_TIMEOUT);
    }
    assert!(h.fx.now - began >= DEFAULT_HANDOVER_TIMEOUT);
}

#[test]
fn a_rolled_back_generation_never_gets_a_connection() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    h.restart(false);
    h.take();
    h.exit(2, 1);
    let effects = h.take();
    let steered = steering(&effects);
    // Generation 2's socket leaves; the program, attached again since the
    // group changed, still names generation 1's.
    assert_eq!(
        steered,
        vec![&Effect::Release(1), &steer(0, &[(0, 1)])],
        "{effects:?}"
    );
    // Socket 1 was the last in the group: nothing moved, the old program
    // still holds (attaching it again is harmless).
    assert_eq!(h.core.steering().groups().count(), 1);
}

#[test]
fn a_new_worker_dying_during_the_hand_over_steers_back_to_the_old_one() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    let check = handing_over(&mut h);
    h.exit(2, 1);
    let effects = h.take();
    let steered = steering(&effects);
    assert_eq!(
        steered,
        vec![&Effect::Release(1), &steer(0, &[(0, 1)])],
        "{effects:?}"
    );
    assert!(!signalled(&effects, 1));
    // The check armed before is stale now.
    h.deliver(check);
    assert!(!signalled(&h.take(), 1));
}

#[test]
fn a_respawn_keeps_its_generations_socket() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    h.exit(1, 1);
    let effects = h.take();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Release(_))),
        "{effects:?}"
    );
}

#[test]
fn a_rolling_restart_splits_by_slots_and_spares_a_socket_with_a_worker_stopping() {
    let mut h = Harness::serving_on(quick(4, 1), vec![socket(None)]);
    h.restart(false);
    assert_eq!(h.take()[0], Effect::Sibling { of: 0, new: 1 });
    // Batch 1 (slot 0, worker 5) is ready: every new connection goes to it
    // while the old generation's socket quiets down.
    h.ready(5);
    let effects = h.take();
    assert_eq!(effects[1], steer(0, &[(1, 1)]));
    let check = check_armed(&effects).expect("armed");
    let effects = settle(&mut h, &check, 1);
    // Worker 1 drains, and shares generation 1's socket with workers 2-4:
    // generation 1 gets nothing until it is gone.
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Steer { .. })),
        "{effects:?}"
    );
    h.exit(1, 0);
    let effects = h.take();
    assert!(
        effects.contains(&steer(0, &[(0, 3), (1, 1)])),
        "three slots of generation 1, one of generation 2: {effects:?}"
    );
    assert!(!effects.iter().any(|e| matches!(e, Effect::Release(_))));
}

#[test]
fn the_steering_order_survives_a_snapshot() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    let check = handing_over(&mut h);
    settle(&mut h, &check, 1);
    // Worker 1 drains on socket 0; worker 2 serves on socket 1.
    let mut sockets: Vec<Arc<BoundSocket>> = Vec::new();
    let snapshot = h.core.snapshot(h.fx.now, &mut |s| match sockets
        .iter()
        .position(|k| Arc::ptr_eq(k, s))
    {
        Some(i) => i,
        None => {
            sockets.push(s.clone());
            sockets.len() - 1
        }
    });
    assert_eq!(snapshot.steering.len(), 1);
    let order: Vec<&Arc<BoundSocket>> = snapshot.steering[0].iter().map(|&i| &sockets[i]).collect();
    assert!(Arc::ptr_eq(order[0], &h.fx.sockets[0]) && Arc::ptr_eq(order[1], &h.fx.sockets[1]));
    let mut core = crate::core::Core::restore(&snapshot, &sockets, h.fx.now).expect("restores");
    core.resume(&mut h.fx);
    let effects = h.take();
    assert!(effects.contains(&steer(0, &[(1, 1)])), "{effects:?}");
    // The draining worker exits in the new supervisor: its socket leaves.
    let status = std::os::unix::process::ExitStatusExt::from_raw(0);
    core.on_worker(
        &mut h.fx,
        1,
        crate::core::workers::WorkerEvent::Exited(Ok(status)),
    );
    let effects = h.take();
    assert!(effects.contains(&Effect::Release(0)), "{effects:?}");
}

#[test]
fn a_socket_that_cannot_be_opened_fails_the_restart_and_the_old_one_serves() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    h.fx.siblings_fail = true;
    let mut reply = h.restart(false);
    let effects = h.take();
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Launch { .. } | Effect::Steer { .. })),
        "{effects:?}"
    );
    match reply.get() {
        Some(Response::Error { kind, message }) => {
            assert_eq!(kind, crate::protocol::ErrorKind::RestartFailed);
            assert!(
                message.contains("cannot open generation 2's socket")
                    && message.contains("generation 1 keeps serving"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.core.serving_generation(), 1);
    // The next restart tries again.
    h.fx.siblings_fail = false;
    h.restart(false);
    assert_eq!(h.take()[0], Effect::Sibling { of: 0, new: 1 });
}

#[test]
fn a_new_generation_that_cannot_launch_gives_its_socket_back() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    h.fx.fail_launches(1);
    h.restart(false);
    let effects = h.take();
    assert_eq!(effects[0], Effect::Sibling { of: 0, new: 1 });
    assert!(effects.contains(&Effect::Release(1)), "{effects:?}");
    assert_eq!(h.core.steering().groups().count(), 1);
    assert_eq!(
        h.core.steering().groups().next().map(Iterator::count),
        Some(1)
    );
}

#[test]
fn a_reload_that_keeps_the_address_opens_a_new_socket_beside_the_served_one() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    let next = h.core.next().clone();
    let (reply, _rx) = Reply::pair();
    let asked = crate::core::Asked::Client(crate::core::RestartWaiter {
        reply,
        drained: false,
    });
    h.core.reload(&mut h.fx, next, asked);
    assert_eq!(h.take()[0], Effect::Sibling { of: 0, new: 1 });
}

#[test]
fn a_generation_that_serves_nobody_hands_its_own_socket_to_the_next() {
    // Generation 1 crashes and waits to respawn: what queues on its socket
    // can only be taken by generation 2, which gets the same socket.
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    h.exit(1, 1);
    h.take();
    h.restart(false);
    let effects = h.take();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Sibling { .. })),
        "{effects:?}"
    );
    h.ready(2);
    let effects = h.take();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Release(_))),
        "generation 2 keeps the socket: {effects:?}"
    );
    assert!(
        check_armed(&effects).is_none(),
        "nothing to hand over: {effects:?}"
    );
    assert_eq!(h.core.serving_generation(), 2);
    // The next restart, from a ready generation 2, opens a socket again.
    h.restart(false);
    assert_eq!(h.take()[0], Effect::Sibling { of: 0, new: 1 });
}

#[test]
fn a_first_generation_that_never_became_ready_hands_its_socket_on() {
    let mut h = Harness::with_sockets(quick(1, 0), vec![socket(None)]);
    h.core.start(&mut h.fx).expect("starts");
    h.take();
    h.restart(false);
    let effects = h.take();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Sibling { .. })),
        "{effects:?}"
    );
}

#[test]
fn an_address_a_reload_dropped_is_not_waited_for() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    let moved = socket(None);
    let next = crate::core::Next {
        spec: h.core.next().spec.clone(),
        sockets: vec![moved].into(),
    };
    let (reply, _rx) = Reply::pair();
    let asked = crate::core::Asked::Client(crate::core::RestartWaiter {
        reply,
        drained: false,
    });
    h.core.reload(&mut h.fx, next, asked);
    let effects = h.take();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Sibling { .. })),
        "the reload's new socket is the new generation's: {effects:?}"
    );
    h.ready(2);
    let effects = h.take();
    assert!(check_armed(&effects).is_none(), "{effects:?}");
    assert!(signalled(&effects, 1), "{effects:?}");
}

#[test]
fn an_old_socket_leaving_from_the_front_moves_the_newest_into_its_place() {
    // Generation 1 drains on socket 0, generation 2 serves on socket 1, and
    // generation 3 starts on socket 2: [s0, s1, s2].
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    let check = handing_over(&mut h);
    settle(&mut h, &check, 1);
    h.restart(false);
    assert_eq!(h.take()[0], Effect::Sibling { of: 1, new: 2 });
    // Socket 0 leaves: the kernel moves the last one, socket 2, into index
    // 0 (not socket 1, as a shift would): [s2, s1]. Generation 2 is at 1.
    h.exit(1, 0);
    let effects = h.take();
    let steered = steering(&effects);
    assert_eq!(
        steered,
        vec![&Effect::Release(0), &steer(2, &[(1, 1)])],
        "{effects:?}"
    );
    // Generation 3 is ready: everything to index 0.
    h.ready(3);
    let effects = h.take();
    assert!(effects.contains(&steer(2, &[(0, 1)])), "{effects:?}");
}

#[test]
fn a_revived_socket_rejoins_at_the_end_and_the_program_follows() {
    let mut h = Harness::serving_on(quick(1, 0), vec![socket(None)]);
    let check = handing_over(&mut h);
    settle(&mut h, &check, 1);
    // [s0 (generation 1, draining), s1 (generation 2)]; a child shut s0
    // down and handoff revives it: [s1, s0].
    h.fx.revive = vec![0];
    h.core.check_sockets(&mut h.fx);
    assert_eq!(h.take(), vec![steer(1, &[(0, 1)])]);
}

#[test]
fn a_program_the_kernel_refused_is_attached_again_at_the_next_event() {
    let mut h = Harness::with_sockets(quick(1, 0), vec![socket(None)]);
    h.fx.steer_fails = true;
    h.core.start(&mut h.fx).expect("starts");
    assert!(h.take().contains(&steer(0, &[(0, 1)])));
    h.fx.steer_fails = false;
    h.ready(1);
    assert!(h.take().contains(&steer(0, &[(0, 1)])), "tried again");
    let notice = crate::notify::Notice::Status("busy".into());
    h.event(1, crate::core::workers::WorkerEvent::Notice(notice));
    assert!(
        !h.take().iter().any(|e| matches!(e, Effect::Steer { .. })),
        "attached: not again"
    );
}

/// A socket as a socket unit with `ReusePort=yes` passes it.
fn adopted() -> Arc<BoundSocket> {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("an address");
    socket.bind(&addr.into()).expect("binds");
    socket.listen(16).expect("listens");
    let adopted = BoundSocket::adopt(&http_spec(None), socket.into()).expect("adopts");
    assert!(adopted.mode.is_steer() && adopted.from_activator);
    Arc::new(adopted)
}

#[test]
fn an_activators_socket_is_never_taken_out_and_a_later_generation_takes_it_again() {
    let mut h = Harness::serving_on(quick(1, 0), vec![adopted()]);
    let check = handing_over(&mut h);
    settle(&mut h, &check, 1);
    // Generation 1 is gone: the socket unit's socket stays in the group
    // (shutting it down would kill the unit's listener too).
    h.exit(1, 0);
    let effects = h.take();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Release(_))),
        "{effects:?}"
    );
    // The next generation takes it back instead of a socket of its own.
    h.restart(false);
    let effects = h.take();
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Sibling { .. })),
        "{effects:?}"
    );
    h.ready(3);
    let effects = h.take();
    assert!(effects.contains(&steer(0, &[(0, 1)])), "{effects:?}");
    let check = check_armed(&effects).expect("a hand-over from socket 1");
    settle(&mut h, &check, 2);
    h.exit(2, 0);
    assert!(h.take().contains(&Effect::Release(1)));
}
