//! `env_file`: `KEY=VALUE` lines for the child, read with the config (at
//! start and on every reload, so a reload picks up a changed file, and a
//! broken one is refused like a broken config).
//!
//! The format is the common subset of systemd's `EnvironmentFile=` and
//! docker's `--env-file`: `#` comments and blank lines are skipped, a line
//! may start with `export `, and a value may be quoted with `'` (taken as
//! it is) or `"` (where `\"`, `\\`, `\n` and `\$` are escapes). An unquoted
//! value is taken as it is, trailing blanks trimmed. A value never spans
//! lines, and nothing is expanded: `$HOME` stays `$HOME`, `{fd:http}`
//! stays as written (unlike `env`, whose values are templates).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::values::check_env_entry;

/// An environment file as read: its path and its variables, in file
/// order (a name given twice: the last one counts, as in a shell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvFile {
    pub path: PathBuf,
    pub vars: Vec<(String, String)>,
}

/// Reads and parses `path`. The error names the file, and the line where
/// it has one.
pub(super) fn read(path: &Path) -> Result<EnvFile, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text =
        String::from_utf8(text).map_err(|_| format!("{}: not UTF-8 text", path.display()))?;
    let vars = parse(&text).map_err(|(line, e)| format!("{}:{line}: {e}", path.display()))?;
    Ok(EnvFile {
        path: path.to_path_buf(),
        vars,
    })
}

/// The variables of an env file's text, or the first bad line (from 1)
/// and what is wrong with it.
pub(super) fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut vars = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(line, str::trim_start);
        let Some((name, value)) = line.split_once('=') else {
            return Err((
                i + 1,
                format!(
                    "`{}` is not KEY=VALUE",
                    line.chars().take(60).collect::<String>().escape_debug()
                ),
            ));
        };
        let name = name.trim_end();
        if name.is_empty()
            || name.starts_with(|c: char| c.is_ascii_digit())
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err((
                i + 1,
                format!(
                    "`{}` is not a variable name (letters, digits and _, not starting with a digit)",
                    name.escape_debug()
                ),
            ));
        }
        let value = unquote(value.trim_start()).map_err(|e| (i + 1, format!("{name}: {e}")))?;
        check_env_entry(name, &value).map_err(|e| (i + 1, e))?;
        vars.push((name.to_string(), value));
    }
    Ok(vars)
}

fn unquote(value: &str) -> Result<String, String> {
    let Some(quote) = value.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return Ok(value.trim_end().to_string());
    };
    let inner = &value[1..];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c == quote => {
                let rest = chars.as_str().trim();
                if !rest.is_empty() && !rest.starts_with('#') {
                    return Err(format!(
                        "text after the closing {quote}: `{}`",
                        rest.escape_debug()
                    ));
                }
                return Ok(out);
            }
            '\\' if quote == '"' => match chars.next() {
                Some('n') => out.push('\n'),
                Some(c @ ('"' | '\\' | '$' | '`')) => out.push(c),
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(format!(
        "the value opens a {quote} and the line ends before it is closed"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_of_a_line() {
        let text = "# comment\n\nA=1\nexport B = two words  \nC='single $HOME # not a comment'\nD=\"double \\\"q\\\" \\n\" # comment\nE=\nA=again\nexport_F=x\n";
        let vars = parse(text).unwrap();
        assert_eq!(
            vars,
            [
                ("A", "1"),
                ("B", "two words"),
                ("C", "single $HOME # not a comment"),
                ("D", "double \"q\" \n"),
                ("E", ""),
                ("A", "again"),
                ("export_F", "x"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn bad_lines_name_their_number() {
        assert_eq!(parse("A=1\nnot a variable\n").unwrap_err().0, 2);
        assert!(parse("A=1\n\n1X=2").unwrap_err().1.contains("`1X`"));
        assert!(parse("A-B=2")
            .unwrap_err()
            .1
            .contains("not a variable name"));
        assert!(parse("A=\"open")
            .unwrap_err()
            .1
            .contains("before it is closed"));
        assert!(parse("A='x' y")
            .unwrap_err()
            .1
            .contains("after the closing"));
        assert_eq!(parse("A=x\0y").unwrap_err().0, 1);
    }
}
