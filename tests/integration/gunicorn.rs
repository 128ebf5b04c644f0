//! gunicorn, from Debian's package, as a real consumer of the protocol: it
//! checks LISTEN_PID strictly and sends READY=1 on NOTIFY_SOCKET.

use crate::harness::{get, get_from_generation, require, restart, temp_dir, Handoff};

const GUNICORN: &str = "/usr/bin/gunicorn";

#[test]
fn gunicorn_serves_and_restarts_through_handoff() {
    require(GUNICORN);
    let dir = temp_dir();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--ready",
            "notify",
            "--working-directory",
            fixtures,
            "--",
            GUNICORN,
            "--workers",
            "2",
            "wsgi_app:app",
        ],
    );
    // Only READY=1 from gunicorn makes it ready (ready = notify).
    h.wait_generation(1);
    assert_eq!(
        h.status().workers[0].status.as_deref(),
        Some("Gunicorn arbiter booted")
    );
    let addr = h.addr("http");
    let (status, body) = get(&addr, "/").expect("gunicorn serves");
    assert_eq!(status, 200);
    assert!(
        body.starts_with("hello from gunicorn pid") && body.contains("generation 1"),
        "{body}"
    );

    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    // The old arbiter's workers may answer a last few requests while they
    // drain; every request is answered, and generation 2 takes over.
    get_from_generation(&addr, "/", 2);
    h.wait_log("generation 1 worker 0 (pid");
}
