//! Socket options (issue 12), read back from the socket the CHILD holds:
//! the test takes a copy of the worker's fd 3 with pidfd_getfd(2) (root,
//! as CI runs) and asks the kernel with getsockopt. A copy is the same
//! socket, so one taken before a reload shows what the reload did to it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use socket2::Socket;

use crate::harness::{client, example, restart, temp_dir, Handoff};

fn write_config(path: &Path, sockets: &str) {
    write_config_draining(path, sockets, 0);
}

/// With workers that take `drain_ms` to exit once told to stop.
fn write_config_draining(path: &Path, sockets: &str, drain_ms: u64) {
    let text = format!(
        "{sockets}\n[program]\ncommand = [{hello:?}, \"--drain-delay\", \"{drain_ms}\"]\n\
         drain_timeout = \"120s\"\n",
        hello = example("hello").display().to_string()
    );
    std::fs::write(path, text).expect("write config");
}

fn reload(h: &Handoff) -> (i32, String, String) {
    client(&["reload", "--control", h.control.to_str().expect("utf-8")])
}

fn start(dir: &Path, file: &Path) -> Handoff {
    let mut h = Handoff::start(dir, &["--config", file.to_str().expect("utf-8")]);
    h.wait_generation(1);
    h
}

/// The pid of generation `g`'s ready worker.
fn worker_of(h: &Handoff, g: u64) -> u32 {
    let status = h.status();
    status
        .workers
        .iter()
        .find(|w| w.generation == g && w.state == "ready")
        .and_then(|w| w.pid)
        .unwrap_or_else(|| panic!("no ready worker of generation {g}: {status:?}"))
}

/// A copy of fd 3 of process `pid`: the socket it was given.
fn socket_of(pid: u32) -> Socket {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: pidfd is a new fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(i32::try_from(pidfd).expect("an fd")) };
    // SAFETY: pidfd_getfd takes a pidfd, the target's fd number and flags,
    // and returns a new fd (CLOEXEC) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), 3, 0) };
    assert!(fd >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a new fd that nothing else owns.
    Socket::from(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).expect("an fd")) })
}

/// An int option socket2 does not read (TCP_DEFER_ACCEPT, TCP_FASTOPEN).
fn tcp_int(socket: &Socket, name: libc::c_int) -> i32 {
    let mut value: libc::c_int = -1;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("fits");
    // SAFETY: the kernel writes at most `len` bytes into `value`, an int.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
    value
}

/// What the tests compare: the options read from a socket.
#[derive(Debug, PartialEq)]
struct Read {
    keepalive: bool,
    idle: u64,
    interval: u64,
    count: u32,
    defer_accept: i32,
    fast_open: i32,
    no_delay: bool,
    receive_buffer: usize,
    free_bind: bool,
    device: Option<Vec<u8>>,
}

fn read(socket: &Socket) -> Read {
    Read {
        keepalive: socket.keepalive().expect("SO_KEEPALIVE"),
        idle: socket.tcp_keepalive_time().expect("TCP_KEEPIDLE").as_secs(),
        interval: socket
            .tcp_keepalive_interval()
            .expect("TCP_KEEPINTVL")
            .as_secs(),
        count: socket.tcp_keepalive_retries().expect("TCP_KEEPCNT"),
        defer_accept: tcp_int(socket, libc::TCP_DEFER_ACCEPT),
        fast_open: tcp_int(socket, libc::TCP_FASTOPEN),
        no_delay: socket.tcp_nodelay().expect("TCP_NODELAY"),
        receive_buffer: socket.recv_buffer_size().expect("SO_RCVBUF"),
        free_bind: socket.freebind_v4().expect("IP_FREEBIND"),
        device: socket.device().expect("SO_BINDTODEVICE"),
    }
}

// defer_accept: 3s and 7s are what the kernel reports back as set (it
// rounds up to its SYN-ACK retransmissions: 1, 3, 7, 15... seconds).
const TCP_OPTIONS: &str = "[[socket]]\nname = \"http\"\nlisten = \"tcp://127.0.0.1:0\"\n\
    free_bind = true\nbind_to_device = \"lo\"\nkeepalive = true\nkeepalive_idle = \"45s\"\n\
    keepalive_interval = \"7s\"\nkeepalive_count = 4\ndefer_accept = \"3s\"\nfast_open = 8\n\
    receive_buffer = 50000\nno_delay = true\n";

fn asked() -> Read {
    Read {
        keepalive: true,
        idle: 45,
        interval: 7,
        count: 4,
        defer_accept: 3,
        fast_open: 8,
        no_delay: true,
        // The kernel doubles it for its bookkeeping.
        receive_buffer: 2 * 50000,
        free_bind: true,
        device: Some(b"lo".to_vec()),
    }
}

#[test]
fn every_generations_socket_carries_the_options() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    write_config(&file, TCP_OPTIONS);
    let mut h = start(dir.path(), &file);
    let first = socket_of(worker_of(&h, 1));
    assert_eq!(read(&first), asked(), "generation 1's socket");

    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_generation(2);
    // Steered (the default): generation 2 has a socket of its own.
    let second = socket_of(worker_of(&h, 2));
    assert_ne!(
        nix::sys::stat::fstat(&second).expect("fstat").st_ino,
        nix::sys::stat::fstat(&first).expect("fstat").st_ino,
        "generation 2 has a socket of its own"
    );
    assert_eq!(read(&second), asked(), "generation 2's own socket");

    let status = h.status();
    let o = &status.sockets[0].options;
    assert_eq!(
        (o.keepalive, o.keepalive_idle, o.bind_to_device.as_deref()),
        (Some(true), Some(45), Some("lo")),
        "{o:?}"
    );
}

#[test]
fn a_reload_changes_the_options_of_every_live_socket_in_place() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    // Generation 1 still drains (a minute) when the reload comes: its own
    // socket is live beside generation 2's, and must change too.
    write_config_draining(&file, TCP_OPTIONS, 60_000);
    let mut h = start(dir.path(), &file);
    let first_pid = worker_of(&h, 1);
    let first = socket_of(first_pid);
    let (code, out, err) = restart(&h);
    assert_eq!(code, 0, "{out}{err}");
    // Logged once generation 1 was told to stop.
    h.wait_log_all(&["generation 2 ready", "draining generation 1"]);
    let second_pid = worker_of(&h, 2);
    let second = socket_of(second_pid);
    assert!(
        h.status()
            .workers
            .iter()
            .any(|w| w.generation == 1 && w.state == "draining"),
        "generation 1 drains"
    );

    let changed = TCP_OPTIONS
        .replace("keepalive_idle = \"45s\"", "keepalive_idle = \"90s\"")
        .replace("defer_accept = \"3s\"", "defer_accept = \"7s\"")
        .replace("no_delay = true", "no_delay = false")
        .replace("keepalive = true\n", "");
    // Generation 3 stops at once when handoff does.
    write_config(&file, &changed);
    let (code, out, err) = reload(&h);
    assert_eq!(code, 0, "{out}{err}");
    h.wait_generation(3);
    let want = Read {
        idle: 90,
        defer_accept: 7,
        no_delay: false,
        // No longer asked for: back to the kernel's default, off.
        keepalive: false,
        ..asked()
    };
    assert_eq!(
        read(&first),
        want,
        "draining generation 1's socket, changed in place"
    );
    assert_eq!(
        read(&second),
        want,
        "generation 2's socket, changed in place"
    );
    assert_eq!(
        read(&socket_of(worker_of(&h, 3))),
        want,
        "generation 3's own socket"
    );
    let o = h.status().sockets[0].options.clone();
    assert_eq!(
        (o.keepalive, o.keepalive_idle, o.no_delay),
        (None, Some(90), Some(false))
    );
    // Not a minute's drain each before handoff can stop.
    for pid in [first_pid, second_pid] {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

#[test]
fn a_reload_that_changes_ipv6_only_is_refused_and_changes_nothing() {
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    let v6 = "[[socket]]\nname = \"http\"\nlisten = \"tcp://[::1]:0\"\nipv6_only = true\nkeepalive = false\n";
    write_config(&file, v6);
    let h = start(dir.path(), &file);
    let pid = worker_of(&h, 1);
    let socket = socket_of(pid);
    assert!(socket.only_v6().expect("IPV6_V6ONLY"));

    write_config(
        &file,
        &v6.replace("ipv6_only = true", "ipv6_only = false")
            .replace("keepalive = false", "keepalive = true"),
    );
    let (code, out, err) = reload(&h);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("socket `http`: ipv6_only cannot change (from true to false)")
            && err.contains("restart handoff"),
        "{err}"
    );
    let status = h.status();
    assert_eq!(status.generation, 1, "no new generation");
    assert_eq!(worker_of(&h, 1), pid, "the worker was not touched");
    assert!(socket.only_v6().expect("IPV6_V6ONLY"), "still IPv6 only");
    assert!(
        !socket.keepalive().expect("SO_KEEPALIVE"),
        "the changeable option did not change either"
    );
    assert_eq!(status.sockets[0].options.keepalive, Some(false));
}

#[test]
fn a_unix_socket_files_owner_and_group_are_set_and_changed_by_a_reload() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir();
    let file = dir.path().join("handoff.toml");
    let unix = "[[socket]]\nname = \"http\"\nlisten = \"unix://app.sock\"\nmode = 0o660\n\
                owner = 65534\ngroup = 65534\nreceive_buffer = 8192\n";
    write_config(&file, unix);
    let h = start(dir.path(), &file);
    let path = dir.path().join("app.sock");
    let meta = std::fs::metadata(&path).expect("the socket file");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (65534, 65534, 0o660)
    );
    let socket = socket_of(worker_of(&h, 1));
    assert_eq!(socket.recv_buffer_size().expect("SO_RCVBUF"), 2 * 8192);

    write_config(
        &file,
        &unix
            .replace("group = 65534", "group = \"root\"")
            .replace("8192", "16384"),
    );
    let (code, out, err) = reload(&h);
    assert_eq!(code, 0, "{out}{err}");
    let meta = std::fs::metadata(&path).expect("the socket file");
    assert_eq!((meta.uid(), meta.gid()), (65534, 0));
    assert_eq!(socket.recv_buffer_size().expect("SO_RCVBUF"), 2 * 16384);
}
