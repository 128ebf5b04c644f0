//! Starting a child with its sockets, the systemd way.
//!
//! The child gets the sockets as fds 3, 4, ... in config order with
//! FD_CLOEXEC cleared, `LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID` set to its
//! own pid, and `NOTIFY_SOCKET`. Nothing else of the supervisor's leaks: every
//! fd it opens is CLOEXEC.
//!
//! `LISTEN_PID` is the hard part. std's `Command` builds the environment
//! before `fork`, when the child's pid is not known yet, and a `pre_exec`
//! hook must not touch the environment. So the environment is built here
//! instead, with a fixed-size hole for the pid, and the last `pre_exec` hook
//! fills the hole (getpid and a few byte writes, all async-signal-safe) and
//! calls `execve` itself. std's own exec is never reached on success; on
//! failure the hook returns the errno and `spawn()` reports it, exactly as if
//! std's exec had failed. (The alternative, re-executing a hidden subcommand
//! of handoff that sets the variable, costs a second exec per child.)

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Stdio;

use command_fds::{CommandFdExt, FdMapping};
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::config::{ListenPid, ProgramSpec, Readiness};
// Re-exported: `upgrade.rs` finds handoff's own binary with it.
pub use crate::program_path::resolve_program;
use crate::program_path::ProgramNotFound;
use crate::sockets::BoundSocket;
use crate::template;

mod controls;
pub use controls::ChildControls;

/// Environment variables that belong to whoever started the supervisor
/// (systemd) and must not reach a child, which gets its own.
const INHERITED_PROTOCOL_VARS: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    // A handoff run by a handoff with `preload`: the outer one's.
    crate::preload::HELD_VAR,
    crate::preload::READY_VAR,
];

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    NotFound(#[from] ProgramNotFound),
    #[error("{0}")]
    Template(String),
    #[error("cannot duplicate the socket fds: {0}")]
    Dup(#[source] io::Error),
    #[error(transparent)]
    Preload(#[from] crate::preload::PreloadError),
    #[error("cannot let user {user} reach its notify socket: {source}")]
    NotifyOwner {
        user: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot pass {what} to a program: it contains a NUL byte")]
    Nul { what: String },
    #[error("cannot start `{program}`: {source}")]
    Exec {
        program: String,
        #[source]
        source: io::Error,
    },
}

/// Everything a child needs besides its program: which sockets, where to
/// notify, and which generation and slot it is.
pub struct ChildContext<'a> {
    pub sockets: &'a [std::sync::Arc<BoundSocket>],
    pub notify_socket: &'a Path,
    pub generation: u64,
    pub slot: usize,
}

/// Starts one child. It runs in its own process group, so that a Ctrl-C on
/// the terminal reaches only the supervisor, which then drains the children
/// gracefully, and so that SIGKILL after `drain_timeout` reaches the child's
/// own children too.
///
/// Returns the child's pid; its exit is watched with a pidfd
/// ([`crate::sys::exited`]), the same way for children this process started and
/// for those it took over in an upgrade.
pub fn spawn(spec: &ProgramSpec, ctx: &ChildContext) -> Result<u32, SpawnError> {
    let named: Vec<_> = ctx.sockets.iter().map(|s| s.named()).collect();
    let args = spec
        .command
        .iter()
        .map(|a| template::expand(a, &named))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SpawnError::Template)?;
    let mut env = match spec.controls.clear_env {
        true => ChildEnv::empty(),
        false => ChildEnv::inherited(),
    };
    for (k, v) in &spec.env {
        let v = template::expand(v, &named).map_err(SpawnError::Template)?;
        env.set(k, v);
    }
    // Over `env`'s, as systemd's EnvironmentFile= over Environment=; taken
    // as written, never as templates.
    for (k, v) in spec.controls.env_file.iter().flat_map(|f| &f.vars) {
        env.set(k, v);
    }
    // A child of handoff's own user reaches the socket as it is.
    if let Some(c) = spec
        .controls
        .credentials
        .as_ref()
        .filter(|c| c.uid != nix::unistd::geteuid().as_raw())
    {
        crate::notify::hand_to(ctx.notify_socket, c).map_err(|source| SpawnError::NotifyOwner {
            user: c.user.clone(),
            source,
        })?;
    }
    if spec.listen_env {
        env.set("LISTEN_FDS", ctx.sockets.len().to_string());
        let names: Vec<&str> = named.iter().map(|s| s.name).collect();
        env.set("LISTEN_FDNAMES", names.join(":"));
    }
    env.set("NOTIFY_SOCKET", ctx.notify_socket.as_os_str());
    env.set("HANDOFF_GENERATION", ctx.generation.to_string());
    env.set("HANDOFF_WORKER", ctx.slot.to_string());
    // The library's memfd goes right after the sockets.
    let library_fd = template::FIRST_FD + ctx.sockets.len();
    let library = if spec.preload {
        let library = crate::preload::library()?;
        let path = match library {
            crate::preload::Library::File(path) => path.as_os_str().to_os_string(),
            crate::preload::Library::Memfd(_) => format!("/proc/self/fd/{library_fd}").into(),
        };
        let ld_preload = crate::preload::ld_preload(&path, env.get("LD_PRELOAD"));
        env.set("LD_PRELOAD", ld_preload);
        env.set(
            crate::preload::HELD_VAR,
            crate::preload::held_var(ctx.sockets, template::FIRST_FD)?,
        );
        if spec.ready == Readiness::Listen {
            env.set(crate::preload::READY_VAR, "1");
        }
        Some(library)
    } else {
        None
    };
    let env = env.vars;

    let program = resolve_program(&args[0], &env)?;
    let options = ExecOptions {
        listen_pid: spec.listen_env && spec.listen_pid == ListenPid::Child,
        nonblocking: if spec.sockets_nonblocking {
            ctx.sockets.len()
        } else {
            0
        },
    };
    let controls = ChildControls::new(&spec.controls);
    let image = ExecImage::new(&program, &args, &env, options, controls)?;

    let mut mappings = Vec::with_capacity(ctx.sockets.len());
    for (i, socket) in ctx.sockets.iter().enumerate() {
        let parent_fd = socket
            .as_fd()
            .try_clone_to_owned()
            .map_err(SpawnError::Dup)?;
        let child_fd =
            i32::try_from(template::FIRST_FD + i).expect("socket count fits in an fd number");
        mappings.push(FdMapping {
            parent_fd,
            child_fd,
        });
    }
    if let Some(crate::preload::Library::Memfd(library)) = library {
        mappings.push(FdMapping {
            parent_fd: library.try_clone().map_err(SpawnError::Dup)?,
            child_fd: i32::try_from(library_fd).expect("socket count fits in an fd number"),
        });
    }

    let mut cmd = Command::new(&program);
    cmd.args(&args[1..])
        .env_clear()
        .stdin(Stdio::null())
        .process_group(0);
    if let Some(dir) = &spec.working_directory {
        cmd.current_dir(dir);
    }
    // Registered first, so it runs first: moves the sockets to 3, 4, ...
    cmd.fd_mappings(mappings)
        .expect("child fds 3.. are distinct by construction");
    let mut image = image;
    // SAFETY: the hook runs in the forked child before exec. It only calls
    // sigaction(2), sigprocmask(2), umask(2), setrlimit(2), setgroups(2),
    // setresgid(2), setresuid(2), prctl(2), getppid(2), getpid(2), writes
    // into buffers the child owns, and calls execve(2): all
    // async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || image.exec());
    }
    // std's Child neither kills nor reaps on drop: the pid stays ours to
    // wait for, and the reaper leaves it alone.
    crate::reaper::spawn(|| cmd.spawn(), |child| Some(child.id()))
        .map(|child| child.id())
        .map_err(|source| SpawnError::Exec {
            program: args[0].clone(),
            source,
        })
}

/// A child's environment as it is built: handoff's own, less the protocol
/// variables, then the config's, then the protocol's. A later setting
/// replaces an earlier one in place, found through an index: a linear
/// search per name made a 40,000-entry `env` quadratic (seconds of the
/// supervisor's loop per spawn).
struct ChildEnv {
    vars: Vec<(OsString, OsString)>,
    index: HashMap<OsString, usize>,
}

impl ChildEnv {
    /// For `clear_env`: nothing of handoff's.
    fn empty() -> ChildEnv {
        ChildEnv {
            vars: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn inherited() -> ChildEnv {
        let mut env = ChildEnv::empty();
        for (k, v) in std::env::vars_os() {
            if !INHERITED_PROTOCOL_VARS.iter().any(|p| OsStr::new(p) == k) {
                env.set(k, v);
            }
        }
        env
    }

    fn get(&self, key: &str) -> Option<&OsStr> {
        let i = *self.index.get(OsStr::new(key))?;
        Some(self.vars[i].1.as_os_str())
    }

    fn set(&mut self, key: impl AsRef<OsStr>, value: impl Into<OsString>) {
        let key = key.as_ref();
        let value = value.into();
        match self.index.get(key) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(key.to_os_string(), self.vars.len());
                self.vars.push((key.to_os_string(), value));
            }
        }
    }
}

const LISTEN_PID: &[u8] = b"LISTEN_PID=";
/// Room for any pid (at most 2^22 on Linux, but room for 20 digits anyway).
const PID_DIGITS: usize = 20;

/// A program, its argv and its envp, laid out as execve wants them before
/// the fork, with a hole in LISTEN_PID for the child to fill.
struct ExecImage {
    path: CString,
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    /// "LISTEN_PID=" followed by room for the digits and a NUL.
    _listen_pid: Box<[u8]>,
    /// Where the child writes its pid: into `listen_pid`, through the same
    /// pointer the envp array holds; None when the child gets no
    /// LISTEN_PID (`listen_pid = "any"`, `listen_env = false`).
    listen_pid_digits: Option<*mut u8>,
    /// How many of the fds from 3 on get O_NONBLOCK (`sockets_nonblocking`).
    nonblocking: usize,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// For a script without `#!` (ENOEXEC): `/bin/sh PATH ARGS...`, as
    /// execvp does.
    sh: CString,
    sh_argv_ptrs: Vec<*const libc::c_char>,
    /// The supervisor's pid, to check it is still the parent.
    parent: libc::pid_t,
    /// umask, rlimits, user and groups.
    controls: ChildControls,
}

// SAFETY: the raw pointers point into the heap buffers owned by the same
// struct (CString contents and `listen_pid`), which never move or change
// while it lives; the struct is only read, and only written in the child.
unsafe impl Send for ExecImage {}
// SAFETY: as above; no shared mutation happens in the parent.
unsafe impl Sync for ExecImage {}

/// What the child does to its environment and fds before exec.
#[derive(Debug, Clone, Copy)]
struct ExecOptions {
    /// Set LISTEN_PID to the child's own pid.
    listen_pid: bool,
    /// Set O_NONBLOCK on this many fds from 3 on.
    nonblocking: usize,
}

impl ExecImage {
    fn new(
        program: &Path,
        args: &[String],
        env: &[(OsString, OsString)],
        options: ExecOptions,
        controls: ChildControls,
    ) -> Result<ExecImage, SpawnError> {
        // The config refuses NUL bytes; a spec from before that check (an
        // upgrade's) is refused here rather than cut short.
        let cstring = |bytes: Vec<u8>, what: &dyn Fn() -> String| {
            CString::new(bytes).map_err(|_| SpawnError::Nul { what: what() })
        };
        let path = cstring(program.as_os_str().as_bytes().to_vec(), &|| {
            format!("the program path {}", program.display())
        })?;
        let argv = args
            .iter()
            .map(|a| {
                cstring(a.clone().into_bytes(), &|| {
                    format!("argument `{}`", a.escape_debug())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| {
                let mut kv = Vec::with_capacity(k.len() + 1 + v.len());
                kv.extend_from_slice(k.as_bytes());
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring(kv, &|| {
                    format!("environment variable `{}`", k.to_string_lossy())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut listen_pid = vec![0u8; LISTEN_PID.len() + PID_DIGITS + 1].into_boxed_slice();
        listen_pid[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
        let base = listen_pid.as_mut_ptr();
        // SAFETY: LISTEN_PID.len() is within the buffer.
        let listen_pid_digits = unsafe { base.add(LISTEN_PID.len()) };
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let sh = CString::new("/bin/sh").expect("no NUL in a literal");
        let mut sh_argv_ptrs = vec![sh.as_ptr(), path.as_ptr()];
        sh_argv_ptrs.extend(argv.iter().skip(1).map(|a| a.as_ptr()));
        sh_argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = envp.iter().map(|e| e.as_ptr()).collect();
        if options.listen_pid {
            envp_ptrs.push(base.cast_const().cast());
        }
        envp_ptrs.push(std::ptr::null());
        Ok(ExecImage {
            path,
            _argv: argv,
            _envp: envp,
            _listen_pid: listen_pid,
            listen_pid_digits: options.listen_pid.then_some(listen_pid_digits),
            nonblocking: options.nonblocking,
            argv_ptrs,
            envp_ptrs,
            sh,
            sh_argv_ptrs,
            // SAFETY: getpid cannot fail and has no preconditions.
            parent: unsafe { libc::getpid() },
            controls,
        })
    }

    /// Runs in the forked child: resets the signals, applies the process
    /// controls (umask, limits, user), asks for SIGTERM
    /// should the supervisor die, fills in LISTEN_PID and replaces the
    /// process. Returns only on failure.
    fn exec(&mut self) -> io::Result<()> {
        // Whatever the supervisor was doing when it forked (signals blocked
        // across an upgrade's check, some ignored since it started), the
        // server starts with none blocked and none ignored. Before the
        // prctl: a death signal that came earlier would meet the
        // supervisor's handlers, copied into this child, and be lost.
        crate::sys::reset_signals_in_child()?;
        // Before the prctl: the kernel clears the death signal whenever
        // the effective uid or gid changes (commit_creds), so a server
        // started as another user would otherwise outlive a SIGKILLed
        // supervisor.
        self.controls.apply()?;
        // A supervisor killed with SIGKILL must not leave orphans holding
        // its ports: they get SIGTERM and drain. (The death signal follows
        // the thread that forked: the supervisor spawns only from its
        // event-loop thread, which lives as long as the process (the log
        // writer thread never forks), and a re-exec of the supervisor
        // keeps it.)
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number only.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: getppid cannot fail. If the supervisor died before the
        // prctl above, no death signal will come: fail the spawn instead.
        if unsafe { libc::getppid() } != self.parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if let Some(listen_pid_digits) = self.listen_pid_digits {
            // SAFETY: getpid cannot fail and has no preconditions.
            let pid = unsafe { libc::getpid() };
            // SAFETY: the digits area has PID_DIGITS + 1 bytes, owned by
            // `listen_pid`, and nothing else refers to it while we write.
            let digits =
                unsafe { std::slice::from_raw_parts_mut(listen_pid_digits, PID_DIGITS + 1) };
            write_decimal(digits, pid.unsigned_abs());
        }
        // The sockets are at 3.. by now (command-fds' hook runs first). On a
        // shared socket the flag is the open file's, so every generation
        // sees it; a steered socket is this generation's own.
        for i in 0..self.nonblocking {
            let fd = libc::c_int::try_from(template::FIRST_FD + i).unwrap_or(libc::c_int::MAX);
            // SAFETY: fcntl with F_GETFL/F_SETFL on an fd number takes and
            // returns plain integers; an fd that is not open gives EBADF.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            // SAFETY: as above.
            if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: path, argv and envp are NUL-terminated strings in arrays
        // terminated by a null pointer, all owned by `self`.
        unsafe {
            libc::execve(
                self.path.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.envp_ptrs.as_ptr(),
            );
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOEXEC) {
            // SAFETY: as above; the shell's argv points into `self` too.
            unsafe {
                libc::execve(
                    self.sh.as_ptr(),
                    self.sh_argv_ptrs.as_ptr(),
                    self.envp_ptrs.as_ptr(),
                );
            }
        }
        Err(err)
    }
}

/// Writes `n` in decimal followed by a NUL, without allocating.
fn write_decimal(buf: &mut [u8], mut n: u32) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = digits[len - 1 - i];
    }
    buf[len] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_without_allocating() {
        let mut buf = [0xffu8; 12];
        write_decimal(&mut buf, 4411);
        assert_eq!(&buf[..5], b"4411\0");
        write_decimal(&mut buf, 0);
        assert_eq!(&buf[..2], b"0\0");
    }
}
