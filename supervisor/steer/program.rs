//! The classic BPF programs that steer new connections within a SO_REUSEPORT
//! group, and attaching one (`SO_ATTACH_REUSEPORT_CBPF`).
//!
//! The value a program returns is an index into the group's listening
//! sockets ([`super::group::Group`]). An index at or past the group's size
//! makes the kernel fall back to its hash (`run_bpf_filter` returns NULL,
//! `reuseport_select_sock` then hashes), so a stale program misroutes but
//! never refuses.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use libc::sock_filter;

/// The most instructions a classic BPF program may have (`BPF_MAXINSNS`).
pub const MAX_INSTRUCTIONS: usize = 4096;

/// `ret #index`: every new connection goes to the socket at `index`.
pub fn to(index: u32) -> Vec<sock_filter> {
    vec![ret(index)]
}

/// Why [`split`] cannot build a program.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SplitError {
    #[error("a split needs at least one socket with a weight above 0")]
    NoWeight,
    #[error("a split over {count} sockets is more than a classic BPF program can hold ({max})")]
    TooMany { count: usize, max: usize },
}

/// A program that sends each new connection to one of `targets`, given as
/// `(index, weight)`, with a probability of its weight over the sum of the
/// weights. Targets of weight 0 get nothing and are left out; with one
/// target left the program is [`to`] that target.
///
/// It draws the kernel's per-packet random number (`SKF_AD_RANDOM`, a full
/// u32) and compares it with cumulative thresholds:
///
/// ```text
///   ld  rand                       A = random u32
///   jge #t1, +1, +0                A >= t1 (share of the first) ? skip : next
///   ret #index1
///   jge #t2, +1, +0                t2 = t1 + share of the second
///   ret #index2
///   ...
///   ret #indexN                    the last takes the rest
/// ```
///
/// Each share is exact to within 2^-32 (the thresholds are rounded down).
pub fn split(targets: &[(u32, u32)]) -> Result<Vec<sock_filter>, SplitError> {
    let live: Vec<(u32, u32)> = targets.iter().copied().filter(|&(_, w)| w > 0).collect();
    let (&(last, _), head) = live.split_last().ok_or(SplitError::NoWeight)?;
    if head.is_empty() {
        return Ok(to(last));
    }
    // One load, then a jump and a return per target but the last, then ret.
    let len = 2 * live.len();
    if len > MAX_INSTRUCTIONS {
        return Err(SplitError::TooMany {
            count: live.len(),
            max: MAX_INSTRUCTIONS / 2,
        });
    }
    let total: u64 = live.iter().map(|&(_, w)| u64::from(w)).sum();
    let mut program = Vec::with_capacity(len);
    program.push(load_random());
    let mut cumulative: u64 = 0;
    for &(index, weight) in head {
        cumulative += u64::from(weight);
        // (2^32 * cumulative / total) < 2^32, since the last target's weight
        // is above 0 and not yet counted.
        let threshold = u32::try_from((cumulative << 32) / total)
            .expect("a threshold before the last target is below 2^32");
        program.push(jump_if_at_least(threshold));
        program.push(ret(index));
    }
    program.push(ret(last));
    Ok(program)
}

/// Why a program could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("a steering program needs 1 to {MAX_INSTRUCTIONS} instructions, this one has {len}")]
    Length { len: usize },
    /// EINVAL: the socket has no SO_REUSEPORT (or never bound with it), or
    /// the kernel's checker rejected the program.
    #[error(
        "the kernel refused the steering program: the socket is not in a SO_REUSEPORT \
         group, or the program is invalid: {0}"
    )]
    NotInGroup(#[source] io::Error),
    /// Anything else: EPERM (the socket's filter is locked), ENOMEM (over
    /// `net.core.optmem_max`), EBADF/ENOTSOCK (not a socket).
    #[error("attaching the steering program (SO_ATTACH_REUSEPORT_CBPF): {0}")]
    Os(#[source] io::Error),
}

/// Attaches `program` to the SO_REUSEPORT group of the socket `fd`,
/// replacing the group's program at once (`reuseport_attach_prog` swaps one
/// pointer; the next SYN runs the new one).
///
/// The program belongs to the group, not to `fd`: it stays when `fd` leaves
/// while others remain, and goes when the group empties. Attach through a
/// socket that already listens: one that has not listened yet gets a group
/// of its own (`reuseport_attach_prog` calls `reuseport_alloc`), which is
/// thrown away with its program when it joins the real group at `listen()`
/// (`reuseport_add_sock` frees the old one-socket group).
pub fn attach(fd: impl AsFd, program: &[sock_filter]) -> Result<(), AttachError> {
    if program.is_empty() || program.len() > MAX_INSTRUCTIONS {
        return Err(AttachError::Length { len: program.len() });
    }
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).expect("checked against BPF_MAXINSNS above"),
        // The kernel copies the instructions in and never writes them.
        filter: program.as_ptr().cast_mut(),
    };
    let size = libc::socklen_t::try_from(std::mem::size_of::<libc::sock_fprog>())
        .expect("sock_fprog is a few bytes");
    // SAFETY: fprog points at `program.len()` valid instructions that
    // outlive the call; the kernel only reads `size` bytes of fprog and
    // copies the instructions before returning.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&fprog).cast(),
            size,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    Err(match err.raw_os_error() {
        Some(libc::EINVAL) => AttachError::NotInGroup(err),
        _ => AttachError::Os(err),
    })
}

fn ret(k: u32) -> sock_filter {
    insn(libc::BPF_RET | libc::BPF_K, 0, 0, k)
}

fn load_random() -> sock_filter {
    // Ancillary loads use negative offsets; k is the offset's bit pattern.
    let offset = libc::SKF_AD_OFF + libc::SKF_AD_RANDOM;
    insn(
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        0,
        0,
        u32::from_ne_bytes(offset.to_ne_bytes()),
    )
}

/// `A >= k`: skip the next instruction; else fall through to it.
fn jump_if_at_least(k: u32) -> sock_filter {
    insn(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, 1, 0, k)
}

fn insn(code: u32, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter {
        code: u16::try_from(code).expect("classic BPF opcodes fit in 16 bits"),
        jt,
        jf,
        k,
    }
}

#[cfg(test)]
pub(super) fn listing(program: &[sock_filter]) -> Vec<(u16, u8, u8, u32)> {
    program.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RET_K: u16 = 0x06;
    const LD_W_ABS: u16 = 0x20;
    const JGE_K: u16 = 0x35;
    /// SKF_AD_OFF (-0x1000) + SKF_AD_RANDOM (56), as the kernel reads k.
    const RANDOM: u32 = 0xffff_f038;

    /// Runs a program of the shapes built here, as the kernel would, for a
    /// random number `rand`.
    fn run(program: &[sock_filter], rand: u32) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = program[pc];
            match i.code {
                LD_W_ABS if i.k == RANDOM => a = rand,
                JGE_K => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn to_is_one_return_of_the_index() {
        assert_eq!(listing(&to(0)), [(RET_K, 0, 0, 0)]);
        assert_eq!(listing(&to(7)), [(RET_K, 0, 0, 7)]);
    }

    #[test]
    fn opcodes_are_the_kernels() {
        // include/uapi/linux/filter.h and bpf_common.h.
        assert_eq!(ret(0).code, 0x06);
        // BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20).
        assert_eq!(load_random().code, 0x20);
        assert_eq!(load_random().k, RANDOM);
        assert_eq!(jump_if_at_least(5).code, 0x05 | 0x30);
    }

    #[test]
    fn an_even_split_over_two() {
        let p = split(&[(1, 50), (0, 50)]).expect("two weighted targets");
        assert_eq!(
            listing(&p),
            [
                (LD_W_ABS, 0, 0, RANDOM),
                (JGE_K, 1, 0, 0x8000_0000),
                (RET_K, 0, 0, 1),
                (RET_K, 0, 0, 0),
            ]
        );
        assert_eq!(run(&p, 0), 1);
        assert_eq!(run(&p, 0x7fff_ffff), 1);
        assert_eq!(run(&p, 0x8000_0000), 0);
        assert_eq!(run(&p, u32::MAX), 0);
    }

    #[test]
    fn a_weighted_split_over_three() {
        // 1:2:1 → thresholds at 1/4 and 3/4 of 2^32.
        let p = split(&[(2, 1), (0, 2), (1, 1)]).expect("three weighted targets");
        assert_eq!(
            listing(&p),
            [
                (LD_W_ABS, 0, 0, RANDOM),
                (JGE_K, 1, 0, 0x4000_0000),
                (RET_K, 0, 0, 2),
                (JGE_K, 1, 0, 0xc000_0000),
                (RET_K, 0, 0, 0),
                (RET_K, 0, 0, 1),
            ]
        );
        assert_eq!(run(&p, 0x3fff_ffff), 2);
        assert_eq!(run(&p, 0x4000_0000), 0);
        assert_eq!(run(&p, 0xbfff_ffff), 0);
        assert_eq!(run(&p, 0xc000_0000), 1);
    }

    #[test]
    fn shares_follow_the_weights_over_the_whole_range() {
        // Walk the u32 range in even steps: each target's count is its share.
        let p = split(&[(0, 3), (1, 1), (2, 6)]).expect("weighted targets");
        let mut counts = [0u32; 3];
        let steps = 10_000u32;
        for s in 0..steps {
            let rand =
                u32::try_from(u64::from(s) * (1u64 << 32) / u64::from(steps)).expect("below 2^32");
            counts[run(&p, rand) as usize] += 1;
        }
        assert_eq!(counts, [3_000, 1_000, 6_000]);
    }

    #[test]
    fn zero_weights_are_left_out() {
        let p = split(&[(0, 0), (1, 10), (2, 0)]).expect("one weighted target");
        assert_eq!(listing(&p), listing(&to(1)));
        let p = split(&[(0, 0), (1, 1), (2, 1)]).expect("two weighted targets");
        assert_eq!(run(&p, 0), 1);
        assert_eq!(run(&p, u32::MAX), 2);
    }

    #[test]
    fn extreme_weights_still_give_each_its_range() {
        let p = split(&[(0, u32::MAX), (1, 1)]).expect("two weighted targets");
        assert_eq!(run(&p, 0), 0);
        assert_eq!(run(&p, u32::MAX), 1);
        let p = split(&[(0, 1), (1, u32::MAX)]).expect("two weighted targets");
        assert_eq!(run(&p, 0), 0);
        assert_eq!(run(&p, 1), 1);
    }

    #[test]
    fn a_split_with_no_weight_is_an_error() {
        assert_eq!(split(&[]).unwrap_err(), SplitError::NoWeight);
        assert_eq!(split(&[(0, 0), (1, 0)]).unwrap_err(), SplitError::NoWeight);
    }

    #[test]
    fn a_split_too_big_for_cbpf_is_an_error() {
        let targets: Vec<(u32, u32)> = (0..2049).map(|i| (i, 1)).collect();
        assert_eq!(
            split(&targets).unwrap_err(),
            SplitError::TooMany {
                count: 2049,
                max: 2048
            }
        );
        let targets: Vec<(u32, u32)> = (0..2048).map(|i| (i, 1)).collect();
        assert_eq!(split(&targets).expect("fits").len(), MAX_INSTRUCTIONS);
    }

    #[test]
    fn attach_refuses_an_empty_or_oversized_program_before_the_kernel() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        assert!(matches!(
            attach(&socket, &[]),
            Err(AttachError::Length { len: 0 })
        ));
        let long = vec![ret(0); MAX_INSTRUCTIONS + 1];
        assert!(matches!(
            attach(&socket, &long),
            Err(AttachError::Length { len: 4097 })
        ));
    }

    #[test]
    fn attach_to_a_socket_without_reuseport_names_the_problem() {
        // std binds without SO_REUSEPORT: the socket has no group.
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let err = attach(&socket, &to(0)).unwrap_err();
        assert!(matches!(err, AttachError::NotInGroup(_)), "{err:?}");
        assert!(err.to_string().contains("SO_REUSEPORT"), "{err}");
    }
}
