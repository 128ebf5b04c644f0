//! The preload library (`--preload`) against servers that bind their own
//! port and know nothing of LISTEN_FDS: Python's `http.server` as Debian
//! ships it, and `tests/fixtures/bind_server.py`, which binds the other
//! ways servers do (a unix path unlinked first, twice, SO_REUSEPORT first,
//! blocking or not) and starts helpers.
//!
//! What each test shows is what the server itself saw: `http.server`
//! prints "Serving HTTP on HOST port P" from getsockname() after its bind,
//! the fixture prints `bound fd N port P`, and `HANDOFF_PRELOAD_DEBUG=1`
//! makes the library print a line for each bind it turned into the held
//! socket.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::harness::{client, get, restart, temp_dir, Handoff, DEADLINE};
use crate::load::{Load, Tally};

/// Restarts under load (issue 11's "done when").
const RESTARTS: u64 = 10;
/// Client threads, one request per connection each.
const CLIENTS: usize = 16;
/// Requests to see complete between two restarts.
const BETWEEN_RESTARTS: u64 = 100;

/// Debian's python3 when installed (what the issue names), else the PATH's.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// DIR/www with an index.html, for `http.server --directory`: "/" answers
/// a few bytes instead of a listing.
fn www(dir: &Path) -> PathBuf {
    let www = dir.join("www");
    std::fs::create_dir(&www).expect("mkdir www");
    std::fs::write(www.join("index.html"), "hello from http.server\n").expect("write index");
    www
}

/// `python3 -m http.server --directory WWW --bind BIND {port:http}`:
/// unmodified, it binds BIND on the port handoff holds.
fn http_server(www: &Path, bind: &str) -> Vec<String> {
    [
        python(),
        "-m",
        "http.server",
        "--directory",
        www.to_str().expect("utf-8 path"),
        "--bind",
        bind,
        "{port:http}",
    ]
    .map(String::from)
    .to_vec()
}

/// `handoff run --preload --ready listen --stop-signal SIGINT --listen
/// http=LISTEN EXTRA -- COMMAND`, once generation 1 is ready. Python's
/// output unbuffered: the tests read its lines while it runs.
fn run_preloaded(dir: &Path, listen: &str, extra: &[&str], command: &[String]) -> Handoff {
    let listen = format!("http={listen}");
    let mut args = vec![
        "--preload",
        "--ready",
        "listen",
        "--stop-signal",
        "SIGINT",
        "--env",
        "PYTHONUNBUFFERED=1",
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend(command.iter().map(String::as_str));
    let mut h = Handoff::start(dir, &args);
    h.wait_generation(1);
    h
}

/// The port of an address as status gives it (`127.0.0.1:P`, `[::1]:P`).
fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

/// The pid of generation `g`'s worker.
fn pid_of_generation(h: &Handoff, g: u64) -> u32 {
    let status = h.status();
    status
        .workers
        .iter()
        .find(|w| w.generation == g)
        .and_then(|w| w.pid)
        .unwrap_or_else(|| panic!("no worker of generation {g}: {status:?}"))
}

/// How a server that drains well ends: handoff's line for it.
const CLEAN_EXIT: &str = "exited with code 0 after draining";

/// Restarts RESTARTS times under load, each restart returning once the new
/// generation is ready; waits until every old generation has drained and
/// ended with a line containing `ended` (so no loss can come after the
/// count). Returns what the clients saw and each generation's pid.
fn restarts_under_load(h: &mut Handoff, ended: &str) -> (Tally, Vec<u32>) {
    let load = Load::start(&h.addr("http"), CLIENTS);
    load.wait_for_more(BETWEEN_RESTARTS);
    let mut pids = vec![pid_of_generation(h, 1)];
    for g in 2..=RESTARTS + 1 {
        let (code, out, err) = restart(h);
        assert_eq!(code, 0, "restart failed: {out}{err}");
        pids.push(pid_of_generation(h, g));
        load.wait_for_more(BETWEEN_RESTARTS);
    }
    // In any order: on a shared socket an old generation is stopped as
    // soon as the next is ready, and one may take longer to exit than the
    // one after it.
    let workers: Vec<String> = (1..=RESTARTS)
        .map(|g| format!("generation {g} worker 0 (pid"))
        .collect();
    let lines: Vec<[&str; 2]> = workers.iter().map(|w| [w.as_str(), ended]).collect();
    let lines: Vec<&[&str]> = lines.iter().map(|l| &l[..]).collect();
    h.wait_log_each(&lines);
    let tally = load.stop();
    eprintln!(
        "{RESTARTS} restarts, handover {}: {} ok, {} failed {:?}",
        h.status().sockets[0].handover,
        tally.ok,
        tally.failures(),
        tally.failed
    );
    (tally, pids)
}

fn assert_lost_nothing(h: &Handoff, tally: &Tally, pids: &[u32]) {
    assert_eq!(
        tally.failures(),
        0,
        "requests lost: {:?}\n{}",
        tally.failed,
        h.log()
    );
    assert!(tally.ok >= BETWEEN_RESTARTS * (RESTARTS + 1), "{tally:?}");
    assert_eq!(h.status().generation, RESTARTS + 1);
    let distinct: BTreeSet<&u32> = pids.iter().collect();
    assert_eq!(
        distinct.len() as u64,
        RESTARTS + 1,
        "a new pid per generation: {pids:?}"
    );
}

/// Every answer came from the server (`body` starts each), and each
/// generation printed `said` followed by the held port: it bound the port
/// itself (the line comes from getsockname() after the bind).
fn assert_each_generation_served(h: &Handoff, tally: &Tally, body: &str, said: &str) {
    assert!(
        tally.bodies.keys().all(|b| b.starts_with(body)),
        "{:?}",
        tally.bodies
    );
    let line = format!("{said} {}", port_of(&h.addr("http")));
    let count = h.log().matches(&line).count() as u64;
    assert_eq!(count, RESTARTS + 1, "{line:?} per generation\n{}", h.log());
}

/// http.server's answers, and its line for each generation.
fn assert_each_http_server_served(h: &Handoff, tally: &Tally) {
    assert_each_generation_served(
        h,
        tally,
        "hello from http.server\n",
        "Serving HTTP on 127.0.0.1 port",
    );
}

#[test]
fn an_unmodified_http_server_restarts_under_load_losing_nothing() {
    let dir = temp_dir();
    let www = www(dir.path());
    let mut h = run_preloaded(
        dir.path(),
        "tcp://127.0.0.1:0",
        &[],
        &http_server(&www, "127.0.0.1"),
    );
    let (tally, pids) = restarts_under_load(&mut h, CLEAN_EXIT);
    assert_lost_nothing(&h, &tally, &pids);
    assert_each_http_server_served(&h, &tally);
    assert_eq!(h.status().sockets[0].handover, "steer");
}

/// Node, which binds its own port through libuv (`listen(port, "0.0.0.0")`
/// here, with handoff holding 127.0.0.1): restarted under load, nothing
/// lost, and each generation says it listens on the held address.
#[test]
fn a_node_server_binding_its_own_port_restarts_under_load_losing_nothing() {
    let node = ["/usr/bin/node", "/usr/local/bin/node"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("node is missing: install the test dependencies with scripts/install-test-deps");
    let dir = temp_dir();
    let command = [node, &fixture("node_server.js"), "0.0.0.0", "{port:http}"].map(String::from);
    let mut h = run_preloaded(dir.path(), "tcp://127.0.0.1:0", &[], &command);
    let (tally, pids) = restarts_under_load(&mut h, CLEAN_EXIT);
    assert_lost_nothing(&h, &tally, &pids);
    assert_each_generation_served(
        &h,
        &tally,
        "hello from node ",
        "node listening on 127.0.0.1 port",
    );
}

/// One socket for every generation: each new server's bind() gets the very
/// socket the old one still accepts from. The fixture drains (it answers
/// what it accepted before it exits), so nothing may be lost; every
/// generation's pid answers.
#[test]
fn a_server_on_a_shared_socket_restarts_under_load_losing_nothing() {
    let dir = temp_dir();
    let mut h = tcp_fixture(dir.path(), &["--handover", "shared"], &[]);
    let (tally, pids) = restarts_under_load(&mut h, CLEAN_EXIT);
    assert_lost_nothing(&h, &tally, &pids);
    for (g, pid) in (1..).zip(&pids) {
        let answer = format!("hello from pid {pid} generation {g} \n");
        assert!(
            tally.bodies.contains_key(&answer),
            "generation {g} (pid {pid}) never answered: {:?}",
            tally.bodies
        );
    }
    assert_eq!(h.status().sockets[0].handover, "shared");
}

/// http.server on a shared socket, for the record: it loses requests
/// whatever handoff does. Its request threads are daemon threads and
/// SIGINT ends `serve_forever` at once, so the requests it accepted and
/// has not answered yet die with it (closed unanswered). The recipe keeps
/// the default handover, where the old generation is stopped only once
/// no connection reaches it any more. (How each old generation ends is not
/// asserted: a daemon thread still writing its log line when Python
/// finalizes can make it abort.)
#[test]
fn http_server_on_a_shared_socket_loses_what_it_accepted_when_stopped() {
    let dir = temp_dir();
    let www = www(dir.path());
    let mut h = run_preloaded(
        dir.path(),
        "tcp://127.0.0.1:0",
        &["--handover", "shared"],
        &http_server(&www, "127.0.0.1"),
    );
    let (tally, _) = restarts_under_load(&mut h, " after draining");
    assert!(
        tally.failures() > 0,
        "no request lost in {RESTARTS} restarts of http.server on a shared socket ({} ok): \
         if its drain is fixed, the recipe can say so",
        tally.ok
    );
    if let Some(kind) = tally.other_than_closed_unanswered() {
        panic!(
            "a failure other than a connection closed unanswered: {kind}\n{}",
            h.log()
        );
    }
}

/// Without --preload the server's bind() fails ("Address already in use":
/// handoff holds the port), it exits 1, and handoff respawns it again and
/// again: the hint that names --preload comes once, not per respawn.
#[test]
fn without_preload_the_server_fails_and_handoff_suggests_preload_once() {
    let dir = temp_dir();
    let www = www(dir.path());
    let mut args = vec![
        "--stop-signal",
        "SIGINT",
        "--listen",
        "http=tcp://127.0.0.1:0",
        "--",
    ];
    let command = http_server(&www, "127.0.0.1");
    args.extend(command.iter().map(String::as_str));
    let mut h = Handoff::start(dir.path(), &args);
    h.wait_log_since_start(&["Address already in use"]);
    for attempt in 1..=3 {
        h.wait_log_all(&[
            "generation 1 worker 0",
            "exited with code 1",
            &format!("attempt {attempt} of generation 1"),
        ]);
    }
    let addr = h.addr("http");
    let log = h.log();
    let hints: Vec<&str> = log.lines().filter(|l| l.contains("--preload")).collect();
    assert_eq!(hints.len(), 1, "one hint over 3 respawns:\n{log}");
    assert!(
        hints[0].contains("WARN") && hints[0].contains(&addr),
        "the hint names the held address {addr}: {}",
        hints[0]
    );
    assert_eq!(h.status().generation, 0, "nothing ever served");
}

/// A server writes its address as its user typed it: "everywhere" or
/// "localhost" on the held port finds handoff's 127.0.0.1 socket, and the
/// server's own getsockname() says what it really got.
#[test]
fn any_address_or_localhost_on_the_port_gets_the_held_loopback_socket() {
    for bind in ["0.0.0.0", "::", "localhost"] {
        let dir = temp_dir();
        let www = www(dir.path());
        let h = run_preloaded(
            dir.path(),
            "tcp://127.0.0.1:0",
            &[],
            &http_server(&www, bind),
        );
        assert_serves_on_held_loopback(&h);
    }
}

/// http.server says it serves on the held 127.0.0.1 port (its line comes
/// from getsockname() after the bind), and answers there.
fn assert_serves_on_held_loopback(h: &Handoff) {
    let addr = h.addr("http");
    h.wait_log_since_start(&[&format!(
        "Serving HTTP on 127.0.0.1 port {} ",
        port_of(&addr)
    )]);
    let (status, body) = get(&addr, "/").expect("served");
    assert_eq!((status, body.as_str()), (200, "hello from http.server\n"));
}

/// Held 127.0.0.1, the server asks for `::1`: loopback is loopback in
/// either family, and its IPv6 socket becomes the held IPv4 one (an IPv4
/// peer address fits where an IPv6 one would: Python prints the right
/// host).
#[test]
fn an_ipv6_loopback_server_gets_a_held_ipv4_loopback_socket() {
    let dir = temp_dir();
    let www = www(dir.path());
    let h = run_preloaded(
        dir.path(),
        "tcp://127.0.0.1:0",
        &["--env", "HANDOFF_PRELOAD_DEBUG=1"],
        &http_server(&www, "::1"),
    );
    h.wait_log_since_start(&["takes handoff's socket at fd 3"]);
    assert_serves_on_held_loopback(&h);
}

/// Held `[::1]`, the server binds an IPv4 socket to 127.0.0.1: it never
/// gets the IPv6 socket (its accept() would truncate an IPv6 peer address
/// into a `sockaddr_in`); it binds its own, which the kernel allows, as
/// the addresses differ.
#[test]
fn an_ipv4_socket_never_gets_a_held_ipv6_socket() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let dir = temp_dir();
    let bind_server = fixture("bind_server.py");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--preload",
            "--ready",
            "delay",
            "--ready-delay",
            "100ms",
            "--env",
            "HANDOFF_PRELOAD_DEBUG=1",
            "--listen",
            "http=tcp://[::1]:0",
            "--",
            python(),
            &bind_server,
            "--host",
            "127.0.0.1",
            "--port",
            "{port:http}",
        ],
    );
    h.wait_generation(1);
    let addr = h.addr("http");
    let port = port_of(&addr);
    // Printed after the bind returned; the library's line would have come
    // before it, on the same stderr.
    h.wait_log_since_start(&["bound fd ", &format!(" port {port}")]);
    assert!(
        !h.log().contains("takes handoff's socket"),
        "an IPv4 socket took the held IPv6 one:\n{}",
        h.log()
    );
}

/// One GET over a unix socket; the body (which may hold NULs).
fn unix_get(path: &Path, what: &str) -> String {
    let mut s = UnixStream::connect(path).expect("connect to the unix socket");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(s, "GET {what} HTTP/1.1\r\nHost: test\r\n\r\n").expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {text:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{text:?}");
    body.to_string()
}

/// The fixture on handoff's unix socket DIR/app.sock, with `extra`
/// handoff flags and `args` fixture flags.
fn unix_fixture(dir: &Path, extra: &[&str], args: &[&str]) -> (Handoff, PathBuf) {
    let path = dir.join("app.sock");
    let path_str = path.to_str().expect("utf-8 path");
    let mut command = vec![
        python().to_string(),
        fixture("bind_server.py"),
        "--unix".into(),
        path_str.into(),
    ];
    command.extend(args.iter().map(|a| a.to_string()));
    let h = run_preloaded(dir, &format!("unix://{path_str}"), extra, &command);
    (h, path)
}

/// A unix server that removes its socket path before bind ("stale") and at
/// exit, as many do: it serves through restarts, and the file clients
/// connect to stays the one handoff made.
#[test]
fn a_unix_server_that_unlinks_its_path_keeps_handoffs_socket_file() {
    let dir = temp_dir();
    let (mut h, path) = unix_fixture(dir.path(), &[], &[]);
    let inode = std::fs::metadata(&path).expect("the socket file").ino();
    let body = unix_get(&path, "/");
    assert!(
        body.contains(&format!("pid {} ", pid_of_generation(&h, 1))),
        "{body}"
    );
    for g in 2..=3 {
        let (code, out, err) = restart(&h);
        assert_eq!(code, 0, "restart failed: {out}{err}");
        // The old generation unlinks the path as it exits.
        h.wait_log_all(&[
            &format!("generation {} worker 0 (pid", g - 1),
            "exited with code 0 after draining",
        ]);
        let pid = pid_of_generation(&h, g);
        let body = unix_get(&path, "/");
        assert!(
            body.contains(&format!("pid {pid} generation {g} ")),
            "{body}"
        );
        let now = std::fs::metadata(&path)
            .expect("the socket file survives")
            .ino();
        assert_eq!(now, inode, "the socket file was replaced");
    }
}

/// A shell that runs the server as its child (no exec): the server is
/// handoff's grandchild and still gets the library, the variables and the
/// fds; READY=1 (ready = "listen") comes from it.
#[test]
fn a_server_behind_a_shell_that_does_not_exec_serves() {
    let dir = temp_dir();
    let www = www(dir.path());
    let server = http_server(&www, "127.0.0.1").join(" ");
    // Not the last command: the shell cannot exec it.
    let script = format!("{server}; echo the shell saw the server exit");
    let command = ["sh", "-c", &script].map(String::from);
    let mut h = run_preloaded(dir.path(), "tcp://127.0.0.1:0", &[], &command);
    let addr = h.addr("http");
    let shell = pid_of_generation(&h, 1);
    let comm = std::fs::read_to_string(format!("/proc/{shell}/comm")).expect("the shell runs");
    assert_eq!(comm.trim(), "sh", "handoff's child is the shell");
    h.wait_log_since_start(&[&format!(
        "Serving HTTP on 127.0.0.1 port {} ",
        port_of(&addr)
    )]);
    let (status, body) = get(&addr, "/").expect("served");
    assert_eq!((status, body.as_str()), (200, "hello from http.server\n"));
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "restart failed: {out}{err}");
    // SIGINT goes to the old shell's group: its server stops too (the
    // shell, as shells do, then dies of the SIGINT it got).
    h.wait_log_all(&[
        &format!("generation 1 worker 0 (pid {shell})"),
        "after draining",
    ]);
    h.wait_log_since_start(&["Keyboard interrupt received, exiting."]);
    let (status, _) = get(&addr, "/").expect("served after the restart");
    assert_eq!(status, 200);
}

/// What a helper passed on to its own child, as that child's
/// /proc/self/environ shows it (the fixture's /helper routes).
fn assert_no_preload_passed_on(h: &Handoff, environ: &str) {
    let vars: Vec<&str> = environ.split('\0').collect();
    assert!(vars.iter().any(|v| v.starts_with("PATH=")), "{vars:?}");
    let leaked: Vec<&&str> = vars
        .iter()
        .filter(|v| v.starts_with("LD_PRELOAD=") || v.starts_with("HANDOFF_PRELOAD"))
        .collect();
    assert!(
        leaked.is_empty(),
        "a helper without the sockets passed on {leaked:?}\n{}",
        h.log()
    );
    assert!(
        !h.log().contains("cannot be preloaded"),
        "ld.so could not load the library in a helper:\n{}",
        h.log()
    );
}

/// A helper started as Python's subprocess starts it by default
/// (close_fds=True: none of the server's fds follow, the library's memfd
/// included) must not pass the library on. The helper's own environment is
/// its parent's choice; what the library controls is what the helper
/// passes on, so the test reads the environ of the helper's child.
#[test]
fn a_helper_started_with_its_fds_closed_passes_no_preload_on() {
    let dir = temp_dir();
    let (h, path) = unix_fixture(dir.path(), &[], &[]);
    let environ = unix_get(&path, "/helper");
    assert_no_preload_passed_on(&h, &environ);
}

/// The same helper given the library's fd but not the sockets: the library
/// loads, finds no held socket, and takes itself out of the environment
/// the helper passes on.
#[test]
fn a_helper_without_the_sockets_passes_no_preload_on() {
    let dir = temp_dir();
    let (h, path) = unix_fixture(dir.path(), &[], &[]);
    let environ = unix_get(&path, "/helper-with-library");
    assert_no_preload_passed_on(&h, &environ);
}

/// The `bound fd N port P` lines the fixture printed, read once it says
/// it listens (its last line before serving, on the same stderr as the
/// others and as the library's debug lines).
fn bound_lines(h: &Handoff) -> Vec<(u32, String)> {
    h.wait_log_since_start(&["listening on ", " socket(s)"]);
    h.log()
        .lines()
        .filter_map(|l| l.strip_prefix("bound fd "))
        .map(|rest| {
            let (fd, port) = rest.split_once(" port ").expect("fd and port");
            (fd.parse().expect("an fd number"), port.trim().to_string())
        })
        .collect()
}

/// A TCP fixture on 127.0.0.1:{port:http}, generation 1 ready.
fn tcp_fixture(dir: &Path, extra: &[&str], args: &[&str]) -> Handoff {
    let mut command = vec![
        python().to_string(),
        fixture("bind_server.py"),
        "--port".into(),
        "{port:http}".into(),
    ];
    command.extend(args.iter().map(|a| a.to_string()));
    run_preloaded(dir, "tcp://127.0.0.1:0", extra, &command)
}

/// Binding the held address twice (two sockets), or after setting
/// SO_REUSEPORT on the throwaway socket, still gets the held socket each
/// time; getsockname() after bind gives the held port.
#[test]
fn a_second_bind_or_so_reuseport_first_still_gets_the_held_socket() {
    for (args, binds) in [(&["--twice"][..], 2), (&["--reuseport"][..], 1)] {
        let dir = temp_dir();
        let h = tcp_fixture(dir.path(), &["--env", "HANDOFF_PRELOAD_DEBUG=1"], args);
        let addr = h.addr("http");
        let port = port_of(&addr).to_string();
        let bound = bound_lines(&h);
        assert_eq!(bound.len(), binds, "{args:?}: {bound:?}");
        for (fd, got) in &bound {
            assert_eq!(got, &port, "{args:?}: fd {fd} is not on the held port");
        }
        let taken = h.log().matches("takes handoff's socket at fd 3").count();
        assert_eq!(
            taken,
            binds,
            "{args:?}: one taken bind per socket\n{}",
            h.log()
        );
        let (status, body) = get(&addr, "/").expect("served");
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("hello from pid"), "{body}");
    }
}

/// O_NONBLOCK of the server's fd after bind, from /proc/PID/fdinfo/FD.
fn nonblocking(pid: u32, fd: u32) -> bool {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).expect("fdinfo");
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .unwrap_or_else(|| panic!("no flags in {info}"));
    flags & 0o4000 != 0
}

/// O_NONBLOCK belongs to the open file, which is the held socket after the
/// bind: the server's own choice is put back on it. Each case starts from
/// the other state (handoff hands the socket over blocking by default,
/// non-blocking with --sockets-nonblocking), so the flag has to change.
#[test]
fn the_servers_own_blocking_choice_survives_the_bind() {
    for (extra, args, expect_nonblocking) in [
        (&[][..], &[][..], true),
        (&["--sockets-nonblocking"][..], &["--blocking"][..], false),
    ] {
        let dir = temp_dir();
        let h = tcp_fixture(dir.path(), extra, args);
        let (fd, _) = bound_lines(&h)[0].clone();
        let pid = pid_of_generation(&h, 1);
        assert_eq!(
            nonblocking(pid, fd),
            expect_nonblocking,
            "fd {fd} of the server ({args:?}, handoff {extra:?})"
        );
        let (status, _) = get(&h.addr("http"), "/").expect("served");
        assert_eq!(status, 200);
    }
}

#[test]
fn ready_listen_without_preload_is_refused_naming_preload() {
    let dir = temp_dir();
    let control = dir.path().join("control.sock");
    let (code, out, err) = client(&[
        "run",
        "--control",
        control.to_str().expect("utf-8 path"),
        "--ready",
        "listen",
        "--listen",
        "http=tcp://127.0.0.1:0",
        "--",
        python(),
        "-m",
        "http.server",
    ]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("ready = \"listen\"") && err.contains("--preload"),
        "{err}"
    );
}

/// A static program: no ELF interpreter, so no ld.so to load the library.
#[test]
fn preload_of_a_statically_linked_program_is_refused() {
    let ldconfig = "/sbin/ldconfig";
    let is_static = std::process::Command::new("file")
        .arg("-L")
        .arg(ldconfig)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("static"));
    if !matches!(is_static, Ok(true)) {
        eprintln!("skipped: {ldconfig} is missing or not statically linked ({is_static:?})");
        return;
    }
    let dir = temp_dir();
    let file = dir.path().join("static.toml");
    std::fs::write(
        &file,
        format!(
            "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\n\
             [program]\ncommand = [\"{ldconfig}\"]\npreload = true\n"
        ),
    )
    .expect("write the config");
    let (code, out, err) = client(&["check", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, 3, "check: {out}{err}");
    assert!(err.contains(&format!("{}:7:", file.display())), "{err}");
    assert!(err.contains("statically linked"), "{err}");

    let control = dir.path().join("control.sock");
    let (code, out, err) = client(&[
        "run",
        "--control",
        control.to_str().expect("utf-8 path"),
        "--preload",
        "--listen",
        "http=tcp://127.0.0.1:0",
        "--",
        ldconfig,
    ]);
    assert_eq!(code, 3, "run: {out}{err}");
    assert!(err.contains("statically linked"), "{err}");
}

#[test]
fn the_port_of_a_unix_socket_is_refused() {
    let dir = temp_dir();
    let control = dir.path().join("control.sock");
    let listen = format!("http=unix://{}", dir.path().join("app.sock").display());
    let (code, out, err) = client(&[
        "run",
        "--control",
        control.to_str().expect("utf-8 path"),
        "--preload",
        "--listen",
        &listen,
        "--",
        python(),
        "-m",
        "http.server",
        "{port:http}",
    ]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("{port:http}") && err.contains("unix socket"),
        "{err}"
    );
}
