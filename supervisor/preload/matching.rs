//! Which held socket a server's `bind()` asks for: the address matching of
//! the preload library, kept free of system calls (and of std: the library
//! is `no_std`) so that handoff's unit tests can check it. The library
//! compiles this file as its own module; handoff includes it only in tests.
//!
//! A server writes its address the way its user typed it: `0.0.0.0` or
//! `::` for "everywhere", `localhost` (which resolves to `127.0.0.1` or
//! `::1`), a v4-mapped `::ffff:a.b.c.d`. handoff's config decides what is
//! exposed, so any of those finds the held socket on the same port; two
//! different specific addresses never match.

/// A socket address, reduced to what matching needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    V4 {
        ip: [u8; 4],
        port: u16,
    },
    /// Never a v4-mapped address: those are read as `V4`.
    V6 {
        ip: [u8; 16],
        port: u16,
    },
    /// A path (without its NUL) or an abstract name (starting with a NUL
    /// byte, all `len` bytes significant).
    Unix {
        path: [u8; UNIX_PATH_MAX],
        len: usize,
    },
    /// Another family, an unnamed unix address, a short buffer.
    Other,
}

/// `sizeof(sun_path)` on Linux.
pub const UNIX_PATH_MAX: usize = 108;

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Reads a `struct sockaddr` of `bytes.len()` bytes as the kernel would.
pub fn parse(bytes: &[u8]) -> Addr {
    let Some(family) = bytes.get(0..2) else {
        return Addr::Other;
    };
    let family = u16::from_ne_bytes([family[0], family[1]]);
    let port = |b: &[u8]| match b.get(2..4) {
        Some(p) => u16::from_be_bytes([p[0], p[1]]),
        None => 0,
    };
    match family {
        // The kernel wants a whole sockaddr_in (16 bytes).
        AF_INET => match bytes.get(4..8).filter(|_| bytes.len() >= 16) {
            Some(ip) => Addr::V4 {
                ip: [ip[0], ip[1], ip[2], ip[3]],
                port: port(bytes),
            },
            None => Addr::Other,
        },
        AF_INET6 => {
            let Some(raw) = bytes.get(8..24) else {
                return Addr::Other;
            };
            let mut ip = [0u8; 16];
            ip.copy_from_slice(raw);
            let port = port(bytes);
            if ip[..10].iter().all(|&b| b == 0) && ip[10] == 0xff && ip[11] == 0xff {
                Addr::V4 {
                    ip: [ip[12], ip[13], ip[14], ip[15]],
                    port,
                }
            } else {
                Addr::V6 { ip, port }
            }
        }
        AF_UNIX => {
            let name = bytes.get(2..).unwrap_or(&[]);
            let name = match name.first() {
                // Unnamed (autobind): nothing to match.
                None => return Addr::Other,
                Some(0) => name,
                Some(_) => match name.iter().position(|&b| b == 0) {
                    Some(end) => &name[..end],
                    None => name,
                },
            };
            if name.len() > UNIX_PATH_MAX {
                return Addr::Other;
            }
            let mut path = [0u8; UNIX_PATH_MAX];
            path[..name.len()].copy_from_slice(name);
            Addr::Unix {
                path,
                len: name.len(),
            }
        }
        _ => Addr::Other,
    }
}

impl Addr {
    fn port(&self) -> Option<u16> {
        match *self {
            Addr::V4 { port, .. } | Addr::V6 { port, .. } => Some(port),
            _ => None,
        }
    }

    fn is_wildcard(&self) -> bool {
        match self {
            Addr::V4 { ip, .. } => *ip == [0; 4],
            Addr::V6 { ip, .. } => *ip == [0; 16],
            _ => false,
        }
    }

    fn is_loopback(&self) -> bool {
        match self {
            Addr::V4 { ip, .. } => ip[0] == 127,
            Addr::V6 { ip, .. } => ip[..15].iter().all(|&b| b == 0) && ip[15] == 1,
            _ => false,
        }
    }

    fn same_family(&self, other: &Addr) -> bool {
        matches!(
            (self, other),
            (Addr::V4 { .. }, Addr::V4 { .. }) | (Addr::V6 { .. }, Addr::V6 { .. })
        )
    }

    /// A unix path socket's path (not an abstract name).
    pub fn unix_path(&self) -> Option<&[u8]> {
        match self {
            Addr::Unix { path, len } if *len > 0 && path[0] != 0 => path.get(..*len),
            _ => None,
        }
    }
}

/// How well the held socket at `held` serves a `bind()` to `asked`: `None`
/// when it does not, else a rank, lower is better (the library takes the
/// best of all held sockets of the same type).
///
/// Unix paths match here only byte for byte; the library also matches a
/// path that names the held socket's file another way (a relative path, a
/// symlinked directory) by its inode.
pub fn rank(asked: &Addr, held: &Addr) -> Option<u8> {
    if let (Addr::Unix { .. }, Addr::Unix { .. }) = (asked, held) {
        return (asked == held).then_some(0);
    }
    let (Some(port), Some(held_port)) = (asked.port(), held.port()) else {
        return None;
    };
    // Port 0 asks the kernel for a free port: never a held one.
    if port == 0 || port != held_port {
        return None;
    }
    let same = asked.same_family(held);
    if asked == held {
        Some(0)
    } else if held.is_wildcard() {
        // The server asked for less than handoff exposes: the config
        // decides exposure.
        Some(if same { 1 } else { 2 })
    } else if asked.is_loopback() && held.is_loopback() {
        // `localhost` resolved to the other family, or 127.0.0.2.
        Some(3)
    } else if asked.is_wildcard() {
        Some(if same { 4 } else { 5 })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&a);
        b
    }

    fn v6(a: [u8; 16], port: u16) -> Vec<u8> {
        let mut b = vec![0u8; 28];
        b[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[8..24].copy_from_slice(&a);
        b
    }

    fn unix(name: &[u8]) -> Vec<u8> {
        let mut b = AF_UNIX.to_ne_bytes().to_vec();
        b.extend_from_slice(name);
        b
    }

    const ANY6: [u8; 16] = [0; 16];
    const LO6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    fn r(asked: &[u8], held: &[u8]) -> Option<u8> {
        rank(&parse(asked), &parse(held))
    }

    #[test]
    fn exact_address_is_best() {
        assert_eq!(r(&v4([127, 0, 0, 1], 80), &v4([127, 0, 0, 1], 80)), Some(0));
        assert_eq!(r(&v6(LO6, 80), &v6(LO6, 80)), Some(0));
    }

    #[test]
    fn a_different_port_or_port_zero_never_matches() {
        assert_eq!(r(&v4([127, 0, 0, 1], 81), &v4([127, 0, 0, 1], 80)), None);
        assert_eq!(r(&v4([0; 4], 0), &v4([0; 4], 0)), None);
    }

    #[test]
    fn the_wildcard_a_server_asks_for_finds_the_held_address() {
        assert_eq!(r(&v4([0; 4], 80), &v4([127, 0, 0, 1], 80)), Some(4));
        assert_eq!(r(&v6(ANY6, 80), &v4([127, 0, 0, 1], 80)), Some(5));
        assert_eq!(r(&v6(ANY6, 80), &v6(LO6, 80)), Some(4));
    }

    #[test]
    fn a_held_wildcard_serves_any_address_on_its_port() {
        assert_eq!(r(&v4([10, 1, 2, 3], 80), &v4([0; 4], 80)), Some(1));
        assert_eq!(r(&v4([127, 0, 0, 1], 80), &v6(ANY6, 80)), Some(2));
        // Held wildcard beats a held specific address of the other family.
        assert!(r(&v4([0; 4], 80), &v4([0; 4], 80)) < r(&v4([0; 4], 80), &v6(LO6, 80)));
    }

    #[test]
    fn localhost_of_either_family_finds_held_loopback() {
        assert_eq!(r(&v6(LO6, 80), &v4([127, 0, 0, 1], 80)), Some(3));
        assert_eq!(r(&v4([127, 0, 0, 1], 80), &v6(LO6, 80)), Some(3));
    }

    #[test]
    fn two_specific_addresses_never_match() {
        assert_eq!(r(&v4([10, 1, 2, 3], 80), &v4([127, 0, 0, 1], 80)), None);
        assert_eq!(r(&v4([127, 0, 0, 1], 80), &v4([10, 1, 2, 3], 80)), None);
    }

    #[test]
    fn v4_mapped_reads_as_v4() {
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            parse(&v6(mapped, 80)),
            Addr::V4 {
                ip: [127, 0, 0, 1],
                port: 80
            }
        );
        assert_eq!(r(&v6(mapped, 80), &v4([127, 0, 0, 1], 80)), Some(0));
    }

    #[test]
    fn unix_paths_match_byte_for_byte_and_abstract_names_in_full() {
        assert_eq!(r(&unix(b"/run/a.sock\0"), &unix(b"/run/a.sock")), Some(0));
        assert_eq!(r(&unix(b"/run/a.sock"), &unix(b"/run/b.sock")), None);
        assert_eq!(r(&unix(b"\0name"), &unix(b"\0name")), Some(0));
        assert_eq!(r(&unix(b"\0name"), &unix(b"\0name\0")), None);
        assert_eq!(parse(&unix(b"/a\0")).unix_path(), Some(&b"/a"[..]));
        assert_eq!(parse(&unix(b"\0a")).unix_path(), None);
        // Autobind: no name.
        assert_eq!(parse(&unix(b"")), Addr::Other);
    }

    #[test]
    fn short_or_foreign_buffers_are_other() {
        assert_eq!(parse(&[]), Addr::Other);
        assert_eq!(parse(&v4([1, 2, 3, 4], 80)[..6]), Addr::Other);
        assert_eq!(parse(&v4([1, 2, 3, 4], 80)[..15]), Addr::Other);
        assert_eq!(parse(&v6(LO6, 80)[..20]), Addr::Other);
        assert_eq!(parse(&[17, 0, 0, 0]), Addr::Other);
        assert_eq!(parse(&unix(&[b'a'; 200])), Addr::Other);
        assert_eq!(rank(&Addr::Other, &Addr::Other), None);
    }

    #[test]
    fn families_do_not_cross_with_unix() {
        assert_eq!(r(&unix(b"/a"), &v4([0; 4], 80)), None);
        assert_eq!(r(&v4([0; 4], 80), &unix(b"/a")), None);
    }
}
