//! The config file: TOML parsed once into toml's tree, with the position of
//! every key and value, so that each problem can be reported with
//! file:line:column, then typed by hand (`reader.rs`), every mistake in
//! one pass. Merging with the flags and defaults is `merge.rs`'s job.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;
use toml::Spanned;

use super::position::{Lines, Source};
use super::process::{check_umask, parse_rlimit, parse_umask, Id, Resource, Rlimit};
use super::values::{check_env_entry, parse_duration, parse_octal_mode, parse_signal, MAX_WORKERS};
use super::{
    ConfigError, ConfigErrors, ListenPid, Location, ProgramSettings, ReadyKind, SighupAction,
    StrategyKind,
};
use crate::sockets::{self, Handover, ListenAddr, SocketSpec};

mod keys;
mod program;
mod reader;
mod socket;
mod socket_options;
mod watch;
use keys::TOP_KEYS;
use program::{program_from_raw, RawProgram};
pub(super) use reader::{describe, int_of};
use reader::{IntOrStr, Reader, Table};
use socket::{parse_handover, socket_from_raw, RawSocket};
use watch::{watch_from_raw, RawWatch};

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

/// The top level of a file, each value of the right type but not yet
/// checked.
struct RawFile<'t> {
    control: Option<Spanned<String>>,
    sighup: Option<Spanned<String>>,
    fdstore: Option<bool>,
    forward_signals: Option<Vec<Spanned<String>>>,
    handover: Option<Spanned<String>>,
    socket: Vec<Spanned<RawSocket>>,
    program: Option<RawProgram<'t>>,
    watch: Option<RawWatch>,
}

impl<'t> RawFile<'t> {
    fn read(r: &mut Reader, doc: &'t Spanned<DeTable<'t>>) -> RawFile<'t> {
        let mut top = Table::root(doc);
        r.known_keys(&top, TOP_KEYS);
        let socket = r
            .tables(&mut top, "socket", " in [[socket]]")
            .into_iter()
            .map(|t| RawSocket::read(r, t))
            .collect();
        RawFile {
            control: r.string(&mut top, "control"),
            sighup: r.string(&mut top, "sighup"),
            fdstore: r.bool(&mut top, "fdstore").map(Spanned::into_inner),
            forward_signals: r.spanned_strings(&mut top, "forward_signals"),
            handover: r.string(&mut top, "handover"),
            socket,
            program: r
                .table(&mut top, "program", " in [program]", "")
                .map(|t| RawProgram::read(r, t)),
            watch: r
                .table(&mut top, "watch", " in [watch]", "watch.")
                .map(|t| RawWatch::read(r, t)),
        }
    }
}

/// Parses a file: its typed content and every problem found in it, or,
/// when it cannot be typed at all (bad syntax, a socket without a name),
/// every problem found in it.
pub(super) fn parse_file(
    path: &Path,
    text: &str,
) -> Result<(FileConfig, Vec<ConfigError>), ConfigErrors> {
    let src = Source {
        path,
        lines: Lines::new(path, text),
    };
    let doc = DeTable::parse(text).map_err(|e| {
        let message = e.message().trim_end().replace('\n', ", ");
        // toml 0.9 gives some errors no place (a key of more than 80
        // parts: "recursion limit"): the file is named all the same.
        let (location, message) = match e.span() {
            Some(span) => (Some(src.at(span.start)), message),
            None => (None, format!("{}: {message}", path.display())),
        };
        ConfigErrors(vec![ConfigError { location, message }])
    })?;
    let mut reader = Reader::new(&src);
    let raw = RawFile::read(&mut reader, &doc);
    let mut errors = reader.errors;
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
    // A socket whose name could not be read leaves the file untyped: each
    // `{fd:NAME}` and the check for a socket at all would be mistakes
    // that are only its consequences.
    let mut unnamed = false;
    for socket in &raw.socket {
        match &socket.get_ref().name {
            Some(name) => out.socket_names.push(name.get_ref().clone()),
            None => unnamed = true,
        }
        let at = src.at(socket.span().start);
        match socket_from_raw(&src, socket.get_ref(), &base) {
            Ok(spec) => out.sockets.push((spec, Some(at))),
            Err(e) => errors.extend(e),
        }
    }
    if let Some(program) = raw.program {
        program_from_raw(&src, program, &base, &mut out, &mut errors);
    }
    if let Some(watch) = raw.watch {
        watch_from_raw(&src, watch, &base, &mut out, &mut errors);
    }
    if unnamed {
        return Err(ConfigErrors(errors));
    }
    out.lines = src.lines;
    Ok((out, errors))
}

fn parse_mode(raw: &IntOrStr) -> Result<u32, String> {
    let mode = match raw {
        IntOrStr::Int(i) => {
            u32::try_from(*i).map_err(|_| format!("mode {i} is not a file mode"))?
        }
        IntOrStr::Str(s) => parse_octal_mode(s)?,
    };
    if mode > 0o7777 {
        return Err(format!("mode {mode:o} is not a file mode (at most 0o7777)"));
    }
    Ok(mode)
}
