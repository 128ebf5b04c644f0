//! Issue 7, "the cases that held": faults handoff already survived when the
//! suite was written. Each test injects one fault into the real binary and
//! checks what the design promises: no failed request where it promises
//! none, no zombie, no leaked fd (counted in /proc/PID/fd), nothing left
//! on the port after `stop`, and `status` still answered. They stay here so
//! that it keeps holding.

use handoff::sys::children_of;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use handoff::protocol::{Request, Response};

use crate::harness::eventually;
use crate::harness::{
    client, example, get, get_from_generation, handoff_bin, restart, run_command, serve_hello,
    serve_hello_script, temp_dir, write_executable, write_script, Handoff, DEADLINE,
};
use crate::load::Load;

// ---- what every test checks -------------------------------------------

/// How many fds `pid` has open now.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// What `pid`'s fds point at, for a failure message.
fn fd_list(pid: u32) -> String {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return format!("(pid {pid} is gone)");
    };
    let mut fds: Vec<String> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    fds.sort();
    fds.join("\n")
}

/// The supervisor's open fds: taken once generation 1 serves, before any
/// client connected (a control connection is an fd until the supervisor
/// sees it close).
fn baseline_fds(h: &Handoff) -> usize {
    fd_count(h.child.id())
}

/// Waits until the supervisor has no more fds open than `baseline`: every
/// connection it was sent closed, every worker it replaced reaped.
fn assert_fds_back(h: &Handoff, baseline: usize) {
    let pid = h.child.id();
    let deadline = Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(1);
    while fd_count(pid) > baseline {
        assert!(
            Instant::now() < deadline,
            "handoff has {} fds open, {baseline} before the fault: leaked?\n{}\nlog:\n{}",
            fd_count(pid),
            fd_list(pid),
            h.log()
        );
        // A back-off between checks, not a synchronisation.
        std::thread::park_timeout(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The state letter of `pid` from /proc/PID/stat (R, S, T, Z, ...); None
/// once it is gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// No child of the supervisor stays a zombie: whatever exited was reaped.
fn assert_no_zombies(h: &Handoff) {
    let pid = h.child.id();
    eventually("every exited child of handoff is reaped", || {
        children_of(pid).into_iter().all(|c| state(c) != Some('Z'))
    });
}

/// Waits until `pid` is gone (a zombie counts as gone when it is not
/// handoff's to reap).
fn assert_gone(pid: u32, what: &str) {
    eventually(&format!("{what} (pid {pid}) is gone"), || {
        matches!(state(pid), None | Some('Z'))
    });
}

/// Nothing listens on `addr` any more: it can be bound again.
fn assert_port_free(addr: &str) {
    if let Err(e) = TcpListener::bind(addr) {
        panic!("{addr} cannot be bound after stop ({e}): a process still holds it");
    }
}

fn control_arg(h: &Handoff) -> &str {
    h.control.to_str().expect("utf-8 path")
}

/// `handoff stop`, answered and exited 0, and the port is free.
fn stop_cleanly(h: &mut Handoff, addr: &str) {
    let (code, out, err) = client(&["stop", "--control", control_arg(h)]);
    assert_eq!(code, 0, "stop: {out}{err}");
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}; log:\n{}", h.log());
    assert_port_free(addr);
}

/// The pid in a log line's "generation G worker S (pid N)".
fn pid_in(line: &str) -> u32 {
    line.split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `sh` code that says READY=1 on the worker's NOTIFY_SOCKET.
const SAY_READY: &str = "python3 -c 'import os, socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b\"READY=1\", os.environ[\"NOTIFY_SOCKET\"])'";

// ---- 1. crash loop ----------------------------------------------------

#[test]
fn a_crash_loop_backs_off_doubling_answers_status_and_stops_cleanly() {
    let dir = temp_dir();
    let script = dir.path().join("server.sh");
    write_executable(&script, "#!/bin/sh\nexit 1\n");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--respawn-backoff",
            "50ms",
            "--respawn-backoff-max",
            "400ms",
            "--",
            path(&script),
        ],
    );
    let pid = h.child.id();
    // The delays, as each failed attempt announces the next one.
    let mut delays = Vec::new();
    let mut fds_early = 0;
    for attempt in 1..=9 {
        let line = h.wait_log_all(&[
            "exited with code 1",
            &format!("(attempt {attempt} of generation 1, the next in "),
        ]);
        let ms: u64 = line
            .split("the next in ")
            .nth(1)
            .and_then(|rest| rest.split(" ms").next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no delay in {line:?}"));
        delays.push(ms);
        if attempt == 2 {
            // Between two attempts no worker exists: what is open now is
            // the supervisor's own (perhaps the dead worker's, if it is not
            // dropped yet: that only makes the check below lenient).
            fds_early = fd_count(pid);
        }
        if attempt == 4 {
            // Responsive in the middle of the loop.
            let status = h.status();
            assert_eq!(status.generation, 0, "{status:?}");
            let w = &status.workers[0];
            assert!(w.restarts >= 3, "{status:?}");
            let (code, out, err) = client(&["status", "--control", control_arg(&h)]);
            assert_eq!(code, 0, "{out}{err}");
            assert!(out.contains("not serving yet"), "{out}");
        }
    }
    assert_eq!(
        delays,
        [50, 100, 200, 400, 400, 400, 400, 400, 400],
        "the respawn delay doubles from respawn_backoff up to respawn_backoff_max; log:\n{}",
        h.log()
    );
    // Seven more workers started and died since: none left an fd behind.
    assert_fds_back(&h, fds_early);
    assert_no_zombies(&h);
    let addr = h.addr("http");
    stop_cleanly(&mut h, &addr);
}

// ---- 2. never ready, and an old generation that ignores SIGTERM -------

#[test]
fn a_restart_to_a_generation_that_never_becomes_ready_is_rolled_back_under_load() {
    let dir = temp_dir();
    let mut h = serve_hello_script(dir.path(), &["--ready-timeout", "2s"]);
    let fds = baseline_fds(&h);
    let addr = h.addr("http");
    let old = h.pids("ready");
    let load = Load::start(&addr, 4);
    load.wait_for_more(50);

    // A new version that never gets as far as serving nor READY=1 (it
    // does not take the listener either, so it holds no connection).
    write_script(
        &dir.path().join("server.sh"),
        &format!("{} --ready-after 600000", example("hello").display()),
    );
    let asked = Instant::now();
    let (code, out, err) = restart(&h);
    assert_eq!(code, 1, "the restart must be rolled back: {out}{err}");
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "rolled back at ready_timeout"
    );
    assert!(err.contains("not ready within 2000 ms"), "{err}");
    assert!(err.contains("generation 1 keeps serving"), "{err}");
    let killed = h.wait_log_all(&["generation 2 worker 0", "killed: generation 2 rolled back"]);
    assert_gone(pid_in(&killed), "the rolled-back worker");

    load.wait_for_more(50);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    assert_eq!(h.status().generation, 1);
    assert_eq!(h.pids("ready"), old, "the old worker was never stopped");
    assert_no_zombies(&h);
    assert_fds_back(&h, fds);
    stop_cleanly(&mut h, &addr);
}

#[test]
fn an_old_generation_that_ignores_sigterm_is_killed_at_drain_timeout_and_the_restart_is_not_held_up(
) {
    let dir = temp_dir();
    let script = dir.path().join("server.sh");
    // Generation 1 says it is ready, then ignores SIGTERM (an ignored
    // signal stays ignored across exec); the next ones are hello.
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\nif [ \"$HANDOFF_GENERATION\" = 1 ]; then\n  trap '' TERM\n  {SAY_READY}\n  exec sleep 600\nfi\nexec {}\n",
            example("hello").display()
        ),
    );
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--drain-timeout",
            "3s",
            "--",
            path(&script),
        ],
    );
    h.wait_generation(1);
    let fds = baseline_fds(&h);
    let addr = h.addr("http");
    let stubborn = h.pids("ready")[0];

    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    // Answered while the old worker still runs: the restart did not wait
    // for it to drain.
    let status = h.status();
    let old = status
        .workers
        .iter()
        .find(|w| w.pid == Some(stubborn))
        .unwrap_or_else(|| panic!("the old worker is still there: {status:?}"));
    assert_eq!(old.state, "draining", "{status:?}");
    assert_eq!(status.generation, 2);

    // Generation 2 serves every request while the old one waits out its
    // drain_timeout.
    let load = Load::start(&addr, 4);
    load.wait_for_more(50);
    h.wait_log_all(&[
        &format!("generation 1 worker 0 (pid {stubborn})"),
        "still running 3000 ms after its stop signal (drain_timeout); sending SIGKILL",
    ]);
    h.wait_log_all(&[
        &format!("generation 1 worker 0 (pid {stubborn})"),
        "killed: still running",
    ]);
    assert_gone(stubborn, "the old worker");
    load.wait_for_more(50);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    assert_no_zombies(&h);
    assert_fds_back(&h, fds);
    stop_cleanly(&mut h, &addr);
}

// ---- 3. SIGSTOPped workers --------------------------------------------

#[test]
fn a_sigstopped_serving_worker_is_replaced_and_killed_at_drain_timeout() {
    let dir = temp_dir();
    // One shared socket: what waits in it is served by the next generation.
    // With a socket per generation, what waits on the stopped generation's
    // own socket is reset when it closes unless tcp_migrate_req is on
    // (tests/integration/steer.rs shows that case).
    let mut h = serve_hello(
        dir.path(),
        &["--drain-timeout", "2s", "--handover", "shared"],
    );
    let fds = baseline_fds(&h);
    let addr = h.addr("http");
    let stopped = h.pids("ready")[0];
    kill(Pid::from_raw(stopped as i32), Signal::SIGSTOP).expect("the worker is alive");
    eventually("the worker is stopped", || state(stopped) == Some('T'));

    // Nobody accepts now: these wait in the listen backlog, and the new
    // generation serves them.
    let load = Load::start(&addr, 4);
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    load.wait_for_more(100);
    // A stopped process cannot act on SIGTERM: SIGKILL at drain_timeout.
    h.wait_log_all(&[
        &format!("generation 1 worker 0 (pid {stopped})"),
        "still running 2000 ms after its stop signal (drain_timeout); sending SIGKILL",
    ]);
    assert_gone(stopped, "the stopped worker");
    load.wait_for_more(50);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    assert_eq!(h.status().generation, 2);
    assert!(get_from_generation(&addr, "/", 2).contains("generation 2"));
    assert_no_zombies(&h);
    assert_fds_back(&h, fds);
    stop_cleanly(&mut h, &addr);
}

#[test]
fn a_new_generation_sigstopped_before_it_is_ready_is_rolled_back_at_ready_timeout() {
    let dir = temp_dir();
    let mut h = serve_hello_script(dir.path(), &["--ready-timeout", "2s"]);
    let fds = baseline_fds(&h);
    let addr = h.addr("http");
    let old = h.pids("ready");
    let load = Load::start(&addr, 4);
    load.wait_for_more(50);

    // The new version stops itself before it can say READY=1.
    write_executable(
        &dir.path().join("server.sh"),
        &format!(
            "#!/bin/sh\nkill -STOP $$\nexec {}\n",
            example("hello").display()
        ),
    );
    let asked = Instant::now();
    let (code, out, err) = restart(&h);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "at ready_timeout"
    );
    assert!(err.contains("not ready within 2000 ms"), "{err}");
    assert!(err.contains("generation 1 keeps serving"), "{err}");
    let killed = h.wait_log_all(&["generation 2 worker 0", "killed: generation 2 rolled back"]);
    assert_gone(pid_in(&killed), "the stopped new worker");

    load.wait_for_more(50);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    assert_eq!(h.pids("ready"), old);
    assert_no_zombies(&h);
    assert_fds_back(&h, fds);
    stop_cleanly(&mut h, &addr);
}

// ---- 4. parallel restart storm ----------------------------------------

/// Restart clients started at once, and SIGHUPs among them.
const CLIENTS: usize = 30;
const HANGUPS: usize = 10;

#[test]
fn a_storm_of_parallel_restarts_and_sighups_is_coalesced_under_load() {
    let dir = temp_dir();
    let mut h = serve_hello(dir.path(), &["--workers", "2"]);
    let fds = baseline_fds(&h);
    let addr = h.addr("http");
    let load = Load::start(&addr, 4);
    load.wait_for_more(50);

    // `status` asked over and over for the whole storm.
    let storming = Arc::new(AtomicBool::new(true));
    let statuses = {
        let (storming, control) = (storming.clone(), h.control.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0usize, Vec::new());
            while storming.load(Ordering::Relaxed) {
                match handoff::control::call(&control, &Request::Status {}) {
                    Ok(Response::Status(_)) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        })
    };

    let start = Arc::new(Barrier::new(CLIENTS + 1));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (start, answered) = (start.clone(), answered.clone());
            let control = control_arg(&h).to_string();
            std::thread::spawn(move || {
                start.wait();
                let result = client(&["restart", "--control", &control]);
                answered.fetch_add(1, Ordering::Relaxed);
                result
            })
        })
        .collect();
    start.wait();
    let supervisor = Pid::from_raw(h.child.id() as i32);
    for _ in 0..HANGUPS {
        kill(supervisor, Signal::SIGHUP).expect("handoff is alive");
        // Pacing, so the signals fall at different moments of the storm
        // (they would coalesce into one otherwise); not a synchronisation.
        std::thread::sleep(Duration::from_millis(20));
    }
    let results: Vec<(i32, String, String)> = clients
        .into_iter()
        .map(|c| c.join().expect("a client thread"))
        .collect();
    assert_eq!(answered.load(Ordering::Relaxed), CLIENTS);
    for (code, out, err) in &results {
        assert_eq!(*code, 0, "every restart succeeds: {out}{err}");
        assert!(out.starts_with("generation "), "{out}");
    }
    // A SIGHUP queued last may still be rolling out: let it finish.
    eventually("no restart is in progress", || {
        let status = h.status();
        status.restarting.is_none()
    });
    storming.store(false, Ordering::Relaxed);
    let (ok, failed) = statuses.join().expect("the status thread");
    assert!(
        failed.is_empty(),
        "status failed during the storm: {failed:?}"
    );
    assert!(ok > 0);

    load.wait_for_more(50);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    let generations = h.status().generation;
    let requests = (CLIENTS + HANGUPS) as u64;
    eprintln!(
        "storm: {requests} restart requests, {} generations, {ok} statuses answered, {} requests served",
        generations - 1,
        tally.ok
    );
    assert!(
        generations - 1 <= requests / 4,
        "{requests} requests made {} generations: coalescing should keep it far below; log:\n{}",
        generations - 1,
        h.log()
    );
    assert_no_zombies(&h);
    assert_fds_back(&h, fds);
    stop_cleanly(&mut h, &addr);
}

// ---- 5. control garbage -----------------------------------------------

fn connect(h: &Handoff) -> UnixStream {
    let stream = UnixStream::connect(&h.control).expect("connect to the control socket");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    stream
}

/// Reads one answer line ("" at EOF).
fn read_answer(stream: &UnixStream) -> String {
    let mut line = String::new();
    if let Err(e) = BufReader::new(stream).read_line(&mut line) {
        panic!("no answer within {DEADLINE:?}: {e}");
    }
    line
}

/// Deterministic junk without a newline (xorshift).
pub(crate) fn junk(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            match (seed >> 24) as u8 {
                b'\n' => 0xff,
                b => b,
            }
        })
        .collect()
}

#[test]
fn control_garbage_gets_an_error_or_nothing_and_status_still_answers() {
    let dir = temp_dir();
    let mut h = serve_hello(dir.path(), &[]);
    let fds = baseline_fds(&h);
    const STATUS: &[u8] = b"{\"command\":\"status\"}\n";

    // Each bad line gets a bad_request answer, and the same connection
    // still answers a good one after it.
    let mut bad_lines: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        b"{\"command\":".to_vec(),
        b"{\"command\":\"explode\"}".to_vec(),
        b"{\"command\":\"restart\",\"drianed\":true}".to_vec(),
        b"{\"command\":\"scale\",\"workers\":\"many\"}".to_vec(),
        b"{\"command\":\"scale\",\"workers\":-1}".to_vec(),
        b"{\"command\":\"scale\",\"workers\":1e400}".to_vec(),
        b"{\"command\":\"\xff\xfe\"}".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"\"status\"".to_vec(),
        b"\0\0\0\0".to_vec(),
        format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
    ];
    for seed in 1..=5 {
        bad_lines.push(junk(1000, seed));
    }
    for line in &bad_lines {
        let s = connect(&h);
        let mut request = line.clone();
        request.push(b'\n');
        (&s).write_all(&request).expect("send");
        let answer = read_answer(&s);
        let shown = String::from_utf8_lossy(&line[..line.len().min(40)]).into_owned();
        assert!(
            answer.contains("\"kind\":\"bad_request\""),
            "{shown:?} got {answer:?}"
        );
        (&s).write_all(STATUS).expect("send status");
        let answer = read_answer(&s);
        assert!(
            answer.contains("\"result\":\"status\""),
            "after {shown:?}, status got {answer:?}"
        );
    }

    // A line over the limit: its error, and the connection closes.
    let s = connect(&h);
    let mut long = vec![b'x'; handoff::protocol::MAX_REQUEST + 10];
    long.push(b'\n');
    // The supervisor may close before reading it all.
    let _ = (&s).write_all(&long);
    let answer = read_answer(&s);
    assert!(answer.contains("longer than"), "{answer:?}");
    assert_eq!(read_answer(&s), "", "closed after a line over the limit");

    // A half-written line, then the client's end shut: the fragment is
    // all there is, and it is no request.
    let s = connect(&h);
    (&s).write_all(b"{\"command\":\"sta").expect("send");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let answer = read_answer(&s);
    assert!(
        answer.is_empty() || answer.contains("\"kind\":\"bad_request\""),
        "{answer:?}"
    );

    // Clients that vanish: mid-line, before reading their answer, at once.
    for i in 0..50u64 {
        let s = connect(&h);
        match i % 3 {
            0 => (&s).write_all(b"{\"command\":\"res").expect("send"),
            1 => (&s).write_all(&junk(100, i + 10)).expect("send"),
            _ => {}
        }
        drop(s);
    }
    let s = connect(&h);
    (&s).write_all(b"garbage\n").expect("send");
    drop(s);

    let (code, out, err) = client(&["status", "--control", control_arg(&h)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("generation 1"), "{out}");
    assert!(!h.log().contains("panicked"), "{}", h.log());
    assert_fds_back(&h, fds);
    let addr = h.addr("http");
    stop_cleanly(&mut h, &addr);
}

/// Unknown fields are refused on `restart` and `scale`, but not on the
/// commands without fields: serde's `deny_unknown_fields` does not reach
/// the unit variants of an internally tagged enum. So a client that says
/// `{"command":"stop","after":"drain"}` (a field this version does not
/// know) gets its stop carried out as if it had not asked for more.
#[test]
fn unknown_fields_are_refused_on_every_command() {
    let dir = temp_dir();
    let h = serve_hello(dir.path(), &[]);
    for request in [
        &b"{\"command\":\"status\",\"verbose\":true}\n"[..],
        b"{\"command\":\"stop\",\"after\":\"drain\"}\n",
    ] {
        let s = connect(&h);
        (&s).write_all(request).expect("send");
        let answer = read_answer(&s);
        assert!(
            answer.contains("\"kind\":\"bad_request\""),
            "{} got {answer:?}",
            String::from_utf8_lossy(request).trim_end()
        );
    }
    assert_eq!(h.status().generation, 1, "still running");
}

// ---- 7. the supervisor SIGKILLed --------------------------------------

#[test]
fn a_sigkilled_supervisor_leaves_its_workers_to_drain_and_its_port_and_control_path_reusable() {
    let dir = temp_dir();
    let mut h = serve_hello(dir.path(), &["--workers", "2"]);
    let addr = h.addr("http");
    let workers = h.pids("ready");
    assert_eq!(workers.len(), 2);
    let load = Load::start(&addr, 4);
    load.wait_for_more(50);

    h.signal(Signal::SIGKILL);
    // wait_exit also waits until nothing holds handoff's stdout/stderr:
    // its workers, which share them, are gone.
    let status = h.wait_exit();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let tally = load.stop();
    eprintln!(
        "after kill -9: {} requests served, failed: {:?}",
        tally.ok, tally.failed
    );
    for pid in &workers {
        assert_gone(*pid, "a worker of the killed supervisor");
        // PDEATHSIG is SIGTERM: each drained rather than died. (hello
        // says so on stdout, a line at a time; its "got SIGTERM" goes to
        // unbuffered stderr in pieces, which two workers told at the same
        // moment interleave.)
        let log = h.log();
        assert!(
            log.contains(&format!("hello: pid {pid} drained, exiting")),
            "worker {pid} did not drain on its parent's death; log:\n{log}"
        );
    }
    assert_port_free(&addr);
    assert!(
        h.control.exists(),
        "a SIGKILLed supervisor cannot remove its control socket: the next one must replace it"
    );

    // A new supervisor on the same control path and port.
    let mut next = Handoff::start(
        dir.path(),
        &[
            "--listen",
            &format!("http=tcp://{addr}"),
            "--",
            path(&example("hello")),
        ],
    );
    next.wait_generation(1);
    assert_eq!(next.addr("http"), addr);
    assert_eq!(get(&addr, "/").expect("served").0, 200);
    stop_cleanly(&mut next, &addr);
}

// ---- 8. upgrade to a broken binary ------------------------------------

#[test]
fn an_upgrade_to_a_broken_or_missing_binary_is_refused_under_load() {
    let dir = temp_dir();
    let installed: PathBuf = dir.path().join("handoff");
    std::fs::copy(handoff_bin(), &installed).expect("copy the binary");
    let mut cmd = run_command(&installed, dir.path());
    cmd.args(["--listen", "http=tcp://127.0.0.1:0", "--workers", "2", "--"])
        .arg(example("hello"));
    let mut h = Handoff::spawn(cmd, dir.path());
    h.wait_generation(1);
    let fds = baseline_fds(&h);
    let addr = h.addr("http");
    let supervisor = h.child.id();
    let mut workers = h.pids("ready");
    workers.sort_unstable();
    let load = Load::start(&addr, 8);
    load.wait_for_more(100);

    write_executable(
        &installed,
        "#!/bin/sh\necho 'this build is broken' >&2\nexit 1\n",
    );
    let (code, out, err) = client(&["upgrade", "--control", control_arg(&h)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("this build is broken"), "{err}");
    load.wait_for_more(100);

    std::fs::remove_file(&installed).expect("remove the binary");
    let (code, out, err) = client(&["upgrade", "--control", control_arg(&h)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cannot run the new binary"), "{err}");
    load.wait_for_more(100);

    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    let status = h.status();
    assert_eq!(status.pid, supervisor);
    assert_eq!(status.upgrades, 0);
    let mut now = h.pids("ready");
    now.sort_unstable();
    assert_eq!(now, workers, "the same workers serve");
    assert_no_zombies(&h);
    assert_fds_back(&h, fds);
    stop_cleanly(&mut h, &addr);
}
