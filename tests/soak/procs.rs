//! What /proc says about the supervisor and its children: open fds,
//! resident memory, children, zombies, signal masks.

use handoff::protocol::{Request, Response};

use crate::harness::eventually;
use crate::harness::Handoff;

/// How many fds `pid` has open.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/fd: {e}"))
        .count()
}

/// VmRSS of `pid`, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status:\n{status}"))
}

/// (state, ppid) from /proc/PID/stat; None once the process is gone. The
/// command name may hold spaces and parentheses: the fields that follow
/// start after the last `)`.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Children of `parent` that are zombies (exited, not reaped), from a scan
/// of every /proc/PID/stat.
pub fn zombies_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        panic!("cannot list /proc");
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| state_and_parent(pid) == Some(('Z', parent)))
        .collect()
}

/// Waits until `parent` has no zombie child: one that exited a moment ago
/// is reaped soon after; one that stays is a bug.
pub fn assert_no_zombie(parent: u32) {
    let mut last = Vec::new();
    eventually("the supervisor reaps every child", || {
        last = zombies_of(parent);
        last.is_empty()
    });
}

/// SigBlk of `pid` if it runs `comm` (has exec'd it), read while it is not
/// blocking everything for a moment (glibc's pthread_create blocks every
/// signal around creating a thread, as does a signal handler). None once it
/// is gone, or if it does not run `comm`.
pub fn steady_blocked(pid: u32, comm: &str) -> Option<u64> {
    /// SIGKILL and SIGSTOP, which no mask blocks.
    const ALWAYS_DELIVERED: u64 = 1 << (9 - 1) | 1 << (19 - 1);
    for _ in 0..100 {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if name.trim() != comm {
            return None;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let blocked = status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no SigBlk in /proc/{pid}/status:\n{status}"));
        if blocked | ALWAYS_DELIVERED != u64::MAX {
            return Some(blocked);
        }
        std::thread::yield_now();
    }
    None
}

/// Waits until every worker is ready and of the serving generation, and
/// no old one drains: the supervisor at rest, where its fd count and
/// memory can be compared from one restart to another.
pub fn wait_at_rest(h: &Handoff, workers: usize) {
    eventually("the supervisor at rest (old workers gone)", || {
        let s = h.status();
        s.workers.len() == workers
            && s.workers
                .iter()
                .all(|w| w.state == "ready" && w.generation == s.generation)
    });
}

/// Stops the supervisor through the control socket and asserts what a
/// `stop` promises: it answers once everything is down, the process exits
/// 0, and nothing holds the port any more.
pub fn stop_and_check_port(h: &mut Handoff, addr: &str) {
    let supervisor = h.child.id();
    match handoff::control::call(&h.control, &Request::Stop {}) {
        Ok(Response::Stopped { pid }) => assert_eq!(pid, supervisor),
        other => panic!("stop: {other:?}"),
    }
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
    std::net::TcpListener::bind(addr).expect("the port is free after stop");
}
