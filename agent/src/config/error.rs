//! Configuration errors, each naming what is wrong precisely enough to fix it.

use std::path::PathBuf;

/// Why the configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The file is not valid TOML.
    #[error("config file {} is not valid TOML{}: {reason}", path.display(), line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
        /// The line, when known.
        line: Option<usize>,
    },
    /// A section or key that does not exist.
    #[error("unknown config key {0:?}")]
    UnknownKey(String),
    /// A value of the wrong type or out of range.
    #[error("config key {key} = {value:?} is invalid: expected {expected}")]
    Invalid {
        /// `section.key` (or the environment variable that set it).
        key: String,
        /// The value found.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A required key is missing or has the wrong type (from the schema).
    #[error("config is incomplete or mistyped: {0}")]
    Schema(String),
}

impl ConfigError {
    /// An [`ConfigError::Invalid`].
    pub fn invalid(key: &str, value: &str, expected: &str) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            value: value.chars().take(200).collect(),
            expected: expected.to_string(),
        }
    }
}
