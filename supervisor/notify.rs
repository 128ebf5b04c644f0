//! The supervisor's side of sd_notify(3): one datagram socket per child.
//!
//! A socket per child, rather than one shared socket and SCM_CREDENTIALS,
//! tells the supervisor which child spoke even when the message comes from a
//! process the child forked (a gunicorn arbiter's worker, a shell wrapper).
//! The sockets live in the supervisor's private runtime directory (mode
//! 0700), so no other user can send READY=1 in a child's name.
//!
//! A child that runs as another user (`user = "www-data"`) must still be
//! able to send to its socket: that socket alone is handed to the child's
//! user ([`hand_to`]: owner uid, mode still 0600), and the directory
//! becomes 0711, traversable but not listable. Every other file in it (the
//! other children's sockets, an upgrade's state) stays 0600 and the
//! supervisor's, so the child can reach its own socket and nothing else.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::UnixDatagram;

/// One thing a child said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Ready,
    Stopping,
    Reloading,
    Status(String),
    /// Anything else (MAINPID=, ERRNO=, WATCHDOG=1, ...): kept for the log.
    Other(String),
}

/// Parses one datagram: newline-separated `KEY=VALUE` assignments.
pub fn parse(datagram: &[u8]) -> Vec<Notice> {
    String::from_utf8_lossy(datagram)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| match line.split_once('=') {
            Some(("READY", "1")) => Notice::Ready,
            Some(("STOPPING", "1")) => Notice::Stopping,
            Some(("RELOADING", "1")) => Notice::Reloading,
            Some(("STATUS", text)) => Notice::Status(text.to_string()),
            _ => Notice::Other(line.to_string()),
        })
        .collect()
}

/// A bound notify socket; its file is removed when it is dropped.
#[derive(Debug)]
pub struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
}

/// sd_notify messages are small; systemd itself reads at most this much.
const MAX_DATAGRAM: usize = 4096;

impl NotifySocket {
    /// Binds a socket file of mode 0600, whatever the umask.
    pub fn bind(path: PathBuf) -> io::Result<NotifySocket> {
        let socket = UnixDatagram::bind(&path)?;
        let notify = NotifySocket { path, socket };
        // bind(2) creates the file with 0777 & ~umask. Narrowing the umask
        // around it would change it for every thread of the process (a
        // child forked meanwhile would inherit it), so the mode is set
        // after. By path: fchmod on a socket's fd leaves its file alone.
        // The file is in the supervisor's own 0700 directory, so nobody
        // else can reach it in between, or swap it for a symlink.
        std::fs::set_permissions(&notify.path, std::fs::Permissions::from_mode(0o600))?;
        Ok(notify)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes over a bound notify socket (after an upgrade's exec).
    pub fn from_fd(path: PathBuf, fd: std::os::fd::OwnedFd) -> io::Result<NotifySocket> {
        let std_socket = std::os::unix::net::UnixDatagram::from(fd);
        std_socket.set_nonblocking(true)?;
        Ok(NotifySocket {
            path,
            socket: UnixDatagram::from_std(std_socket)?,
        })
    }

    /// Waits for the next datagram and parses it.
    pub async fn recv(&self) -> io::Result<Vec<Notice>> {
        let mut buf = [0u8; MAX_DATAGRAM];
        let n = self.socket.recv(&mut buf).await?;
        Ok(parse(&buf[..n]))
    }
}

/// Lets a child that runs with `creds` send to the notify socket at
/// `path`: the socket file becomes its user's, the runtime directory
/// traversable ([`crate::runtime_dir::open_to_children`]). Fails, naming
/// the directory, when a directory above the runtime directory keeps that
/// user out (XDG_RUNTIME_DIR=/run/user/0 is 0700): the child could not
/// say READY=1, and would only time out.
pub fn hand_to(path: &Path, creds: &crate::config::Credentials) -> io::Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    crate::runtime_dir::open_to_children(dir)?;
    if let Some(blocked) = dir.parent().and_then(|d| first_unsearchable(d, creds)) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not searchable by uid {} (gid {}), so the notify socket in {} is out of its reach; start handoff with XDG_RUNTIME_DIR (or TMPDIR, without XDG_RUNTIME_DIR) set to a directory that user can traverse, e.g. /tmp",
                blocked.display(),
                creds.uid,
                creds.gid,
                dir.display()
            ),
        ));
    }
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(creds.uid)),
        Some(nix::unistd::Gid::from_raw(creds.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// The first of `dir` and its ancestors that a process with `creds` cannot
/// search (execute permission, from the mode bits: an ACL is not read).
fn first_unsearchable(dir: &Path, creds: &crate::config::Credentials) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if creds.uid == 0 {
        return None;
    }
    dir.ancestors().find_map(|d| {
        let meta = std::fs::metadata(d).ok()?;
        let mode = meta.mode();
        let bit = if meta.uid() == creds.uid {
            0o100
        } else if meta.gid() == creds.gid || creds.groups.contains(&meta.gid()) {
            0o010
        } else {
            0o001
        };
        (mode & bit == 0).then(|| d.to_path_buf())
    })
}

impl std::os::fd::AsRawFd for NotifySocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=Gunicorn arbiter booted"),
            vec![
                Notice::Ready,
                Notice::Status("Gunicorn arbiter booted".into())
            ]
        );
        assert_eq!(
            parse(b"READY=0\nMAINPID=4"),
            vec![
                Notice::Other("READY=0".into()),
                Notice::Other("MAINPID=4".into())
            ]
        );
        assert_eq!(parse(b"STOPPING=1\n\n"), vec![Notice::Stopping]);
    }

    #[test]
    fn a_closed_ancestor_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("a/b");
        std::fs::create_dir_all(&inner).unwrap();
        let creds = |uid, gid| crate::config::Credentials {
            user: "u".into(),
            uid,
            gid,
            groups: vec![],
        };
        let meta = std::fs::metadata(dir.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let (owner, group) = (meta.uid(), meta.gid());
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(&dir.path().join("a"), 0o700);
        // Another user, in no group of `a`: kept out at `a`.
        let stranger = creds(owner + 4242, group + 4242);
        assert_eq!(
            first_unsearchable(&inner, &stranger),
            Some(dir.path().join("a"))
        );
        set(&dir.path().join("a"), 0o711);
        assert_eq!(first_unsearchable(&inner, &stranger), None);
        set(&dir.path().join("a"), 0o710);
        assert!(first_unsearchable(&inner, &stranger).is_some());
        // The group's bit counts for a member.
        let member = crate::config::Credentials {
            groups: vec![group],
            ..stranger
        };
        assert_eq!(first_unsearchable(&inner, &member), None);
    }

    #[tokio::test]
    async fn receives_from_a_client() {
        let dir = tempfile::tempdir().unwrap();
        let sock = NotifySocket::bind(dir.path().join("n.sock")).unwrap();
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1", sock.path()).unwrap();
        assert_eq!(sock.recv().await.unwrap(), vec![Notice::Ready]);
        let path = sock.path().to_path_buf();
        drop(sock);
        assert!(!path.exists());
    }
}
