//! The supervisor's private runtime directory: the children's notify
//! sockets and, while an upgrade runs, the state handed to the new binary.

use std::path::PathBuf;

use crate::supervisor::RunError;

/// The supervisor's private directory (mode 0700): the children's notify
/// sockets. Removed when the supervisor stops; kept across an upgrade.
pub(crate) struct RuntimeDir(pub PathBuf);

impl RuntimeDir {
    pub(crate) fn create() -> Result<RuntimeDir, RunError> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        tempfile::Builder::new()
            .prefix("handoff-")
            .tempdir_in(&base)
            .map(|dir| RuntimeDir(dir.keep()))
            .map_err(|source| RunError::RuntimeDir { dir: base, source })
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
