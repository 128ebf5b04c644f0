//! Places in a config file: byte offsets, as the TOML parser gives them,
//! turned into file:line:column for the messages.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::errors::{ConfigError, Location};

/// Where each line of a file starts, to turn byte offsets into
/// file:line:column in O(log lines). (Counting newlines from the start for
/// each offset, as this once did, would make locating every `env` entry of
/// a large table quadratic.)
#[derive(Debug, Default)]
pub(crate) struct Lines {
    path: PathBuf,
    starts: Vec<usize>,
}

impl Lines {
    pub(super) fn new(path: &Path, text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines {
            path: path.to_path_buf(),
            starts,
        }
    }

    #[cfg(test)]
    pub(super) fn for_test(path: &str, text: &str) -> Lines {
        Lines::new(Path::new(path), text)
    }

    pub(super) fn at(&self, offset: usize) -> Location {
        // The number of lines starting at or before `offset` (the first
        // starts at 0).
        let line = self.starts.partition_point(|&start| start <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        Location {
            file: self.path.clone(),
            line,
            column: offset.saturating_sub(start) + 1,
        }
    }
}

/// Turns byte offsets into file:line:column.
pub(super) struct Source<'a> {
    pub(super) path: &'a Path,
    pub(super) lines: Lines,
}

impl Source<'_> {
    pub(super) fn at(&self, offset: usize) -> Location {
        self.lines.at(offset)
    }

    pub(super) fn error<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            location: Some(self.at(spanned.span().start)),
            message: message.into(),
        }
    }

    /// The file's directory, absolute, so that what a file means does not
    /// depend on how its path was spelled.
    pub(super) fn base(&self) -> PathBuf {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
    }
}
