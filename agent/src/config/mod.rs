//! The agent's configuration: one TOML file (default `/etc/edgepool/agent.toml`), every key
//! overridable by an `EDGEPOOL_<SECTION>_<KEY>` environment variable, validated at start.
//!
//! Loading merges three layers, later ones winning: built-in defaults, the file, the environment.
//! The merged table is then deserialized with unknown keys refused, and [`Config::validate`] checks
//! every value. Each failure is a [`ConfigError`] naming the key, the value and what was expected.

#[cfg(test)]
mod deploy_example;
mod env;
mod error;
mod schema;

use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use schema::{
    AgentSection, AttestationMode, BrokerSection, Config, FetchSection, IdentitySection,
    LimitsSection, LogSection, PoolSection,
};

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/edgepool/agent.toml";

/// Reads, merges and validates the configuration.
///
/// `path` is the TOML file; `environment` is the process environment (passed in so tests do not
/// mutate the real one). A missing file is an error unless `allow_missing` (then the defaults and
/// the environment alone must make a valid configuration).
///
/// # Errors
/// [`ConfigError`] for an unreadable or malformed file, an unknown key, a value of the wrong type
/// or one that fails validation.
pub fn load(
    path: &Path,
    environment: impl IntoIterator<Item = (String, String)>,
    allow_missing: bool,
) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && allow_missing => String::new(),
        Err(e) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    from_str(&text, path, environment)
}

/// As [`load`], over TOML text already read (`origin` names it in errors).
///
/// # Errors
/// As [`load`].
pub fn from_str(
    text: &str,
    origin: &Path,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_path_buf(),
        reason: e.message().to_string(),
        line: e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1)),
    })?;
    check_keys(&table, "")?;
    env::apply(&mut table, environment)?;
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Schema(e.message().to_string()))?;
    config.validate()?;
    Ok(config)
}

/// Refuses sections and keys that the schema does not know, naming them in full.
fn check_keys(table: &toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if prefix.is_empty() {
            if !schema::SECTIONS.contains(&key.as_str()) {
                return Err(ConfigError::UnknownKey(path));
            }
            match value {
                toml::Value::Table(inner) => check_keys(inner, &path)?,
                other => {
                    return Err(ConfigError::invalid(
                        &path,
                        &other.to_string(),
                        "a [section] table",
                    ))
                }
            }
        } else if schema::key_kind(&path).is_none() {
            return Err(ConfigError::UnknownKey(path));
        }
    }
    Ok(())
}

/// The state directory path of a config, for commands that only need that.
pub fn state_dir(config: &Config) -> &PathBuf {
    &config.agent.state_dir
}
