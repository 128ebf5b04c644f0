use super::*;
use socket2::{Socket, Type};
use std::os::fd::AsRawFd;

fn tcp_listener() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap()
}

const TCP: Expect = Expect::Listener {
    domain: Domain::Inet,
    kind: Kind::Stream,
};

fn message(fd: RawFd, expect: Expect) -> String {
    check_fd(fd, &expect).unwrap_err().to_string()
}

#[test]
fn a_closed_fd_is_not_open() {
    // A number no process has open: a just-closed fd could be reused by
    // another test's thread at once.
    let fd = i32::MAX - 1;
    assert!(matches!(check_fd(fd, &TCP), Err(FdError::NotOpen { .. })));
    assert_eq!(message(fd, TCP), format!("fd {fd} is not open"));
}

#[test]
fn a_file_or_a_pipe_is_not_a_socket() {
    let file = tempfile::tempfile().unwrap();
    let fd = file.as_raw_fd();
    assert_eq!(
        message(fd, TCP),
        format!("fd {fd} is a regular file, not a socket")
    );
    let (r, _w) = nix::unistd::pipe().unwrap();
    let fd = r.as_raw_fd();
    assert_eq!(
        message(fd, Expect::UnixDatagram),
        format!("fd {fd} is a pipe, not a socket")
    );
}

#[test]
fn a_tcp_listener_passes_and_a_udp_socket_does_not() {
    let tcp = tcp_listener();
    check_fd(tcp.as_raw_fd(), &TCP).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let fd = udp.as_raw_fd();
    assert_eq!(
        message(fd, TCP),
        format!("fd {fd} is a UDP socket, expected a TCP listener")
    );
    let udp_expected = Expect::Listener {
        domain: Domain::Inet,
        kind: Kind::Datagram,
    };
    check_fd(fd, &udp_expected).unwrap();
    let fd = tcp.as_raw_fd();
    assert_eq!(
        message(fd, udp_expected),
        format!("fd {fd} is a TCP listener, expected a UDP socket")
    );
}

#[test]
fn a_tcp_socket_that_does_not_listen_is_refused() {
    let s = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).unwrap();
    let fd = s.as_raw_fd();
    assert!(matches!(
        check_fd(fd, &TCP),
        Err(FdError::NotListening { .. })
    ));
    assert_eq!(
        message(fd, TCP),
        format!("fd {fd} is a TCP socket that is not listening")
    );
}

#[test]
fn ipv4_and_ipv6_are_told_apart() {
    let v6 = Socket::new(socket2::Domain::IPV6, Type::STREAM, None).unwrap();
    // listen(2) on an unbound socket binds it to a free port first.
    v6.listen(1).unwrap();
    let fd = v6.as_raw_fd();
    check_fd(
        fd,
        &Expect::Listener {
            domain: Domain::Inet6,
            kind: Kind::Stream,
        },
    )
    .unwrap();
    assert_eq!(
        message(fd, TCP),
        format!("fd {fd} is an IPv6 TCP listener, expected a TCP listener")
    );
}

#[test]
fn unix_sockets_are_checked_by_type_and_listening() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("c")).unwrap();
    let (stream, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let (dgram, _peer2) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let (l, s, d) = (listener.as_raw_fd(), stream.as_raw_fd(), dgram.as_raw_fd());
    check_fd(l, &Expect::UnixListener).unwrap();
    check_fd(s, &Expect::UnixStream).unwrap();
    check_fd(d, &Expect::UnixDatagram).unwrap();
    assert_eq!(
        message(l, Expect::UnixStream),
        format!("fd {l} is a unix stream listener, expected a connected unix stream socket")
    );
    assert_eq!(
        message(s, Expect::UnixListener),
        format!("fd {s} is a unix stream socket that is not listening")
    );
    assert_eq!(
        message(d, Expect::UnixListener),
        format!("fd {d} is a unix datagram socket, expected a unix stream listener")
    );
    assert_eq!(
        message(l, Expect::UnixDatagram),
        format!("fd {l} is a unix stream listener, expected a unix datagram socket")
    );
}

#[test]
fn checking_changes_nothing() {
    let tcp = tcp_listener();
    tcp.set_nonblocking(true).unwrap();
    let flags = |tcp: &std::net::TcpListener| {
        use nix::fcntl::{fcntl, FcntlArg};
        (
            fcntl(tcp, FcntlArg::F_GETFD).unwrap(),
            fcntl(tcp, FcntlArg::F_GETFL).unwrap(),
        )
    };
    let before = flags(&tcp);
    check_fd(tcp.as_raw_fd(), &TCP).unwrap();
    let _ = check_fd(tcp.as_raw_fd(), &Expect::UnixDatagram);
    assert_eq!(before, flags(&tcp));
    // Still open and still listening.
    let addr = tcp.local_addr().unwrap();
    let _client = std::net::TcpStream::connect(addr).unwrap();
    tcp.accept().unwrap();
}

#[test]
fn listener_for_follows_the_address() {
    let tcp6: ListenAddr = ListenAddr::Tcp("[::1]:80".parse().unwrap());
    let udp: ListenAddr = ListenAddr::Udp("127.0.0.1:53".parse().unwrap());
    assert_eq!(
        Expect::listener_for(&tcp6),
        Expect::Listener {
            domain: Domain::Inet6,
            kind: Kind::Stream
        }
    );
    assert_eq!(Expect::listener_for(&udp).to_string(), "a UDP socket");
    assert_eq!(
        Expect::listener_for(&ListenAddr::Unix("/run/a.sock".into())).to_string(),
        "a unix stream listener"
    );
}

#[test]
fn a_bound_path_is_checked_against_the_file_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let fd = listener.as_raw_fd();
    check_bound_path(fd, &path).unwrap();

    let other = dir.path().join("other.sock");
    let err = check_bound_path(fd, &other).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "fd {fd} is bound to {}, not {}",
            path.display(),
            other.display()
        )
    );

    std::fs::remove_file(&path).unwrap();
    let err = check_bound_path(fd, &path).unwrap_err();
    assert!(matches!(err, FdError::PathGone { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("fd {fd}'s socket file {} is gone", path.display())
    );

    std::fs::write(&path, b"").unwrap();
    let err = check_bound_path(fd, &path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "fd {fd}'s socket file {} is now a regular file",
            path.display()
        )
    );
}

#[test]
fn an_unnamed_or_abstract_socket_is_bound_elsewhere() {
    let (unnamed, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = unnamed.as_raw_fd();
    let err = check_bound_path(fd, Path::new("/run/x.sock")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("fd {fd} is bound to no name, not /run/x.sock")
    );

    use std::os::linux::net::SocketAddrExt;
    let name = format!("handoff-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let abstract_ = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let fd = abstract_.as_raw_fd();
    let err = check_bound_path(fd, Path::new("/run/x.sock")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("fd {fd} is bound to @{name}, not /run/x.sock")
    );
}
