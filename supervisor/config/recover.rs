//! Reporting every mistake of a file, not only the first. serde stops at
//! the first unknown key or value of the wrong type; a user fixing a file
//! one error per run would rather see them all. So unknown keys are found
//! by walking the document's shape, and a value of the wrong type is
//! reported, blanked out, and the file parsed again without it.

use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::errors::ConfigError;
use super::position::Source;

/// The keys each table may have (`[program.env]` takes any name).
const TOP_KEYS: &[&str] = &[
    "control",
    "sighup",
    "fdstore",
    "forward_signals",
    "handover",
    "socket",
    "program",
];
const SOCKET_KEYS: &[&str] = &[
    "name",
    "listen",
    "backlog",
    "reuse_port",
    "mode",
    "handover",
    "ipv6_only",
    "free_bind",
    "bind_to_device",
    "keepalive",
    "keepalive_idle",
    "keepalive_interval",
    "keepalive_count",
    "defer_accept",
    "fast_open",
    "receive_buffer",
    "send_buffer",
    "no_delay",
    "owner",
    "group",
];
pub(super) const PROGRAM_KEYS: &[&str] = &[
    "command",
    "env",
    "working_directory",
    "ready",
    "ready_command",
    "ready_delay",
    "ready_interval",
    "ready_timeout",
    "min_ready_time",
    "stop_signal",
    "drain_timeout",
    "respawn_backoff",
    "respawn_backoff_max",
    "workers",
    "strategy",
    "batch",
    "handover_settle",
    "handover_timeout",
    "listen_env",
    "listen_pid",
    "sockets_nonblocking",
    "preload",
    "user",
    "group",
    "supplementary_groups",
    "umask",
    "rlimits",
    "env_file",
    "clear_env",
    "respawn_limit",
];

/// A document's keys, each with its place and its value's place, and
/// nothing of the values themselves.
enum Shape {
    Table(Vec<(Spanned<String>, Spanned<Shape>)>),
    Array(Vec<Spanned<Shape>>),
    Value,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Walk;
        impl<'de> serde::de::Visitor<'de> for Walk {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a TOML value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Shape, A::Error> {
                let mut keys = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    keys.push(entry);
                }
                Ok(Shape::Table(keys))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Shape, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Shape::Array(items))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Value)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Value)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Value)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Value)
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Value)
            }
        }
        d.deserialize_any(Walk)
    }
}

/// Every key that is not one of handoff's, with its place. (A document
/// this cannot walk, a date for one, leaves it to the typed parse.)
pub(super) fn unknown_keys(src: &Source, text: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let Ok(Shape::Table(top)) = toml::from_str::<Shape>(text) else {
        return errors;
    };
    let mut unknown = |key: &Spanned<String>, table: &str, known: &[&str]| {
        if !known.contains(&key.get_ref().as_str()) {
            let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            errors.push(src.error(
                key,
                format!(
                    "unknown field `{}`{table}, expected one of {}",
                    key.get_ref(),
                    expected.join(", ")
                ),
            ));
        }
    };
    for (key, value) in &top {
        unknown(key, "", TOP_KEYS);
        match (key.get_ref().as_str(), value.get_ref()) {
            ("socket", Shape::Array(sockets)) => {
                for socket in sockets {
                    if let Shape::Table(keys) = socket.get_ref() {
                        for (key, _) in keys {
                            unknown(key, " in [[socket]]", SOCKET_KEYS);
                        }
                    }
                }
            }
            ("program", Shape::Table(keys)) => {
                for (key, _) in keys {
                    unknown(key, " in [program]", PROGRAM_KEYS);
                }
            }
            _ => {}
        }
    }
    errors
}

/// The key-value pair of handoff's (a top-level key, a `[[socket]]`'s, a
/// `[program]`'s) whose value holds byte `offset`: its key's name and the
/// bytes from the key to the end of the value.
fn entry_at(text: &str, offset: usize) -> Option<(String, std::ops::Range<usize>)> {
    let Ok(Shape::Table(top)) = toml::from_str::<Shape>(text) else {
        return None;
    };
    let within = |keys: &[(Spanned<String>, Spanned<Shape>)]| {
        keys.iter()
            .find(|(_, v)| v.span().contains(&offset))
            .map(|(k, v)| (k.get_ref().clone(), k.span().start..v.span().end))
    };
    for (key, value) in &top {
        let inner = match (key.get_ref().as_str(), value.get_ref()) {
            ("socket", Shape::Array(sockets)) => sockets.iter().find_map(|s| match s.get_ref() {
                Shape::Table(keys) => within(keys),
                _ => None,
            }),
            ("program", Shape::Table(keys)) => within(keys),
            _ => None,
        };
        if inner.is_some() {
            return inner;
        }
    }
    within(&top).filter(|(k, _)| k != "socket" && k != "program")
}

/// Past this size, a value of the wrong type stops the parse: going on
/// means parsing again, and no real config is this large.
const RECOVER_UP_TO: usize = 256 * 1024;

/// Parses the typed content, reporting a value of the wrong type and
/// going on without it, so that one such mistake does not hide the
/// others: the pair is blanked out (spaces, so that every other place in
/// the file stays where it was) and the file parsed again. Returns the
/// typed content, if it could be had, and the keys left out.
pub(super) fn parse_raw<T: serde::de::DeserializeOwned>(
    src: &Source,
    text: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<(T, Vec<String>)> {
    // Each round parses the whole file again (and a reload parses inside
    // the event loop): a few rounds for a file of a config's size, one for
    // a huge one.
    let rounds = if text.len() > RECOVER_UP_TO { 1 } else { 16 };
    let mut text = std::borrow::Cow::Borrowed(text);
    let mut left_out = Vec::new();
    for _ in 0..rounds {
        let e = match toml::from_str::<T>(&text) {
            Ok(raw) => return Some((raw, left_out)),
            Err(e) => e,
        };
        // A required key left out for its type is reported already: its
        // absence is no news, and without it nothing more can be typed.
        let message = e.message();
        if left_out
            .iter()
            .any(|k| message.starts_with(&format!("missing field `{k}`")))
        {
            return None;
        }
        errors.push(ConfigError {
            location: e.span().map(|span| src.at(span.start)),
            message: e.message().trim_end().replace('\n', ", "),
        });
        // A syntax error, or a missing key (no value to leave out): stop.
        let (key, range) = e.span().and_then(|span| entry_at(&text, span.start))?;
        let mut blanked = text.into_owned().into_bytes();
        for b in &mut blanked[range] {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
        text = std::borrow::Cow::Owned(
            String::from_utf8(blanked).expect("ASCII spaces over whole characters"),
        );
        left_out.push(key);
    }
    None
}
