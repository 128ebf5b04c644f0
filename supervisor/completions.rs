//! The shell completions and the man page of `handoff`, generated from the
//! same clap definitions as `--help`, so they cannot drift from the flags.
//! The `handoff-docs` binary prints them; the install is a redirection
//! (`handoff-docs man > /usr/local/share/man/man1/handoff.1`).

use std::io::{self, Write};

use clap::CommandFactory;
pub use clap_complete::Shell;

use crate::cli::Cli;

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut command = without_hidden_subcommands(Cli::command());
    let name = command.get_name().to_string();
    // clap_complete writes straight to `out` and panics on a write error;
    // a buffer keeps a closed stdout (`handoff-docs completions bash | head`)
    // an error to report, not a panic.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// The command less its hidden subcommands (`__resume`), which
/// clap_complete would otherwise offer on `handoff <TAB>`.
fn without_hidden_subcommands(command: clap::Command) -> clap::Command {
    let visible: Vec<clap::Command> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    // `name = "handoff"` and `version` are the attributes on `Cli`.
    clap::Command::new("handoff")
        .version(env!("CARGO_PKG_VERSION"))
        .args(command.get_arguments().cloned())
        .subcommands(visible)
}

/// Writes the man page, handoff(1), in roff: one page for the whole
/// command, with a section per subcommand giving its own arguments, so a
/// single installed file documents every flag. (clap_mangen's own
/// SUBCOMMANDS section would point at handoff-run(1) and others, pages
/// nobody installs.)
pub fn man(out: &mut dyn Write) -> io::Result<()> {
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        subcommand_section(sub, &mut page)?;
    }
    man.render_version_section(&mut page)?;
    out.write_all(&once_preamble(&page))?;
    out.flush()
}

/// `.SH "HANDOFF RUN"`, the subcommand's description, and its arguments as
/// clap_mangen renders them on a page of its own (less that page's header).
fn subcommand_section(sub: &clap::Command, page: &mut Vec<u8>) -> io::Result<()> {
    let title = format!("handoff {}", sub.get_name()).to_uppercase();
    writeln!(page, ".SH \"{title}\"")?;
    // The subcommand's usage line names it as a program of its own
    // (`run [OPTIONS]`); the full name reads right in the parent's page.
    let sub = sub.clone().bin_name(format!("handoff {}", sub.get_name()));
    let man = clap_mangen::Man::new(sub);
    let mut synopsis = Vec::new();
    man.render_synopsis_section(&mut synopsis)?;
    page.extend(demote(&synopsis));
    let mut description = Vec::new();
    man.render_description_section(&mut description)?;
    page.extend(demote(&description));
    let mut options = Vec::new();
    man.render_options_section(&mut options)?;
    page.extend(demote(&options));
    Ok(())
}

/// clap_mangen starts every rendered section with the same two-line
/// string definition; the page needs it once, at the top.
fn once_preamble(page: &[u8]) -> Vec<u8> {
    const PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];
    let text = String::from_utf8_lossy(page);
    let mut out = String::with_capacity(text.len());
    let mut kept = 0;
    for line in text.lines() {
        if PREAMBLE.contains(&line) {
            if kept == PREAMBLE.len() {
                continue;
            }
            kept += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

/// Turns a rendered section's `.SH` headings into `.SS` subsection
/// headings, so each subcommand's parts sit under its own `.SH`.
fn demote(section: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(section);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.strip_prefix(".SH ") {
            Some(heading) => out.push_str(&format!(".SS {heading}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_completes_the_subcommands_but_not_the_internal_one() {
        let mut out = Vec::new();
        completions(Shell::Bash, &mut out).unwrap();
        let script = String::from_utf8(out).unwrap();
        for sub in ["run", "restart", "reload", "status", "stop", "check", "man"] {
            assert!(script.contains(sub), "no `{sub}` in:\n{script}");
        }
        assert!(!script.contains("__resume"), "{script}");
    }

    #[test]
    fn the_man_page_has_a_section_per_subcommand() {
        let mut out = Vec::new();
        man(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH handoff 1"),
            "{page}"
        );
        assert!(page.contains(".SH \"HANDOFF RUN\""), "{page}");
        assert!(page.contains("ready\\-timeout"), "{page}");
        assert!(!page.contains("__resume"), "{page}");
    }
}
