//! The config's values one at a time: durations, signals, file modes,
//! environment entries, and the bounds they are held to. The same parsers
//! serve the file and the flags (`cli.rs` uses them as clap value parsers),
//! so a value means the same thing in both.
//!
//! Their errors are messages (`String`): each one is shown to the user,
//! with the place of the value in the file or the flag's name in front,
//! and nothing decides anything from it.

use std::time::Duration;

use nix::sys::signal::Signal;

/// `"0660"` or `"660"` (always octal, as chmod reads it).
pub fn parse_octal_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("`{s}` is not an octal file mode like \"0660\""))?;
    if mode > 0o7777 {
        return Err(format!("`{s}` is not a file mode (at most 7777)"));
    }
    Ok(mode)
}

/// execve(2) refuses any one argument or `NAME=value` string longer than
/// this, NUL included (the kernel's MAX_ARG_STRLEN: 32 pages).
pub const MAX_ENV_ENTRY: usize = 128 * 1024;

/// The most the config's `env` may take, counted as execve does: each
/// `NAME=value` string with its NUL, plus a pointer to it. execve takes the
/// arguments and the environment together up to a quarter of the stack
/// limit: 2 MiB with the usual 8 MiB, which is what this allows. A bigger
/// stack limit lets execve take up to 6 MiB, but a config that works only
/// under a raised `ulimit -s` breaks where it is not raised. The program
/// lookup (`load_checked`) measures the real budget, with the command and
/// the inherited environment, where the server is started.
pub const MAX_ENV_BYTES: usize = 2 * 1024 * 1024;

/// What one environment entry costs in execve's budget.
pub fn env_entry_cost(name: &str, value: &str) -> usize {
    name.len() + 1 + value.len() + 1 + std::mem::size_of::<*const u8>()
}

/// A name and value that a child can be given as they are: a name that is
/// not empty and has no `=` (the child would split it there: `A=B` = `c`
/// reads as `A` = `B=c`), and no NUL anywhere (it would end the string).
pub fn check_env_entry(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a variable needs a name (the name is empty)".into());
    }
    if name.contains('=') {
        return Err(format!(
            "`{name}`: a variable name cannot contain `=` (the program would see `{}`)",
            name.split('=').next().unwrap_or_default()
        ));
    }
    if name.contains('\0') {
        return Err(format!(
            "`{}`: a variable name cannot contain a NUL byte",
            name.escape_debug()
        ));
    }
    if value.contains('\0') {
        return Err(format!(
            "`{name}`: the value contains a NUL byte, where the program would see it end"
        ));
    }
    let len = name.len() + 1 + value.len() + 1;
    if len > MAX_ENV_ENTRY {
        return Err(format!(
            "`{name}`: NAME=value is {len} bytes; a program can be given at most {MAX_ENV_ENTRY} per variable (execve's MAX_ARG_STRLEN)"
        ));
    }
    Ok(())
}

/// A sanity bound, far above what one machine runs.
pub const MAX_WORKERS: usize = 4096;

/// The longest duration accepted: long enough for any timeout, short
/// enough that deadlines computed from it never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `10s`, `500ms`, `2m`, `1h 30m`, at most a year.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    // humantime's own messages spell units its way ("for example 30sec");
    // these say them as the README and the defaults in --help do.
    let d = humantime::parse_duration(s).map_err(|e| {
        use humantime::DurationError as E;
        let why = match e {
            E::UnknownUnit { unit, value, .. } if unit.is_empty() => {
                format!("a number needs a unit, as in {value}s or {value}ms")
            }
            E::UnknownUnit { unit, .. } => {
                format!("`{unit}` is not a unit: use ms, s, m, h or d")
            }
            E::Empty => "it is empty".to_string(),
            E::NumberOverflow => "too large, or finer than 1ns".to_string(),
            E::InvalidCharacter(_) | E::NumberExpected(_) => {
                "expected a number and a unit, as in 10s or 1h 30m".to_string()
            }
        };
        format!("`{s}` is not a duration like \"10s\" or \"500ms\": {why}")
    })?;
    if d > MAX_DURATION {
        return Err(format!("`{s}` is longer than a year"));
    }
    Ok(d)
}

/// `SIGTERM`, `TERM` or `term`.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("`{s}` is not a signal name like \"SIGTERM\" or \"SIGQUIT\""))
}

/// Signals by name ("SIGTERM") in serialized specs.
pub(super) mod signal_name {
    use nix::sys::signal::Signal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(signal: &Signal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(signal.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
        let name = String::deserialize(d)?;
        name.parse()
            .map_err(|_| serde::de::Error::custom(format!("unknown signal {name}")))
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(signal: &Option<Signal>, s: S) -> Result<S::Ok, S::Error> {
            match signal {
                Some(sig) => s.serialize_some(sig.as_str()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Signal>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(name) => name
                    .parse()
                    .map(Some)
                    .map_err(|_| serde::de::Error::custom(format!("unknown signal {name}"))),
                None => Ok(None),
            }
        }
    }
}
