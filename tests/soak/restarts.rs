//! Issue 7: 500 restarts under load, without a failed request and without
//! the supervisor growing: its fds and its resident memory after restart
//! 500 are those after restart 50.

use std::time::{Duration, Instant};

use handoff::protocol::{Request, Response};

use crate::harness::{serve_hello, temp_dir, DEADLINE};
use crate::load::Load;
use crate::procs::{assert_no_zombie, fd_count, rss_kb, stop_and_check_port, wait_at_rest};

const RESTARTS: u64 = 500;
/// Where the baseline is taken: by then every lazily created thing (the
/// runtime's blocking threads, the allocator's arenas, buffers that grew to
/// their working size) exists, so what grows after it is a leak.
const BASELINE_AT: u64 = 50;

/// Of fds: none. At rest the supervisor holds a fixed set (sockets, log,
/// control listener, one notify socket and one pidfd per worker). The one
/// thing that varies is the control connection of the `status` call that
/// found it at rest, which its side may not have closed yet when the count
/// is read: the baseline may include it (so the comparison tolerates it),
/// and the final count is waited for until it is closed.
const FD_SLACK: usize = 0;

/// Of memory, in kB: what the allocator may keep from 450 restarts' worth
/// of short-lived buffers (freed, but not returned to the kernel, in the
/// arenas of the runtime's threads); about 50 kB here. A leak of more than
/// about 1 kB per restart (a task, a buffer, a worker's record kept) fails.
const RSS_SLACK_KB: u64 = 512;

/// The supervisor's fd count once it is at most `limit`, or if it stays
/// above for the harness's `DEADLINE`, the count then: a control connection
/// just answered is closed on its side a moment later, a leaked fd never.
fn fds_down_to(pid: u32, limit: usize) -> usize {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let fds = fd_count(pid);
        if fds <= limit || Instant::now() > deadline {
            return fds;
        }
        // A pause between checks, not a synchronisation: the count decides.
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn five_hundred_restarts_under_load_leak_no_fd_and_no_memory() {
    let started = Instant::now();
    let dir = temp_dir();
    let mut h = serve_hello(dir.path(), &["--min-ready-time", "0"]);
    let supervisor = h.child.id();
    let addr = h.addr("http");
    let load = Load::start(&addr, 8);
    load.wait_for_more(100);

    let mut baseline = None;
    for n in 1..=RESTARTS {
        match handoff::control::call(&h.control, &Request::Restart { drained: false }) {
            Ok(Response::Restarted(report)) => assert_eq!(
                report.generation,
                n + 1,
                "restarts one after another are not coalesced"
            ),
            other => panic!("restart {n}: {other:?}"),
        }
        if n == BASELINE_AT {
            wait_at_rest(&h, 1);
            baseline = Some((fd_count(supervisor), rss_kb(supervisor)));
        }
    }
    let (fds_before, rss_before) = baseline.expect("taken at restart 50");
    wait_at_rest(&h, 1);
    let fds_after = fds_down_to(supervisor, fds_before + FD_SLACK);
    let rss_after = rss_kb(supervisor);

    load.wait_for_more(100);
    let tally = load.stop();
    let requests = tally.ok + tally.failures();
    assert_eq!(tally.failures(), 0, "failed requests: {:?}", tally.failed);
    assert!(
        fds_after <= fds_before + FD_SLACK,
        "the supervisor had {fds_before} fds open at restart {BASELINE_AT} and {fds_after} at restart {RESTARTS}"
    );
    assert!(
        rss_after <= rss_before + RSS_SLACK_KB,
        "VmRSS grew from {rss_before} kB at restart {BASELINE_AT} to {rss_after} kB at restart {RESTARTS}"
    );
    assert_no_zombie(supervisor);
    let status = h.status();
    assert_eq!(status.generation, RESTARTS + 1, "{status:?}");
    stop_and_check_port(&mut h, &addr);
    eprintln!(
        "soak restarts: {RESTARTS} restarts, {requests} requests, {} failed, \
         supervisor fds {fds_before} -> {fds_after} and VmRSS {rss_before} -> {rss_after} kB \
         (restart {BASELINE_AT} -> {RESTARTS}), 0 zombies, port free after stop, {:.1}s",
        tally.failures(),
        started.elapsed().as_secs_f64()
    );
}
