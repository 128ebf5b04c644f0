//! Restarts: under load, and the two ways a new generation can fail.

use crate::harness::{example, get, restart, serve_hello_script, temp_dir, write_script};
use crate::load::Load;

#[test]
fn restart_under_load_refuses_nothing_and_changes_the_pid() {
    let dir = temp_dir();
    let mut h = serve_hello_script(dir.path(), &[]);
    let addr = h.addr("http");
    let load = Load::start(&addr, 16);
    load.wait_for_more(200);
    let mut generations = Vec::new();
    for _ in 0..3 {
        let (code, out, err) = restart(&h);
        assert_eq!(code, 0, "restart failed: {out}{err}");
        generations.push(out);
        load.wait_for_more(200);
    }
    let tally = load.stop();
    assert_eq!(
        tally.failures(),
        0,
        "failed requests during restarts: {:?}\n{}",
        tally.failed,
        h.log()
    );
    assert!(tally.ok >= 800, "{tally:?}");
    assert!(
        generations[2].starts_with("generation 4 ready"),
        "{generations:?}"
    );
    // Every generation answered: the answering pid changed with each.
    for g in 1..=4 {
        assert!(
            tally
                .bodies
                .keys()
                .any(|b| b.contains(&format!("generation {g} "))),
            "no answer from generation {g}: {:?}",
            tally.bodies
        );
    }
    let pids: std::collections::BTreeSet<_> = tally
        .bodies
        .keys()
        .map(|b| b.split_whitespace().nth(3).map(str::to_owned))
        .collect();
    assert_eq!(pids.len(), 4, "{:?}", tally.bodies);
    h.wait_log("generation 3 worker 0 (pid");
}

#[test]
fn a_generation_that_exits_at_start_is_rolled_back() {
    let dir = temp_dir();
    let h = serve_hello_script(dir.path(), &[]);
    let addr = h.addr("http");
    let (_, before) = get(&addr, "/").expect("generation 1 serves");
    let old_pid = h.pids("ready");

    write_script(
        &dir.path().join("server.sh"),
        &format!("{} --exit-at-start", example("hello").display()),
    );
    let (code, out, err) = restart(&h);
    assert_eq!(code, 1, "restart must fail: {out}{err}");
    assert!(
        err.contains("generation 2 worker 0")
            && err.contains("exited with code 3 before it was ready"),
        "{err}"
    );
    assert!(err.contains("generation 1 keeps serving"), "{err}");

    let (status, after) = get(&addr, "/").expect("generation 1 still serves");
    assert_eq!((status, &after), (200, &before));
    let s = h.status();
    assert_eq!(s.generation, 1);
    assert_eq!(h.pids("ready"), old_pid);
}

#[test]
fn a_generation_that_never_becomes_ready_is_killed_and_rolled_back() {
    let dir = temp_dir();
    let mut h = serve_hello_script(dir.path(), &["--ready-timeout", "1s"]);
    let addr = h.addr("http");
    let old_pid = h.pids("ready");

    write_script(
        &dir.path().join("server.sh"),
        &format!("{} --never-ready", example("hello").display()),
    );
    let (code, out, err) = restart(&h);
    assert_eq!(code, 1, "restart must fail: {out}{err}");
    assert!(
        err.contains("not ready within 1000 ms") && err.contains("READY=1"),
        "{err}"
    );
    assert!(err.contains("generation 1 keeps serving"), "{err}");
    // The never-ready child was killed, not left running.
    h.wait_log_all(&["generation 2 worker 0", "was killed by SIGKILL"]);

    let (status, body) = get(&addr, "/").expect("generation 1 still serves");
    assert_eq!(status, 200);
    assert!(body.contains("generation 1 "), "{body}");
    assert_eq!(h.pids("ready"), old_pid);
    assert!(
        h.status().workers.iter().all(|w| w.generation == 1),
        "{:?}",
        h.status()
    );

    // Fixed: the next restart goes through.
    write_script(
        &dir.path().join("server.sh"),
        example("hello").to_str().expect("utf-8 path"),
    );
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("generation 3 ready"), "{out}");
}

#[test]
fn restarts_asked_for_during_a_restart_are_coalesced_not_lost() {
    let dir = temp_dir();
    let mut h = serve_hello_script(dir.path(), &[]);
    // A slow generation, so the other requests arrive while it starts.
    write_script(
        &dir.path().join("server.sh"),
        &format!("{} --ready-after 1000", example("hello").display()),
    );
    let control = h.control.to_str().expect("utf-8 path").to_string();
    let first = std::thread::spawn({
        let control = control.clone();
        move || crate::harness::client(&["restart", "--control", &control])
    });
    h.wait_log("restart: starting generation 2");
    let later: Vec<_> = (0..2)
        .map(|_| {
            let control = control.clone();
            std::thread::spawn(move || crate::harness::client(&["restart", "--control", &control]))
        })
        .collect();
    h.wait_log("one more restart will follow");
    h.wait_log("one more restart will follow");
    let (code, out, err) = first.join().expect("client thread");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("generation 2 ready"), "{out}");
    for t in later {
        let (code, out, err) = t.join().expect("client thread");
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.starts_with("generation 3 ready"),
            "both queued requests share one restart: {out}"
        );
    }
    assert_eq!(h.status().generation, 3);
}

#[test]
fn restart_drained_answers_once_the_old_generation_is_gone() {
    let dir = temp_dir();
    // The old workers take a while to go: 300 ms after draining.
    let h = serve_hello_script(dir.path(), &["--workers", "2"]);
    write_script(
        &dir.path().join("server.sh"),
        &format!("{} --drain-delay 300", example("hello").display()),
    );
    // Generation 2 has the delay; restart once to get it serving...
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    // ...then replace it, waiting for its slow drain.
    let control = h.control.to_str().expect("utf-8").to_string();
    let (code, out, err) = crate::harness::client(&["restart", "--drained", "--control", &control]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("generation 3 ready in") && out.contains("old workers gone after"),
        "{out}"
    );
    let gone_after: u64 = out
        .trim_end()
        .rsplit(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of ms");
    assert!(
        gone_after >= 300,
        "the old workers took their 300 ms: {out}"
    );
    let status = h.status();
    assert!(
        status
            .workers
            .iter()
            .all(|w| w.generation == 3 && w.state == "ready"),
        "no old worker is left: {status:?}"
    );
}
