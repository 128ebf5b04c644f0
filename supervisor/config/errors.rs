//! What is wrong with a configuration, and where: every problem is
//! collected (not only the first) with the file:line:column it has.
//!
//! A problem is a message and a place, not an enum: nothing branches on
//! which problem it is, each is only ever shown to the user, all of them at
//! once, sorted by line. The typed errors are where a caller decides
//! something from the error (`sockets`, `spawn`, `program_path`).

use std::fmt;
use std::path::PathBuf;

/// Where a value came from: a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Option<Location>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    pub(super) fn one(message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            location: None,
            message: message.into(),
        }])
    }
}

/// In the order of the file; the problems that have no place after those.
pub(super) fn sorted(mut errors: ConfigErrors) -> ConfigErrors {
    errors.0.sort_by_key(|e| {
        e.location
            .as_ref()
            .map_or((1, 0, 0), |l| (0, l.line, l.column))
    });
    errors
}
