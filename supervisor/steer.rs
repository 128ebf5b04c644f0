//! Steering new connections between per-generation sockets (issue 10;
//! docs/design.md, "A socket per generation"): the kernel-facing building
//! blocks. The core decides with them (`core/steering.rs` keeps each group's
//! order, `core/handover.rs` when to open, steer, wait and release); the
//! executor carries them out.
//!
//! Each generation gets its own listening socket for the same address, all
//! in one SO_REUSEPORT group that only handoff's sockets join, and a
//! classic BPF program attached to the group picks the socket of each new
//! connection. A restart joins the new generation's socket, re-attaches the
//! program to send everything to it once the generation is ready, waits
//! until the old socket's accept queue is empty, and only then stops the old
//! generation.
//!
//! - [`group`]: the group's order as the kernel keeps it ([`Group`]), since
//!   a program returns a position, not a socket.
//! - [`program`]: the programs ([`to`], [`split`]) and [`attach`].
//! - [`queue`]: a listener's accept-queue length ([`queue_len`]) and whether
//!   the kernel migrates a closing listener's queue ([`migrate_req`]).
//!
//! ## What the kernel does (checked in its source)
//!
//! The wiring relies on these; the tests in `steer/tests.rs` show the ones a
//! test on real sockets can show.
//!
//! - **Order.** `net/core/sock_reuseport.c` keeps a group as an array
//!   `socks[]`: listening sockets in `[0, num_socks)`, and since 5.14
//!   closed-but-not-yet-detached ones at the far end, `[max_socks -
//!   num_closed_socks, max_socks)`. A TCP socket joins when it `listen()`s
//!   (`inet_csk_listen_start` → `__inet_hash` → `inet_reuseport_add_sock` →
//!   `reuseport_add_sock`, or `reuseport_alloc` when it is the first), a UDP
//!   socket when it binds; it is appended (`__reuseport_add_sock`). It joins
//!   the group of a listener with the same family, address, port, bound
//!   device and owner uid that has SO_REUSEPORT (`inet_reuseport_add_sock`).
//! - **Leaving.** A listener leaves when it is unhashed (`inet_unhash` →
//!   `reuseport_stop_listen_sock`): when its last fd closes (`tcp_close`) or
//!   on `shutdown(SHUT_RD)` (`tcp_disconnect`). A child closing its copy of
//!   a socket handoff still holds is not a leave. `__reuseport_detach_sock`
//!   moves the last socket into the hole. With `tcp_migrate_req` on (or a
//!   migrating eBPF program), the socket goes to the closed section
//!   (`__reuseport_add_closed_sock`) instead of being detached; that section
//!   is beyond `num_socks`, so the listening indices change exactly as for a
//!   detach. `reuseport_resurrect` puts a shut-down socket that listens
//!   again at the end of the listening section.
//! - **Programs.** `SO_ATTACH_REUSEPORT_CBPF` (51; `sk_reuseport_attach_filter`
//!   in `net/core/filter.c` → `reuseport_attach_prog`) stores the program in
//!   the group, replacing the old one in one pointer swap: the next SYN runs
//!   the new program. It survives the socket it was attached through while
//!   the group has other members, and is freed with the group
//!   (`reuseport_free_rcu`) when the group empties: a socket that then
//!   listens starts a fresh group without a program. A socket that has not
//!   listened yet gets a group of its own when a program is attached to it,
//!   and that group and program are dropped when it joins the real one, so
//!   attach through a member. A socket without SO_REUSEPORT gets EINVAL
//!   (the kernel selftest `tools/testing/selftests/net/reuseport_bpf.c`,
//!   `test_filter_no_reuseport`).
//! - **Selection.** `reuseport_select_sock` runs the program on the SYN
//!   (`run_bpf_filter`); an index `>= num_socks` gives NULL and the kernel
//!   falls back to its hash (`reuseport_select_sock_by_hash`): a stale index
//!   misroutes, it does not refuse. `SKF_AD_OFF + SKF_AD_RANDOM` loads a
//!   fresh random u32 per packet.
//! - **Queue length.** For a listener `tcp_get_info` (`net/ipv4/tcp.c`)
//!   sets `tcpi_unacked = sk_ack_backlog` (connections waiting for
//!   `accept()`) and `tcpi_sacked = sk_max_ack_backlog`, then returns.
//! - **Migration.** `net.ipv4.tcp_migrate_req` (5.14+, default 0, read per
//!   network namespace) makes `inet_csk_listen_stop` move each connection
//!   waiting in a closing listener's accept queue to another listener of the
//!   group (`reuseport_migrate_sock`, then `inet_csk_reqsk_queue_add`). A
//!   classic BPF program has no say in it: without a migrating eBPF program
//!   the target is picked by hash among the remaining listeners. The closing
//!   listener was unhashed first (`tcp_set_state(TCP_CLOSE)` runs before
//!   `inet_csk_listen_stop` in `tcp_close` and `tcp_disconnect`), so it is
//!   never picked itself. Without the sysctl `inet_child_forget` resets each
//!   of them: what is stranded in an old socket's queue (a hung generation,
//!   a handshake that completes after the switch) is lost when that socket
//!   leaves, unless the sysctl is on.

pub mod group;
pub mod program;
pub mod queue;

#[cfg(test)]
mod tests;

pub use group::Group;
pub use program::{attach, split, to, AttachError, SplitError};
pub use queue::{datagram_waiting, migrate_req, queue_len};
