//! A stand-in for systemd: passes sockets to handoff with LISTEN_FDS and
//! LISTEN_FDNAMES (LISTEN_PID set to handoff's own pid by a shell that
//! `exec`s it), and receives what handoff says on NOTIFY_SOCKET, fds too.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use command_fds::{CommandFdExt, FdMapping};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};

use crate::harness::{Handoff, DEADLINE};

/// One datagram handoff sent, and the fds that came with it.
pub struct Message {
    pub text: String,
    pub fds: Vec<OwnedFd>,
}

/// The notify socket systemd would listen on.
pub struct NotifySocket {
    /// What NOTIFY_SOCKET is set to (a path, or `@name`).
    pub address: String,
    received: Arc<(Mutex<Vec<Message>>, Condvar)>,
}

impl NotifySocket {
    /// A socket at a path in `dir`, or in the abstract namespace.
    pub fn bind(dir: &Path, abstract_name: bool) -> NotifySocket {
        let (socket, address) = if abstract_name {
            let name = format!(
                "handoff-test-{}-{}",
                std::process::id(),
                dir.display().to_string().len() ^ rand_ish()
            );
            let addr = UnixAddr::new_abstract(name.as_bytes()).expect("abstract address");
            let fd = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Datagram,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                None,
            )
            .expect("socket");
            nix::sys::socket::bind(fd.as_raw_fd(), &addr).expect("bind abstract");
            (UnixDatagram::from(fd), format!("@{name}"))
        } else {
            let path = dir.join("notify.sock");
            (
                UnixDatagram::bind(&path).expect("bind notify"),
                path.display().to_string(),
            )
        };
        let received: Arc<(Mutex<Vec<Message>>, Condvar)> = Arc::default();
        let sink = received.clone();
        std::thread::spawn(move || loop {
            let mut buf = [0u8; 4096];
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 8]);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let Ok(msg) = recvmsg::<()>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            ) else {
                return;
            };
            let mut fds = Vec::new();
            for c in msg.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just gave us these fds.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            let n = msg.bytes;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.0.lock().expect("lock").push(Message { text, fds });
            sink.1.notify_all();
        });
        NotifySocket { address, received }
    }

    /// Waits for a message (after the first `from`) containing `needle`;
    /// returns its index.
    pub fn wait_for(&self, needle: &str, from: usize) -> usize {
        let deadline = Instant::now() + DEADLINE;
        let mut got = self.received.0.lock().expect("lock");
        loop {
            if let Some(i) = got.iter().skip(from).position(|m| m.text.contains(needle)) {
                return from + i;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| {
                    panic!("no notify message with {needle:?}; got {:?}", texts(&got))
                });
            got = self.received.1.wait_timeout(got, left).expect("lock").0;
        }
    }

    pub fn texts(&self) -> Vec<String> {
        texts(&self.received.0.lock().expect("lock"))
    }

    /// Takes the fds that came with message `i`.
    pub fn take_fds(&self, i: usize) -> Vec<OwnedFd> {
        std::mem::take(&mut self.received.0.lock().expect("lock")[i].fds)
    }
}

fn texts(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.text.clone()).collect()
}

fn rand_ish() -> usize {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0)
}

/// Starts `handoff run ARGS` the way systemd would: `sockets` as fds 3..
/// with their names, LISTEN_PID its own pid, and the given environment.
pub fn activate(
    dir: &Path,
    sockets: Vec<(&str, OwnedFd)>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Handoff {
    activate_binary(
        Path::new(crate::harness::handoff_bin()),
        dir,
        sockets,
        env,
        args,
    )
}

/// `activate`, with another handoff binary (a copy an upgrade replaces).
pub fn activate_binary(
    binary: &Path,
    dir: &Path,
    sockets: Vec<(&str, OwnedFd)>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Handoff {
    let names: Vec<&str> = sockets.iter().map(|(n, _)| *n).collect();
    let mut cmd = std::process::Command::new("/bin/sh");
    // Like systemd: no LISTEN_* at all when there is nothing to pass.
    if !sockets.is_empty() {
        cmd.env("LISTEN_FDS", sockets.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"));
    }
    // $$ is the shell's pid, and exec keeps it: LISTEN_PID is handoff's.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$@\"")
        .arg("sh")
        .arg(binary)
        .arg("run")
        .arg("--control")
        .arg(dir.join("control.sock"))
        .args(args)
        .env("HANDOFF_LOG", "debug")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let mappings = sockets
        .into_iter()
        .enumerate()
        .map(|(i, (_, fd))| FdMapping {
            parent_fd: fd,
            child_fd: 3 + i as i32,
        })
        .collect();
    cmd.fd_mappings(mappings).expect("distinct fds");
    Handoff::spawn(cmd, dir)
}
