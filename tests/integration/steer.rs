//! A socket per generation, steered (issue 10), seen from outside: what a
//! hung old generation leaves behind, an upgrade that keeps the
//! per-generation sockets, `status --json`, a reload that would switch a
//! socket's handover, UDP, and a socket from a service manager that cannot
//! be steered. The load tests (shared against steer, all at once and
//! rolling) are in `sloppy.rs`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};

use handoff::protocol::{GenerationSocket, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::activator::activate;
use crate::harness::{
    client, eventually, example, get, get_from_generation, installed_copy, restart, run_command,
    temp_dir, write_executable, write_script, Handoff, DEADLINE,
};
use crate::load::Load;

/// `net.ipv4.tcp_migrate_req`, read (never written): whether a listener
/// that leaves its group hands its queue to another one. A kernel without
/// it (before 5.14) resets, as 0 does.
fn migrate_req() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "1")
}

/// The kernel sockets on socket `name`'s address, in group order.
fn members(status: &Status, name: &str) -> Vec<GenerationSocket> {
    status
        .sockets
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no socket {name} in {status:?}"))
        .generations
        .clone()
}

/// The member that generation `g` has, if any.
fn member_of(status: &Status, name: &str, g: u64) -> Option<GenerationSocket> {
    members(status, name)
        .into_iter()
        .find(|m| m.generations == [g])
}

/// The inodes of the TCP listeners on `port` that process `pid` holds: the
/// kernel sockets themselves, so the same set before and after means
/// nothing was re-bound (a socket shut down out of its group is no longer
/// a listener, and drops out).
fn listeners_held(pid: u32, port: u16) -> BTreeSet<u64> {
    let mut listening = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let on_port = fields[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port);
            // State 0A is LISTEN; field 9 the inode.
            if on_port && fields[3] == "0A" {
                listening.insert(fields[9].parse::<u64>().expect("an inode"));
            }
        }
    }
    let mut held = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("list the fds") {
        let Ok(link) = std::fs::read_link(entry.expect("an fd").path()) else {
            continue; // closed meanwhile
        };
        let link = link.to_string_lossy();
        let inode = link
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(inode) = inode.filter(|i| listening.contains(i)) {
            held.insert(inode);
        }
    }
    held
}

/// Each worker's pid, generation and state.
fn workers(status: &Status) -> Vec<(Option<u32>, u64, String)> {
    status
        .workers
        .iter()
        .map(|w| (w.pid, w.generation, w.state.clone()))
        .collect()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("HOST:PORT")
}

/// DIR/server.sh: hello, whose generation 1 drains until it is killed (the
/// test kills it), so a restart leaves two generations with a socket each
/// for as long as the test needs; later generations drain at once, so
/// stopping handoff at the end does not wait.
fn first_generation_lingers(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("server.sh");
    write_executable(
        &script,
        &format!(
            "#!/bin/sh
if [ \"$HANDOFF_GENERATION\" = 1 ]; then exec {h} --drain-delay 600000; fi
exec {h}
",
            h = example("hello").display()
        ),
    );
    script
}

fn restart_ok(h: &Handoff) {
    let (code, out, err) = restart(h);
    assert_eq!(code, 0, "restart failed: {out}{err}");
}

/// The counts the sloppy drain printed, one per retired worker that exited.
fn closed_unread_counts(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("connections with their request unread"))
        .map(|line| {
            line.split_whitespace()
                .skip_while(|w| *w != "closed")
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in {line:?}"))
        })
        .collect()
}

/// A request sent, not answered yet: the connection waits in whichever
/// listener's accept queue the kernel put it.
fn send_request(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    s
}

/// What a waiting connection finally got: the answer, or the error.
fn answer(mut s: TcpStream) -> std::io::Result<String> {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// Generation 1 hangs (SIGSTOP) with connections in its socket's queue,
/// and a restart comes. What is expected:
/// - the restart's switch sends every new connection to generation 2's
///   socket, so every connection made after it is served, by generation 2,
///   while generation 1 still hangs;
/// - nobody accepts what was queued on generation 1's socket before the
///   switch; after handover_timeout handoff says so (a warning) and tells
///   generation 1 to stop anyway; after drain_timeout it is killed, and its
///   socket leaves the group;
/// - then, with `net.ipv4.tcp_migrate_req = 0` (the default), those queued
///   connections are reset; with 1 the kernel moves them to generation 2's
///   socket and they are served. handoff's log says which.
#[test]
fn a_hung_old_generation_strands_only_what_was_queued_before_the_switch() {
    const QUEUED: usize = 4;
    let dir = temp_dir();
    let hello = example("hello");
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--handover-timeout",
            "1s",
            "--drain-timeout",
            "1s",
            "--",
            hello.to_str().expect("utf-8 path"),
        ],
    );
    h.wait_generation(1);
    let addr = h.addr("http");
    let hung = h.pids("ready")[0];
    kill(Pid::from_raw(hung as i32), Signal::SIGSTOP).expect("stop generation 1");

    let stranded: Vec<TcpStream> = (0..QUEUED).map(|_| send_request(&addr)).collect();
    eventually("the requests wait in generation 1's queue", || {
        member_of(&h.status(), "http", 1).and_then(|m| m.queued) == Some(QUEUED as u32)
    });

    let control = h.control.to_str().expect("utf-8").to_string();
    let restarting = std::thread::spawn(move || client(&["restart", "--control", &control]));
    eventually("new connections go to generation 2", || {
        member_of(&h.status(), "http", 2).and_then(|m| m.share) == Some(100)
    });
    // Generation 1 still hangs (handover_timeout has 1 s to run at most):
    // nothing made from now on may wait behind it.
    for _ in 0..20 {
        let (code, body) = get(&addr, "/").expect("a new connection is served");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("generation 2 "), "{body}");
    }
    let (code, out, err) = restarting.join().expect("restart thread");
    assert_eq!(code, 0, "{out}{err}");

    h.wait_log_all(&[
        "generation 2: the old generation's socket(s) still had 4 connection(s) waiting",
        "after handover_timeout (1000 ms)",
    ]);
    let migrate = migrate_req();
    let consequence = if migrate {
        "net.ipv4.tcp_migrate_req = 1 moved them to the newer generation's socket"
    } else {
        "they were reset (net.ipv4.tcp_migrate_req = 1 would move them"
    };
    h.wait_log_all(&[
        &format!(
            "socket http ({addr}): 4 connection(s) still waited on an old generation's socket"
        ),
        consequence,
    ]);
    assert_eq!(h.status().tcp_migrate_req, Some(migrate));
    for s in stranded {
        let got = answer(s);
        if migrate {
            let text = got.expect("moved to generation 2 and served");
            assert!(
                text.starts_with("HTTP/1.1 200") && text.contains("generation 2 "),
                "{text}"
            );
        } else {
            let e = got.expect_err("reset when generation 1's socket left the group");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }
    }
    // The group is generation 2's socket alone now.
    let status = h.status();
    assert_eq!(
        members(&status, "http"),
        [GenerationSocket {
            generations: vec![2],
            queued: Some(0),
            share: Some(100)
        }],
        "{status:?}"
    );
}

/// `handoff upgrade` between restarts, under load, while an old generation
/// still drains: both steered sockets are the same kernel sockets before
/// and after (nothing re-bound), the new supervisor takes the old
/// generation's socket out of the group when it is gone, and its restarts
/// still steer: a sloppy server loses nothing before, during or after.
#[test]
fn an_upgrade_between_restarts_keeps_the_steered_sockets() {
    let dir = temp_dir();
    let installed = installed_copy(dir.path());
    let script = dir.path().join("server.sh");
    let sloppy = format!("{} --sloppy-drain", example("hello").display());
    // One generation drains until killed: at the upgrade, handoff holds two
    // sockets in the group.
    let lingering = format!("{sloppy} --drain-delay 600000");
    write_script(&script, &sloppy);
    let mut cmd = run_command(&installed, dir.path());
    cmd.args(["--listen", "http=tcp://127.0.0.1:0", "--"])
        .arg(&script);
    let mut h = Handoff::spawn(cmd, dir.path());
    h.wait_generation(1);
    let addr = h.addr("http");
    let port = port_of(&addr);
    let supervisor = h.status().pid;

    let load = Load::start(&addr, 32);
    load.wait_for_more(100);
    for _ in 0..2 {
        restart_ok(&h);
        load.wait_for_more(100);
    }
    write_script(&script, &lingering);
    restart_ok(&h); // generation 4 will linger once retired
    load.wait_for_more(100);
    write_script(&script, &sloppy);
    restart_ok(&h);
    load.wait_for_more(100);

    let before = h.status();
    let draining: Vec<u32> = before
        .workers
        .iter()
        .filter(|w| w.generation == 4 && w.state == "draining")
        .filter_map(|w| w.pid)
        .collect();
    assert_eq!(draining.len(), 1, "{before:?}");
    let held = listeners_held(supervisor, port);
    assert_eq!(held.len(), 2, "generations 4 and 5 each have one: {held:?}");
    let mut shares: Vec<(Vec<u64>, Option<u32>)> = members(&before, "http")
        .into_iter()
        .map(|m| (m.generations, m.share))
        .collect();
    shares.sort();
    assert_eq!(
        shares,
        [(vec![4], Some(0)), (vec![5], Some(100))],
        "{before:?}"
    );

    let (code, out, err) = client(&["upgrade", "--control", h.control.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_log("upgraded from handoff");
    load.wait_for_more(100);
    let after = h.status();
    assert_eq!((after.pid, after.upgrades), (supervisor, 1));
    assert_eq!(
        listeners_held(supervisor, port),
        held,
        "the same kernel sockets"
    );
    assert_eq!(after.sockets[0].handover, "steer");
    // The same group in the same order, steered the same way (the queues
    // come and go with the load).
    let steering = |s: &Status| -> Vec<(Vec<u64>, Option<u32>)> {
        members(s, "http")
            .into_iter()
            .map(|m| (m.generations, m.share))
            .collect()
    };
    assert_eq!(steering(&after), steering(&before), "{after:?}");

    // The lingering generation goes: its socket leaves the group, the
    // other stays.
    kill(Pid::from_raw(draining[0] as i32), Signal::SIGKILL).expect("kill generation 4");
    eventually("generation 4's socket leaves the group", || {
        members(&h.status(), "http").len() == 1
    });
    let left = listeners_held(supervisor, port);
    assert!(
        left.len() == 1 && left.is_subset(&held),
        "{left:?} of {held:?}"
    );

    for _ in 0..3 {
        restart_ok(&h);
        load.wait_for_more(100);
    }
    eventually("every retired generation is gone", || {
        h.status().workers.iter().all(|w| w.state == "ready")
    });
    let tally = load.stop();
    assert_eq!(tally.failures(), 0, "{:?}", tally.failed);
    let counts = closed_unread_counts(&h.log());
    // Generations 1 to 7 retired (4 says it before its drain delay, and
    // was killed in it).
    assert_eq!(counts, [0; 7], "closed unread by the retired generations");
    assert_eq!(h.status().sockets[0].handover, "steer");
}

/// `status --json` while a retired generation still drains: the TCP socket
/// is steered and lists each generation's socket, its queue and its share;
/// a unix socket is shared and says why; tcp_migrate_req is the sysctl's.
#[test]
fn status_json_shows_each_generations_socket_and_why_a_socket_is_shared() {
    let dir = temp_dir();
    let unix = dir.path().join("admin.sock");
    let server = first_generation_lingers(dir.path());
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--listen",
            &format!("admin=unix://{}", unix.display()),
            "--",
            server.to_str().expect("utf-8 path"),
        ],
    );
    h.wait_generation(1);
    restart_ok(&h);
    let json = || {
        let (code, out, err) = client(&[
            "status",
            "--json",
            "--control",
            h.control.to_str().expect("utf-8"),
        ]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).expect("JSON")
    };
    let status = json();
    let http = &status["sockets"][0];
    assert_eq!(http["name"], "http");
    assert_eq!(http["handover"], "steer", "{http}");
    assert_eq!(http["shared_because"], serde_json::Value::Null, "{http}");
    assert_eq!(
        http["generations"],
        serde_json::json!([
            {"generations": [1], "queued": 0, "share": 0},
            {"generations": [2], "queued": 0, "share": 100},
        ]),
        "{http}"
    );
    let admin = &status["sockets"][1];
    assert_eq!(admin["handover"], "shared", "{admin}");
    let why = admin["shared_because"].as_str().unwrap_or_default();
    assert!(why.contains("unix sockets have no SO_REUSEPORT"), "{admin}");
    assert_eq!(
        admin["generations"],
        serde_json::json!([{"generations": [1, 2], "queued": null, "share": null}]),
        "{admin}"
    );
    let sysctl = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .ok()
        .map(|v| v.trim() == "1");
    assert_eq!(status["tcp_migrate_req"], serde_json::json!(sysctl));

    // Once generation 1 is gone, its socket is too.
    let old = h
        .status()
        .workers
        .iter()
        .find(|w| w.generation == 1)
        .and_then(|w| w.pid)
        .expect("generation 1 drains");
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).expect("kill generation 1");
    eventually("generation 1's socket leaves", || {
        json()["sockets"][0]["generations"]
            == serde_json::json!([{"generations": [2], "queued": 0, "share": 100}])
    });
    assert_eq!(
        json()["sockets"][1]["generations"],
        serde_json::json!([{"generations": [2], "queued": null, "share": null}])
    );
}

/// A reload that would switch a socket's handover, per socket or for all,
/// is refused with a message that says why and what to do, and changes
/// nothing; the same file without the switch reloads.
#[test]
fn a_reload_that_switches_a_sockets_handover_is_refused() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    let hello = example("hello").display().to_string();
    let write = |top: &str, socket: &str| {
        let text = format!(
            "{top}[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n{socket}\
             [program]\ncommand = [{hello:?}]\n"
        );
        std::fs::write(&file, text).expect("write config");
    };
    write("", "");
    let mut h = Handoff::start(dir.path(), &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    let before = h.status();
    let addr = h.addr("http");
    let held = listeners_held(before.pid, port_of(&addr));
    assert_eq!(before.sockets[0].handover, "steer");
    let reload = || client(&["reload", "--control", h.control.to_str().expect("utf-8")]);

    for (top, socket) in [
        ("", "handover = \"shared\"\n"),
        ("handover = \"shared\"\n", ""),
    ] {
        write(top, socket);
        let (code, out, err) = reload();
        assert_eq!(code, 3, "{top}{socket}: {out}{err}");
        assert!(
            err.contains(
                "socket `http`: handover cannot change from \"steer\" while handoff holds the socket"
            ) && err.contains("restart handoff to change it"),
            "{err}"
        );
        let after = h.status();
        assert_eq!(after.generation, 1);
        assert_eq!(after.restarting, None);
        assert_eq!(workers(&after), workers(&before), "no worker was touched");
        assert_eq!(after.sockets, before.sockets, "the socket is as it was");
        assert_eq!(listeners_held(after.pid, port_of(&addr)), held);
        assert_eq!(get(&addr, "/").expect("serves").0, 200);
    }

    write("", "handover = \"steer\"\n");
    let (code, out, err) = reload();
    assert_eq!(code, 0, "{out}{err}");
    h.wait_generation(2);
    assert_eq!(h.status().sockets[0].handover, "steer");
}

/// A UDP socket is steered too: once generation 2 is ready, every datagram
/// goes to its socket, none to generation 1's (still in the group while it
/// drains). The example server reads no UDP, so the datagrams stay where
/// the kernel put them and `status` shows which socket has one waiting.
#[test]
fn datagrams_sent_after_a_restart_reach_the_new_generations_socket() {
    let dir = temp_dir();
    let server = first_generation_lingers(dir.path());
    let mut h = Handoff::start(
        dir.path(),
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--listen",
            "dns=udp://127.0.0.1:0",
            "--",
            server.to_str().expect("utf-8 path"),
        ],
    );
    h.wait_generation(1);
    let dns = h.addr("dns");
    let status = h.status();
    assert_eq!(status.sockets[1].handover, "steer", "{status:?}");
    restart_ok(&h);
    let status = h.status();
    assert_eq!(
        members(&status, "dns"),
        [
            GenerationSocket {
                generations: vec![1],
                queued: Some(0),
                share: Some(0)
            },
            GenerationSocket {
                generations: vec![2],
                queued: Some(0),
                share: Some(100)
            },
        ],
        "{status:?}"
    );
    // From many source ports: the kernel's own hash would send about half
    // of them to generation 1's socket.
    for _ in 0..16 {
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind a client");
        client.send_to(b"ping", &dns).expect("send");
    }
    eventually("a datagram waits on generation 2's socket", || {
        member_of(&h.status(), "dns", 2).and_then(|m| m.queued) == Some(1)
    });
    let status = h.status();
    assert_eq!(
        member_of(&status, "dns", 1).and_then(|m| m.queued),
        Some(0),
        "a datagram reached the old generation's socket: {status:?}"
    );
    let old = h
        .pids("draining")
        .first()
        .copied()
        .expect("generation 1 drains");
    kill(Pid::from_raw(old as i32), Signal::SIGKILL).expect("kill generation 1");
}

/// A socket from a service manager without SO_REUSEPORT (a .socket unit
/// without ReusePort=yes) cannot be steered: every generation shares it,
/// one log line says why and what to add; a socket with SO_REUSEPORT
/// passed beside it is steered.
#[test]
fn an_adopted_socket_without_reuse_port_is_shared_and_says_why() {
    let dir = temp_dir();
    let plain = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let reuse =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    reuse.set_reuse_port(true).expect("SO_REUSEPORT");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    reuse.bind(&any.into()).expect("bind");
    reuse.listen(128).expect("listen");
    let plain_addr = plain.local_addr().expect("address").to_string();
    let hello = example("hello");
    let mut h = activate(
        dir.path(),
        vec![
            ("http", std::os::fd::OwnedFd::from(plain)),
            ("api", std::os::fd::OwnedFd::from(reuse)),
        ],
        &[],
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--listen",
            "api=tcp://127.0.0.1:0",
            "--",
            hello.to_str().expect("utf-8 path"),
        ],
    );
    h.wait_generation(1);
    let status = h.status();
    let http = &status.sockets[0];
    assert_eq!(
        (http.name.as_str(), http.handover.as_str()),
        ("http", "shared")
    );
    let why = http.shared_because.as_deref().unwrap_or_default();
    assert!(
        why.contains("has no SO_REUSEPORT") && why.contains("add ReusePort=yes"),
        "{why}"
    );
    assert_eq!(status.sockets[1].handover, "steer", "{status:?}");
    let said = h
        .log()
        .lines()
        .filter(|l| {
            l.contains(&format!(
                "the socket for {plain_addr} from the service manager has no SO_REUSEPORT"
            ))
        })
        .count();
    assert_eq!(said, 1, "one line says why:\n{}", h.log());

    // Restarts keep sharing it: one socket, both generations.
    restart_ok(&h);
    let status = h.status();
    let shared = members(&status, "http");
    assert_eq!(shared.len(), 1, "{status:?}");
    assert_eq!(get(&plain_addr, "/").expect("serves").0, 200);
}

/// A socket unit with `ReusePort=yes` holds the very socket it passes:
/// handoff steers it, but never shuts it down when its generation is gone
/// (that would kill the unit's listener too), and a later generation takes
/// it again instead of a socket of its own.
#[test]
fn an_activators_socket_keeps_listening_for_the_activator_through_restarts() {
    let dir = temp_dir();
    let unit =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    unit.set_reuse_port(true).expect("SO_REUSEPORT");
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    unit.bind(&any.into()).expect("bind");
    unit.listen(128).expect("listen");
    let addr = unit
        .local_addr()
        .expect("address")
        .as_socket()
        .expect("inet")
        .to_string();
    // The unit's own copy, kept as systemd keeps it.
    let kept = unit.try_clone().expect("dup");
    let hello = example("hello");
    let mut h = activate(
        dir.path(),
        vec![("http", std::os::fd::OwnedFd::from(unit))],
        &[],
        &[
            "--listen",
            "http=tcp://127.0.0.1:0",
            "--",
            hello.to_str().expect("utf-8 path"),
        ],
    );
    h.wait_generation(1);
    assert_eq!(h.status().sockets[0].handover, "steer");
    for g in 2..=3u64 {
        restart_ok(&h);
        eventually(&format!("generation {} gone", g - 1), || {
            workers(&h.status()).iter().all(|(_, gen, _)| *gen == g)
        });
        assert!(
            kept.is_listener().expect("SO_ACCEPTCONN"),
            "the unit's socket still listens after generation {} is gone; log:\n{}",
            g - 1,
            h.log()
        );
        assert!(get_from_generation(&addr, "/", g).contains(&format!("generation {g}")));
    }
    // Generation 3 took the unit's socket again: the group is that socket
    // alone, generation 2's own having left.
    let status = h.status();
    let group = members(&status, "http");
    assert_eq!(group.len(), 1, "{status:?}");
    assert_eq!(group[0].generations, [3], "{status:?}");
}

/// Each generation's steered socket is its own open file description: the
/// example server sets O_NONBLOCK on its listener, and with one shared
/// socket the next generation is handed that flag; with steer it gets a
/// socket as handoff bound it.
#[test]
fn a_generations_own_socket_does_not_inherit_the_last_ones_o_nonblock() {
    for (handover, expected) in [("steer", "True"), ("shared", "False")] {
        let dir = temp_dir();
        let script = dir.path().join("check.py");
        write_executable(
            &script,
            &format!(
                "#!/usr/bin/python3\nimport os\n\
                 print('generation', os.environ['HANDOFF_GENERATION'], 'fd 3 blocking:', os.get_blocking(3), flush=True)\n\
                 os.execv({hello:?}, [{hello:?}])\n",
                hello = example("hello").to_str().expect("utf-8 path")
            ),
        );
        let mut h = Handoff::start(
            dir.path(),
            &[
                "--listen",
                "http=tcp://127.0.0.1:0",
                "--handover",
                handover,
                "--",
                script.to_str().expect("utf-8 path"),
            ],
        );
        let first = h.wait_log("generation 1 fd 3 blocking:");
        assert!(first.contains("blocking: True"), "{first}");
        h.wait_generation(1);
        restart_ok(&h);
        let line = h.wait_log("generation 2 fd 3 blocking:");
        assert!(
            line.contains(&format!("blocking: {expected}")),
            "handover {handover}: {line}"
        );
    }
}
