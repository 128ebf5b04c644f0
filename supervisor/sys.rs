//! The few raw syscalls std, nix and tokio do not wrap for us.

use std::io;
use std::time::Duration;

/// close_range(3, ~0, CLOSE_RANGE_CLOEXEC): FD_CLOEXEC on every fd above
/// stderr in one call. False on kernels before 5.11. Async-signal-safe.
fn close_range_cloexec() -> bool {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on
    // fds; it closes nothing and touches no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    rc == 0
}

/// Marks every fd above stderr close-on-exec. A supervisor started from a
/// shell or another supervisor may inherit stray fds without FD_CLOEXEC;
/// they must not leak into its children. Runs first thing in `main`.
pub fn mark_inherited_fds_cloexec() {
    if close_range_cloexec() {
        return;
    }
    // Kernels before 5.11: the open fds, one at a time.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on an fd number only changes its flags; an fd that
        // is no longer open (the directory listing's own) yields EBADF.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}

/// The same, in a forked child before its exec (a `pre_exec` hook): std's
/// own exec-error pipe is one of those fds and must stay open until the
/// exec, so this marks and does not close. Async-signal-safe: syscalls
/// only, so on kernels before 5.11 it tries every number below the
/// open-file limit rather than list /proc/self/fd, which would allocate.
pub fn mark_fds_cloexec_in_child() -> io::Result<()> {
    if close_range_cloexec() {
        return Ok(());
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct rlimit, which `limit` is.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = libc::c_int::try_from(limit.rlim_cur).unwrap_or(libc::c_int::MAX);
    for fd in 3..end {
        // SAFETY: F_SETFD on an fd number only changes its flags; a number
        // that is not open yields EBADF, which is what most of them do.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Raises the soft limit on open files when the sockets and workers need
/// more than it allows (up to the hard limit). The children inherit it; they
/// need room for every socket too.
pub fn raise_fd_limit(sockets: usize, workers: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // Per worker: its notify socket, its pidfd/pipe; plus the supervisor's own.
    let needed = (sockets + 4 * workers + 64) as u64;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if needed <= soft {
        return;
    }
    let target = needed.min(hard);
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => tracing::info!(
            "raised the open-file limit from {soft} to {target} for {sockets} sockets"
        ),
        Err(e) => tracing::warn!(
            "{sockets} sockets need about {needed} open files, the limit is {soft}: {e}"
        ),
    }
}

/// Waits until process `pid` (not our child) has exited, or `timeout`
/// passes. Returns whether it exited. Uses a pidfd, so it neither polls nor
/// can be fooled by pid reuse after the pidfd is open.
pub fn wait_for_exit(pid: u32, timeout: Duration) -> io::Result<bool> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ESRCH) => Ok(true), // already gone
            _ => Err(err),
        };
    }
    let fd = i32::try_from(fd).expect("fds fit in an int");
    // SAFETY: fd was just returned to us by pidfd_open and is owned here.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    loop {
        // SAFETY: one valid pollfd, the count says one.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Waits for child `pid` to exit, without polling (a pidfd becomes
/// readable when the process exits), and without reaping it: until
/// [`reap`] is called, the pid cannot be reused, so signalling it is never
/// signalling a stranger. Works for any child of this process, including
/// those it took over across an upgrade's exec.
pub async fn exited(pid: u32) -> io::Result<()> {
    let raw_pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, libc::PIDFD_NONBLOCK) };
    if fd < 0 {
        // No pidfd (no fd left, or a kernel before 5.3): wait in a thread
        // instead, still without reaping, so the loop never blocks on it.
        tracing::debug!(
            "pidfd_open({pid}): {}; waiting in a thread",
            io::Error::last_os_error()
        );
        return tokio::task::spawn_blocking(move || {
            use nix::sys::wait::{waitid, Id, WaitPidFlag};
            loop {
                match waitid(
                    Id::Pid(nix::unistd::Pid::from_raw(raw_pid)),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
                ) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(io::Error::from(e)),
                    Ok(_) => return Ok(()),
                }
            }
        })
        .await
        .map_err(io::Error::other)?;
    }
    let fd = i32::try_from(fd).expect("fds fit in an int");
    // SAFETY: fd was just returned to us by pidfd_open and is owned here.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and the
    // same until the AsyncFd is dropped.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)?;
    // A pidfd stays readable once the process has exited.
    fd.readable().await?.retain_ready();
    Ok(())
}

/// Reaps child `pid`, which [`exited`] said has exited.
pub fn reap(pid: u32) -> io::Result<std::process::ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    let raw_pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into `status`.
        let reaped = unsafe { libc::waitpid(raw_pid, &mut status, 0) };
        if reaped == raw_pid {
            return Ok(std::process::ExitStatus::from_raw(status));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Sets FD_CLOEXEC on an fd.
pub fn set_cloexec(fd: std::os::fd::BorrowedFd) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
}

/// The signals the supervisor handles (`forward_signals` too); blocked
/// across an upgrade's exec.
fn supervisor_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    // And those it forwards: pending across the exec, not default-acted.
    for s in crate::signals::forwarded() {
        set.add(s);
    }
    set
}

/// Holds the supervisor's signals pending (they are delivered when
/// unblocked, and stay pending across an exec).
pub fn block_signals() {
    let _ = supervisor_signals().thread_block();
}

/// Lets the supervisor's signals in again (in the new process after an
/// upgrade, once its handlers are in place; signals that came meanwhile
/// are delivered now).
pub fn unblock_signals() {
    let _ = supervisor_signals().thread_unblock();
}

/// The highest signal number on Linux (`_NSIG - 1`, SIGRTMAX) on every
/// architecture but MIPS.
const LAST_SIGNAL: libc::c_int = 64;

/// Gives a forked child, before its exec, the signal state a program
/// expects to start with: every signal at its default action, none blocked.
/// exec keeps both the mask and ignored signals, and the supervisor may be
/// anywhere when it forks (its signals blocked across an upgrade's check,
/// SIGHUP ignored by `nohup`, SIGTERM blocked by whoever started it); a
/// child that inherits them ignores its stop signal, and no PDEATHSIG can
/// reach it.
///
/// Runs between fork and exec: async-signal-safe only (rt_sigaction(2),
/// sigemptyset(3), sigprocmask(2)), no allocation, no lock.
pub fn reset_signals_in_child() -> io::Result<()> {
    // Dispositions first, then the mask. Until the dispositions are reset,
    // the child has copies of the supervisor's handlers: a signal let in
    // before that (one sent to the new pid, or the PDEATHSIG of a
    // supervisor that just died) would run tokio's handler here, which only
    // pokes the supervisor's wake-up pipe, and the signal would be lost: the
    // child would exec as if no one had asked it to stop. In this order a
    // pending signal meets its default action, as it would after exec.
    //
    // The raw syscall, not libc's sigaction: glibc refuses signals 32 and
    // 33 (its own), yet they can come ignored from whoever started us.
    // The kernel's struct sigaction all zeros is SIG_DFL, no flags, an
    // empty mask, whatever its layout; 32 bytes is its size on 64-bit
    // Linux, and more than it reads elsewhere.
    let default_action = [0u64; 4];
    let kernel_sigset_size = std::mem::size_of::<u64>();
    for signal in 1..=LAST_SIGNAL {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads a struct sigaction from a valid,
        // zeroed buffer at least as large as the kernel's; no old action is
        // asked for. The result is not checked: with a valid signal number
        // and SIG_DFL it cannot fail.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default_action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                kernel_sigset_size,
            )
        };
    }
    // SAFETY: a sigset_t is plain integers, so all zeros is a valid value;
    // sigemptyset then makes it the empty set.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `empty` is a valid sigset_t to write.
    unsafe { libc::sigemptyset(&mut empty) };
    // SAFETY: a valid set; no old mask is asked for. The forked child has
    // one thread, so the process mask is that thread's.
    if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How many bytes execve(2) accepts here for the arguments and the
/// environment together, counting each string, its NUL and a pointer to
/// it: a quarter of the stack limit, at most 6 MiB (three quarters of the
/// kernel's _STK_LIM), at least 128 KiB. Past it, execve fails with E2BIG.
pub fn exec_args_limit() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    const AT_LEAST: usize = 128 * 1024;
    const AT_MOST: usize = 6 * 1024 * 1024;
    match getrlimit(Resource::RLIMIT_STACK) {
        Ok((soft, _)) => usize::try_from(soft / 4)
            .unwrap_or(AT_MOST)
            .clamp(AT_LEAST, AT_MOST),
        Err(_) => AT_MOST,
    }
}

/// Replaces this process with `program ARGS`, keeping `fds` open across the
/// exec (the caller blocks the signals first, so that none kills it before
/// the new program has handlers). Returns only on failure, with the fds as
/// they were.
///
/// Not std's `CommandExt::exec`: it clears the signal mask before exec.
pub fn exec_keeping(
    program: &std::path::Path,
    args: &[&std::ffi::OsStr],
    fds: &[i32],
) -> io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cstring = |s: &std::ffi::OsStr| {
        CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let path = match cstring(program.as_os_str()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut argv = vec![path.clone()];
    for a in args {
        match cstring(a) {
            Ok(a) => argv.push(a),
            Err(e) => return e,
        }
    }
    for &fd in fds {
        // SAFETY: F_SETFD only changes the flags of an fd we hold.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    let err = match nix::unistd::execv(&path, &argv) {
        Err(e) => io::Error::from(e),
        Ok(never) => match never {},
    };
    // Still here: the exec failed. Put things back.
    for &fd in fds {
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    err
}

/// The pids of this process's children, from /proc (needs
/// CONFIG_PROC_CHILDREN; empty without it), as this process names them.
///
/// Through /proc/self, not /proc/PID: in a pid namespace whose /proc was
/// not remounted (`unshare --pid --fork` without `--mount-proc`), our pid
/// (1) names another process there, and /proc speaks the pids of its own
/// namespace. Each child's NSpid line then gives its pid at our level.
pub fn children() -> Vec<u32> {
    let Some(level) = nspid("self").map(|ours| ours.len().saturating_sub(1)) else {
        return Vec::new();
    };
    let listed = children_in("/proc/self/task");
    if level == 0 {
        return listed;
    }
    listed
        .into_iter()
        .filter_map(|pid| nspid(&pid.to_string())?.get(level).copied())
        .collect()
}

/// The NSpid line of /proc/PROC/status: the process's pid in the
/// namespace of this /proc, then in each nested one down to its own.
fn nspid(proc: &str) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{proc}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().map(|p| p.parse().ok()).collect()
}

/// Becomes a child subreaper: orphaned descendants are reparented to this
/// process rather than to init. Kept across exec (an upgrade), not
/// inherited by children.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) sets a flag of this process;
    // it reads no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps child `pid` if it has exited, without waiting: `None` while it
/// runs.
pub fn reap_if_exited(pid: u32) -> io::Result<Option<std::process::ExitStatus>> {
    use std::os::unix::process::ExitStatusExt;
    let raw_pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into `status`.
        let reaped = unsafe { libc::waitpid(raw_pid, &mut status, libc::WNOHANG) };
        if reaped == raw_pid {
            return Ok(Some(std::process::ExitStatus::from_raw(status)));
        }
        if reaped == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether `pid` is still a child of this process (running, or exited and
/// not reaped yet), as the kernel says: it neither waits nor reaps.
pub fn is_child(pid: u32) -> bool {
    let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: a siginfo_t is plain data, so all zeros is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waitid writes one siginfo_t into `info`; WNOWAIT leaves
        // the child waitable, WNOHANG returns at once.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                raw_pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return true;
        }
        // ECHILD: not our child; anything but EINTR: say it is, and let a
        // later pass ask again (forgetting a live child would be worse).
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return false,
            _ => return true,
        }
    }
}

/// The pids of process `pid`'s children, likewise.
pub fn children_of(pid: u32) -> Vec<u32> {
    children_in(&format!("/proc/{pid}/task"))
}

/// The children listed under a /proc task directory, every thread's.
fn children_in(tasks: &str) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(tasks) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}
