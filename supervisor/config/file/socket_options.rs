//! The socket options of a `[[socket]]` (issue 12), as systemd's `.socket`
//! units have them: typed, checked against their ranges and against the
//! kind of socket (`SocketOptions::misfits`), each mistake at its key.

use toml::Spanned;

use super::super::position::Source;
use super::super::values::parse_duration;
use super::super::ConfigError;
use super::reader::IntOrStr;
use crate::sockets::{ListenAddr, SocketOptions};

/// The option keys of a `[[socket]]`, as `RawSocket` has them.
pub(super) struct RawOptions<'a> {
    pub ipv6_only: &'a Option<Spanned<bool>>,
    pub free_bind: &'a Option<Spanned<bool>>,
    pub bind_to_device: &'a Option<Spanned<String>>,
    pub keepalive: &'a Option<Spanned<bool>>,
    pub keepalive_idle: &'a Option<Spanned<IntOrStr>>,
    pub keepalive_interval: &'a Option<Spanned<IntOrStr>>,
    pub keepalive_count: &'a Option<Spanned<i64>>,
    pub defer_accept: &'a Option<Spanned<IntOrStr>>,
    pub fast_open: &'a Option<Spanned<i64>>,
    pub receive_buffer: &'a Option<Spanned<i64>>,
    pub send_buffer: &'a Option<Spanned<i64>>,
    pub no_delay: &'a Option<Spanned<bool>>,
    pub owner: &'a Option<Spanned<IntOrStr>>,
    pub group: &'a Option<Spanned<IntOrStr>>,
}

/// The kernel's limits (include/net/tcp.h): MAX_TCP_KEEPIDLE,
/// MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT.
const MAX_KEEPALIVE_SECS: i64 = 32767;
const MAX_KEEPALIVE_COUNT: i64 = 127;
/// An int socket option takes at most a C int.
const MAX_INT: i64 = i32::MAX as i64;
/// IFNAMSIZ, its NUL included.
const MAX_DEVICE_NAME: usize = 15;

/// The options, or None where one was refused (each refusal is in
/// `errors`). `listen` is None when the address itself was refused: the
/// kind checks then wait for an address.
pub(super) fn options_from_raw(
    src: &Source,
    raw: &RawOptions,
    listen: Option<&ListenAddr>,
    errors: &mut Vec<ConfigError>,
) -> SocketOptions {
    let bool_of = |v: &Option<Spanned<bool>>| v.as_ref().map(|b| *b.get_ref());
    let mut seconds = |key: &str, v: &Option<Spanned<IntOrStr>>, min: i64, max: i64| {
        let v = v.as_ref()?;
        match parse_seconds(key, v.get_ref(), min, max) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(src.error(v, e));
                None
            }
        }
    };
    let keepalive_idle = seconds("keepalive_idle", raw.keepalive_idle, 1, MAX_KEEPALIVE_SECS);
    let keepalive_interval = seconds(
        "keepalive_interval",
        raw.keepalive_interval,
        1,
        MAX_KEEPALIVE_SECS,
    );
    let defer_accept = seconds("defer_accept", raw.defer_accept, 0, MAX_INT);
    let mut int = |key: &str, v: &Option<Spanned<i64>>, min: i64, max: i64| {
        let v = v.as_ref()?;
        let n = *v.get_ref();
        match u32::try_from(n) {
            Ok(u) if (min..=max).contains(&n) => Some(u),
            _ => {
                errors
                    .push(src.error(v, format!("{key} must be between {min} and {max}, not {n}")));
                None
            }
        }
    };
    let keepalive_count = int(
        "keepalive_count",
        raw.keepalive_count,
        1,
        MAX_KEEPALIVE_COUNT,
    );
    let fast_open = int("fast_open", raw.fast_open, 0, MAX_INT);
    let receive_buffer = int("receive_buffer", raw.receive_buffer, 1, MAX_INT);
    let send_buffer = int("send_buffer", raw.send_buffer, 1, MAX_INT);
    let bind_to_device = raw.bind_to_device.as_ref().and_then(|d| {
        let name = d.get_ref();
        if name.is_empty() || name.len() > MAX_DEVICE_NAME || name.contains(['/', '\0']) {
            errors.push(src.error(
                d,
                format!(
                    "bind_to_device = {name:?} is not an interface name (1 to {MAX_DEVICE_NAME} bytes, no `/`)"
                ),
            ));
            None
        } else {
            Some(name.clone())
        }
    });
    let mut id = |key: &str,
                  v: &Option<Spanned<IntOrStr>>,
                  lookup: fn(&str) -> Result<Option<u32>, String>| {
        let v = v.as_ref()?;
        match resolve_id(key, v.get_ref(), lookup) {
            Ok(id) => Some(id),
            Err(e) => {
                errors.push(src.error(v, e));
                None
            }
        }
    };
    let owner = id("owner", raw.owner, user_id);
    let group = id("group", raw.group, group_id);
    let options = SocketOptions {
        ipv6_only: bool_of(raw.ipv6_only),
        free_bind: bool_of(raw.free_bind),
        bind_to_device,
        keepalive: bool_of(raw.keepalive),
        keepalive_idle,
        keepalive_interval,
        keepalive_count,
        defer_accept,
        fast_open,
        receive_buffer,
        send_buffer,
        no_delay: bool_of(raw.no_delay),
        owner,
        group,
    };
    if let Some(listen) = listen {
        for (key, why) in options.misfits(listen) {
            if let Some(at) = raw.span_of(key) {
                errors.push(ConfigError {
                    location: Some(src.at(at.start)),
                    message: why,
                });
            }
        }
    }
    options
}

impl RawOptions<'_> {
    /// Where a key's value stands in the file.
    fn span_of(&self, key: &str) -> Option<std::ops::Range<usize>> {
        fn span<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
            v.as_ref().map(Spanned::span)
        }
        match key {
            "ipv6_only" => span(self.ipv6_only),
            "free_bind" => span(self.free_bind),
            "bind_to_device" => span(self.bind_to_device),
            "keepalive" => span(self.keepalive),
            "keepalive_idle" => span(self.keepalive_idle),
            "keepalive_interval" => span(self.keepalive_interval),
            "keepalive_count" => span(self.keepalive_count),
            "defer_accept" => span(self.defer_accept),
            "fast_open" => span(self.fast_open),
            "receive_buffer" => span(self.receive_buffer),
            "send_buffer" => span(self.send_buffer),
            "no_delay" => span(self.no_delay),
            "owner" => span(self.owner),
            "group" => span(self.group),
            _ => None,
        }
    }
}

fn parse_seconds(key: &str, raw: &IntOrStr, min: i64, max: i64) -> Result<u32, String> {
    let secs = match raw {
        IntOrStr::Int(n) => *n,
        IntOrStr::Str(s) => {
            let d = parse_duration(s).map_err(|e| format!("{key}: {e}"))?;
            if d.subsec_nanos() != 0 {
                return Err(format!(
                    "{key} = {s:?}: the kernel counts it in whole seconds"
                ));
            }
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
        }
    };
    match u32::try_from(secs) {
        Ok(s) if (min..=max).contains(&secs) => Ok(s),
        _ => Err(format!(
            "{key} must be between {min}s and {max}s, not {secs}s"
        )),
    }
}

/// A name is looked up now, so that a user that does not exist is a
/// mistake of the file, found by `handoff check`.
fn resolve_id(
    key: &str,
    raw: &IntOrStr,
    lookup: fn(&str) -> Result<Option<u32>, String>,
) -> Result<u32, String> {
    match raw {
        IntOrStr::Int(n) => u32::try_from(*n)
            .ok()
            .filter(|id| *id != u32::MAX)
            .ok_or_else(|| format!("{key} = {n} is not an id")),
        IntOrStr::Str(name) => match name.parse::<u32>() {
            Ok(id) => Ok(id),
            Err(_) => match lookup(name) {
                Ok(Some(id)) => Ok(id),
                Ok(None) => Err(format!("{key} = {name:?}: no such {key} on this system")),
                Err(e) => Err(format!("{key} = {name:?}: cannot look it up: {e}")),
            },
        },
    }
}

fn user_id(name: &str) -> Result<Option<u32>, String> {
    nix::unistd::User::from_name(name)
        .map(|u| u.map(|u| u.uid.as_raw()))
        .map_err(|e| e.to_string())
}

fn group_id(name: &str) -> Result<Option<u32>, String> {
    nix::unistd::Group::from_name(name)
        .map(|g| g.map(|g| g.gid.as_raw()))
        .map_err(|e| e.to_string())
}
