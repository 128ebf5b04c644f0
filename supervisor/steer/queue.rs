//! What waits in a listener's accept queue, and whether the kernel moves it
//! when the listener closes.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

/// The sysctl that makes the kernel migrate the queue of a closing listener
/// to another socket of its SO_REUSEPORT group (Linux 5.14+).
pub const MIGRATE_REQ_PATH: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// `TCP_LISTEN` in the kernel's `tcpi_state` (include/net/tcp_states.h).
const TCP_LISTEN: u8 = 10;

/// How many established connections wait in the accept queue of the
/// listening TCP socket `fd`, not yet accepted.
///
/// For a listener, `tcp_get_info` (net/ipv4/tcp.c) reports
/// `sk_ack_backlog`, the accept queue's current length, in `tcpi_unacked`
/// (and the backlog, `sk_max_ack_backlog`, in `tcpi_sacked`); `ss -lt`
/// shows the same number as Recv-Q. Handshakes still in progress (SYN_RECV
/// request socks) are not counted. On any socket but a listener those
/// fields mean something else, so this checks `tcpi_state` and refuses.
pub fn queue_len(fd: impl AsFd) -> io::Result<u32> {
    // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>())
        .expect("tcp_info is a few hundred bytes");
    // SAFETY: info is a writable tcp_info of `len` bytes; the kernel writes
    // at most `len` bytes and stores the length it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("reading the accept queue (TCP_INFO): {err}"),
        ));
    }
    if info.tcpi_state != TCP_LISTEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "reading the accept queue: the socket is not listening (TCP state {})",
                info.tcpi_state
            ),
        ));
    }
    Ok(info.tcpi_unacked)
}

/// Whether a datagram waits on the UDP socket `fd` (FIONREAD: for UDP the
/// kernel tells the size of the next datagram only, so this is all it
/// can say).
pub fn datagram_waiting(fd: impl AsFd) -> io::Result<bool> {
    let mut next: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points
    // at a live local.
    let rc = unsafe {
        libc::ioctl(
            fd.as_fd().as_raw_fd(),
            libc::FIONREAD,
            std::ptr::from_mut(&mut next),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("reading the datagram queue (FIONREAD): {err}"),
        ));
    }
    Ok(next > 0)
}

/// Whether `net.ipv4.tcp_migrate_req` is on in this network namespace:
/// `Some(true)` when a closing listener's queue moves to another socket of
/// its group, `Some(false)` when it is reset, `None` when the kernel has
/// no such setting (before 5.14) or it cannot be read. Only reads: handoff
/// never changes a system setting on the user's behalf.
pub fn migrate_req() -> Option<bool> {
    read_migrate_req(Path::new(MIGRATE_REQ_PATH))
}

fn read_migrate_req(path: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(path).ok()?;
    // The kernel bounds it to 0..=1 (proc_dou8vec_minmax).
    match text.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_req_reads_what_this_machine_says() {
        let expected = match std::fs::read_to_string(MIGRATE_REQ_PATH) {
            Ok(text) => match text.trim() {
                "0" => Some(false),
                "1" => Some(true),
                other => panic!("{MIGRATE_REQ_PATH} holds {other:?}"),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => panic!("reading {MIGRATE_REQ_PATH}: {e}"),
        };
        assert_eq!(migrate_req(), expected);
    }

    #[test]
    fn migrate_req_parses_and_tolerates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("tcp_migrate_req");
        for (text, expected) in [
            ("1\n", Some(true)),
            ("0\n", Some(false)),
            ("2\n", None),
            ("", None),
        ] {
            std::fs::write(&file, text).expect("write");
            assert_eq!(read_migrate_req(&file), expected, "{text:?}");
        }
        assert_eq!(read_migrate_req(&dir.path().join("absent")), None);
    }

    #[test]
    fn queue_len_refuses_a_socket_that_does_not_listen() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let err = queue_len(&client).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert!(queue_len(&udp).is_err());
    }
}
