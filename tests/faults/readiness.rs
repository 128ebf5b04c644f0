//! Children that lie about being ready, and a first generation that never
//! is.

use crate::harness::{example, get, restart, temp_dir, write_executable, Handoff};
use crate::load::Load;

/// Issue 7.8: a worker that said READY=1 and exited 0 at once made
/// `restart` report success and drain the old generation; the new one then
/// respawned in a loop while clients hung. Now it fails the restart, and
/// the old generation, still there, keeps serving.
#[test]
fn a_worker_that_exits_right_after_ready_fails_the_restart() {
    let dir = temp_dir();
    let script = dir.path().join("server.sh");
    let hello = example("hello");
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\nif [ \"$HANDOFF_GENERATION\" = 2 ]; then\n  \
             python3 -c 'import os, socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b\"READY=1\", os.environ[\"NOTIFY_SOCKET\"])'\n  \
             exit 0\nfi\nexec {}\n",
            hello.display()
        ),
    );
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            // Far longer than the few ms the worker lives after READY=1,
            // even on a loaded machine.
            "--min-ready-time",
            "2s",
            "--",
            script.to_str().expect("utf-8"),
        ],
    );
    h.wait_generation(1);
    let addr = h.addr("http");
    let old = h.pids("ready");
    let load = Load::start(&addr, 4);
    load.wait_for_more(50);

    let (code, out, err) = restart(&h);
    assert_eq!(code, 1, "the restart must fail: {out}{err}");
    assert!(
        err.contains("exited with code 0") && err.contains("after it was ready"),
        "{err}"
    );
    assert!(err.contains("generation 1 keeps serving"), "{err}");
    load.wait_for_more(50);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    let status = h.status();
    assert_eq!(status.generation, 1, "{status:?}");
    assert_eq!(
        h.pids("ready"),
        old,
        "the old worker was never told to stop"
    );
    assert_eq!(get(&addr, "/").expect("serves").0, 200);
}

/// Issue 7.11: a first generation that never becomes ready is retried for
/// as long as it takes (the documented choice: the sockets stay bound, so
/// clients wait in the backlog rather than being refused, and a server
/// waiting for its database comes up when the database does), and every
/// place says so plainly: the log, `status`, and a restart's answer.
#[test]
fn a_first_generation_that_never_becomes_ready_is_retried_and_says_so() {
    let dir = temp_dir();
    let script = dir.path().join("server.sh");
    let hello = example("hello");
    crate::harness::write_script(&script, &format!("{} --never-ready", hello.display()));
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--ready-timeout",
            "1s",
            "--respawn-backoff",
            "50ms",
            "--respawn-backoff-max",
            "200ms",
            "--",
            script.to_str().expect("utf-8"),
        ],
    );
    h.wait_log_all(&["not ready within 1000 ms", "killing it"]);
    h.wait_log("no generation is serving yet: connections wait in the listen backlog");
    let control = h.control.to_str().expect("utf-8").to_string();
    let (code, out, err) = crate::harness::client(&["status", "--control", &control]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines().next().unwrap_or("").contains("not serving yet"),
        "{out}"
    );
    let (code, out, err) = restart(&h);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("no generation has become ready yet, so none was kept"),
        "{err}"
    );

    // The server is fixed (its database is up): the next attempt serves.
    crate::harness::write_script(&script, hello.to_str().expect("utf-8"));
    h.wait_generation(1);
    assert_eq!(get(&h.addr("http"), "/").expect("serves").0, 200);
    assert_eq!(h.status().generation, 1);
}
