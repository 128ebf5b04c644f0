//! The socket options of a `[[socket]]` (issue 12): what the user asks
//! for, as systemd's `.socket` units spell it, and which kind of socket
//! each one fits. Setting them on a kernel socket is `setup.rs`'s job.

use std::fmt;

use super::ListenAddr;

/// Socket options, each `None` when not asked for (the kernel's default,
/// or what an activator set, stays). Durations are whole seconds, the
/// kernel's unit for all of them. Also what `status` shows as in effect.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SocketOptions {
    /// IPV6_V6ONLY; set before bind(), fixed after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_only: Option<bool>,
    /// IP_FREEBIND / IPV6_FREEBIND; set before bind(), fixed after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free_bind: Option<bool>,
    /// SO_BINDTODEVICE, an interface name; set before bind(), fixed after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_to_device: Option<String>,
    /// SO_KEEPALIVE; accepted connections inherit it and the three below.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<bool>,
    /// TCP_KEEPIDLE, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_idle: Option<u32>,
    /// TCP_KEEPINTVL, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_interval: Option<u32>,
    /// TCP_KEEPCNT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_count: Option<u32>,
    /// TCP_DEFER_ACCEPT, seconds (the kernel rounds it up to its next
    /// SYN-ACK retransmission).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub defer_accept: Option<u32>,
    /// TCP_FASTOPEN: the queue length of pending Fast Open requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fast_open: Option<u32>,
    /// SO_RCVBUF, bytes (the kernel doubles it, capped by net.core.rmem_max).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_buffer: Option<u32>,
    /// SO_SNDBUF, bytes (the kernel doubles it, capped by net.core.wmem_max).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_buffer: Option<u32>,
    /// TCP_NODELAY.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_delay: Option<bool>,
    /// The owner uid of a unix socket's file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
    /// The group gid of a unix socket's file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
}

/// The kinds of socket an option fits.
#[derive(Clone, Copy)]
struct Fits {
    tcp: bool,
    udp: bool,
    unix_path: bool,
    unix_abstract: bool,
}

const IP: Fits = Fits {
    tcp: true,
    udp: true,
    unix_path: false,
    unix_abstract: false,
};
const TCP: Fits = Fits {
    tcp: true,
    udp: false,
    unix_path: false,
    unix_abstract: false,
};
const ANY: Fits = Fits {
    tcp: true,
    udp: true,
    unix_path: true,
    unix_abstract: true,
};
const UNIX_FILE: Fits = Fits {
    tcp: false,
    udp: false,
    unix_path: true,
    unix_abstract: false,
};

impl Fits {
    fn admits(self, listen: &ListenAddr) -> bool {
        match listen {
            ListenAddr::Tcp(_) => self.tcp,
            ListenAddr::Udp(_) => self.udp,
            ListenAddr::Unix(_) => self.unix_path,
            ListenAddr::UnixAbstract(_) => self.unix_abstract,
        }
    }

    fn says(self) -> &'static str {
        match (self.tcp, self.udp, self.unix_path) {
            (true, true, true) => "every socket",
            (true, true, false) => "tcp:// and udp:// sockets",
            (true, false, _) => "tcp:// sockets",
            _ => "unix:// sockets with a path",
        }
    }
}

/// Each option's key and the sockets it fits, in the order `status` and
/// `check` show them.
const KEYS: &[(&str, Fits)] = &[
    ("ipv6_only", IP),
    ("free_bind", IP),
    ("bind_to_device", IP),
    ("keepalive", TCP),
    ("keepalive_idle", TCP),
    ("keepalive_interval", TCP),
    ("keepalive_count", TCP),
    ("defer_accept", TCP),
    ("fast_open", TCP),
    ("receive_buffer", ANY),
    ("send_buffer", ANY),
    ("no_delay", TCP),
    ("owner", UNIX_FILE),
    ("group", UNIX_FILE),
];

/// The options that cannot change on a bound socket: the kernel reads
/// them at bind() (and they decide which SO_REUSEPORT group a socket
/// joins).
pub const FIXED_AT_BIND: [&str; 3] = ["ipv6_only", "free_bind", "bind_to_device"];

impl SocketOptions {
    /// Each option that is set, as its key and its value as the config
    /// file spells it.
    pub fn set(&self) -> Vec<(&'static str, String)> {
        let secs = |s: &Option<u32>| s.map(|s| format!("\"{s}s\""));
        let show = |v: &Option<bool>| v.map(|v| v.to_string());
        let int = |v: &Option<u32>| v.map(|v| v.to_string());
        let values = [
            show(&self.ipv6_only),
            show(&self.free_bind),
            self.bind_to_device.as_ref().map(|d| format!("{d:?}")),
            show(&self.keepalive),
            secs(&self.keepalive_idle),
            secs(&self.keepalive_interval),
            int(&self.keepalive_count),
            secs(&self.defer_accept),
            int(&self.fast_open),
            int(&self.receive_buffer),
            int(&self.send_buffer),
            show(&self.no_delay),
            int(&self.owner),
            int(&self.group),
        ];
        KEYS.iter()
            .zip(values)
            .filter_map(|((key, _), value)| Some((*key, value?)))
            .collect()
    }

    /// The options set that do not fit a socket listening at `listen`,
    /// each with why; the config reports each at its key.
    pub fn misfits(&self, listen: &ListenAddr) -> Vec<(&'static str, String)> {
        let mut wrong = Vec::new();
        for (key, _) in self.set() {
            let fits = KEYS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, fits)| *fits)
                .expect("set() only names keys of KEYS");
            if !fits.admits(listen) {
                wrong.push((key, format!("{key} only applies to {}", fits.says())));
            } else if key == "ipv6_only"
                && matches!(listen, ListenAddr::Tcp(a) | ListenAddr::Udp(a) if a.is_ipv4())
            {
                wrong.push((
                    key,
                    "ipv6_only only applies to an IPv6 address, such as tcp://[::]:80".to_string(),
                ));
            }
        }
        wrong
    }

    /// The options fixed at bind(), the rest left unset.
    pub fn fixed_at_bind(&self) -> SocketOptions {
        SocketOptions {
            ipv6_only: self.ipv6_only,
            free_bind: self.free_bind,
            bind_to_device: self.bind_to_device.clone(),
            ..SocketOptions::default()
        }
    }

    /// The options that can change on a live socket, the rest left unset.
    pub fn changeable(&self) -> SocketOptions {
        SocketOptions {
            ipv6_only: None,
            free_bind: None,
            bind_to_device: None,
            ..self.clone()
        }
    }

    /// What a reload from `self` to `new` does to a live socket (see
    /// [`Reloaded`]). An option `new` no longer asks for goes back to the
    /// kernel's default where that is "off" (keepalive, no_delay,
    /// defer_accept, fast_open). The others (the keepalive timings, the
    /// buffers, the file's owner and group) have no value that means
    /// "unset" again: they keep theirs.
    pub fn reloaded(&self, new: &SocketOptions) -> Reloaded {
        let mut in_effect = new.changeable();
        let mut kept = Vec::new();
        let mut keep = |key: &'static str, old: Option<u32>, new: &mut Option<u32>| {
            if old.is_some() && new.is_none() {
                *new = old;
                kept.push(key);
            }
        };
        let o = &mut in_effect;
        keep("keepalive_idle", self.keepalive_idle, &mut o.keepalive_idle);
        keep(
            "keepalive_interval",
            self.keepalive_interval,
            &mut o.keepalive_interval,
        );
        keep(
            "keepalive_count",
            self.keepalive_count,
            &mut o.keepalive_count,
        );
        keep("receive_buffer", self.receive_buffer, &mut o.receive_buffer);
        keep("send_buffer", self.send_buffer, &mut o.send_buffer);
        keep("owner", self.owner, &mut o.owner);
        keep("group", self.group, &mut o.group);
        let mut apply = in_effect.clone();
        let off = |old: Option<bool>, new: &mut Option<bool>| {
            if old.is_some() && new.is_none() {
                *new = Some(false);
            }
        };
        off(self.keepalive, &mut apply.keepalive);
        off(self.no_delay, &mut apply.no_delay);
        let zero = |old: Option<u32>, new: &mut Option<u32>| {
            if old.is_some() && new.is_none() {
                *new = Some(0);
            }
        };
        zero(self.defer_accept, &mut apply.defer_accept);
        zero(self.fast_open, &mut apply.fast_open);
        Reloaded {
            apply,
            in_effect,
            kept,
        }
    }

    /// The first option fixed at bind() that differs between `self` and
    /// `new`: its key and both values ("unset" for none).
    pub fn fixed_change(&self, new: &SocketOptions) -> Option<(&'static str, String, String)> {
        let old = self.fixed_at_bind().set();
        let new = new.fixed_at_bind().set();
        let value = |all: &[(&'static str, String)], key: &str| {
            all.iter()
                .find(|(k, _)| *k == key)
                .map_or_else(|| "unset".to_string(), |(_, v)| v.clone())
        };
        FIXED_AT_BIND.into_iter().find_map(|key| {
            let (from, to) = (value(&old, key), value(&new, key));
            (from != to).then_some((key, from, to))
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == SocketOptions::default()
    }
}

/// What a reload sets on a live socket ([`SocketOptions::reloaded`]).
#[derive(Debug)]
pub struct Reloaded {
    /// What to set on the socket: only options that can change in place.
    pub apply: SocketOptions,
    /// What is in effect afterwards, as `status` shows it.
    pub in_effect: SocketOptions,
    /// The options the new config dropped that keep their value.
    pub kept: Vec<&'static str>,
}

/// `keepalive = true, keepalive_idle = "30s"`, as the file would say it.
impl fmt::Display for SocketOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: Vec<String> = self
            .set()
            .into_iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        f.write_str(&set.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_misfit_is_named_once_with_the_sockets_it_fits() {
        let options = SocketOptions {
            no_delay: Some(true),
            receive_buffer: Some(1),
            owner: Some(0),
            ..SocketOptions::default()
        };
        let udp: ListenAddr = "udp://127.0.0.1:0".parse().expect("an address");
        assert_eq!(
            options.misfits(&udp),
            [
                (
                    "no_delay",
                    "no_delay only applies to tcp:// sockets".to_string()
                ),
                (
                    "owner",
                    "owner only applies to unix:// sockets with a path".to_string()
                )
            ]
        );
        let v4: ListenAddr = "tcp://127.0.0.1:0".parse().expect("an address");
        let v6only = SocketOptions {
            ipv6_only: Some(true),
            ..SocketOptions::default()
        };
        assert_eq!(v6only.misfits(&v4)[0].0, "ipv6_only");
        let v6: ListenAddr = "tcp://[::1]:0".parse().expect("an address");
        assert!(v6only.misfits(&v6).is_empty());
    }

    #[test]
    fn a_reload_turns_off_what_it_no_longer_asks_for_and_keeps_what_has_no_off() {
        let old = SocketOptions {
            keepalive: Some(true),
            keepalive_idle: Some(30),
            defer_accept: Some(3),
            receive_buffer: Some(65536),
            ..SocketOptions::default()
        };
        let r = old.reloaded(&SocketOptions::default());
        assert_eq!(r.apply.keepalive, Some(false));
        assert_eq!(r.apply.defer_accept, Some(0));
        assert_eq!(r.apply.keepalive_idle, Some(30));
        assert_eq!(r.apply.receive_buffer, Some(65536));
        assert_eq!(r.kept, ["keepalive_idle", "receive_buffer"]);
        // Off again is the default again: status shows it unset.
        assert_eq!(r.in_effect.keepalive, None);
        assert_eq!(r.in_effect.defer_accept, None);
        assert_eq!(r.in_effect.keepalive_idle, Some(30));
    }

    #[test]
    fn a_fixed_change_names_the_option_and_both_values() {
        let old = SocketOptions {
            ipv6_only: Some(true),
            keepalive: Some(true),
            ..SocketOptions::default()
        };
        let new = SocketOptions::default();
        assert_eq!(
            old.fixed_change(&new),
            Some(("ipv6_only", "true".to_string(), "unset".to_string()))
        );
        assert_eq!(old.fixed_change(&old.fixed_at_bind()), None);
    }
}
