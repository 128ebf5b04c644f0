//! Issue 9: the event loop never blocks on slow work. While an upgrade's
//! check runs, and while a reload reads its file, the supervisor goes on
//! answering `status`, and refuses what must wait (`busy`) instead of
//! leaving the client hanging. Before the redesign the loop waited in
//! poll for the check and read the file itself: every client hung until
//! the slow part ended, and a check that printed more than a pipe holds
//! never ended at all.
//!
//! The slow parts are held by FIFOs the test opens itself: a held check
//! waits to read a line, a held reload waits on a FIFO put in place of its
//! file. If a test fails, closing the test's end lets whatever waits go.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use handoff::control::{call_within, ClientError};
use handoff::protocol::{encode, ErrorKind, Request, Response};

use crate::harness::eventually;
use crate::harness::{
    client, example, get_from_generation, handoff_bin, installed_copy, start_installed, temp_dir,
    write_executable, Handoff,
};

/// The --timeout of the clients that must be answered while the slow part
/// is held: ample for an answer on a loaded machine, short enough that a
/// blocked loop fails the test quickly rather than hanging it.
const ANSWERED_WITHIN: &str = "5s";
const ANSWERED_WITHIN_DURATION: Duration = Duration::from_secs(5);

/// The exit code of a refused request (exit.rs).
const REFUSED: i32 = 6;

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
}

fn control(h: &Handoff) -> String {
    h.control.to_str().expect("utf-8 path").to_string()
}

/// The installed binary replaced by a build whose check says it has
/// started (a file), then waits for the test's line on a FIFO before it
/// runs the real check.
struct HeldCheck {
    started: PathBuf,
    /// The FIFO's only writer, opened read-write so that opening it never
    /// waits. Dropped (a failed test), the check reads EOF and goes on.
    go: File,
}

impl HeldCheck {
    fn install(installed: &Path, dir: &Path) -> HeldCheck {
        let started = dir.join("started");
        let go_path = dir.join("go");
        mkfifo(&go_path);
        let go = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&go_path)
            .expect("open the go FIFO");
        write_executable(
            installed,
            &format!(
                "#!/bin/sh\nif [ \"$2\" = --check ]; then touch {s}; read _ < {g}; fi\nexec {bin} \"$@\"\n",
                s = started.display(),
                g = go_path.display(),
                bin = handoff_bin()
            ),
        );
        HeldCheck { started, go }
    }

    /// Waits until the new binary's check has started (and is held).
    fn wait_started(&self) {
        eventually("the new binary's check starts", || self.started.exists());
    }

    /// Lets the check go on to the real one.
    fn release(&mut self) {
        self.go.write_all(b"go\n").expect("let the check finish");
    }
}

/// Starts `handoff upgrade` on its own thread (it answers once the upgrade
/// is done or refused).
fn upgrade_in_background(h: &Handoff) -> std::thread::JoinHandle<(i32, String, String)> {
    let control = control(h);
    std::thread::spawn(move || client(&["upgrade", "--control", &control]))
}

/// The upgrade went through: the client says so, and `status` counts it.
fn assert_upgraded(h: &mut Handoff, upgrading: std::thread::JoinHandle<(i32, String, String)>) {
    let (code, out, err) = upgrading.join().expect("upgrade client thread");
    assert_eq!(code, 0, "the upgrade: {out}{err}");
    assert!(out.starts_with("upgraded from handoff"), "{out}");
    h.wait_log("upgraded from handoff");
    assert_eq!(h.status().upgrades, 1);
    let (code, out, err) = client(&["status", "--control", &control(h)]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("upgraded 1 time(s)"), "{out}");
}

#[test]
fn status_is_answered_and_restart_refused_while_an_upgrades_check_runs() {
    let dir = temp_dir();
    let installed = installed_copy(dir.path());
    let mut h = start_installed(&installed, dir.path());
    let mut check = HeldCheck::install(&installed, dir.path());
    let upgrading = upgrade_in_background(&h);
    check.wait_started();

    let ctl = control(&h);
    let (code, out, err) = client(&["status", "--control", &ctl, "--timeout", ANSWERED_WITHIN]);
    assert_eq!(code, 0, "status while the check runs: {out}{err}");
    assert!(out.contains("generation 1"), "{out}");

    let (code, out, err) = client(&["restart", "--control", &ctl, "--timeout", ANSWERED_WITHIN]);
    assert_eq!(code, REFUSED, "restart while the check runs: {out}{err}");
    assert!(
        err.contains("upgrading itself"),
        "busy, naming the upgrade: {err}"
    );

    check.release();
    assert_upgraded(&mut h, upgrading);
}

#[test]
fn a_check_that_prints_a_lot_does_not_hang_the_upgrade() {
    let dir = temp_dir();
    let installed = installed_copy(dir.path());
    let mut h = start_installed(&installed, dir.path());
    // Far more than a pipe holds (64 KiB) on stdout, some on stderr, then
    // the real check.
    write_executable(
        &installed,
        &format!(
            "#!/bin/sh\nif [ \"$2\" = --check ]; then\n  yes 'the check says a lot' | head -c 204800\n  yes 'and warns' | head -c 20000 >&2\nfi\nexec {bin} \"$@\"\n",
            bin = handoff_bin()
        ),
    );
    let upgrading = upgrade_in_background(&h);
    assert_upgraded(&mut h, upgrading);
}

/// One request sent while the check is held, and what came back.
fn ask_while_held(ctl: &Path, request: Request) -> Result<Response, ClientError> {
    call_within(ctl, &request, Some(ANSWERED_WITHIN_DURATION))
}

/// A connection the supervisor has accepted and answered once: it holds
/// it, and reads its next request as it comes.
fn accepted_connection(h: &Handoff) -> UnixStream {
    let stream = UnixStream::connect(&h.control).expect("connect to the control socket");
    stream
        .set_read_timeout(Some(ANSWERED_WITHIN_DURATION))
        .expect("set a read timeout");
    match ask_on(&stream, &Request::Status {}) {
        Ok(Response::Status(_)) => stream,
        other => panic!("a first status: {other:?}; log:\n{}", h.log()),
    }
}

/// Sends a request on a held connection and reads its answer line. EOF is
/// `NoAnswer`, as the client library says it.
fn ask_on(stream: &UnixStream, request: &Request) -> Result<Response, ClientError> {
    let path = PathBuf::from("held connection");
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    (&*stream).write_all(&encode(request)).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    if line.is_empty() {
        return Err(ClientError::NoAnswer { path });
    }
    Ok(serde_json::from_str(&line).expect("an answer in the protocol"))
}

fn restart_or_scale(i: usize) -> Request {
    if i % 2 == 0 {
        Request::Restart { drained: false }
    } else {
        Request::Scale { workers: 2 }
    }
}

#[test]
fn requests_sent_while_an_upgrades_check_runs_are_all_answered_busy() {
    let dir = temp_dir();
    let installed = installed_copy(dir.path());
    let mut h = start_installed(&installed, dir.path());
    // Connections this supervisor already holds when the upgrade starts,
    // as a script that keeps its connection open has.
    let held: Vec<UnixStream> = (0..4).map(|_| accepted_connection(&h)).collect();
    let mut check = HeldCheck::install(&installed, dir.path());
    let upgrading = upgrade_in_background(&h);
    check.wait_started();

    // Several clients at once, as scripts retrying would: new connections,
    // and requests on the held ones.
    let fresh = (0..4).map(|i| {
        let ctl = h.control.clone();
        let request = restart_or_scale(i);
        std::thread::spawn(move || (request.clone(), ask_while_held(&ctl, request)))
    });
    let on_held = held.into_iter().enumerate().map(|(i, stream)| {
        let request = restart_or_scale(i);
        std::thread::spawn(move || (request.clone(), ask_on(&stream, &request)))
    });
    let askers: Vec<_> = fresh.chain(on_held).collect();
    for asker in askers {
        let (request, answer) = asker.join().expect("client thread");
        match answer {
            Ok(Response::Error {
                kind: ErrorKind::Busy,
                message,
            }) => assert!(
                message.contains("upgrading itself"),
                "{request:?}: busy, naming the upgrade: {message}"
            ),
            other => panic!("{request:?} while the check runs: expected busy, got {other:?}"),
        }
    }

    check.release();
    assert_upgraded(&mut h, upgrading);
    // Nothing asked meanwhile was carried out behind the clients' backs.
    let status = h.status();
    assert_eq!(status.generation, 1);
    assert_eq!(status.workers.len(), 1);
}

/// A config file replaced by a FIFO: a reload's read of it waits until the
/// test writes the text and closes its end.
struct HeldFile {
    path: PathBuf,
    /// The writing end, once the reload has opened the FIFO.
    writer: Option<File>,
}

impl HeldFile {
    fn replace(path: &Path) -> HeldFile {
        let fifo = path.with_extension("fifo");
        mkfifo(&fifo);
        std::fs::rename(&fifo, path).expect("rename the FIFO over the file");
        HeldFile {
            path: path.to_path_buf(),
            writer: None,
        }
    }

    /// Non-blocking, opening for writing succeeds only once a reader has
    /// the FIFO open: then the reload is reading it, and waits.
    fn open_writer(&self) -> Option<File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
            .ok()
    }

    fn wait_read(&mut self) {
        eventually("the reload opens its file", || {
            self.writer = self.open_writer();
            self.writer.is_some()
        });
    }

    /// Writes the file's text and closes: the read ends.
    fn finish(&mut self, text: &str) {
        let mut writer = self.writer.take().expect("the reload opened the file");
        writer.write_all(text.as_bytes()).expect("write the config");
    }
}

/// handoff started on a config file and serving generation 1, then the
/// file replaced by a FIFO and a `handoff reload` under way, held reading it.
struct HeldReload {
    /// Before `h`, so dropped first: the FIFO lets go before the
    /// supervisor is stopped.
    held: HeldFile,
    h: Handoff,
    config: String,
    reloading: std::thread::JoinHandle<(i32, String, String)>,
}

impl HeldReload {
    fn start(dir: &Path) -> HeldReload {
        let file = dir.join("handoff.toml");
        let config = format!(
            "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n[program]\ncommand = [{hello:?}]\n",
            hello = example("hello").display().to_string()
        );
        std::fs::write(&file, &config).expect("write config");
        let mut h = Handoff::start(dir, &["--config", file.to_str().expect("utf-8")]);
        h.wait_generation(1);
        let mut held = HeldFile::replace(&file);
        let ctl = control(&h);
        let reloading = std::thread::spawn(move || client(&["reload", "--control", &ctl]));
        held.wait_read();
        HeldReload {
            held,
            h,
            config,
            reloading,
        }
    }

    /// Lets the reload read the file: it must start generation 2, which
    /// then serves.
    fn finish(mut self) -> Handoff {
        self.held.finish(&self.config);
        let (code, out, err) = self.reloading.join().expect("reload client thread");
        assert_eq!(code, 0, "the reload: {out}{err}");
        assert!(out.starts_with("generation 2 ready"), "{out}");
        get_from_generation(&self.h.addr("http"), "/", 2);
        self.h
    }
}

impl Drop for HeldFile {
    /// Whatever happened, nothing stays blocked on the FIFO: a reader that
    /// has it open (or waits to) gets EOF.
    fn drop(&mut self) {
        if self.writer.is_none() {
            self.writer = self.open_writer();
        }
    }
}

#[test]
fn status_is_answered_while_a_reload_reads_its_file() {
    let dir = temp_dir();
    let reload = HeldReload::start(dir.path());

    let (code, out, err) = client(&[
        "status",
        "--control",
        &control(&reload.h),
        "--timeout",
        ANSWERED_WITHIN,
    ]);
    assert_eq!(code, 0, "status while the reload reads: {out}{err}");
    assert!(out.contains("generation 1"), "{out}");

    reload.finish();
}

/// A SIGHUP while the check runs is held, not acted on by the supervisor
/// that is about to go (which would call the upgrade off), and reaches the
/// new one pending across the exec: it restarts once it has taken over.
#[test]
fn a_sighup_during_the_check_restarts_after_the_upgrade() {
    let dir = temp_dir();
    let installed = installed_copy(dir.path());
    let mut h = start_installed(&installed, dir.path());
    let mut check = HeldCheck::install(&installed, dir.path());
    let upgrading = upgrade_in_background(&h);
    check.wait_started();

    h.signal(nix::sys::signal::Signal::SIGHUP);
    h.wait_log("SIGHUP: held until the upgrade's check is done");
    check.release();
    assert_upgraded(&mut h, upgrading);
    h.wait_generation(2);
    let addr = h.addr("http");
    get_from_generation(&addr, "/", 2);
}

/// An upgrade asked for while a reload reads its file is refused `busy`:
/// the exec would cut the reload, its client unanswered and its change
/// lost. The reload then goes through.
#[test]
fn an_upgrade_waits_for_a_reload_that_reads_its_file() {
    let dir = temp_dir();
    let reload = HeldReload::start(dir.path());

    let (code, out, err) = client(&[
        "upgrade",
        "--control",
        &control(&reload.h),
        "--timeout",
        ANSWERED_WITHIN,
    ]);
    assert_eq!(code, REFUSED, "upgrade while the reload reads: {out}{err}");
    assert!(err.contains("a reload is reading"), "{err}");

    let h = reload.finish();
    assert_eq!(h.status().upgrades, 0);
}
