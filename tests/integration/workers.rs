//! Many workers: slots, rolling restarts, scaling.

use crate::harness::{
    client, example, get, restart, serve_hello_script, temp_dir, write_executable,
};
use crate::load::Load;

/// HANDOFF_WORKER as the process itself sees it.
fn worker_env(pid: u32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    environ
        .split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("HANDOFF_WORKER="))
        .expect("HANDOFF_WORKER is set")
        .to_string()
}

#[test]
fn n_workers_serve_each_with_its_slot() {
    let dir = temp_dir();
    let h = serve_hello_script(dir.path(), &["--workers", "3"]);
    let status = h.status();
    let mut slots: Vec<usize> = status.workers.iter().map(|w| w.slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1, 2], "{status:?}");
    for w in &status.workers {
        assert_eq!(w.state, "ready");
        assert_eq!(worker_env(w.pid.expect("a pid")), w.slot.to_string());
    }
    let addr = h.addr("http");
    for _ in 0..20 {
        assert_eq!(get(&addr, "/").expect("serves").0, 200);
    }
    // Slots are stable across restarts.
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    for w in h.status().workers.iter().filter(|w| w.state == "ready") {
        assert_eq!(w.generation, 2);
        assert_eq!(worker_env(w.pid.expect("a pid")), w.slot.to_string());
    }
}

#[test]
fn a_rolling_restart_under_load_fails_no_request() {
    let dir = temp_dir();
    let mut h = serve_hello_script(
        dir.path(),
        &["--workers", "4", "--strategy", "rolling", "--batch", "1"],
    );
    let load = Load::start(&h.addr("http"), 16);
    load.wait_for_more(200);
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    // One batch at a time: four batches, each with its own line.
    for slot in 0..4 {
        h.wait_log(&format!("generation 2 workers {slot} ready in"));
    }
    load.wait_for_more(200);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    let status = h.status();
    assert_eq!(status.generation, 2);
    assert!(
        status
            .workers
            .iter()
            .filter(|w| w.state == "ready")
            .all(|w| w.generation == 2),
        "{status:?}"
    );
}

#[test]
fn a_rolling_restart_stops_at_the_failing_batch_and_the_rest_keep_serving() {
    let dir = temp_dir();
    let h = serve_hello_script(
        dir.path(),
        &["--workers", "4", "--strategy", "rolling", "--batch", "2"],
    );
    let hello = example("hello");
    // The new version fails in slots 2 and 3 only: the second batch.
    write_executable(
        &dir.path().join("server.sh"),
        &format!(
            "#!/bin/sh\nif [ \"$HANDOFF_WORKER\" -ge 2 ]; then exec {h} --exit-at-start; fi\nexec {h}\n",
            h = hello.display()
        ),
    );

    let (code, out, err) = restart(&h);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("exited with code 3 before it was ready"),
        "{err}"
    );
    assert!(
        err.contains("2 of 4 workers had been replaced by generation 2"),
        "{err}"
    );

    let status = h.status();
    let mut by_slot: Vec<(usize, u64)> = status
        .workers
        .iter()
        .filter(|w| w.state == "ready")
        .map(|w| (w.slot, w.generation))
        .collect();
    by_slot.sort_unstable();
    assert_eq!(by_slot, [(0, 2), (1, 2), (2, 1), (3, 1)], "{status:?}");
    let addr = h.addr("http");
    for _ in 0..20 {
        assert_eq!(get(&addr, "/").expect("still serving").0, 200);
    }
}

#[test]
fn scaling_up_and_down_under_load_fails_no_request() {
    let dir = temp_dir();
    let mut h = serve_hello_script(dir.path(), &["--workers", "2"]);
    let control = h.control.to_str().expect("utf-8").to_string();
    let load = Load::start(&h.addr("http"), 16);
    load.wait_for_more(100);

    let (code, out, err) = client(&["scale", "4", "--control", &control]);
    assert_eq!(
        (code, out.as_str()),
        (0, "scaled to 4 worker(s)\n"),
        "{err}"
    );
    h.wait_log_each(&[
        &["generation 1 worker 2 (pid", "ready in"],
        &["generation 1 worker 3 (pid", "ready in"],
    ]);
    load.wait_for_more(100);
    let (code, out, err) = client(&["scale", "1", "--control", &control]);
    assert_eq!(code, 0, "{out}{err}");
    for _ in 0..3 {
        h.wait_log("exited with code 0 after draining");
    }
    load.wait_for_more(100);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    let status = h.status();
    assert_eq!(status.workers.len(), 1, "{status:?}");
    assert_eq!(status.workers[0].slot, 0);

    // The next generation keeps the new count.
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        h.status()
            .workers
            .iter()
            .filter(|w| w.generation == 2)
            .count(),
        1
    );

    let (code, _, err) = client(&["scale", "0", "--control", &control]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("between 1 and"), "{err}");
}
