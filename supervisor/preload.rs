//! The supervisor's side of the preload library (`preload = true`): for a
//! server that binds its own port and knows nothing of LISTEN_FDS.
//!
//! The library (`preload/interposer.rs`, built by `supervisor/build.rs`) is embedded
//! in handoff's binary, so it cannot be missing or of another version than
//! the handoff that speaks its private `HANDOFF_PRELOAD` format, and
//! `cargo install` brings it along. At the first child that wants it,
//! handoff copies it into a sealed memfd; every such child gets a copy of
//! that fd after its sockets, with `LD_PRELOAD=/proc/self/fd/N`. A memfd
//! rather than a file in the runtime directory: that directory is 0700
//! (a child running as another user could not read it) and often on a
//! `noexec` mount (/run, /tmp), where the loader cannot map the library.
//!
//! The fd and the variables are inherited by the server's own children
//! (a `sh -c` or `npm start` wrapper, gunicorn's workers), which is what a
//! wrapper needs; the library turns itself off, and removes itself from
//! the environment, in a process that did not inherit the sockets.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

// The library's address matching, compiled here for its tests only.
#[cfg(test)]
mod matching;

/// The library, built for this handoff's target (empty when the target
/// cannot have one: musl).
static LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libhandoff_preload.so"));

/// How many sockets the library looks after (its fixed table).
pub const MAX_SOCKETS: usize = 64;

/// The variable naming the held sockets: `FD:COOKIE,...`.
pub const HELD_VAR: &str = "HANDOFF_PRELOAD";
/// Set to 1 with `ready = "listen"`.
pub const READY_VAR: &str = "HANDOFF_PRELOAD_READY";

#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    #[error("this handoff was built without the preload library (its target is not linux-gnu)")]
    NotBuilt,
    #[error("cannot put the preload library in memory: {0}")]
    Memfd(#[source] io::Error),
    #[error("cannot read a socket's SO_COOKIE for the preload library: {0}")]
    Cookie(#[source] io::Error),
}

/// The library in a sealed memfd (close-on-exec in the supervisor), made
/// once per process.
pub fn library() -> Result<BorrowedFd<'static>, PreloadError> {
    static MEMFD: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = MEMFD.get() {
        return Ok(fd.as_fd());
    }
    let fd = make_library()?;
    Ok(MEMFD.get_or_init(|| fd).as_fd())
}

fn make_library() -> Result<OwnedFd, PreloadError> {
    if LIBRARY.is_empty() {
        return Err(PreloadError::NotBuilt);
    }
    let memfd = memfd_create(
        c"handoff-preload",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| PreloadError::Memfd(e.into()))?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(LIBRARY).map_err(PreloadError::Memfd)?;
    // Sealed: no process that inherits it can change the code every
    // server maps.
    fcntl(
        &file,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE
                | SealFlag::F_SEAL_SEAL,
        ),
    )
    .map_err(|e| PreloadError::Memfd(e.into()))?;
    Ok(file.into())
}

/// The socket's `SO_COOKIE`: the kernel's id for the socket, the same in
/// every process that has a copy of it. (Neither socket2 nor nix has it.)
pub fn cookie(fd: BorrowedFd) -> io::Result<u64> {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: an 8-byte buffer and its length, on a borrowed fd.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// `HANDOFF_PRELOAD` for a child that gets `sockets` at fds `first`, ...
pub fn held_var(sockets: &[impl AsFd], first: usize) -> Result<String, PreloadError> {
    let mut out = String::new();
    for (i, socket) in sockets.iter().enumerate() {
        let cookie = cookie(socket.as_fd()).map_err(PreloadError::Cookie)?;
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{}:{cookie:x}", first + i));
    }
    Ok(out)
}

/// `LD_PRELOAD` with the library (at fd `fd` in the child) first, then
/// whatever the child would have had.
pub fn ld_preload(fd: usize, before: Option<&OsStr>) -> OsString {
    let mut value = OsString::from(format!("/proc/self/fd/{fd}"));
    if let Some(before) = before.filter(|b| !b.is_empty()) {
        value.push(":");
        value.push(before);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_embedded_and_seals() {
        let fd = library().expect("the library in a memfd");
        let size = std::fs::File::from(fd.try_clone_to_owned().expect("dup"))
            .metadata()
            .expect("fstat")
            .len();
        assert_eq!(size as usize, LIBRARY.len());
        assert!(LIBRARY.starts_with(b"\x7fELF"));
        let mut file = std::fs::File::from(fd.try_clone_to_owned().expect("dup"));
        assert!(file.write_all(b"x").is_err(), "the memfd is sealed");
        // Made once.
        assert_eq!(library().expect("again").as_raw_fd(), fd.as_raw_fd());
    }

    #[test]
    fn the_library_looks_after_as_many_sockets_as_the_config_allows() {
        let source = include_str!("preload/interposer.rs");
        assert!(source.contains(&format!("const MAX_HELD: usize = {MAX_SOCKETS};")));
    }

    #[test]
    fn held_var_names_each_fd_with_its_cookie() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let ca = cookie(a.as_fd()).expect("cookie");
        let cb = cookie(b.as_fd()).expect("cookie");
        assert_ne!(ca, cb);
        let fds = [a.as_fd(), b.as_fd()];
        assert_eq!(
            held_var(&fds, 3).expect("var"),
            format!("3:{ca:x},4:{cb:x}")
        );
    }

    #[test]
    fn ld_preload_puts_the_library_first() {
        assert_eq!(ld_preload(5, None), "/proc/self/fd/5");
        assert_eq!(ld_preload(5, Some(OsStr::new(""))), "/proc/self/fd/5");
        assert_eq!(
            ld_preload(4, Some(OsStr::new("/usr/lib/libjemalloc.so"))),
            "/proc/self/fd/4:/usr/lib/libjemalloc.so"
        );
    }
}
