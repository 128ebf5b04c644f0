//! The config file: TOML parsed with the position of every value, so that
//! each problem can be reported with file:line:column, then typed. Merging
//! with the flags and defaults is `merge.rs`'s job; going on past a mistake
//! to report the next one, `recover.rs`'s.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::position::{Lines, Source};
use super::process::{check_umask, parse_rlimit, parse_umask, Id, Resource, Rlimit};
use super::recover::{parse_raw, unknown_keys, PROGRAM_KEYS};
use super::values::{check_env_entry, parse_duration, parse_octal_mode, parse_signal, MAX_WORKERS};
use super::{
    ConfigError, ConfigErrors, ListenPid, Location, ProgramSettings, ReadyKind, SighupAction,
    StrategyKind,
};
use crate::sockets::{self, Handover, ListenAddr, SocketSpec};

mod program;
mod socket;
mod socket_options;
use program::{program_from_raw, RawProgram};
use socket::{parse_handover, socket_from_raw, RawSocket};

/// What a file says, typed but not yet merged with flags or defaulted.
#[derive(Debug, Default)]
pub(super) struct FileConfig {
    pub(super) control: Option<PathBuf>,
    pub(super) sighup: Option<SighupAction>,
    pub(super) fdstore: Option<bool>,
    /// `forward_signals`, each valid one once, in file order.
    pub(super) forward_signals: Vec<nix::sys::signal::Signal>,
    /// The top-level `handover`: the value of each socket without its own.
    pub(super) handover: Option<Handover>,
    /// Each socket's own `handover` stands in its spec, not yet defaulted.
    pub(super) sockets: Vec<(SocketSpec, Option<Location>)>,
    pub(super) program: ProgramSettings,
    /// Where each `[program]` key stands, for errors found after merging.
    pub(super) keys: BTreeMap<&'static str, Location>,
    /// Where each `env` entry's name stands (a byte offset, made a
    /// Location only for an error: there may be many thousands).
    pub(super) env_at: HashMap<String, usize>,
    /// Turns those offsets into file:line:column.
    pub(super) lines: Lines,
    /// The name of every `[[socket]]`, the ones refused included: a
    /// `{fd:NAME}` naming a socket whose address was wrong is not a second
    /// mistake.
    pub(super) socket_names: Vec<String>,
    /// The `[program]` keys whose value was refused, so that the checks
    /// made on the whole do not report their consequences as more errors.
    pub(super) refused: std::collections::BTreeSet<&'static str>,
    /// `[watch]`.
    pub(super) watch: super::WatchSettings,
}

// Unknown keys are found by `unknown_keys`, all of them at once: serde's
// deny_unknown_fields would stop at the first and hide every other error.
#[derive(Deserialize)]
pub(super) struct RawFile {
    control: Option<Spanned<String>>,
    sighup: Option<Spanned<String>>,
    fdstore: Option<bool>,
    forward_signals: Option<Vec<Spanned<String>>>,
    handover: Option<Spanned<String>>,
    #[serde(default)]
    socket: Vec<Spanned<RawSocket>>,
    program: Option<RawProgram>,
}

/// A file mode: `0o660` (a TOML octal integer) or `"0660"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMode {
    Int(i64),
    Str(String),
}

/// A table's entries in file order, each name and value with its place
/// (`env`, `rlimits`).
struct RawEntries<V>(Vec<(Spanned<String>, Spanned<V>)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for RawEntries<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Entries<V> {
            type Value = RawEntries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of NAME = value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawEntries<V>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(RawEntries(entries))
            }
        }
        d.deserialize_map(Entries(std::marker::PhantomData))
    }
}

/// Parses a file: its typed content and every problem found in it, or,
/// when it cannot be typed at all (bad syntax, a value of the wrong type),
/// the problems that stopped it.
pub(super) fn parse_file(
    path: &Path,
    text: &str,
) -> Result<(FileConfig, Vec<ConfigError>), ConfigErrors> {
    let src = Source {
        path,
        lines: Lines::new(path, text),
    };
    let mut errors = unknown_keys(&src, text);
    let Some((raw, left_out)) = parse_raw::<RawFile>(&src, text, &mut errors) else {
        errors.sort_by_key(|e| e.location.as_ref().map(|l| (l.line, l.column)));
        return Err(ConfigErrors(errors));
    };
    let base = src.base();
    let control = raw.control.map(|c| {
        let path = base.join(c.get_ref());
        if let Err(e) = sockets::check_unix_path(&path) {
            errors.push(src.error(&c, format!("control: {e}")));
        }
        path
    });
    let mut out = FileConfig {
        control,
        fdstore: raw.fdstore,
        ..FileConfig::default()
    };
    if let Some(h) = &raw.sighup {
        match h.get_ref().as_str() {
            "restart" => out.sighup = Some(SighupAction::Restart),
            "reload" => out.sighup = Some(SighupAction::Reload),
            other => errors.push(src.error(
                h,
                format!("sighup = \"{other}\": expected \"restart\" or \"reload\""),
            )),
        }
    }
    for name in raw.forward_signals.iter().flatten() {
        let signal =
            parse_signal(name.get_ref()).and_then(|s| crate::signals::forwardable(s).map(|()| s));
        match signal {
            Ok(s) if !out.forward_signals.contains(&s) => out.forward_signals.push(s),
            Ok(_) => {}
            Err(e) => errors.push(src.error(name, format!("forward_signals: {e}"))),
        }
    }
    if let Some(h) = &raw.handover {
        match parse_handover(&src, h) {
            Ok(handover) => out.handover = Some(handover),
            Err(e) => errors.push(e),
        }
    }
    for socket in &raw.socket {
        out.socket_names
            .push(socket.get_ref().name.get_ref().clone());
        let at = src.at(socket.span().start);
        match socket_from_raw(&src, socket.get_ref(), &base) {
            Ok(spec) => out.sockets.push((spec, Some(at))),
            Err(e) => errors.extend(e),
        }
    }
    if let Some(program) = raw.program {
        program_from_raw(&src, program, &base, &mut out, &mut errors);
    }
    // A key left out for its type was reported: the checks that depend on
    // it must not report it again as missing.
    for key in left_out {
        if let Some(known) = PROGRAM_KEYS.iter().find(|k| **k == key) {
            out.refused.insert(known);
        }
    }
    out.lines = src.lines;
    Ok((out, errors))
}

fn parse_mode(raw: &RawMode) -> Result<u32, String> {
    let mode = match raw {
        RawMode::Int(i) => u32::try_from(*i).map_err(|_| format!("mode {i} is not a file mode"))?,
        RawMode::Str(s) => parse_octal_mode(s)?,
    };
    if mode > 0o7777 {
        return Err(format!("mode {mode:o} is not a file mode (at most 0o7777)"));
    }
    Ok(mode)
}
