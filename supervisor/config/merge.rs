//! The file's settings and the flags' merged into one [`Config`]: flags
//! win, defaults fill the gaps (one exception: a socket's own `handover`
//! wins over the global one, `--handover` or else the file's top-level key,
//! since no flag sets one socket's value: a `--listen` replaces the whole
//! socket), and what can only be checked on the whole
//! (readiness keys that go together, listen_pid with listen_env, sockets
//! named by templates, the env's size, the program lookup) is checked here, each problem at the place of
//! the key it is about.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::file::FileConfig;
use super::process;
use super::program::program_problem;
use super::values::{check_env_entry, env_entry_cost, MAX_ENV_BYTES};
use super::*;
use crate::sockets::{ListenAddr, SocketSpec};
use crate::template::Named;

mod process_settings;
use process_settings::{credentials, env_bytes, read_env_file};

/// Merges the file and the flags, fills in defaults and checks what can only
/// be checked on the whole.
pub(super) fn finish(
    file: Option<&Path>,
    parsed: FileConfig,
    overrides: Overrides,
    look_up_program: bool,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let at = |key: &str| parsed.keys.get(key).cloned();
    // A value the file refused was reported where it stands; what follows
    // from it is no second mistake.
    let refused = |key: &str| parsed.refused.contains(key);
    // A --listen socket replaces the file's of the same name, where it
    // stood (so its fd number stays): flags override the file.
    let mut sockets: Vec<(SocketSpec, Option<Location>)> = parsed.sockets;
    for flag in overrides.sockets {
        match sockets
            .iter_mut()
            .find(|(s, at)| at.is_some() && s.name == flag.name)
        {
            Some(slot) => *slot = (flag, None),
            None => sockets.push((flag, None)),
        }
    }
    let handover = overrides.handover.or(parsed.handover);
    for (spec, _) in &mut sockets {
        spec.handover = spec.handover.or(handover);
    }
    for (i, (spec, location)) in sockets.iter().enumerate() {
        if sockets[..i]
            .iter()
            .any(|(other, _)| other.name == spec.name)
        {
            errors.push(ConfigError {
                location: location.clone(),
                message: format!(
                    "socket name `{}` is used twice: names must be unique",
                    spec.name
                ),
            });
        }
    }
    let watch = super::watch::merge(&parsed.watch, &overrides.watch, &at, &mut errors);
    let file_program = parsed.program;
    let flags = overrides.program;
    // Before the settings are taken apart below.
    let env_file = read_env_file(&file_program, &flags, &at, &mut errors);
    let credentials = if ["user", "group", "supplementary_groups"]
        .iter()
        .any(|k| refused(k))
    {
        None
    } else {
        credentials(&file_program, &flags, &at, look_up_program, &mut errors)
    };
    let mut env = file_program.env;
    // The file's entries were checked where they stand; --env's here (the
    // flag's parser already refuses an empty name or one without `=`).
    for (name, value) in &flags.env {
        if let Err(e) = check_env_entry(name, value) {
            errors.push(ConfigError {
                location: None,
                message: format!("--env {e}"),
            });
        }
    }
    // A value is the flag's when --env gave it, even where the file has the
    // same name: its mistakes are the flag's, not that line's.
    let from_flags: std::collections::BTreeSet<String> = flags.env.keys().cloned().collect();
    env.extend(flags.env);
    let env_bytes = env_bytes(&env, env_file.as_ref());
    if env_bytes > MAX_ENV_BYTES {
        errors.push(ConfigError {
            location: at("env"),
            message: format!(
                "env: {} variables take {env_bytes} bytes (each NAME=value, its NUL and a pointer, as execve counts them); at most {MAX_ENV_BYTES} (2 MiB) is accepted: execve takes the arguments and environment together up to a quarter of the stack limit, 2 MiB with the usual 8 MiB",
                env.len()
            ),
        });
    }
    let command = flags.command.or(file_program.command);
    let ready_kind = flags
        .ready
        .or(file_program.ready)
        .unwrap_or(ReadyKind::Notify);
    let ready_command = flags.ready_command.or(file_program.ready_command);
    let ready_delay = flags.ready_delay.or(file_program.ready_delay);
    let ready_interval = flags.ready_interval.or(file_program.ready_interval);
    let ready_known = !refused("ready");
    let ready = match ready_kind {
        ReadyKind::Notify => Readiness::Notify,
        ReadyKind::Listen => Readiness::Listen,
        ReadyKind::Delay => Readiness::Delay(ready_delay.unwrap_or(DEFAULT_READY_DELAY)),
        ReadyKind::Exec => match ready_command.clone() {
            Some(command) => Readiness::Exec {
                command,
                interval: ready_interval.unwrap_or(DEFAULT_READY_INTERVAL),
            },
            None => {
                if !refused("ready_command") {
                    errors.push(ConfigError {
                    location: at("ready"),
                    message: "ready = \"exec\" needs a probe: ready_command = [\"/path/to/probe\"] (--ready-command)".into(),
                });
                }
                Readiness::Notify
            }
        },
    };
    if ready_known && ready_command.is_some() && ready_kind != ReadyKind::Exec {
        errors.push(ConfigError {
            location: at("ready_command"),
            message: "ready_command is only used with ready = \"exec\"".into(),
        });
    }
    if ready_known && ready_delay.is_some() && ready_kind != ReadyKind::Delay {
        errors.push(ConfigError {
            location: at("ready_delay"),
            message: "ready_delay is only used with ready = \"delay\"".into(),
        });
    }
    if ready_known && ready_interval.is_some() && ready_kind != ReadyKind::Exec {
        errors.push(ConfigError {
            location: at("ready_interval"),
            message: "ready_interval is only used with ready = \"exec\"".into(),
        });
    }
    let respawn_backoff = flags
        .respawn_backoff
        .or(file_program.respawn_backoff)
        .unwrap_or(DEFAULT_RESPAWN_BACKOFF);
    let respawn_backoff_max = flags
        .respawn_backoff_max
        .or(file_program.respawn_backoff_max)
        .unwrap_or(DEFAULT_RESPAWN_BACKOFF_MAX);
    if !refused("respawn_backoff")
        && !refused("respawn_backoff_max")
        && (respawn_backoff.is_zero() || respawn_backoff > respawn_backoff_max)
    {
        errors.push(ConfigError {
            location: at("respawn_backoff"),
            message: format!(
                "respawn_backoff ({}) must be above zero and at most respawn_backoff_max ({})",
                humantime::format_duration(respawn_backoff),
                humantime::format_duration(respawn_backoff_max)
            ),
        });
    }
    let handover_settle = flags
        .handover_settle
        .or(file_program.handover_settle)
        .unwrap_or(DEFAULT_HANDOVER_SETTLE);
    let handover_timeout = flags
        .handover_timeout
        .or(file_program.handover_timeout)
        .unwrap_or(DEFAULT_HANDOVER_TIMEOUT);
    if !refused("handover_settle")
        && !refused("handover_timeout")
        && handover_settle > handover_timeout
    {
        // At the file's line of the one it gave (a flag's value replaced
        // that line's); none when both are flags or defaults.
        let from_file = |key, flag: Option<Duration>| flag.is_none().then(|| at(key)).flatten();
        errors.push(ConfigError {
            location: from_file("handover_settle", flags.handover_settle)
                .or_else(|| from_file("handover_timeout", flags.handover_timeout)),
            message: format!(
                "handover_settle ({}) must be at most handover_timeout ({}): the old generation's queue must stay empty for handover_settle within handover_timeout",
                humantime::format_duration(handover_settle),
                humantime::format_duration(handover_timeout)
            ),
        });
    }
    let listen_env = flags.listen_env.or(file_program.listen_env).unwrap_or(true);
    // `cargo run` and other wrappers start the server as a grandchild,
    // whose pid LISTEN_PID would not name: --watch makes any process take
    // the sockets unless told otherwise.
    let listen_pid = flags
        .listen_pid
        .or(file_program.listen_pid)
        .unwrap_or(if watch.is_some() {
            ListenPid::Any
        } else {
            ListenPid::Child
        });
    if !refused("listen_env")
        && !refused("listen_pid")
        && !listen_env
        && listen_pid == ListenPid::Any
    {
        // Each side named as the user gave it, the flag's as a flag; at
        // the line of the file's side, listen_pid's first (it is the one
        // that does nothing); none when both are flags.
        let (pid_said, pid_at) = match flags.listen_pid {
            Some(_) => ("--listen-pid any", None),
            None => ("listen_pid = \"any\"", at("listen_pid")),
        };
        let (env_said, env_at) = match flags.listen_env {
            Some(_) => ("--no-listen-env", None),
            None => ("listen_env = false", at("listen_env")),
        };
        errors.push(ConfigError {
            location: pid_at.or(env_at),
            message: format!(
                "{pid_said} does nothing with {env_said}: listen_pid chooses whether LISTEN_PID is set, and without listen_env the child gets no LISTEN_* variables at all; remove one of the two"
            ),
        });
    }
    let sockets_nonblocking = flags
        .sockets_nonblocking
        .or(file_program.sockets_nonblocking)
        .unwrap_or(false);
    let preload = flags.preload.or(file_program.preload).unwrap_or(false);
    if ready_known && ready_kind == ReadyKind::Listen && !preload && !refused("preload") {
        errors.push(ConfigError {
            location: at("ready"),
            message: "ready = \"listen\" is told by the preload library: it needs preload = true (--preload)".into(),
        });
    }
    if preload && sockets.len() > crate::preload::MAX_SOCKETS {
        errors.push(ConfigError {
            location: at("preload"),
            message: format!(
                "preload looks after at most {} sockets; this config has {}",
                crate::preload::MAX_SOCKETS,
                sockets.len()
            ),
        });
    }
    let ready_timeout = flags
        .ready_timeout
        .or(file_program.ready_timeout)
        .unwrap_or(if watch.is_some() {
            super::WATCH_READY_TIMEOUT
        } else {
            DEFAULT_READY_TIMEOUT
        });
    if ready_timeout.is_zero() {
        errors.push(ConfigError {
            location: at("ready_timeout"),
            message: "ready_timeout must be above zero".into(),
        });
    }
    if sockets.is_empty() && parsed.socket_names.is_empty() {
        errors.push(ConfigError {
            location: None,
            message: match file {
                Some(f) => format!(
                    "{}: no socket: add a [[socket]] with name and listen, or --listen",
                    f.display()
                ),
                None => "no socket: give one with --listen NAME=tcp://HOST:PORT".into(),
            },
        });
    }
    let Some(command) = command else {
        if refused("command") {
            return Err(ConfigErrors(errors));
        }
        errors.push(ConfigError {
            location: None,
            message: match file {
                Some(f) => format!("{}: no program: add [program] with command = [\"./server\"], or give the command after --", f.display()),
                None => "no program to run: give its command after --, e.g. handoff run --listen http=tcp://127.0.0.1:8080 -- ./server".into(),
            },
        });
        return Err(ConfigErrors(errors));
    };
    let program = ProgramSpec {
        command,
        env,
        working_directory: flags.working_directory.or(file_program.working_directory),
        ready,
        ready_timeout,
        min_ready_time: flags
            .min_ready_time
            .or(file_program.min_ready_time)
            .unwrap_or(DEFAULT_MIN_READY_TIME),
        stop_signal: flags
            .stop_signal
            .or(file_program.stop_signal)
            .unwrap_or(Signal::SIGTERM),
        drain_timeout: flags
            .drain_timeout
            .or(file_program.drain_timeout)
            .unwrap_or(DEFAULT_DRAIN_TIMEOUT),
        respawn_backoff,
        respawn_backoff_max,
        workers: flags.workers.or(file_program.workers).unwrap_or(1),
        strategy: Strategy::AllAtOnce,
        handover_settle,
        handover_timeout,
        listen_env,
        listen_pid,
        sockets_nonblocking,
        preload,
        controls: ProcessControls {
            credentials,
            umask: flags.umask.or(file_program.umask),
            rlimits: flags.rlimits.or(file_program.rlimits).unwrap_or_default(),
            env_file,
            clear_env: flags.clear_env.or(file_program.clear_env).unwrap_or(false),
        },
        respawn_limit: flags.respawn_limit.or(file_program.respawn_limit),
    };
    let batch = flags.batch.or(file_program.batch);
    let program = match flags.strategy.or(file_program.strategy) {
        Some(StrategyKind::Rolling) => ProgramSpec {
            strategy: Strategy::Rolling {
                batch: batch.unwrap_or(1),
            },
            ..program
        },
        _ => {
            if batch.is_some() && !refused("strategy") {
                errors.push(ConfigError {
                    location: at("batch"),
                    message: "batch is only used with strategy = \"rolling\"".into(),
                });
            }
            program
        }
    };
    // The sockets a template may name: those in effect, and those of the
    // file that were refused (named once each: a name in both is one
    // socket, and the message lists each once).
    // The port is the config's (0 until bound), or unknown for a refused
    // socket (0: no second error about it).
    let mut names: Vec<Named> = sockets
        .iter()
        .map(|(s, _)| Named {
            name: &s.name,
            port: match s.listen {
                ListenAddr::Tcp(a) | ListenAddr::Udp(a) => Some(a.port()),
                ListenAddr::Unix(_) | ListenAddr::UnixAbstract(_) => None,
            },
        })
        .collect();
    for name in &parsed.socket_names {
        if !names.iter().any(|n| n.name == name) {
            names.push(Named {
                name,
                port: Some(0),
            });
        }
    }
    for arg in &program.command {
        if let Err(e) = crate::template::check(arg, &names) {
            errors.push(ConfigError {
                location: at("command"),
                message: e,
            });
        }
    }
    let probe = match &program.ready {
        Readiness::Exec { command, .. } => command.as_slice(),
        _ => &[],
    };
    // The probe may name the child's fds too (`{fd:http}`: which fd to look
    // at in /proc/PID/fdinfo).
    for arg in probe {
        if let Err(e) = crate::template::check(arg, &names) {
            errors.push(ConfigError {
                location: at("ready_command"),
                message: format!("ready_command: {e}"),
            });
        }
    }
    for (key, arg) in program
        .command
        .iter()
        .map(|a| ("command", a))
        .chain(probe.iter().map(|a| ("ready_command", a)))
    {
        if arg.contains('\0') {
            errors.push(ConfigError {
                location: at(key),
                message: format!(
                    "{key}: `{}` contains a NUL byte, where the program would see it end",
                    arg.escape_debug()
                ),
            });
        }
    }
    for (name, value) in &program.env {
        if let Err(e) = crate::template::check(value, &names) {
            errors.push(if from_flags.contains(name) {
                ConfigError {
                    location: None,
                    message: format!("--env `{name}`: {e}"),
                }
            } else {
                ConfigError {
                    location: parsed
                        .env_at
                        .get(name)
                        .map(|&offset| parsed.lines.at(offset))
                        .or_else(|| at("env")),
                    message: format!("env: `{name}`: {e}"),
                }
            });
        }
    }
    if look_up_program && !refused("rlimits") {
        if let Some(message) = process::rlimit_problem(&program.controls.rlimits) {
            errors.push(ConfigError {
                location: at("rlimits"),
                message,
            });
        }
    }
    if look_up_program {
        if let Err((key, message)) = program_problem(&program) {
            errors.push(ConfigError {
                location: at(key),
                message: match (at(key), file) {
                    (None, Some(f)) => format!("{}: {message}", f.display()),
                    _ => message,
                },
            });
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Config {
        file: file.map(Path::to_path_buf),
        control: overrides.control.or(parsed.control),
        sighup: overrides.sighup.or(parsed.sighup).unwrap_or_default(),
        fdstore: overrides.fdstore.or(parsed.fdstore).unwrap_or(false),
        forward_signals: parsed.forward_signals,
        watch,
        sockets: sockets.into_iter().map(|(s, _)| s).collect(),
        program,
    })
}
