//! Issue 10: with one socket shared by every generation (`--handover
//! shared`), a server whose own drain is sloppy loses requests when handoff
//! restarts it, and the same restarts of the careful server lose none. With
//! a socket per generation (`steer`, the default) the sloppy server loses
//! none either: its queue is empty, and what it accepted is read, before it
//! is told to stop. The same holds for a rolling restart of 4 workers.

use crate::harness::{example, restart, temp_dir, Handoff};
use crate::load::{Load, Tally};

/// Restarts per run: issue 10's "done when" asks for 10.
const RESTARTS: usize = 10;

/// Client threads, each doing one request per connection: many short
/// connections, so that at any moment some are accepted and not yet read.
const CLIENTS: usize = 32;

/// Requests to see complete between two restarts, so every restart happens
/// under load.
const BETWEEN_RESTARTS: u64 = 100;

/// What one run saw: the clients' tally, how many connections the retired
/// generations say they closed with the request unread, and the handover
/// `status` reported for the socket (so a run that meant to test one mode
/// cannot quietly test the other).
struct Run {
    tally: Tally,
    closed_unread: u64,
    handover: String,
    log: String,
}

/// A rolling restart of 4 workers, one at a time: each restart retires 4
/// workers, each of them at its own moment while the others keep serving.
const ROLLING: &[&str] = &["--workers", "4", "--strategy", "rolling", "--batch", "1"];

/// How the example says, at start, that it runs the sloppy drain.
const SLOPPY: &str = "(sloppy drain)";

/// Serves `hello` (with `--sloppy-drain` if `sloppy`) under handoff with
/// `handoff_args` (`--handover`, `--workers`...), restarts it RESTARTS
/// times under load, and waits until every retired worker has drained and
/// exited.
fn restarts_under_load(handoff_args: &[&str], sloppy: bool) -> Run {
    let workers = workers_in(handoff_args);
    let dir = temp_dir();
    let hello = example("hello");
    let mut args = vec!["--listen", "http=tcp://127.0.0.1:0"];
    args.extend_from_slice(handoff_args);
    args.extend_from_slice(&["--", hello.to_str().expect("utf-8 path")]);
    if sloppy {
        args.push("--sloppy-drain");
    }
    let mut h = Handoff::start(dir.path(), &args);
    // The example says which drain it runs: a flag that did not arrive
    // fails here rather than quietly testing the other drain.
    h.wait_log_each(&[&["generation 1 ready"], &["generation 1 serving on"]]);
    let log = h.log();
    let serving = log
        .lines()
        .find(|l| l.contains("generation 1 serving on"))
        .expect("waited for");
    assert_eq!(serving.contains(SLOPPY), sloppy, "{serving}");

    let load = Load::start(&h.addr("http"), CLIENTS);
    load.wait_for_more(BETWEEN_RESTARTS);
    for _ in 0..RESTARTS {
        let (code, out, err) = restart(&h);
        assert_eq!(code, 0, "restart failed: {out}{err}");
        load.wait_for_more(BETWEEN_RESTARTS);
    }
    // Each retired worker drains on its own time: count only once all of
    // them are done, so no loss happens after the tally.
    for _ in 0..RESTARTS * workers {
        h.wait_log("drained, exiting");
    }
    let tally = load.stop();
    let handover = h.status().sockets[0].handover.clone();
    let log = h.log();
    Run {
        tally,
        closed_unread: closed_unread(&log, sloppy, workers),
        handover,
        log,
    }
}

/// The `--workers` in `args` (1 without it): how many workers each restart
/// retires.
fn workers_in(args: &[&str]) -> usize {
    args.iter()
        .position(|a| *a == "--workers")
        .map_or(1, |i| args[i + 1].parse().expect("--workers N"))
}

/// The sum of what the retired workers say they closed unread. A sloppy
/// one says it on stdout before "drained, exiting", so once every one has
/// exited, every count is in the log.
fn closed_unread(log: &str, sloppy: bool, workers: usize) -> u64 {
    let counts: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("connections with their request unread"))
        .map(|line| {
            line.split_whitespace()
                .skip_while(|w| *w != "closed")
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in {line:?}"))
        })
        .collect();
    let expected = if sloppy { RESTARTS * workers } else { 0 };
    assert_eq!(
        counts.len(),
        expected,
        "one count per retired worker\n{log}"
    );
    counts.iter().sum()
}

/// Prints what a run saw (`cargo test -- --nocapture` shows it), so a
/// report can quote the numbers.
fn report(name: &str, run: &Run) {
    eprintln!(
        "{name}: {} restarts, handover {}, {} requests, {} ok, {} failed {:?}, {} closed unread by the server",
        RESTARTS,
        run.handover,
        run.tally.ok + run.tally.failures(),
        run.tally.ok,
        run.tally.failures(),
        run.tally.failed,
        run.closed_unread,
    );
}

/// A shared socket's run lost requests, and only ones the servers own up
/// to: proof that the load reaches the race steering must close.
fn assert_loses_what_the_servers_close_unread(run: &Run) {
    assert_eq!(run.handover, "shared", "{}", run.log);
    let tally = &run.tally;
    assert!(
        tally.failures() > 0,
        "the load never reached the race: no request lost in {RESTARTS} sloppy restarts \
         ({} ok); a test of steering would prove nothing with this load",
        tally.ok
    );
    // Every loss is a connection accepted and then dropped by the server,
    // never one refused or timed out: the socket itself lost nothing. (A
    // client whose request write comes after the server's reset sees a
    // broken pipe: rare, seen about once in 40 stops on a loaded machine.)
    if let Some(kind) = tally.other_than_closed_unanswered() {
        panic!(
            "a failure other than reset or closed without an answer: {kind}; {:?}\n{}",
            tally.failed, run.log
        );
    }
    // And each is one the server owns up to: the clients lost exactly the
    // connections the retired generations closed unread.
    assert_eq!(
        tally.failures(),
        run.closed_unread,
        "clients' failures {:?} against the servers' count\n{}",
        tally.failed,
        run.log
    );
}

/// A steered run lost nothing: no client failed, and no retired worker
/// held a connection it had not read when it was told to stop.
fn assert_loses_nothing(run: &Run) {
    assert_eq!(run.handover, "steer", "{}", run.log);
    assert_eq!(
        (run.tally.failures(), run.closed_unread),
        (0, 0),
        "steered restarts lost requests ({:?}) or a server closed some unread\n{}",
        run.tally.failed,
        run.log
    );
    assert!(
        run.tally.ok >= BETWEEN_RESTARTS * (RESTARTS as u64 + 1),
        "{:?}",
        run.tally
    );
}

#[test]
fn a_sloppy_drain_on_a_shared_socket_loses_requests() {
    let run = restarts_under_load(&["--handover", "shared"], true);
    report("sloppy drain, shared socket", &run);
    assert_loses_what_the_servers_close_unread(&run);
}

#[test]
fn the_careful_drain_on_a_shared_socket_loses_nothing() {
    let run = restarts_under_load(&["--handover", "shared"], false);
    report("careful drain, shared socket", &run);
    assert_eq!(run.handover, "shared");
    assert_eq!(
        run.tally.failures(),
        0,
        "the careful drain lost requests: {:?}\n{}",
        run.tally.failed,
        run.log
    );
    assert!(
        run.tally.ok >= BETWEEN_RESTARTS * (RESTARTS as u64 + 1),
        "{:?}",
        run.tally
    );
}

#[test]
fn a_sloppy_drain_on_steered_sockets_loses_nothing_by_default() {
    let run = restarts_under_load(&[], true);
    report("sloppy drain, steered by default", &run);
    assert_loses_nothing(&run);
}

#[test]
fn a_sloppy_drain_with_handover_steer_loses_nothing() {
    let run = restarts_under_load(&["--handover", "steer"], true);
    report("sloppy drain, --handover steer", &run);
    assert_loses_nothing(&run);
}

#[test]
fn a_rolling_restart_of_a_sloppy_drain_on_a_shared_socket_loses_requests() {
    let args = [ROLLING, &["--handover", "shared"]].concat();
    let run = restarts_under_load(&args, true);
    report("sloppy drain, 4 workers rolling, shared socket", &run);
    assert_loses_what_the_servers_close_unread(&run);
}

#[test]
fn a_rolling_restart_of_a_sloppy_drain_on_steered_sockets_loses_nothing() {
    let run = restarts_under_load(ROLLING, true);
    report("sloppy drain, 4 workers rolling, steered", &run);
    assert_loses_nothing(&run);
}

#[test]
fn the_sloppy_drain_can_be_asked_for_in_the_environment() {
    let dir = temp_dir();
    let hello = example("hello");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--env",
            "HELLO_SLOPPY_DRAIN=1",
            "--",
            hello.to_str().expect("utf-8 path"),
        ],
    );
    h.wait_log_each(&[
        &["generation 1 ready"],
        &["generation 1 serving on", SLOPPY],
    ]);
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_log("connections with their request unread (--sloppy-drain)");
}
