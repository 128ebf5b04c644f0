//! Setting up a kernel socket, in one place for every socket handoff
//! creates: the first bind ([`BoundSocket::bind`](super::BoundSocket::bind)),
//! each generation's own socket beside it
//! ([`BoundSocket::sibling`](super::BoundSocket::sibling)) and the probe
//! beside an activator's socket (`steerable_adopted`). Sockets of one
//! SO_REUSEPORT group must agree on what the kernel matches a group by
//! (the bound device, IPV6_V6ONLY), and every generation's socket must
//! carry the options the config asks for: built here, they cannot drift
//! apart.
//!
//! The order is the kernel's: SO_REUSEADDR/SO_REUSEPORT, IPV6_V6ONLY,
//! the free bind and the device before bind() ([`open`]); the options
//! accepted connections inherit before listen() ([`set_live`]), so that
//! no connection is accepted without them. socket2 has all of them but
//! TCP_DEFER_ACCEPT and TCP_FASTOPEN, set with libc ([`set_int`]).

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, TcpKeepalive, Type};

use super::SocketOptions;

/// A step of the setup that failed: what it was, and the kernel's answer.
#[derive(Debug)]
pub(super) struct Failed {
    pub what: &'static str,
    pub source: io::Error,
}

fn failed(what: &'static str) -> impl Fn(io::Error) -> Failed {
    move |source| Failed { what, source }
}

/// A new socket bound at `addr`, with what must be set before bind():
/// SO_REUSEADDR (TCP), SO_REUSEPORT (if asked), and the options of
/// `options` fixed at bind (the others are [`set_live`]'s).
pub(super) fn open(
    domain: Domain,
    ty: Type,
    addr: &SockAddr,
    reuse_port: bool,
    options: &SocketOptions,
) -> Result<Socket, Failed> {
    let socket = Socket::new(domain, ty, None).map_err(failed("cannot create socket"))?;
    if domain != Domain::UNIX {
        // TCP only: for UDP, SO_REUSEADDR would let any other process
        // that sets it bind the same port and take its datagrams.
        if ty == Type::STREAM {
            socket
                .set_reuse_address(true)
                .map_err(failed("cannot set SO_REUSEADDR"))?;
        }
        if reuse_port {
            socket
                .set_reuse_port(true)
                .map_err(failed("cannot set SO_REUSEPORT"))?;
        }
        before_bind(&socket, domain == Domain::IPV6, options)?;
    }
    socket.bind(addr).map_err(failed("cannot bind"))?;
    Ok(socket)
}

fn before_bind(socket: &Socket, v6: bool, o: &SocketOptions) -> Result<(), Failed> {
    if let (Some(only), true) = (o.ipv6_only, v6) {
        socket
            .set_only_v6(only)
            .map_err(failed("cannot set ipv6_only (IPV6_V6ONLY)"))?;
    }
    if let Some(free) = o.free_bind {
        let set = if v6 {
            socket.set_freebind_v6(free)
        } else {
            socket.set_freebind_v4(free)
        };
        set.map_err(failed("cannot set free_bind (IP_FREEBIND)"))?;
    }
    if let Some(device) = &o.bind_to_device {
        socket
            .bind_device(Some(device.as_bytes()))
            .map_err(failed("cannot set bind_to_device (SO_BINDTODEVICE)"))?;
    }
    Ok(())
}

/// The options fixed at bind() as the kernel has them on `socket`: what a
/// socket must have to join its SO_REUSEPORT group, whoever bound it.
pub(super) fn fixed_of(socket: &Socket, v6: bool) -> io::Result<SocketOptions> {
    let device = socket
        .device()?
        .map(|d| String::from_utf8_lossy(&d).into_owned());
    Ok(SocketOptions {
        ipv6_only: if v6 { Some(socket.only_v6()?) } else { None },
        free_bind: Some(if v6 {
            socket.freebind_v6()?
        } else {
            socket.freebind_v4()?
        }),
        bind_to_device: device,
        ..SocketOptions::default()
    })
}

/// Sets the options that can change on a live socket, the ones set in
/// `o` only: before listen(), and again on a reload.
pub(super) fn set_live(socket: &Socket, o: &SocketOptions) -> Result<(), Failed> {
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    let mut timings = TcpKeepalive::new();
    let mut any_timing = false;
    if let Some(idle) = o.keepalive_idle {
        timings = timings.with_time(secs(idle));
        any_timing = true;
    }
    if let Some(interval) = o.keepalive_interval {
        timings = timings.with_interval(secs(interval));
        any_timing = true;
    }
    if let Some(count) = o.keepalive_count {
        timings = timings.with_retries(count);
        any_timing = true;
    }
    if any_timing {
        // socket2 turns SO_KEEPALIVE on with the timings: a socket that
        // asks for timings only (a server that turns keepalive on per
        // connection) keeps the SO_KEEPALIVE it had.
        let had = socket
            .keepalive()
            .map_err(failed("cannot read SO_KEEPALIVE"))?;
        socket.set_tcp_keepalive(&timings).map_err(failed(
            "cannot set the keepalive timings (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT)",
        ))?;
        socket
            .set_keepalive(o.keepalive.unwrap_or(had))
            .map_err(failed("cannot set keepalive (SO_KEEPALIVE)"))?;
    } else if let Some(on) = o.keepalive {
        socket
            .set_keepalive(on)
            .map_err(failed("cannot set keepalive (SO_KEEPALIVE)"))?;
    }
    if let Some(secs) = o.defer_accept {
        set_int(socket, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, secs)
            .map_err(failed("cannot set defer_accept (TCP_DEFER_ACCEPT)"))?;
    }
    if let Some(queue) = o.fast_open {
        set_int(socket, libc::IPPROTO_TCP, libc::TCP_FASTOPEN, queue)
            .map_err(failed("cannot set fast_open (TCP_FASTOPEN)"))?;
    }
    if let Some(bytes) = o.receive_buffer {
        socket
            .set_recv_buffer_size(usize::try_from(bytes).unwrap_or(usize::MAX))
            .map_err(failed("cannot set receive_buffer (SO_RCVBUF)"))?;
    }
    if let Some(bytes) = o.send_buffer {
        socket
            .set_send_buffer_size(usize::try_from(bytes).unwrap_or(usize::MAX))
            .map_err(failed("cannot set send_buffer (SO_SNDBUF)"))?;
    }
    if let Some(on) = o.no_delay {
        socket
            .set_tcp_nodelay(on)
            .map_err(failed("cannot set no_delay (TCP_NODELAY)"))?;
    }
    Ok(())
}

/// The owner and group of a unix socket's file, where asked: before
/// listen(), so no client connects under the old ones, and again on a
/// reload.
pub(super) fn set_file_owner(path: &Path, o: &SocketOptions) -> Result<(), Failed> {
    if o.owner.is_none() && o.group.is_none() {
        return Ok(());
    }
    // lchown: the socket file itself, never what a symlink put at its
    // path would point to.
    std::os::unix::fs::lchown(path, o.owner, o.group)
        .map_err(failed("cannot set the socket file's owner or group"))
}

/// An int option socket2 does not have (TCP_DEFER_ACCEPT, TCP_FASTOPEN).
fn set_int(socket: &Socket, level: libc::c_int, name: libc::c_int, value: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(value)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the value is too large"))?;
    // SAFETY: `value` is a c_int that outlives the call, and the length
    // given is its size: the kernel reads exactly that int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
                .expect("the size of an int fits a socklen_t"),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
