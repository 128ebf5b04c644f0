//! Upgrading handoff itself, in place, under load.

use nix::sys::signal::Signal;

use crate::activator::{activate_binary, NotifySocket};
use crate::harness::{
    client, example, get, handoff_bin, installed_copy, restart, run_command, start_installed,
    temp_dir, write_executable, Handoff,
};
use crate::load::Load;

fn upgrade(h: &Handoff) -> (i32, String, String) {
    client(&["upgrade", "--control", h.control.to_str().expect("utf-8")])
}

fn pids(h: &Handoff) -> Vec<Option<u32>> {
    let mut pids: Vec<_> = h.status().workers.iter().map(|w| w.pid).collect();
    pids.sort_unstable();
    pids
}

#[test]
fn an_upgrade_under_load_keeps_every_connection_and_every_child() {
    let dir = temp_dir();
    let installed = installed_copy(dir.path());
    let notify = NotifySocket::bind(dir.path(), false);
    let hello = example("hello");
    let mut h = activate_binary(
        &installed,
        dir.path(),
        vec![],
        &[("NOTIFY_SOCKET", &notify.address)],
        &[
            "--workers",
            "2",
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--",
            hello.to_str().expect("utf-8"),
        ],
    );
    h.wait_generation(1);
    notify.wait_for("READY=1", 0);
    let supervisor = h.status().pid;
    let children = pids(&h);
    let load = Load::start(&h.addr("http"), 16);
    load.wait_for_more(200);

    // The new build: a wrapper that leaves a mark, so the test knows the
    // binary now on disk is what ran (its check, then its take-over).
    let marks = dir.path().join("marks");
    write_executable(
        &installed,
        &format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            marks.display(),
            handoff_bin()
        ),
    );
    let (code, out, err) = upgrade(&h);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("upgraded from handoff"), "{out}");
    h.wait_log("upgraded from handoff");
    let ran = std::fs::read_to_string(&marks).expect("the new binary ran");
    let ran: Vec<&str> = ran.lines().collect();
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert!(ran[0].starts_with("__resume --check "), "{ran:?}");
    assert!(
        ran[1].starts_with("__resume ") && !ran[1].contains("--check"),
        "{ran:?}"
    );
    load.wait_for_more(200);

    // SIGUSR2 does the same.
    h.signal(Signal::SIGUSR2);
    h.wait_log("upgraded from handoff");
    load.wait_for_more(200);
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);

    let status = h.status();
    assert_eq!(status.upgrades, 2);
    assert_eq!(
        status.pid, supervisor,
        "the same process: systemd's main pid does not change"
    );
    assert_eq!(pids(&h), children, "the same children, not restarted");
    assert!(
        !notify.texts().iter().any(|t| t.contains("STOPPING=1")),
        "the unit stayed up: {:?}",
        notify.texts()
    );

    // The new supervisor supervises: it restarts, and it stops cleanly.
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_log_all(&["generation 1 worker 0", "exited with code 0 after draining"]);
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit().code(), Some(0));
}

#[test]
fn an_upgrade_to_a_broken_binary_is_refused_and_the_old_supervisor_stays() {
    let dir = temp_dir();
    let installed = installed_copy(dir.path());
    let h = start_installed(&installed, dir.path());
    let children = pids(&h);

    write_executable(
        &installed,
        "#!/bin/sh\necho 'this build is broken' >&2\nexit 1\n",
    );
    let (code, out, err) = upgrade(&h);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("refused the current state") && err.contains("this build is broken"),
        "{err}"
    );

    let status = h.status();
    assert_eq!(status.upgrades, 0);
    assert_eq!(pids(&h), children);
    assert_eq!(get(&h.addr("http"), "/").expect("still serving").0, 200);

    // A binary that is gone altogether is refused too.
    std::fs::remove_file(&installed).expect("remove");
    let (code, _, err) = upgrade(&h);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot run the new binary"), "{err}");
    assert_eq!(get(&h.addr("http"), "/").expect("still serving").0, 200);
}

#[test]
fn a_sigterm_during_the_new_binarys_check_is_not_lost() {
    let dir = temp_dir();
    let installed = installed_copy(dir.path());
    let mut h = start_installed(&installed, dir.path());

    // The new build's check tells the test it has started, then waits for
    // the test's go: the SIGTERM lands in between, while the old supervisor
    // waits for the check.
    let started = dir.path().join("started");
    let go = dir.path().join("go");
    for fifo in [&started, &go] {
        nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    }
    write_executable(
        &installed,
        &format!(
            "#!/bin/sh\nif [ \"$2\" = --check ]; then echo checking > {s}; read _ < {g}; fi\nexec {bin} \"$@\"\n",
            s = started.display(),
            g = go.display(),
            bin = handoff_bin()
        ),
    );
    let control = h.control.to_str().expect("utf-8").to_string();
    let upgrading = std::thread::spawn(move || client(&["upgrade", "--control", &control]));
    // Opening the FIFO waits for the check to open its end: no sleeping.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::open(&started).expect("open")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line, "checking\n");
    h.signal(Signal::SIGTERM);
    std::fs::write(&go, "go\n").expect("let the check finish");

    // The upgrade went through, and the SIGTERM reached the new supervisor,
    // which stopped gracefully.
    let (code, out, err) = upgrading.join().expect("client thread");
    assert_eq!(code, 0, "{out}{err}");
    h.wait_log("upgraded from handoff");
    h.wait_log("SIGTERM: stopping gracefully");
    assert_eq!(h.wait_exit().code(), Some(0), "{}", h.log());
}

#[test]
fn a_readiness_probe_running_at_an_upgrade_is_not_left_behind() {
    let dir = temp_dir();
    let installed = installed_copy(dir.path());
    let go = dir.path().join("go");
    // A probe that runs until the test says go: at the upgrade, it is
    // certainly running, a child of the old supervisor.
    let probe = format!("while [ ! -e {} ]; do sleep 0.05; done", go.display());
    let mut cmd = run_command(&installed, dir.path());
    cmd.args([
        "--listen",
        "http=tcp://127.0.0.1:0",
        "--ready",
        "exec",
        "--ready-command",
        &probe,
        "--",
    ])
    .arg(example("hello"));
    let mut h = Handoff::spawn(cmd, dir.path());
    h.wait_log("starting generation 1");
    assert_eq!(h.status().workers[0].state, "starting");

    let (code, out, err) = upgrade(&h);
    assert_eq!(code, 0, "{out}{err}");
    let line = h.wait_log("a helper of the old supervisor (a readiness probe)");
    let pid: i32 = line
        .split("ended pid ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("a pid in the line");
    // Reaped: not even a zombie is left.
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} is still there"
    );

    // The new supervisor runs its own probe, and the worker becomes ready.
    std::fs::write(&go, "").expect("touch");
    h.wait_generation(1);
    assert_eq!(h.status().workers[0].state, "ready");
}
