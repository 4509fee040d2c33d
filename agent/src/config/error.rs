//! Configuration errors, each naming what is wrong precisely enough to fix it.

use std::path::PathBuf;

use super::schema::{is_sensitive, KEYS, SECTIONS};

/// What an error shows in place of the value of a [`SENSITIVE_KEYS`](super::SENSITIVE_KEYS) key.
pub const HIDDEN: &str = "(hidden)";

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
        /// The line (from 1), when known.
        line: Option<usize>,
    },
    /// A section or key that does not exist: `section.key`, followed by ` (from EDGEPOOL_…)` when
    /// an environment variable named it.
    #[error("unknown config key {0}{hint}", hint = known_keys_hint(.0))]
    UnknownKey(String),
    /// A value of the wrong type or out of range.
    #[error("config key {key} = {value:?} is invalid: expected {expected}")]
    Invalid {
        /// `section.key`, followed by ` (from EDGEPOOL_…)` when the environment set the value.
        key: String,
        /// The value found ([`HIDDEN`] for a key that may hold a secret).
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A required key is set neither in the file nor in the environment.
    #[error("required config key {key} is missing: expected {expected}")]
    Missing {
        /// `section.key`.
        key: String,
        /// What it holds and where it may be given.
        expected: String,
    },
    /// The schema refused the configuration for a reason the checks above did not catch.
    #[error("config is incomplete or mistyped: {0}")]
    Schema(String),
}

impl ConfigError {
    /// An [`ConfigError::Invalid`]; the value is cut to 200 characters, and replaced by
    /// [`HIDDEN`] when `key` may hold a secret.
    pub fn invalid(key: &str, value: &str, expected: &str) -> Self {
        let bare_key = key.split(' ').next().unwrap_or(key);
        let value = if is_sensitive(bare_key) {
            HIDDEN.to_string()
        } else {
            value.chars().take(200).collect()
        };
        ConfigError::Invalid {
            key: key.to_string(),
            value,
            expected: expected.to_string(),
        }
    }

    /// Marks a key-naming error as caused by environment variable `variable`.
    pub(super) fn blame_variable(self, key: &str, variable: &str) -> Self {
        match self {
            ConfigError::Invalid {
                key: k,
                value,
                expected,
            } if k == key => ConfigError::Invalid {
                key: format!("{k} (from {variable})"),
                value,
                expected,
            },
            other => other,
        }
    }
}

/// After an unknown key, the keys its section does have (or the sections, for a section).
fn known_keys_hint(unknown: &str) -> String {
    let path = unknown.split(' ').next().unwrap_or(unknown);
    match path.split_once('.') {
        Some((section, _)) if SECTIONS.contains(&section) => {
            let prefix = format!("{section}.");
            let keys: Vec<&str> = KEYS
                .iter()
                .filter_map(|(k, _)| k.strip_prefix(prefix.as_str()))
                .collect();
            format!(": [{section}] has {}", keys.join(", "))
        }
        _ => format!(": the sections are {}", SECTIONS.join(", ")),
    }
}
