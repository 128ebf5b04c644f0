//! The `[program]` of the file, typed: the command, readiness, stop and
//! respawn settings, the protocol knobs, and the process controls.

use super::keys::{PROGRAM_KEYS, RESPAWN_LIMIT_KEYS};
use super::reader::{Entries, Value};
use super::*;

/// The `[program]` of the file, each value of the right type but not yet
/// checked.
pub(super) struct RawProgram<'t> {
    command: Option<Spanned<Vec<String>>>,
    /// `[program.env]` (or `env = { ... }`), in file order, each name and
    /// value with its place.
    env: Option<Entries<Spanned<String>>>,
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
    user: Option<Spanned<IntOrStr>>,
    group: Option<Spanned<IntOrStr>>,
    supplementary_groups: Option<Spanned<Vec<Spanned<IntOrStr>>>>,
    umask: Option<Spanned<IntOrStr>>,
    /// Each limit's value as the file has it: a number, a string or a
    /// table (`parse_rlimit`).
    rlimits: Option<Entries<&'t Value<'t>>>,
    env_file: Option<Spanned<String>>,
    clear_env: Option<Spanned<bool>>,
    respawn_limit: Option<Spanned<RawRespawnLimit>>,
    /// The keys whose value had the wrong type (reported already).
    refused: Vec<&'static str>,
}

/// `respawn_limit = { count = 5, within = "60s" }`.
struct RawRespawnLimit {
    count: Spanned<i64>,
    within: Spanned<String>,
}

impl<'t> RawProgram<'t> {
    pub(super) fn read(r: &mut Reader, mut t: Table<'t, 't>) -> RawProgram<'t> {
        const ID: &str = "a name or a number";
        r.known_keys(&t, PROGRAM_KEYS);
        let respawn_limit = read_respawn_limit(r, &mut t);
        let mut raw = RawProgram {
            command: r.strings(&mut t, "command"),
            env: r.string_entries(&mut t, "env"),
            working_directory: r.string(&mut t, "working_directory"),
            ready: r.string(&mut t, "ready"),
            ready_command: r.strings(&mut t, "ready_command"),
            ready_delay: r.duration(&mut t, "ready_delay"),
            ready_interval: r.duration(&mut t, "ready_interval"),
            ready_timeout: r.duration(&mut t, "ready_timeout"),
            min_ready_time: r.duration(&mut t, "min_ready_time"),
            stop_signal: r.string(&mut t, "stop_signal"),
            drain_timeout: r.duration(&mut t, "drain_timeout"),
            respawn_backoff: r.duration(&mut t, "respawn_backoff"),
            respawn_backoff_max: r.duration(&mut t, "respawn_backoff_max"),
            workers: r.integer(&mut t, "workers"),
            strategy: r.string(&mut t, "strategy"),
            batch: r.integer(&mut t, "batch"),
            handover_settle: r.duration(&mut t, "handover_settle"),
            handover_timeout: r.duration(&mut t, "handover_timeout"),
            listen_env: r.bool(&mut t, "listen_env"),
            listen_pid: r.string(&mut t, "listen_pid"),
            sockets_nonblocking: r.bool(&mut t, "sockets_nonblocking"),
            preload: r.bool(&mut t, "preload"),
            user: r.int_or_str(&mut t, "user", ID),
            group: r.int_or_str(&mut t, "group", ID),
            supplementary_groups: r.ints_or_strs(
                &mut t,
                "supplementary_groups",
                "an array of names or numbers",
                ID,
            ),
            umask: r.int_or_str(&mut t, "umask", "a umask such as 0o027 or \"027\""),
            rlimits: r.entries(&mut t, "rlimits"),
            env_file: r.string(&mut t, "env_file"),
            clear_env: r.bool(&mut t, "clear_env"),
            respawn_limit,
            refused: Vec::new(),
        };
        raw.refused = t.refused;
        raw
    }
}

/// `respawn_limit`, or None (and the key refused) when it is not a table
/// with a `count` and a `within` of the right types.
fn read_respawn_limit(r: &mut Reader, t: &mut Table) -> Option<Spanned<RawRespawnLimit>> {
    let mut limit = r.table(t, "respawn_limit", " in respawn_limit", "respawn_limit.")?;
    r.known_keys(&limit, RESPAWN_LIMIT_KEYS);
    let count = r.integer(&mut limit, "count");
    let count = r.require(&limit, "count", count);
    let within = r.duration(&mut limit, "within");
    let within = r.require(&limit, "within", within);
    match (count, within) {
        (Some(count), Some(within)) => Some(Spanned::new(
            limit.span(),
            RawRespawnLimit { count, within },
        )),
        _ => {
            t.refused.push("respawn_limit");
            None
        }
    }
}

pub(super) fn program_from_raw(
    src: &Source,
    raw: RawProgram,
    base: &Path,
    out: &mut FileConfig,
    errors: &mut Vec<ConfigError>,
) {
    // A value of the wrong type was reported: the checks that depend on
    // it must not report it again as missing.
    let mut refused: std::collections::BTreeSet<&'static str> =
        raw.refused.iter().copied().collect();
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
        let entries = env.into_inner();
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
    let id = |name: &str, v: &Spanned<IntOrStr>| -> Result<Id, ConfigError> {
        match v.get_ref() {
            IntOrStr::Int(n) => u32::try_from(*n)
                .map(Id::Number)
                .map_err(|_| src.error(v, format!("{name}: {n} is not a user or group id"))),
            IntOrStr::Str(s) => Id::parse(s).map_err(|e| src.error(v, format!("{name}: {e}"))),
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
            IntOrStr::Int(i) => u32::try_from(*i)
                .map_err(|_| format!("umask {i} is not a umask"))
                .and_then(check_umask),
            IntOrStr::Str(s) => parse_umask(s),
        };
        match mask {
            Ok(mask) => p.umask = Some(mask),
            Err(e) => refuse("umask", src.error(m, e)),
        }
    }
    if let Some(limits) = &raw.rlimits {
        out.keys.insert("rlimits", src.at(limits.span().start));
        let mut parsed: Vec<Rlimit> = Vec::new();
        for (name, value) in limits.get_ref() {
            match parse_rlimit(name.get_ref(), value.get_ref()) {
                Ok(limit) => parsed.push(limit),
                Err(e) => {
                    // An unknown name at the name, a bad value at the value.
                    let at = match Resource::from_name(name.get_ref()) {
                        None => src.error(name, e),
                        Some(_) => src.error(*value, e),
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
