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

mod socket_options;
use socket_options::{options_from_raw, RawId, RawOptions, RawSeconds};

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

#[derive(Deserialize)]
struct RawSocket {
    name: Spanned<String>,
    listen: Spanned<String>,
    backlog: Option<Spanned<i64>>,
    reuse_port: Option<bool>,
    mode: Option<Spanned<RawMode>>,
    handover: Option<Spanned<String>>,
    // The socket options (issue 12): `socket_options.rs`.
    ipv6_only: Option<Spanned<bool>>,
    free_bind: Option<Spanned<bool>>,
    bind_to_device: Option<Spanned<String>>,
    keepalive: Option<Spanned<bool>>,
    keepalive_idle: Option<Spanned<RawSeconds>>,
    keepalive_interval: Option<Spanned<RawSeconds>>,
    keepalive_count: Option<Spanned<i64>>,
    defer_accept: Option<Spanned<RawSeconds>>,
    fast_open: Option<Spanned<i64>>,
    receive_buffer: Option<Spanned<i64>>,
    send_buffer: Option<Spanned<i64>>,
    no_delay: Option<Spanned<bool>>,
    owner: Option<Spanned<RawId>>,
    group: Option<Spanned<RawId>>,
}

impl RawSocket {
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

/// A file mode: `0o660` (a TOML octal integer) or `"0660"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMode {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
struct RawProgram {
    command: Option<Spanned<Vec<String>>>,
    env: Option<Spanned<RawEnv>>,
    working_directory: Option<Spanned<String>>,
    ready: Option<Spanned<String>>,
    ready_command: Option<Spanned<Vec<String>>>,
    ready_delay: Option<Spanned<String>>,
    ready_interval: Option<Spanned<String>>,
    ready_timeout: Option<Spanned<String>>,
    min_ready_time: Option<Spanned<String>>,
    stop_signal: Option<Spanned<String>>,
    drain_timeout: Option<Spanned<String>>,
    respawn_backoff: Option<Spanned<String>>,
    respawn_backoff_max: Option<Spanned<String>>,
    workers: Option<Spanned<i64>>,
    strategy: Option<Spanned<String>>,
    batch: Option<Spanned<i64>>,
    handover_settle: Option<Spanned<String>>,
    handover_timeout: Option<Spanned<String>>,
    listen_env: Option<Spanned<bool>>,
    listen_pid: Option<Spanned<String>>,
    sockets_nonblocking: Option<Spanned<bool>>,
    preload: Option<Spanned<bool>>,
    // Process controls (issue 12): `process_from_raw`.
    user: Option<Spanned<toml::Value>>,
    group: Option<Spanned<toml::Value>>,
    supplementary_groups: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    umask: Option<Spanned<RawMode>>,
    rlimits: Option<Spanned<RawEntries<toml::Value>>>,
    env_file: Option<Spanned<String>>,
    clear_env: Option<Spanned<bool>>,
    respawn_limit: Option<Spanned<RawRespawnLimit>>,
}

/// `respawn_limit = { count = 5, within = "60s" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRespawnLimit {
    count: Spanned<i64>,
    within: Spanned<String>,
}

/// `[program.env]` (or `env = { ... }`), in file order, each name and value
/// with its place.
type RawEnv = RawEntries<String>;

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

fn socket_from_raw(
    src: &Source,
    raw: &RawSocket,
    base: &Path,
) -> Result<SocketSpec, Vec<ConfigError>> {
    let mut errors = Vec::new();
    if let Err(e) = sockets::validate_name(raw.name.get_ref()) {
        errors.push(src.error(&raw.name, e));
    }
    let listen = match raw.listen.get_ref().parse::<ListenAddr>() {
        Ok(addr) => {
            let addr = addr.rebase(base);
            if let ListenAddr::Unix(path) = &addr {
                if let Err(e) = sockets::check_unix_path(path) {
                    errors.push(src.error(&raw.listen, e));
                }
            }
            Some(addr)
        }
        Err(e) => {
            errors.push(src.error(&raw.listen, e.to_string()));
            None
        }
    };
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
    match listen {
        Some(listen) if errors.is_empty() => Ok(SocketSpec {
            name: raw.name.get_ref().clone(),
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
fn parse_handover(src: &Source, raw: &Spanned<String>) -> Result<Handover, ConfigError> {
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

fn program_from_raw(
    src: &Source,
    raw: RawProgram,
    base: &Path,
    out: &mut FileConfig,
    errors: &mut Vec<ConfigError>,
) {
    let mut refused = std::collections::BTreeSet::new();
    process_from_raw(src, &raw, base, out, errors, &mut refused);
    let p = &mut out.program;
    let mut key = |name: &'static str, span: std::ops::Range<usize>| {
        out.keys.insert(name, src.at(span.start));
    };
    if let Some(cmd) = raw.command {
        key("command", cmd.span());
        if cmd.get_ref().is_empty() {
            refused.insert("command");
            errors.push(src.error(
                &cmd,
                "command must name a program: command = [\"./server\", \"--flag\"]",
            ));
        } else {
            p.command = Some(rebase_program(cmd.into_inner(), base));
        }
    }
    if let Some(env) = raw.env {
        key("env", env.span());
        let entries = env.into_inner().0;
        out.env_at.reserve(entries.len());
        for (name, value) in entries {
            if let Err(e) = check_env_entry(name.get_ref(), value.get_ref()) {
                errors.push(src.error(&name, format!("env: {e}")));
                continue;
            }
            out.env_at.insert(name.get_ref().clone(), name.span().start);
            p.env.insert(name.into_inner(), value.into_inner());
        }
    }
    if let Some(d) = &raw.working_directory {
        key("working_directory", d.span());
    }
    p.working_directory = raw.working_directory.map(|d| base.join(d.into_inner()));
    if let Some(ready) = &raw.ready {
        key("ready", ready.span());
        match ready.get_ref().as_str() {
            "notify" => p.ready = Some(ReadyKind::Notify),
            "exec" => p.ready = Some(ReadyKind::Exec),
            "delay" => p.ready = Some(ReadyKind::Delay),
            "listen" => p.ready = Some(ReadyKind::Listen),
            other => errors.push({
                refused.insert("ready");
                src.error(
                ready,
                format!("ready = \"{other}\" is not a readiness check: expected \"notify\", \"exec\", \"delay\" or \"listen\""),
            )}),
        }
    }
    if let Some(cmd) = raw.ready_command {
        key("ready_command", cmd.span());
        if cmd.get_ref().is_empty() {
            refused.insert("ready_command");
            errors.push(src.error(&cmd, "ready_command must name a program"));
        } else {
            p.ready_command = Some(rebase_program(cmd.into_inner(), base));
        }
    }
    let mut duration = |value: &Option<Spanned<String>>, name: &'static str| -> Option<Duration> {
        let value = value.as_ref()?;
        out.keys.insert(name, src.at(value.span().start));
        match parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                refused.insert(name);
                errors.push(src.error(value, format!("{name}: {e}")));
                None
            }
        }
    };
    p.ready_delay = duration(&raw.ready_delay, "ready_delay");
    p.ready_interval = duration(&raw.ready_interval, "ready_interval");
    p.ready_timeout = duration(&raw.ready_timeout, "ready_timeout");
    p.min_ready_time = duration(&raw.min_ready_time, "min_ready_time");
    p.drain_timeout = duration(&raw.drain_timeout, "drain_timeout");
    p.respawn_backoff = duration(&raw.respawn_backoff, "respawn_backoff");
    p.respawn_backoff_max = duration(&raw.respawn_backoff_max, "respawn_backoff_max");
    p.handover_settle = duration(&raw.handover_settle, "handover_settle");
    p.handover_timeout = duration(&raw.handover_timeout, "handover_timeout");
    if let Some(limit) = &raw.respawn_limit {
        out.keys.insert("respawn_limit", src.at(limit.span().start));
        let limit = limit.get_ref();
        let count = match u32::try_from(*limit.count.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                errors.push(src.error(
                    &limit.count,
                    "respawn_limit: count must be a whole number above zero (leave respawn_limit out for no limit)",
                ));
                None
            }
        };
        let within = match parse_duration(limit.within.get_ref()) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                errors.push(src.error(&limit.within, "respawn_limit: within must be above zero"));
                None
            }
            Err(e) => {
                errors.push(src.error(&limit.within, format!("respawn_limit: within: {e}")));
                None
            }
        };
        match (count, within) {
            (Some(count), Some(within)) => {
                p.respawn_limit = Some(crate::config::RespawnLimit { count, within })
            }
            _ => {
                refused.insert("respawn_limit");
            }
        }
    }
    if let Some(sig) = &raw.stop_signal {
        match parse_signal(sig.get_ref()) {
            Ok(s) => p.stop_signal = Some(s),
            Err(e) => {
                refused.insert("stop_signal");
                errors.push(src.error(sig, e));
            }
        }
    }
    if let Some(st) = &raw.strategy {
        out.keys.insert("strategy", src.at(st.span().start));
        match st.get_ref().as_str() {
            "all-at-once" => p.strategy = Some(StrategyKind::AllAtOnce),
            "rolling" => p.strategy = Some(StrategyKind::Rolling),
            other => errors.push({
                refused.insert("strategy");
                src.error(
                    st,
                    format!("strategy = \"{other}\": expected \"all-at-once\" or \"rolling\""),
                )
            }),
        }
    }
    if let Some(e) = &raw.listen_env {
        out.keys.insert("listen_env", src.at(e.span().start));
        p.listen_env = Some(*e.get_ref());
    }
    if let Some(l) = &raw.listen_pid {
        out.keys.insert("listen_pid", src.at(l.span().start));
        match l.get_ref().as_str() {
            "child" => p.listen_pid = Some(ListenPid::Child),
            "any" => p.listen_pid = Some(ListenPid::Any),
            other => errors.push({
                refused.insert("listen_pid");
                src.error(
                    l,
                    format!(
                        "listen_pid = \"{}\": expected \"child\" or \"any\"",
                        other.escape_debug()
                    ),
                )
            }),
        }
    }
    if let Some(n) = &raw.sockets_nonblocking {
        out.keys
            .insert("sockets_nonblocking", src.at(n.span().start));
        p.sockets_nonblocking = Some(*n.get_ref());
    }
    if let Some(n) = &raw.preload {
        out.keys.insert("preload", src.at(n.span().start));
        p.preload = Some(*n.get_ref());
    }
    if let Some(b) = &raw.batch {
        out.keys.insert("batch", src.at(b.span().start));
        match usize::try_from(*b.get_ref()) {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => p.batch = Some(n),
            _ => errors.push({
                refused.insert("batch");
                src.error(
                    b,
                    format!(
                        "batch must be between 1 and {MAX_WORKERS}, not {}",
                        b.get_ref()
                    ),
                )
            }),
        }
    }
    if let Some(w) = &raw.workers {
        match usize::try_from(*w.get_ref()) {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => p.workers = Some(n),
            _ => errors.push({
                refused.insert("workers");
                src.error(
                    w,
                    format!(
                        "workers must be between 1 and {MAX_WORKERS}, not {}",
                        w.get_ref()
                    ),
                )
            }),
        }
    }
    out.refused = refused;
}

/// The process controls: `user`, `group`, `supplementary_groups`, `umask`,
/// `rlimits`, `env_file`, `clear_env`. Names are resolved in `merge.rs`,
/// once the flags' are known too.
fn process_from_raw(
    src: &Source,
    raw: &RawProgram,
    base: &Path,
    out: &mut FileConfig,
    errors: &mut Vec<ConfigError>,
    refused: &mut std::collections::BTreeSet<&'static str>,
) {
    let p = &mut out.program;
    let mut refuse = |name: &'static str, e: ConfigError| {
        refused.insert(name);
        errors.push(e);
    };
    let id = |name: &str, v: &Spanned<toml::Value>| -> Result<Id, ConfigError> {
        match v.get_ref() {
            toml::Value::Integer(n) => u32::try_from(*n)
                .map(Id::Number)
                .map_err(|_| src.error(v, format!("{name}: {n} is not a user or group id"))),
            toml::Value::String(s) => {
                Id::parse(s).map_err(|e| src.error(v, format!("{name}: {e}")))
            }
            other => Err(src.error(
                v,
                format!(
                    "{name}: expected a name or a number, not {}",
                    other.type_str()
                ),
            )),
        }
    };
    for (name, value) in [("user", &raw.user), ("group", &raw.group)] {
        let Some(value) = value else { continue };
        out.keys.insert(name, src.at(value.span().start));
        match id(name, value) {
            Ok(id) if name == "user" => p.user = Some(id),
            Ok(id) => p.group = Some(id),
            Err(e) => refuse(if name == "user" { "user" } else { "group" }, e),
        }
    }
    if let Some(groups) = &raw.supplementary_groups {
        out.keys
            .insert("supplementary_groups", src.at(groups.span().start));
        match groups
            .get_ref()
            .iter()
            .map(|g| id("supplementary_groups", g))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(ids) => p.supplementary_groups = Some(ids),
            Err(e) => refuse("supplementary_groups", e),
        }
    }
    if let Some(m) = &raw.umask {
        out.keys.insert("umask", src.at(m.span().start));
        let mask = match m.get_ref() {
            RawMode::Int(i) => u32::try_from(*i)
                .map_err(|_| format!("umask {i} is not a umask"))
                .and_then(check_umask),
            RawMode::Str(s) => parse_umask(s),
        };
        match mask {
            Ok(mask) => p.umask = Some(mask),
            Err(e) => refuse("umask", src.error(m, e)),
        }
    }
    if let Some(limits) = &raw.rlimits {
        out.keys.insert("rlimits", src.at(limits.span().start));
        let mut parsed: Vec<Rlimit> = Vec::new();
        for (name, value) in &limits.get_ref().0 {
            match parse_rlimit(name.get_ref(), value.get_ref()) {
                Ok(limit) => parsed.push(limit),
                Err(e) => {
                    // An unknown name at the name, a bad value at the value.
                    let at = match Resource::from_name(name.get_ref()) {
                        None => src.error(name, e),
                        Some(_) => src.error(value, e),
                    };
                    refuse("rlimits", at);
                }
            }
        }
        p.rlimits = Some(parsed);
    }
    if let Some(f) = &raw.env_file {
        out.keys.insert("env_file", src.at(f.span().start));
        p.env_file = Some(base.join(f.get_ref()));
    }
    if let Some(c) = &raw.clear_env {
        out.keys.insert("clear_env", src.at(c.span().start));
        p.clear_env = Some(*c.get_ref());
    }
}

/// A program named by a path (it has a `/`) is the file's directory's, as
/// execvp would take it from there: the same config means the same program
/// whatever directory handoff starts in. A bare name is left to the PATH
/// search. For `command` and `ready_command` alike.
fn rebase_program(mut command: Vec<String>, base: &Path) -> Vec<String> {
    if let Some(program) = command.first_mut() {
        if program.contains('/') {
            *program = base.join(&*program).to_string_lossy().into_owned();
        }
    }
    command
}
