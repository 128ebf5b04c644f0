//! Issue 7: 100 restart requests at once, under load. Requests that arrive
//! while a restart runs are coalesced into one more restart after it, so
//! the 100 cost a handful of generations, and every one is answered.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use handoff::control::{ClientError, MAX_CONNECTIONS};
use handoff::protocol::{ErrorKind, Request, Response};

use crate::harness::{serve_hello, temp_dir, DEADLINE};
use crate::load::Load;
use crate::procs::{assert_no_zombie, stop_and_check_port, wait_at_rest};

const REQUESTS: usize = 100;
/// "Far below 100": the first request starts a restart, those that come
/// while it runs are one more; a request refused as busy and asked again
/// joins whichever restart is next. Without coalescing it would be 100.
const MAX_GENERATIONS: u64 = 10;

/// How one client's request ended, once it is carried out: the generation
/// its answer names, how many times it was refused as `busy` first, and how
/// many times its connection was closed with no answer at all.
struct Answered {
    generation: u64,
    busy: u32,
    unanswered: u32,
}

/// Asks for a restart until it is answered `restarted`. A `busy` answer
/// (every one of the control socket's connections waits for an answer) is
/// an answer too, and a script asks again: so does this client, after a
/// pause that leaves the supervisor time to answer the others. A
/// connection closed with no answer is counted, then asked again too, so
/// that the other figures are there to see.
fn restart_until_answered(control: &std::path::Path) -> Answered {
    let deadline = Instant::now() + DEADLINE;
    let (mut busy, mut unanswered) = (0, 0);
    loop {
        match handoff::control::call(control, &Request::Restart { drained: false }) {
            Ok(Response::Restarted(report)) => {
                return Answered {
                    generation: report.generation,
                    busy,
                    unanswered,
                }
            }
            Ok(Response::Error {
                kind: ErrorKind::Busy,
                message,
            }) if message.contains("control connections are waiting") => busy += 1,
            Err(ClientError::NoAnswer { .. }) => unanswered += 1,
            Err(ClientError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionReset =>
            {
                unanswered += 1
            }
            other => panic!("restart: {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "not answered `restarted` within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50)); // a script's retry pause
    }
}

#[test]
fn a_hundred_restart_requests_at_once_are_all_answered_by_a_few_generations() {
    let started = Instant::now();
    let dir = temp_dir();
    let mut h = serve_hello(dir.path(), &["--workers", "2"]);
    let supervisor = h.child.id();
    let addr = h.addr("http");
    let load = Load::start(&addr, 16);
    load.wait_for_more(100);
    let before = h.status().generation;

    // All at once: each thread connects and asks when the last one is
    // ready to.
    let barrier = Arc::new(Barrier::new(REQUESTS));
    let clients: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let (barrier, control) = (barrier.clone(), h.control.clone());
            std::thread::spawn(move || {
                barrier.wait();
                restart_until_answered(&control)
            })
        })
        .collect();
    let answers: Vec<Answered> = clients
        .into_iter()
        .map(|c| c.join().expect("a restart client panicked"))
        .collect();

    wait_at_rest(&h, 2);
    load.wait_for_more(100);
    let tally = load.stop();
    let requests = tally.ok + tally.failures();
    assert_eq!(tally.failures(), 0, "failed requests: {:?}", tally.failed);

    let after = h.status().generation;
    let generations = after - before;
    assert!(
        (1..=MAX_GENERATIONS).contains(&generations),
        "{REQUESTS} restart requests at once started {generations} generations"
    );
    // Each answer names a generation the storm started.
    let mut by_generation: BTreeMap<u64, usize> = BTreeMap::new();
    for a in &answers {
        assert!(
            (before + 1..=after).contains(&a.generation),
            "an answer names generation {}, not one of {}..={after}",
            a.generation,
            before + 1
        );
        *by_generation.entry(a.generation).or_default() += 1;
    }
    // Refused as busy, at any attempt: only a client that finds every slot
    // taken is, and one that gets a slot is answered and asks no more; so
    // at most the clients beyond the cap on connections.
    let ever_busy = answers.iter().filter(|a| a.busy > 0).count();
    let busy: u32 = answers.iter().map(|a| a.busy).sum();
    assert!(
        ever_busy <= REQUESTS - MAX_CONNECTIONS,
        "{ever_busy} of {REQUESTS} requests were refused as busy, with {MAX_CONNECTIONS} connections allowed"
    );

    let ever_unanswered = answers.iter().filter(|a| a.unanswered > 0).count();
    let unanswered: u32 = answers.iter().map(|a| a.unanswered).sum();

    assert_no_zombie(supervisor);
    stop_and_check_port(&mut h, &addr);
    let shares: Vec<String> = by_generation
        .iter()
        .map(|(g, n)| format!("{n} by generation {g}"))
        .collect();
    eprintln!(
        "soak parallel-restarts: {REQUESTS} restarts, {requests} requests, {} failed, \
         {generations} generations started, restart requests answered `restarted` in the end ({}), \
         {ever_busy} refused as busy at least once ({busy} busy answers, {MAX_CONNECTIONS} connections allowed), \
         {ever_unanswered} closed with no answer at least once ({unanswered} in all), \
         0 zombies, port free after stop, {:.1}s",
        tally.failures(),
        shares.join(", "),
        started.elapsed().as_secs_f64()
    );
    // Last, so that the summary shows the other figures: a request is
    // answered (`restarted`, or `busy` beyond the cap), never dropped.
    assert_eq!(
        ever_unanswered, 0,
        "{ever_unanswered} of {REQUESTS} restart requests sent at once got their connection closed with no answer \
         ({unanswered} times in all, counting retries): the supervisor evicted them as idle while their request waited to be read"
    );
}
