//! The file of a unix socket: removing a stale one before a bind, and
//! removing the one this supervisor created, and only that one, when the
//! socket closes.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

/// A unix socket file this supervisor created, known by its inode, so that
/// a file someone else put at the same path later is never removed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreatedFile {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
}

impl CreatedFile {
    pub(super) fn new(path: PathBuf) -> io::Result<CreatedFile> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(&path)?;
        Ok(CreatedFile {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Removes the file if it is still ours. Best effort: it may be gone.
    pub(super) fn remove(&self) {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A unix socket file left behind by a dead process is replaced; one that
/// something still listens on, or a file that is not a socket, is not.
pub(super) fn remove_stale_unix_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    // A non-blocking connect: one to a listener whose backlog is full
    // would otherwise wait; EAGAIN means someone listens, too.
    let probe = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on it",
        )),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on it",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}
