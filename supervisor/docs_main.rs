//! `handoff-docs`: prints the shell completions and the man page of
//! `handoff`, generated from its clap definitions (`completions.rs`).
//!
//! A binary of its own rather than subcommands of `handoff`: the generators
//! (clap_complete, clap_mangen) add about 180 KiB of code, and with it some
//! 200 KiB of resident memory to a supervisor that sits in front of every
//! request for months; here they cost nothing to it.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use handoff::completions::{self, Shell};

#[derive(Debug, Parser)]
#[command(
    name = "handoff-docs",
    version,
    about = "Print handoff's shell completions or its man page, generated from its flags.",
    after_help = "Examples:\n  handoff-docs completions bash > /etc/bash_completion.d/handoff\n  handoff-docs man > /usr/local/share/man/man1/handoff.1"
)]
enum Docs {
    /// Print the completion script for a shell.
    Completions { shell: Shell },
    /// Print the man page, handoff(1), in roff.
    Man,
}

fn main() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let written = match Docs::parse() {
        Docs::Completions { shell } => completions::completions(shell, &mut out),
        Docs::Man => completions::man(&mut out),
    };
    match written {
        // `handoff-docs man | head`: the reader had what it wanted.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            let _ = writeln!(
                std::io::stderr(),
                "handoff-docs: cannot write to stdout: {e}"
            );
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
