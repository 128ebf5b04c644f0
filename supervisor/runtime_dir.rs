//! The supervisor's private runtime directory: the children's notify
//! sockets and, while an upgrade runs, the state handed to the new binary
//! (which includes the config's `env`, often secrets).
//!
//! It must be private whatever the umask the supervisor was started with:
//! with a permissive one, another user could send READY=1 to a child's
//! notify socket, read the state, or plant a symlink named `upgrade.json`
//! that the next upgrade would write through. So the directory is 0700
//! (created so, then set so, as a umask can also remove the owner's bits),
//! and files in it are created with O_EXCL|O_NOFOLLOW and mode 0600.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::supervisor::RunError;

/// The supervisor's private directory (mode 0700). Removed when the
/// supervisor stops; kept across an upgrade (same process, same name).
pub(crate) struct RuntimeDir(pub PathBuf);

impl RuntimeDir {
    /// Creates a new directory in $XDG_RUNTIME_DIR (or the temp dir).
    pub(crate) fn create() -> Result<RuntimeDir, RunError> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let error = |source| RunError::RuntimeDir {
            dir: base.clone(),
            source,
        };
        // Created 0700 & ~umask: never more than the owner's, so there is
        // no moment when another user could put a file in it.
        let dir = tempfile::Builder::new()
            .prefix("handoff-")
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(&base)
            .map_err(error)?
            .keep();
        let dir = RuntimeDir(dir);
        // Then exactly 0700: a umask such as 0277 would leave the owner
        // unable to create the sockets. Through an fd opened without
        // following a symlink, so it is our directory that changes.
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&dir.0)
            .and_then(|d| d.set_permissions(Permissions::from_mode(0o700)))
            .map_err(error)?;
        Ok(dir)
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        if crate::sockets::files_kept() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates `path` (in the runtime directory) for writing, mode 0600:
/// whatever was there is removed first, and the new file is created with
/// O_EXCL|O_NOFOLLOW, so a symlink planted there is never followed.
pub(crate) fn create_private_file(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    // Exactly 0600 whatever the umask: the new binary must be able to read
    // it back.
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Opens a file of the runtime directory for reading, not following a
/// symlink.
pub(crate) fn open_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_private_file_is_0600_and_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").expect("write");
        let path = dir.path().join("state");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let mut file = create_private_file(&path).expect("created");
        io::Write::write_all(&mut file, b"state").expect("write");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        assert!(meta.file_type().is_file());
        assert_eq!(meta.mode() & 0o7777, 0o600);
        std::os::unix::fs::symlink(&target, dir.path().join("link")).expect("symlink");
        assert!(open_private_file(&dir.path().join("link")).is_err());
    }
}
