//! What the user asks for: an address to listen on ([`ListenAddr`]) and a
//! `[[socket]]` ([`SocketSpec`]), parsed and checked before anything is
//! bound.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use socket2::SockAddr;

/// Where a socket listens, parsed from `tcp://HOST:PORT`, `udp://HOST:PORT`
/// or `unix:///path` (`unix://relative/path`, `unix://@abstract`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    Unix(PathBuf),
    /// A Linux abstract-namespace unix socket (`unix://@name`).
    UnixAbstract(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AddrError(String);

impl FromStr for ListenAddr {
    type Err = AddrError;

    fn from_str(s: &str) -> Result<Self, AddrError> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            AddrError(format!(
                "`{s}` is not an address: expected tcp://HOST:PORT, udp://HOST:PORT or unix:///path"
            ))
        })?;
        match scheme {
            "tcp" => Ok(ListenAddr::Tcp(
                parse_host_port(rest).map_err(|e| AddrError(format!("`{s}`: {}", e.0)))?,
            )),
            "udp" => Ok(ListenAddr::Udp(
                parse_host_port(rest).map_err(|e| AddrError(format!("`{s}`: {}", e.0)))?,
            )),
            "unix" => {
                if let Some(name) = rest.strip_prefix('@') {
                    if name.is_empty() {
                        return Err(AddrError("unix://@ needs a name after the @".into()));
                    }
                    Ok(ListenAddr::UnixAbstract(name.to_string()))
                } else if rest.is_empty() {
                    Err(AddrError(
                        "unix:// needs a path, e.g. unix:///run/app.sock".into(),
                    ))
                } else {
                    Ok(ListenAddr::Unix(PathBuf::from(rest)))
                }
            }
            other => Err(AddrError(format!(
                "unknown scheme `{other}://` in `{s}`: expected tcp://, udp:// or unix://"
            ))),
        }
    }
}

/// `HOST:PORT`, where HOST may be an IPv4 address, `[IPv6]`, a name that
/// resolves (the first address is used), or empty / `*` for all interfaces.
fn parse_host_port(s: &str) -> Result<SocketAddr, AddrError> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| AddrError("no port: expected HOST:PORT".into()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| AddrError(format!("`{port}` is not a port number (0-65535)")))?;
    if host.is_empty() || host == "*" {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| AddrError(format!("cannot resolve `{host}`: {e}")))?
        .next()
        .ok_or_else(|| AddrError(format!("`{host}` resolves to no address")))
}

impl ListenAddr {
    /// Makes a relative unix socket path relative to `base` (the config
    /// file's directory).
    pub fn rebase(self, base: &Path) -> Self {
        match self {
            ListenAddr::Unix(p) if p.is_relative() => ListenAddr::Unix(base.join(p)),
            other => other,
        }
    }

    pub(super) fn is_unix(&self) -> bool {
        matches!(self, ListenAddr::Unix(_) | ListenAddr::UnixAbstract(_))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp://{a}"),
            ListenAddr::Udp(a) => write!(f, "udp://{a}"),
            ListenAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            ListenAddr::UnixAbstract(n) => write!(f, "unix://@{n}"),
        }
    }
}

/// One `[[socket]]` of the configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SocketSpec {
    /// The name children see in LISTEN_FDNAMES.
    pub name: String,
    pub listen: ListenAddr,
    /// `None`: the kernel's maximum (net.core.somaxconn).
    pub backlog: Option<u32>,
    pub reuse_port: bool,
    /// Permission bits of a unix socket file.
    pub mode: Option<u32>,
    /// How generations hand the socket over: the socket's own `handover`,
    /// else the global one (`--handover`, the file's top-level key). `None`:
    /// neither is set, steer where it works. A `Steer` that came from the
    /// global value may stand on a socket that cannot be steered (unix,
    /// `reuse_port`): it falls back to shared when bound. The config refuses
    /// only a socket's own `steer` there.
    // default: the upgrade state of a handoff from before this key lacks it.
    #[serde(default)]
    pub handover: Option<Handover>,
    /// Socket options (issue 12), each unset unless asked for.
    // default: the upgrade state of a handoff from before this key lacks it.
    #[serde(default)]
    pub options: super::SocketOptions,
}

/// The `handover` key: how a restart moves a socket's new connections from
/// the old generation to the new one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Handover {
    /// Each generation has its own listening socket in one SO_REUSEPORT
    /// group, and new connections go to the newest ready one: the old
    /// generation's queue empties before it is told to stop.
    Steer,
    /// Every generation shares one listening socket (and its queue) until
    /// the old one is told to stop.
    Shared,
}

impl Handover {
    /// Every value, as the file and `--handover` spell them.
    pub const ALL: [Handover; 2] = [Handover::Steer, Handover::Shared];

    /// The key's value as written, or `None` for anything else.
    pub fn from_name(name: &str) -> Option<Handover> {
        Handover::ALL.into_iter().find(|h| h.name() == name)
    }

    /// The value as the file and the flag spell it.
    pub fn name(self) -> &'static str {
        match self {
            Handover::Steer => "steer",
            Handover::Shared => "shared",
        }
    }
}

impl fmt::Display for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks a socket name: it travels in LISTEN_FDNAMES, which is
/// colon-separated, and systemd allows at most 255 characters. The error
/// is a message: it is only shown, at the name's place in the file or
/// with the flag, and nothing branches on it.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "socket name `{name}` must have 1 to 255 characters"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(format!(
            "socket name `{name}` may only contain letters, digits, `_`, `-` and `.`"
        ));
    }
    Ok(())
}

/// A unix socket path must fit in `sun_path` (108 bytes with its NUL on
/// Linux); a longer one cannot be bound, so a config naming one is refused
/// up front rather than at `run`. socket2 knows the limit. The error is a
/// message, only ever shown, like [`validate_name`]'s.
pub fn check_unix_path(path: &Path) -> Result<(), String> {
    SockAddr::unix(path).map(drop).map_err(|_| {
        format!(
            "{} is {} bytes long: a unix socket path can have at most {}",
            path.display(),
            path.as_os_str().len(),
            std::mem::size_of::<libc::sockaddr_un>() - std::mem::size_of::<libc::sa_family_t>() - 1
        )
    })
}
