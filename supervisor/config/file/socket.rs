//! A `[[socket]]` of the file, typed: its address, backlog, mode,
//! handover and options (`socket_options.rs`).

use super::keys::SOCKET_KEYS;
use super::socket_options::{options_from_raw, RawOptions};
use super::*;

/// A `[[socket]]`, each value of the right type but not yet checked. A
/// `name` or `listen` that is missing or of the wrong type is None (and
/// reported): the socket cannot be made, its other mistakes are still
/// found.
pub(super) struct RawSocket {
    pub(super) name: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    backlog: Option<Spanned<i64>>,
    reuse_port: Option<bool>,
    mode: Option<Spanned<IntOrStr>>,
    handover: Option<Spanned<String>>,
    // The socket options (issue 12): `socket_options.rs`.
    ipv6_only: Option<Spanned<bool>>,
    free_bind: Option<Spanned<bool>>,
    bind_to_device: Option<Spanned<String>>,
    keepalive: Option<Spanned<bool>>,
    keepalive_idle: Option<Spanned<IntOrStr>>,
    keepalive_interval: Option<Spanned<IntOrStr>>,
    keepalive_count: Option<Spanned<i64>>,
    defer_accept: Option<Spanned<IntOrStr>>,
    fast_open: Option<Spanned<i64>>,
    receive_buffer: Option<Spanned<i64>>,
    send_buffer: Option<Spanned<i64>>,
    no_delay: Option<Spanned<bool>>,
    owner: Option<Spanned<IntOrStr>>,
    group: Option<Spanned<IntOrStr>>,
}

impl RawSocket {
    /// Reads one `[[socket]]` table: it stands where its header does.
    pub(super) fn read(r: &mut Reader, mut t: Table) -> Spanned<RawSocket> {
        const SECONDS: &str = "a number of seconds or a duration such as \"30s\"";
        const ID: &str = "a name or a number";
        r.known_keys(&t, SOCKET_KEYS);
        let name = r.string(&mut t, "name");
        let listen = r.string(&mut t, "listen");
        let raw = RawSocket {
            name: r.require(&t, "name", name),
            listen: r.require(&t, "listen", listen),
            backlog: r.integer(&mut t, "backlog"),
            reuse_port: r.bool(&mut t, "reuse_port").map(Spanned::into_inner),
            mode: r.int_or_str(&mut t, "mode", "a file mode such as 0o660 or \"0660\""),
            handover: r.string(&mut t, "handover"),
            ipv6_only: r.bool(&mut t, "ipv6_only"),
            free_bind: r.bool(&mut t, "free_bind"),
            bind_to_device: r.string(&mut t, "bind_to_device"),
            keepalive: r.bool(&mut t, "keepalive"),
            keepalive_idle: r.int_or_str(&mut t, "keepalive_idle", SECONDS),
            keepalive_interval: r.int_or_str(&mut t, "keepalive_interval", SECONDS),
            keepalive_count: r.integer(&mut t, "keepalive_count"),
            defer_accept: r.int_or_str(&mut t, "defer_accept", SECONDS),
            fast_open: r.integer(&mut t, "fast_open"),
            receive_buffer: r.integer(&mut t, "receive_buffer"),
            send_buffer: r.integer(&mut t, "send_buffer"),
            no_delay: r.bool(&mut t, "no_delay"),
            owner: r.int_or_str(&mut t, "owner", ID),
            group: r.int_or_str(&mut t, "group", ID),
        };
        Spanned::new(t.span(), raw)
    }

    fn options(&self) -> RawOptions<'_> {
        RawOptions {
            ipv6_only: &self.ipv6_only,
            free_bind: &self.free_bind,
            bind_to_device: &self.bind_to_device,
            keepalive: &self.keepalive,
            keepalive_idle: &self.keepalive_idle,
            keepalive_interval: &self.keepalive_interval,
            keepalive_count: &self.keepalive_count,
            defer_accept: &self.defer_accept,
            fast_open: &self.fast_open,
            receive_buffer: &self.receive_buffer,
            send_buffer: &self.send_buffer,
            no_delay: &self.no_delay,
            owner: &self.owner,
            group: &self.group,
        }
    }
}

pub(super) fn socket_from_raw(
    src: &Source,
    raw: &RawSocket,
    base: &Path,
) -> Result<SocketSpec, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if let Some(name) = &raw.name {
        if let Err(e) = sockets::validate_name(name.get_ref()) {
            errors.push(src.error(name, e));
        }
    }
    let listen = raw
        .listen
        .as_ref()
        .and_then(|l| match l.get_ref().parse::<ListenAddr>() {
            Ok(addr) => {
                let addr = addr.rebase(base);
                if let ListenAddr::Unix(path) = &addr {
                    if let Err(e) = sockets::check_unix_path(path) {
                        errors.push(src.error(l, e));
                    }
                }
                Some(addr)
            }
            Err(e) => {
                errors.push(src.error(l, e.to_string()));
                None
            }
        });
    let backlog = match &raw.backlog {
        Some(b) if *b.get_ref() < 1 || *b.get_ref() > i64::from(i32::MAX) => {
            errors.push(src.error(
                b,
                format!("backlog must be a positive number, not {}", b.get_ref()),
            ));
            None
        }
        Some(b) => u32::try_from(*b.get_ref()).ok(),
        None => None,
    };
    let mode = match &raw.mode {
        None => None,
        Some(m) => match parse_mode(m.get_ref()) {
            Ok(mode) => Some(mode),
            Err(e) => {
                errors.push(src.error(m, e));
                None
            }
        },
    };
    if let (Some(m), Some(listen)) = (&raw.mode, &listen) {
        if !matches!(listen, ListenAddr::Unix(_)) {
            errors.push(src.error(m, "mode only applies to unix:// sockets with a path"));
        }
    }
    let reuse_port = raw.reuse_port.unwrap_or(false);
    let handover = match &raw.handover {
        None => None,
        Some(h) => match parse_handover(src, h) {
            Ok(handover) => Some(handover),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    // Only the socket's own `steer` is a mistake here: the top-level one is
    // a default, and such a socket falls back to shared under it.
    if let (Some(Handover::Steer), Some(h), Some(listen)) = (handover, &raw.handover, &listen) {
        if matches!(listen, ListenAddr::Unix(_) | ListenAddr::UnixAbstract(_)) {
            errors.push(src.error(
                h,
                "handover = \"steer\" on a unix:// socket: unix sockets have no SO_REUSEPORT: they are always shared; remove the line or set \"shared\"",
            ));
        } else if reuse_port {
            errors.push(src.error(
                h,
                "handover = \"steer\" with reuse_port = true: reuse_port lets other processes join the port's SO_REUSEPORT group, which steering cannot allow (they would take connections meant for the new generation): pick one",
            ));
        }
    }
    let options = options_from_raw(src, &raw.options(), listen.as_ref(), &mut errors);
    match (&raw.name, listen) {
        (Some(name), Some(listen)) if errors.is_empty() => Ok(SocketSpec {
            name: name.get_ref().clone(),
            listen,
            backlog,
            reuse_port,
            mode,
            handover,
            options,
        }),
        _ => Err(errors),
    }
}

/// A `handover` value, top-level or a socket's.
pub(super) fn parse_handover(src: &Source, raw: &Spanned<String>) -> Result<Handover, ConfigError> {
    Handover::from_name(raw.get_ref()).ok_or_else(|| {
        let valid: Vec<String> = Handover::ALL.iter().map(|h| format!("\"{h}\"")).collect();
        src.error(
            raw,
            format!(
                "handover = \"{}\": expected {}",
                raw.get_ref().escape_debug(),
                valid.join(" or ")
            ),
        )
    })
}
