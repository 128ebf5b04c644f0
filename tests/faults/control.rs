//! Issue 7, item 7: the control socket's limits must not lock the operator
//! out. Idle connections give their place to newcomers, connections
//! waiting for an answer are never cut, a supervisor at its fd limit
//! answers `busy` instead of leaving clients in the backlog (and says so
//! once, not every 100 ms), every client command has a timeout with its
//! own exit code, and client output never panics.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use handoff::control::MAX_CONNECTIONS;

use crate::harness::{
    client, example, handoff_bin, restart, run_command, serve_hello, temp_dir, wait_timeout,
    Handoff, DEADLINE,
};

/// The exit codes these tests expect (exit.rs).
const REFUSED: i32 = 6;
const TIMED_OUT: i32 = 7;

fn connect(control: &Path) -> UnixStream {
    let stream = UnixStream::connect(control).expect("connect to the control socket");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set a read timeout");
    stream
}

/// Sends one request line and reads one answer line.
fn ask(stream: &UnixStream, request: &str) -> String {
    let mut writer = stream;
    // A `busy` answer may come, and the connection close, before the
    // request is written: the answer is still there to read.
    let _ = writer.write_all(format!("{request}\n").as_bytes());
    answer(stream)
}

fn answer(stream: &UnixStream) -> String {
    let mut line = String::new();
    if let Err(e) = BufReader::new(stream).read_line(&mut line) {
        panic!("no answer within {DEADLINE:?} ({e}): the client was left waiting");
    }
    line
}

const STATUS: &str = r#"{"command":"status"}"#;
const RESTART: &str = r#"{"command":"restart"}"#;

/// A connection that has been answered once (so the supervisor holds it)
/// and now sits idle.
fn held(h: &Handoff) -> UnixStream {
    let stream = connect(&h.control);
    let answer = ask(&stream, STATUS);
    assert!(
        answer.contains(r#""result":"status""#),
        "a new connection got {answer}; log:\n{}",
        h.log()
    );
    stream
}

/// True if the supervisor closed this connection (EOF, or a reset).
fn closed(stream: &UnixStream) -> bool {
    let mut byte = [0u8; 1];
    match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn control_arg(h: &Handoff) -> &str {
    h.control.to_str().expect("utf-8 path")
}

#[test]
fn idle_connections_give_their_place_to_the_operator() {
    let dir = temp_dir();
    let h = serve_hello(dir.path(), &[]);
    // A stuck script holds more idle connections than the cap: each
    // newcomer past it takes the place of the longest-idle one.
    let extra = 6;
    let streams: Vec<UnixStream> = (0..MAX_CONNECTIONS + extra).map(|_| held(&h)).collect();

    let (code, out, err) = client(&["status", "--control", control_arg(&h)]);
    assert_eq!(code, 0, "status with idle connections held: {out}{err}");
    assert!(out.contains("generation 1"), "{out}");
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "restart with idle connections held: {out}{err}");

    // The oldest went first (`extra` of them for the newcomers, one for
    // `status`; `restart` found the slot `status` left); the newest still
    // work.
    for (i, s) in streams.iter().enumerate().take(extra + 1) {
        assert!(closed(s), "connection {i}, among the oldest, was closed");
    }
    for s in [
        &streams[extra + 1],
        streams.last().expect("connections were opened"),
    ] {
        assert!(ask(s, STATUS).contains(r#""generation":2"#));
    }
}

#[test]
fn connections_waiting_for_an_answer_are_never_cut() {
    let dir = temp_dir();
    // New generations become ready only while the file `go` exists.
    let go = dir.path().join("go");
    std::fs::write(&go, "").expect("create go");
    let probe = format!("test -f {}", go.display());
    let mut h = serve_hello(
        dir.path(),
        &[
            "--ready",
            "exec",
            "--ready-command",
            &probe,
            "--ready-interval",
            "50ms",
            "--ready-timeout",
            "300s",
        ],
    );
    std::fs::remove_file(&go).expect("remove go");
    let half = MAX_CONNECTIONS / 2;

    // The idle ones come first, so they have been idle the longest even if
    // a restart below were not read yet.
    let idle: Vec<UnixStream> = (0..half).map(|_| held(&h)).collect();
    let mut waiting: Vec<UnixStream> = Vec::new();
    for _ in 0..MAX_CONNECTIONS - half {
        let s = held(&h);
        (&s).write_all(format!("{RESTART}\n").as_bytes())
            .expect("send restart");
        waiting.push(s);
    }
    for _ in 0..waiting.len() {
        h.wait_log("Restart { drained: false } requested");
    }
    // Newcomers take the idle ones' places, and wait on a restart too.
    for _ in 0..half {
        let s = held(&h);
        (&s).write_all(format!("{RESTART}\n").as_bytes())
            .expect("send restart");
        waiting.push(s);
    }
    for _ in 0..half {
        h.wait_log("Restart { drained: false } requested");
    }
    for (i, s) in idle.iter().enumerate() {
        assert!(closed(s), "idle connection {i} gave its place");
    }

    // Every slot waits for an answer: no room, and the operator is told.
    let (code, out, err) = client(&["status", "--control", control_arg(&h)]);
    assert_eq!(code, REFUSED, "{out}{err}");
    assert!(err.contains("waiting for answers"), "{err}");

    // Now the restarts can finish: every waiting client gets its answer.
    std::fs::write(&go, "").expect("create go");
    for (i, s) in waiting.iter().enumerate() {
        let answer = answer(s);
        assert!(
            answer.contains(r#""result":"restarted""#),
            "waiting connection {i} got {answer:?}; log:\n{}",
            h.log()
        );
    }
    let (code, out, err) = client(&["status", "--control", control_arg(&h)]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The supervisor's fd limit in the next test: about 20 fds above what it
/// uses once generation 1 serves.
const FD_LIMIT: u64 = 40;

#[test]
fn at_its_fd_limit_the_supervisor_answers_busy_and_says_so_once() {
    let dir = temp_dir();
    let mut cmd = run_command(handoff_bin(), dir.path());
    cmd.args(["--listen", "http=tcp://127.0.0.1:0", "--"])
        .arg(example("hello"));
    let limit = nix::sys::resource::Resource::RLIMIT_NOFILE;
    // SAFETY: setrlimit is a plain syscall, async-signal-safe; the closure
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(limit, FD_LIMIT, FD_LIMIT).map_err(std::io::Error::from)
        });
    }
    let mut h = Handoff::spawn(cmd, dir.path());
    h.wait_generation(1);

    // Hold connections until no fd is left: the next one is answered
    // `busy`, not left in the backlog.
    let mut streams = Vec::new();
    let busy = loop {
        assert!(
            streams.len() < FD_LIMIT as usize,
            "{} connections held and still no fd shortage; log:\n{}",
            streams.len(),
            h.log()
        );
        let s = connect(&h.control);
        let answer = ask(&s, STATUS);
        if !answer.contains(r#""result":"status""#) {
            break answer;
        }
        streams.push(s);
    };
    assert!(busy.contains("out of file descriptors"), "{busy}");

    // Idle connections close after a while: keep them fresh.
    let refresh = |streams: &[UnixStream]| {
        for s in streams {
            assert!(ask(s, STATUS).contains(r#""result":"status""#));
        }
    };
    refresh(&streams);
    let mut status = Command::new(handoff_bin())
        .args(["status", "--timeout", "5s", "--control", control_arg(&h)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("handoff status runs");
    let exit = wait_timeout(&mut status, DEADLINE).expect("status returns, it does not hang");
    let mut err = String::new();
    status
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert_eq!(exit.code(), Some(REFUSED), "{err}");
    assert!(err.contains("out of file descriptors"), "{err}");

    // Many more clients at the limit: still one warning in the log.
    refresh(&streams);
    for _ in 0..20 {
        let answer = ask(&connect(&h.control), STATUS);
        assert!(answer.contains("out of file descriptors"), "{answer}");
    }
    let warnings = h
        .log()
        .lines()
        .filter(|l| l.contains("cannot accept"))
        .count();
    assert_eq!(
        warnings,
        1,
        "one warning for 22 failed accepts; log:\n{}",
        h.log()
    );

    // Fds freed (once the supervisor has seen the connections close): it
    // serves again, and says so.
    drop(streams);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (code, out, err) = client(&["status", "--control", control_arg(&h)]);
        if code == 0 {
            break;
        }
        assert!(err.contains("out of file descriptors"), "{out}{err}");
        assert!(Instant::now() < deadline, "still out of fds: {err}");
    }
    h.wait_log("accepting connections again");
}

#[test]
fn a_restart_that_times_out_exits_7_and_says_it_may_still_finish() {
    let dir = temp_dir();
    let go = dir.path().join("go");
    std::fs::write(&go, "").expect("create go");
    let probe = format!("test -f {}", go.display());
    let mut h = serve_hello(
        dir.path(),
        &[
            "--ready",
            "exec",
            "--ready-command",
            &probe,
            "--ready-interval",
            "50ms",
            "--ready-timeout",
            "300s",
        ],
    );
    std::fs::remove_file(&go).expect("remove go");
    let (code, out, err) = client(&["restart", "--timeout", "1s", "--control", control_arg(&h)]);
    assert_eq!(code, TIMED_OUT, "{out}{err}");
    assert!(err.contains("did not answer `restart`"), "{err}");
    assert!(err.contains("may still be under way"), "{err}");
    // And indeed it was: it finishes once it can.
    std::fs::write(&go, "").expect("create go");
    h.wait_generation(2);
}

#[test]
fn a_supervisor_that_never_answers_or_accepts_costs_a_timeout_not_a_hang() {
    let dir = temp_dir();
    // Accepted (in the backlog), never answered.
    let mute = dir.path().join("mute.sock");
    let _mute = UnixListener::bind(&mute).expect("bind");
    let started = Instant::now();
    let (code, _, err) = client(&["status", "--timeout", "1s", "--control", path(&mute)]);
    assert_eq!(code, TIMED_OUT, "{err}");
    assert!(err.contains("did not answer `status`"), "{err}");
    assert!(started.elapsed() < DEADLINE);

    // A full backlog: connect itself waits, and is bounded too.
    let full = dir.path().join("full.sock");
    let socket =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).expect("a socket");
    socket
        .bind(&socket2::SockAddr::unix(&full).expect("address"))
        .expect("bind");
    socket.listen(0).expect("listen");
    // With a backlog of 0, one connection waits in the queue; the next
    // finds it full.
    let _queued = UnixStream::connect(&full).expect("the first connection is queued");
    let (code, _, err) = client(&["stop", "--timeout", "1s", "--control", path(&full)]);
    assert_eq!(code, TIMED_OUT, "{err}");
    assert!(err.contains("did not accept the connection"), "{err}");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A client whose stdout (or stderr) is a pipe nobody will ever read.
fn with_closed(args: &[&str], closed_stdout: bool) -> (Option<i32>, String) {
    let (read, write) = nix::unistd::pipe().expect("a pipe");
    drop(read);
    let mut cmd = Command::new(handoff_bin());
    cmd.args(args).stdin(Stdio::null());
    if closed_stdout {
        cmd.stdout(Stdio::from(write)).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::from(write));
    }
    let out = cmd.output().expect("handoff runs");
    let other = if closed_stdout {
        out.stderr
    } else {
        out.stdout
    };
    (
        out.status.code(),
        String::from_utf8_lossy(&other).into_owned(),
    )
}

#[test]
fn client_output_to_a_closed_pipe_never_panics() {
    let dir = temp_dir();
    let h = serve_hello(dir.path(), &[]);
    // `handoff status | head -0`: the answer cannot be printed, and that
    // is no reason to panic (exit 101); status did its job.
    for args in [
        &["status", "--control", control_arg(&h)][..],
        &["status", "--json", "--control", control_arg(&h)][..],
        &["restart", "--control", control_arg(&h)][..],
    ] {
        let (code, stderr) = with_closed(args, true);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // An error that cannot be printed still has its exit code.
    let nobody = dir.path().join("nobody.sock");
    let (code, stdout) = with_closed(&["status", "--control", path(&nobody)], false);
    assert_eq!(code, Some(4), "unreachable, with stderr closed: {stdout}");
}
