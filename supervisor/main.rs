//! The `handoff` command: parses flags and calls into the library.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use handoff::cli::{default_control_path, Cli, Command, RunArgs};
use handoff::client;
use handoff::config::{self, Config};
use handoff::exit::Exit;
use handoff::logging::{self, Output};

fn main() -> ExitCode {
    // Before anything opens an fd of its own.
    handoff::sys::mark_inherited_fds_cloexec();
    handoff::cli::unset_empty_env();
    let cli = Cli::parse();
    // The supervisor must outlive a stderr nobody reads (or can); a
    // client may block on it, it exits soon anyway.
    let output = match cli.command {
        Command::Run(_) | Command::Resume { check: false, .. } => Output::Buffered,
        _ => Output::Direct,
    };
    logging::init(cli.log_level, output);
    let exit = match cli.command {
        Command::Run(args) => run(&args),
        Command::Restart { target, drained } => client::restart(&target, drained),
        Command::Reload { target, drained } => client::reload(&target, drained),
        Command::Scale { workers, target } => client::scale(&target, workers),
        Command::Status { target, json } => client::status(&target, json),
        Command::Stop(target) => client::stop(&target),
        Command::Check(args) => check(args.file(), !args.skip_program_check),
        Command::Upgrade(target) => client::upgrade(&target),
        Command::Signal(args) => client::signal(&args.target, &args),
        Command::Resume { check, state } => resume(check, &state),
    };
    // The last lines ("stopped") are the ones a reader waits for.
    logging::flush();
    exit.into()
}

/// Loads and fully validates a config, including that the program exists.
fn load(file: Option<&Path>, overrides: config::Overrides) -> Result<Config, Exit> {
    config::load_checked(file, overrides).map_err(|errors| {
        for e in errors.0 {
            logging::error(e);
        }
        Exit::Config
    })
}

fn check(file: &Path, look_up_program: bool) -> Exit {
    let loaded = if look_up_program {
        load(Some(file), config::Overrides::default())
    } else {
        config::load(Some(file), config::Overrides::default()).map_err(|errors| {
            for e in errors.0 {
                logging::error(e);
            }
            Exit::Config
        })
    };
    match loaded {
        Ok(c) => {
            let skipped = if look_up_program {
                ""
            } else {
                "; the program was not looked up (--skip-program-check)"
            };
            // A closed stdout (`handoff check | true`) is no reason to panic.
            let mut out = format!(
                "{}: ok ({} socket(s), {} worker(s)){skipped}\n",
                file.display(),
                c.sockets.len(),
                c.program.workers
            );
            for spec in &c.sockets {
                out += &format!(
                    "  socket {} ({}): {}\n",
                    spec.name,
                    spec.listen,
                    match handoff::sockets::Mode::for_spec(spec) {
                        handoff::sockets::Mode::Steer =>
                            "a socket per generation (steer)".to_string(),
                        handoff::sockets::Mode::Shared { why } => format!("shared ({why})"),
                    }
                );
                if !spec.options.is_empty() {
                    out += &format!("    options: {}\n", spec.options);
                }
            }
            let _ = write!(std::io::stdout(), "{out}");
            Exit::Ok
        }
        Err(exit) => exit,
    }
}

/// The new binary's side of an upgrade: check the state, or take over.
fn resume(check: bool, state: &Path) -> Exit {
    if check {
        // No runtime, no task: the check only reads and looks.
        return match handoff::boot::check(state) {
            Ok(said) => {
                println!("{said}");
                Exit::Ok
            }
            Err(e) => {
                logging::error(e);
                Exit::Setup
            }
        };
    }
    let Some(runtime) = runtime() else {
        return Exit::Setup;
    };
    match runtime.block_on(handoff::boot::resume(state)) {
        Ok(()) => Exit::Ok,
        Err(e) => run_failed(e),
    }
}

/// The supervisor's runtime: one thread. Its work is tiny and strictly
/// sequential, and a single thread keeps its memory small.
fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // The runtime's blocking threads (a reload reads its file on one)
        // never take the supervisor's signals: an upgrade holds them
        // pending on the loop's thread, across its exec.
        .on_thread_start(handoff::sys::block_signals)
        .build()
    {
        Ok(r) => Some(r),
        Err(e) => {
            logging::error(format_args!("cannot start the async runtime: {e}"));
            None
        }
    }
}

fn run(args: &RunArgs) -> Exit {
    let overrides = match args.overrides() {
        Ok(o) => o,
        Err(e) => {
            logging::error(e);
            return Exit::Usage;
        }
    };
    let config = match load(args.config.as_deref(), overrides.clone()) {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    let control = config.control.clone().unwrap_or_else(default_control_path);
    let Some(runtime) = runtime() else {
        return Exit::Setup;
    };
    match runtime.block_on(handoff::boot::run(config, overrides, &control)) {
        Ok(()) => Exit::Ok,
        Err(e) => run_failed(e),
    }
}

/// A supervisor that could not start, or gave up on a crashing server.
fn run_failed(e: handoff::boot::RunError) -> Exit {
    let exit = match e {
        handoff::boot::RunError::RespawnLimit(_) => Exit::RespawnLimit,
        _ => Exit::Setup,
    };
    logging::error(e);
    exit
}
