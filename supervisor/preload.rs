//! The supervisor's side of the preload library (`preload = true`): for a
//! server that binds its own port and knows nothing of LISTEN_FDS.
//!
//! The library (`preload/interposer.rs`, built by `supervisor/build.rs`)
//! is embedded in handoff's binary, so it cannot be missing or of another
//! version than the handoff that speaks its private `HANDOFF_PRELOAD`
//! format, and `cargo install` brings it along.
//!
//! At the first child that wants it, handoff writes it to the temp dir as
//! `handoff-preload-HASH.so` (named by its content, mode 0644, so that a
//! child running as another user can read it; never rewritten in place, as
//! running servers map it) and children get `LD_PRELOAD=` that path. A
//! path rather than an fd: a server's own children that close their fds
//! (Python's `subprocess` does by default) still find it, and then remove
//! it from their environment themselves, where `/proc/self/fd/N` would
//! make the loader complain in every one of them, or read whatever file
//! has taken fd N. Where the temp dir is mounted `noexec` (the loader
//! cannot map code from it) or the file there is not handoff's, the
//! library goes in a sealed memfd instead, passed at the fd after the
//! sockets as `/proc/self/fd/N`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
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

const FILE_PREFIX: &str = "handoff-preload-";

#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    #[error("this handoff was built without the preload library (its target is not linux-gnu)")]
    NotBuilt,
    #[error("cannot put the preload library in memory: {0}")]
    Memfd(#[source] io::Error),
    #[error("cannot read a socket's SO_COOKIE for the preload library: {0}")]
    Cookie(#[source] io::Error),
}

/// Where children load the library from.
#[derive(Debug)]
pub enum Library {
    /// A file of handoff's (`LD_PRELOAD=` its path).
    File(PathBuf),
    /// A sealed memfd, close-on-exec in the supervisor; each child gets a
    /// copy (`LD_PRELOAD=/proc/self/fd/N`).
    Memfd(OwnedFd),
}

/// The library, set up once per process.
pub fn library() -> Result<&'static Library, PreloadError> {
    static LIBRARY_AT: OnceLock<Library> = OnceLock::new();
    if let Some(library) = LIBRARY_AT.get() {
        return Ok(library);
    }
    if LIBRARY.is_empty() {
        return Err(PreloadError::NotBuilt);
    }
    let library = match install_file(&std::env::temp_dir()) {
        Ok(path) => Library::File(path),
        Err(why) => {
            let memfd = make_memfd()?;
            tracing::info!("the preload library is passed to children in memory: {why}");
            Library::Memfd(memfd)
        }
    };
    Ok(LIBRARY_AT.get_or_init(|| library))
}

/// FNV-1a: a name for the library's content (checked in full anyway).
fn content_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Puts the library in `dir` (or finds it there, from an earlier run),
/// or says why not.
fn install_file(dir: &Path) -> Result<PathBuf, String> {
    let flags = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| format!("cannot stat {}: {e}", dir.display()))?
        .flags();
    if flags.contains(nix::sys::statvfs::FsFlags::ST_NOEXEC) {
        return Err(format!("{} is mounted noexec", dir.display()));
    }
    let path = dir.join(format!("{FILE_PREFIX}{:016x}.so", content_hash(LIBRARY)));
    match is_ours(&path) {
        Ok(true) => return Ok(path),
        Ok(false) => {
            return Err(format!(
                "{} is there and is not this handoff's library",
                path.display()
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let written = (|| {
        let mut file = tempfile::Builder::new()
            .prefix(&format!(".{FILE_PREFIX}"))
            .tempfile_in(dir)?;
        file.write_all(LIBRARY)?;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        // Another supervisor may have put the same bytes there meanwhile:
        // either copy is right.
        file.persist_noclobber(&path).map_err(|e| e.error).map(drop)
    })();
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot write {}: {e}", path.display())),
    }
    match is_ours(&path) {
        Ok(true) => Ok(path),
        _ => Err(format!(
            "{} is not this handoff's library once written",
            path.display()
        )),
    }
}

/// Whether `path` is a regular file of this user's that nobody else can
/// write, holding exactly the library (never follows a symlink).
fn is_ours(path: &Path) -> io::Result<bool> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file()
        || meta.uid() != nix::unistd::geteuid().as_raw()
        || meta.mode() & 0o022 != 0
        || meta.len() != LIBRARY.len() as u64
    {
        return Ok(false);
    }
    let mut content = Vec::with_capacity(LIBRARY.len());
    file.read_to_end(&mut content)?;
    Ok(content == LIBRARY)
}

fn make_memfd() -> Result<OwnedFd, PreloadError> {
    let memfd = memfd_create(
        c"handoff-preload",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| PreloadError::Memfd(e.into()))?;
    let mut file = File::from(memfd);
    file.write_all(LIBRARY).map_err(PreloadError::Memfd)?;
    // Sealed: no process that inherits it can change the code every
    // server maps. (The library checks these seals before it closes a
    // memfd it was loaded from.)
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

/// `LD_PRELOAD` with the library (`path`) first, then whatever the child
/// would have had, less another handoff's library (this handoff runs
/// under one with `preload`).
pub fn ld_preload(path: &OsStr, before: Option<&OsStr>) -> OsString {
    let mut value = path.to_os_string();
    let before = before.map(|b| b.to_string_lossy().into_owned());
    for element in before.iter().flat_map(|b| b.split([':', ' '])) {
        let name = element.rsplit('/').next().unwrap_or(element);
        if element.is_empty()
            || element.starts_with("/proc/self/fd/")
            || name.starts_with(FILE_PREFIX)
        {
            continue;
        }
        value.push(":");
        value.push(element);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_written_once_then_found() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = install_file(dir.path()).expect("written");
        assert!(path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(FILE_PREFIX) && n.ends_with(".so")));
        assert_eq!(std::fs::read(&path).expect("read"), LIBRARY);
        let mode = std::fs::metadata(&path).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o644, "readable by a child of another user");
        assert_eq!(install_file(dir.path()).expect("found"), path);
        // Nothing left behind but the library.
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn a_file_that_is_not_the_library_is_never_used() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = install_file(dir.path()).expect("written");
        // Someone else's bytes under the name: refused, not overwritten.
        std::fs::remove_file(&path).expect("rm");
        std::fs::write(&path, b"not the library").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = install_file(dir.path()).unwrap_err();
        assert!(e.contains("is not this handoff's library"), "{e}");
        assert_eq!(std::fs::read(&path).expect("read"), b"not the library");
        // The right bytes, but writable by others: refused too.
        std::fs::remove_file(&path).expect("rm");
        std::fs::write(&path, LIBRARY).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(install_file(dir.path()).is_err());
        // A symlink to the right bytes is not followed.
        std::fs::remove_file(&path).expect("rm");
        let real = dir.path().join("real.so");
        std::fs::write(&real, LIBRARY).expect("write");
        std::os::unix::fs::symlink(&real, &path).expect("symlink");
        assert!(install_file(dir.path()).is_err());
    }

    #[test]
    fn the_memfd_holds_the_library_sealed() {
        let fd = make_memfd().expect("a memfd");
        let mut file = File::from(fd.try_clone().expect("dup"));
        assert_eq!(
            file.metadata().expect("fstat").len() as usize,
            LIBRARY.len()
        );
        assert!(LIBRARY.starts_with(b"\x7fELF"));
        assert!(file.write_all(b"x").is_err(), "the memfd is sealed");
        // The seals the library checks before it closes the memfd.
        // SAFETY: fcntl F_GET_SEALS on an fd of ours.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        assert_eq!(seals, 0xf);
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
    fn ld_preload_puts_the_library_first_and_drops_another_handoffs() {
        let lib = OsStr::new("/tmp/handoff-preload-1.so");
        assert_eq!(ld_preload(lib, None), "/tmp/handoff-preload-1.so");
        assert_eq!(
            ld_preload(lib, Some(OsStr::new(""))),
            "/tmp/handoff-preload-1.so"
        );
        assert_eq!(
            ld_preload(lib, Some(OsStr::new("/usr/lib/libjemalloc.so"))),
            "/tmp/handoff-preload-1.so:/usr/lib/libjemalloc.so"
        );
        assert_eq!(
            ld_preload(
                OsStr::new("/proc/self/fd/5"),
                Some(OsStr::new(
                    "/proc/self/fd/4 /a.so:/tmp/handoff-preload-2.so"
                ))
            ),
            "/proc/self/fd/5:/a.so"
        );
    }
}
