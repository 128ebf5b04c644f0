//! The pieces against real kernel sockets: listeners on 127.0.0.1 in one
//! SO_REUSEPORT group, real connections, counted in each listener's accept
//! queue. No timing is asserted: each wait is for a condition, with a
//! deadline.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::group::Group;
use super::program::{attach, split, to};
use super::queue::queue_len;

const DEADLINE: Duration = Duration::from_secs(20);

/// A TCP listener with SO_REUSEPORT on `addr` (port 0: a fresh port), that
/// has joined its group, non-blocking so that accept can drain it.
fn listener(addr: SocketAddr) -> Socket {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    s.set_reuse_port(true).expect("SO_REUSEPORT");
    s.bind(&addr.into()).expect("bind");
    s.listen(1024).expect("listen");
    s.set_nonblocking(true).expect("O_NONBLOCK");
    s
}

/// `n` listeners in one group, in join order, and their address.
fn group_of(n: usize) -> (Vec<Socket>, SocketAddr) {
    let first = listener("127.0.0.1:0".parse().expect("an address"));
    let addr = first
        .local_addr()
        .expect("local address")
        .as_socket()
        .expect("an inet address");
    let mut all = vec![first];
    all.extend((1..n).map(|_| listener(addr)));
    (all, addr)
}

/// Connects `n` times to `addr`, waits until every connection waits in one
/// of `listeners`' accept queues, then accepts them all and returns how
/// many each listener had.
fn connect_and_count(addr: SocketAddr, listeners: &[&Socket], n: usize) -> Vec<usize> {
    let clients: Vec<TcpStream> = (0..n)
        .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let start = Instant::now();
    loop {
        let queued: Vec<u32> = listeners
            .iter()
            .map(|l| queue_len(l).expect("queue length"))
            .collect();
        let total: u32 = queued.iter().sum();
        if total as usize == n {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{n} connections made, the accept queues hold {queued:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let counts = listeners.iter().map(|l| drain(l)).collect();
    drop(clients);
    counts
}

/// Accepts until the queue is empty; returns how many were accepted.
fn drain(listener: &Socket) -> usize {
    let mut accepted = 0;
    loop {
        match listener.accept() {
            Ok(_) => accepted += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return accepted,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn ret_k_sends_every_connection_to_socket_k_and_a_reattach_switches_at_once() {
    let (socks, addr) = group_of(2);
    let both: Vec<&Socket> = socks.iter().collect();

    attach(&socks[0], &to(1)).expect("attach to(1)");
    assert_eq!(connect_and_count(addr, &both, 40), [0, 40]);

    // The very next connections after the re-attach: no settling time.
    attach(&socks[1], &to(0)).expect("attach to(0)");
    assert_eq!(connect_and_count(addr, &both, 40), [40, 0]);
}

#[test]
fn ret_k_over_three_sockets() {
    let (socks, addr) = group_of(3);
    let all: Vec<&Socket> = socks.iter().collect();
    for k in [1u32, 2, 0] {
        attach(&socks[0], &to(k)).expect("attach");
        let mut expected = [0usize; 3];
        expected[k as usize] = 30;
        assert_eq!(connect_and_count(addr, &all, 30), expected, "to({k})");
    }
}

#[test]
fn the_model_keeps_steering_right_after_a_socket_leaves() {
    let (mut socks, addr) = group_of(3);
    let mut group = Group::new();
    for key in ["s0", "s1", "s2"] {
        group.join(key);
    }

    // The program belongs to the group: it outlives the socket it was
    // attached through.
    attach(&socks[0], &to(group.index_of(&"s1").expect("member"))).expect("attach");
    let s0 = socks.remove(0);
    drop(s0);
    group.leave(&"s0");
    let (s1, s2) = (&socks[0], &socks[1]);
    assert_eq!(connect_and_count(addr, &[s1, s2], 30), [30, 0]);

    // s2 moved into s0's hole (index 0) and s1 stayed at 1: re-attach from
    // the model and every connection goes where it says. A model that
    // shifted (s1 to 0, s2 to 1) would send these to the wrong socket.
    attach(s1, &to(group.index_of(&"s2").expect("member"))).expect("attach");
    assert_eq!(connect_and_count(addr, &[s1, s2], 30), [0, 30]);
    attach(s2, &to(group.index_of(&"s1").expect("member"))).expect("attach");
    assert_eq!(connect_and_count(addr, &[s1, s2], 30), [30, 0]);

    // A newcomer joins at the end, where the model puts it.
    let s3 = listener(addr);
    let index = group.join("s3");
    attach(s1, &to(index)).expect("attach");
    assert_eq!(connect_and_count(addr, &[s1, s2, &s3], 30), [0, 0, 30]);
}

#[test]
fn an_even_split_reaches_both_sockets() {
    let (socks, addr) = group_of(2);
    let both: Vec<&Socket> = socks.iter().collect();
    attach(&socks[0], &split(&[(0, 50), (1, 50)]).expect("split")).expect("attach");
    let mut totals = [0usize; 2];
    // In batches, so that no queue nears its backlog and few fds are open.
    for _ in 0..8 {
        let counts = connect_and_count(addr, &both, 50);
        totals[0] += counts[0];
        totals[1] += counts[1];
    }
    assert_eq!(totals[0] + totals[1], 400);
    // Binomial(400, 1/2) under 40 has a probability far below 1e-50.
    assert!(totals.iter().all(|&t| t >= 40), "{totals:?}");
}

#[test]
fn a_weighted_split_leaves_out_the_zero_weight() {
    let (socks, addr) = group_of(3);
    let all: Vec<&Socket> = socks.iter().collect();
    attach(&socks[0], &split(&[(2, 1), (0, 0), (1, 1)]).expect("split")).expect("attach");
    let mut totals = [0usize; 3];
    for _ in 0..4 {
        let counts = connect_and_count(addr, &all, 50);
        for (t, c) in totals.iter_mut().zip(counts) {
            *t += c;
        }
    }
    assert_eq!(totals[0], 0, "{totals:?}");
    assert!(totals[1] >= 20 && totals[2] >= 20, "{totals:?}");
}

#[test]
fn queue_len_counts_connections_not_yet_accepted() {
    let (socks, addr) = group_of(1);
    let listener = &socks[0];
    assert_eq!(queue_len(listener).expect("queue length"), 0);
    let _clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let start = Instant::now();
    let mut seen = queue_len(listener).expect("queue length");
    while seen != 3 {
        assert!(
            start.elapsed() < DEADLINE,
            "3 connected, queue length {seen}"
        );
        std::thread::sleep(Duration::from_millis(2));
        seen = queue_len(listener).expect("queue length");
    }
    let (_conn, _) = listener.accept().expect("accept one");
    assert_eq!(queue_len(listener).expect("queue length"), 2);
}
