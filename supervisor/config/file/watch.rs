//! The file's `[watch]`: development mode, as `--watch`, `--watch-ignore`
//! and `--watch-debounce` set it on the command line.

use super::keys::WATCH_KEYS;
use super::*;

/// `[watch]`, each value of the right type but not yet checked.
pub(super) struct RawWatch {
    paths: Option<Vec<Spanned<String>>>,
    ignore: Option<Vec<Spanned<String>>>,
    debounce: Option<Spanned<String>>,
}

impl RawWatch {
    pub(super) fn read(r: &mut Reader, mut t: Table) -> RawWatch {
        r.known_keys(&t, WATCH_KEYS);
        RawWatch {
            paths: r.spanned_strings(&mut t, "paths"),
            ignore: r.spanned_strings(&mut t, "ignore"),
            debounce: r.duration(&mut t, "debounce"),
        }
    }
}

/// Paths are relative to the file's directory; each glob and the debounce
/// checked where it stands. What needs the flags too (a path that exists,
/// settings without a path) is `config/watch.rs`'s merge.
pub(super) fn watch_from_raw(
    src: &Source,
    raw: RawWatch,
    base: &Path,
    out: &mut FileConfig,
    errors: &mut Vec<ConfigError>,
) {
    let watch = &mut out.watch;
    for path in raw.paths.iter().flatten() {
        out.keys
            .entry("watch.paths")
            .or_insert_with(|| src.at(path.span().start));
        watch.paths.push(base.join(path.get_ref()));
    }
    for glob in raw.ignore.iter().flatten() {
        out.keys
            .entry("watch.ignore")
            .or_insert_with(|| src.at(glob.span().start));
        match super::super::check_glob(glob.get_ref()) {
            Ok(()) => watch.ignore.push(glob.get_ref().clone()),
            Err(e) => {
                errors.push(src.error(glob, format!("watch.ignore `{}`: {e}", glob.get_ref())))
            }
        }
    }
    if let Some(debounce) = &raw.debounce {
        out.keys
            .insert("watch.debounce", src.at(debounce.span().start));
        match parse_duration(debounce.get_ref()) {
            Ok(d) => watch.debounce = Some(d),
            Err(e) => errors.push(src.error(debounce, format!("watch.debounce: {e}"))),
        }
    }
}
