use super::*;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

const SH: &str = "/bin/sh";
/// Long enough for a loaded machine; a test that should finish early
/// and does not shows up as a timeout error, not as a slow pass.
const GENEROUS: Duration = Duration::from_secs(60);

async fn sh(script: &str, fds: &[RawFd], timeout: Duration) -> Result<CheckOutput, CheckError> {
    // The caller hands over duplicates it owns, at the numbers it names.
    let fds = fds
        .iter()
        .map(|&fd| {
            // SAFETY: the tests name only fds they hold open.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            (borrowed.try_clone_to_owned().unwrap(), fd)
        })
        .collect();
    run_check(
        Path::new(SH),
        &[OsStr::new("-c"), OsStr::new(script)],
        fds,
        timeout,
    )
    .await
}

#[tokio::test]
async fn success_returns_stdout() {
    let out = sh("echo 'handoff can take over'; echo note >&2", &[], GENEROUS)
        .await
        .unwrap();
    assert_eq!(out.stdout.text(), "handoff can take over");
    assert_eq!(out.stderr.text(), "note");
    assert_eq!(out.stdout.dropped(), 0);
}

#[tokio::test]
async fn a_mebibyte_on_each_stream_finishes_promptly_and_is_capped() {
    // stdout is written whole before stderr: a runner that reads one
    // stream at a time, or only after the exit, stalls the child on a
    // full pipe until the timeout.
    let mib = 1024 * 1024;
    let script = format!(
        "head -c {mib} /dev/zero | tr '\\0' o; head -c {mib} /dev/zero | tr '\\0' e >&2; echo; echo last words >&2"
    );
    let started = Instant::now();
    let out = sh(&script, &[], GENEROUS).await.unwrap();
    assert!(started.elapsed() < GENEROUS / 2, "{:?}", started.elapsed());
    assert_eq!(out.stdout.bytes().len(), KEEP);
    assert_eq!(out.stdout.dropped(), (mib + 1 - KEEP) as u64);
    assert!(out.stdout.bytes()[..KEEP - 1].iter().all(|&b| b == b'o'));
    assert_eq!(out.stderr.bytes().len(), KEEP);
    assert_eq!(out.stderr.dropped(), (mib + 11 - KEEP) as u64);
    assert!(out.stderr.text().ends_with("eeelast words"));
    assert!(out.stderr.text().starts_with('…'));
}

#[tokio::test]
async fn a_check_that_sleeps_is_killed_at_the_timeout_and_reaped() {
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    // `exec`: the pid it prints is the one that sleeps.
    let err = sh(
        "echo $$; echo about to sleep >&2; exec sleep 600",
        &[],
        timeout,
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < GENEROUS / 2, "{:?}", started.elapsed());
    let CheckError::TimedOut {
        said, timeout: t, ..
    } = &err
    else {
        panic!("not a timeout: {err}");
    };
    assert_eq!(*t, timeout);
    assert_eq!(said.stderr.text(), "about to sleep");
    let message = err.to_string();
    assert!(
        message.ends_with("did not finish its check within 300 ms: about to sleep"),
        "{message}"
    );
    // Reaped: not even a zombie is left (a zombie keeps /proc/PID).
    let pid: u32 = said.stdout.text().parse().unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} is still there: {:?}",
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
    );
}

#[tokio::test]
async fn an_exit_3_gives_the_exit_and_the_trimmed_stderr() {
    let err = sh(
        "echo out; echo '  state format 9 is not mine  ' >&2; exit 3",
        &[],
        GENEROUS,
    )
    .await
    .unwrap_err();
    let CheckError::Failed {
        exit,
        stderr,
        stdout,
        status,
        ..
    } = &err
    else {
        panic!("not a failure: {err}");
    };
    assert_eq!(status.code(), Some(3));
    assert_eq!(exit, "exited with code 3");
    assert_eq!(stderr, "state format 9 is not mine");
    assert_eq!(stdout.text(), "out");
    assert!(
        err.to_string()
            .ends_with("failed its check (exited with code 3): state format 9 is not mine"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_binary_names_its_path() {
    let err = run_check(Path::new("/nonexistent/handoff"), &[], Vec::new(), GENEROUS)
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::Start { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot run /nonexistent/handoff: "),
        "{err}"
    );
}

#[tokio::test]
async fn bad_fds_are_refused_before_anything_runs() {
    let null = std::fs::File::open("/dev/null").unwrap();
    let twice = [null.as_raw_fd(), null.as_raw_fd()];
    for fds in [&[1][..], &twice[..]] {
        let err = sh("exit 0", fds, GENEROUS).await.unwrap_err();
        assert!(matches!(err, CheckError::HandFd { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with(&format!("cannot hand fd {} ", fds[0])));
    }
}

/// The inode number of a socket, as /proc/PID/fd shows it.
fn socket_link(fd: &impl AsRawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn a_mapped_fd_is_there_at_its_number_and_a_stray_one_is_not() {
    let (handed, _peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
    // A fd without FD_CLOEXEC, as a supervisor may inherit one. It is
    // /dev/null, harmless should it leak into another test's child.
    let stray = std::fs::File::open("/dev/null").unwrap();
    nix::fcntl::fcntl(
        &stray,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let (h, s) = (handed.as_raw_fd(), stray.as_raw_fd());
    // readlink is a child of the shell: it sees what the check got.
    let script =
        format!("readlink /proc/self/fd/{h} || echo none; readlink /proc/self/fd/{s} || echo none");
    let out = sh(&script, &[h], GENEROUS).await.unwrap();
    let text = out.stdout.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, [socket_link(&handed).as_str(), "none"], "{text}");
    // Untouched here: still open, FD_CLOEXEC still set.
    let flags = nix::fcntl::fcntl(&handed, nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert_eq!(flags, libc::FD_CLOEXEC);
}

#[tokio::test]
async fn several_fds_each_land_at_their_own_number() {
    // Named out of order: each still lands at its own number.
    let (a, _a) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let (b, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    let script = format!("readlink /proc/self/fd/{fa}; readlink /proc/self/fd/{fb}");
    let out = sh(&script, &[fb, fa], GENEROUS).await.unwrap();
    let expected = format!("{}\n{}", socket_link(&a), socket_link(&b));
    assert_eq!(out.stdout.text(), expected);
}

#[test]
fn a_current_thread_runtime_keeps_running_while_the_check_runs() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ticked");
    let ticks = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        // Another task of the loop: after three ticks it leaves a file
        // the check waits for. A runner that blocks the thread never
        // lets it tick, and the check times out.
        let counter = ticks.clone();
        let path = flag.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            loop {
                interval.tick().await;
                if counter.fetch_add(1, Ordering::SeqCst) == 3 {
                    std::fs::write(&path, b"").unwrap();
                }
            }
        });
        let script = format!(
            "while ! test -e '{}'; do sleep 0.01; done; echo saw it",
            flag.display()
        );
        let out = sh(&script, &[], GENEROUS).await.unwrap();
        assert_eq!(out.stdout.text(), "saw it");
        ticker.abort();
    });
    assert!(ticks.load(Ordering::SeqCst) > 3);
}

#[test]
fn the_check_starts_with_no_signal_blocked_or_ignored() {
    use nix::sys::signal::{SigSet, Signal};
    // An upgrade runs the check with the supervisor's signals blocked;
    // whoever started the supervisor may have left some ignored. A
    // real-time signal no test uses, so that ignoring it for the
    // process a moment disturbs no other test.
    let rt_signal = libc::SIGRTMIN() + 5;
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGUSR1);
    blocked.thread_block().unwrap();
    // SAFETY: SIG_IGN installs no handler code; nothing else in the
    // tests uses this signal.
    let old = unsafe { libc::signal(rt_signal, libc::SIG_IGN) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(sh(
        "exec grep -E '^Sig(Blk|Ign)' /proc/self/status",
        &[],
        GENEROUS,
    ));
    // SAFETY: puts back what was there.
    unsafe { libc::signal(rt_signal, old) };
    blocked.thread_unblock().unwrap();
    assert_eq!(
        out.unwrap().stdout.text(),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000"
    );
}

#[test]
fn captured_keeps_the_tail_and_counts_the_rest() {
    let mut c = Captured::default();
    for _ in 0..5 {
        c.push(&[b'a'; KEEP]);
    }
    c.push("é end".as_bytes());
    let len = "é end".len();
    assert_eq!(c.bytes().len(), KEEP);
    assert_eq!(c.dropped(), (5 * KEEP + len - KEEP) as u64);
    assert!(c.bytes().ends_with("é end".as_bytes()));
    // A cut inside a character drops its remains, not a U+FFFD.
    let mut c = Captured::default();
    // Two-byte characters, then one byte: the last KEEP bytes (an even
    // number) begin with the second half of an é.
    c.push("é".repeat(KEEP).as_bytes());
    c.push(b"!");
    assert!(c.dropped() > 0);
    assert_eq!(c.bytes()[0] & 0xC0, 0x80);
    assert!(c.text().starts_with("…é"), "{}", &c.text()[..8]);
}
