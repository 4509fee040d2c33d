//! The agent's configuration: one TOML file (default `/etc/edgepool/agent.toml`), every key
//! overridable by an `EDGEPOOL_<SECTION>_<KEY>` environment variable, validated at start.
//!
//! Loading merges three layers, later ones winning: built-in defaults, the file, the environment.
//! In order: the file is parsed (a syntax error gives its line); unknown sections and keys are
//! refused; the environment is applied ([`env_var_name`] gives each key's variable; an unknown key
//! in a known section is refused too); every value is checked against its [`KeyKind`]; required
//! keys ([`REQUIRED_KEYS`]) must be present; the table is deserialized and
//! [`Config::validate`] checks what types cannot. Each failure is a [`ConfigError`] naming the key
//! (and the variable, when the environment set it), the value and what was expected. Values of
//! [`SENSITIVE_KEYS`] are never repeated in an error.
//!
//! # Layout
//!
//! - `schema`: the sections, their defaults and [`KEYS`], the list every other part works from.
//! - `check`: checks on the raw TOML table (known keys, kinds, required keys).
//! - `env`: the environment overrides.
//! - `validate`: [`Config::validate`].
//! - `error`: [`ConfigError`].

mod check;
#[cfg(test)]
mod deploy_example;
mod env;
mod error;
mod schema;
mod validate;

use std::path::{Path, PathBuf};

pub use env::NOT_KEYS;
pub use error::{ConfigError, HIDDEN};
pub use schema::{
    env_var_name, AgentSection, AttestationMode, BrokerSection, Config, FetchSection,
    IdentitySection, KeyKind, LimitsSection, LogSection, PoolSection, ATTESTATION_MODES, KEYS,
    LOG_FORMATS, REQUIRED_KEYS, SECTIONS, SENSITIVE_KEYS,
};
pub use validate::broker_host_port;

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/edgepool/agent.toml";

/// Reads, merges and validates the configuration.
///
/// `path` is the TOML file; `environment` is the process environment (passed in so tests do not
/// mutate the real one). A missing file is an error unless `allow_missing` (then the defaults and
/// the environment alone must make a valid configuration).
///
/// # Errors
/// [`ConfigError`] for an unreadable or malformed file, an unknown key (in the file or in an
/// `EDGEPOOL_<SECTION>_*` variable), a value of the wrong kind or one that fails validation, or
/// a required key set nowhere.
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
        reason: e.message().trim_end().to_string(),
        line: e.span().map(|span| line_of(text, span.start)),
    })?;
    check::check_structure(&table)?;
    let overrides = env::apply(&mut table, environment)?;
    let blame = |error: ConfigError| {
        overrides
            .iter()
            .fold(error, |e, o| e.blame_variable(&o.key, &o.variable))
    };
    check::check_values(&table).map_err(blame)?;
    check::check_required(&table)?;
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Schema(e.message().to_string()))?;
    config.validate().map_err(blame)?;
    Ok(config)
}

/// The line (from 1) holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The process environment as [`load`] takes it: the `EDGEPOOL_*` variables, a value that is not
/// UTF-8 converted lossily (so that it fails validation by name instead of panicking, as
/// `std::env::vars` would).
pub fn process_environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            if !env::has_prefix(&name) {
                return None;
            }
            Some((name, value.to_string_lossy().into_owned()))
        })
        .collect()
}

/// The state directory path of a config, for commands that only need that.
pub fn state_dir(config: &Config) -> &PathBuf {
    &config.agent.state_dir
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const POOL: &str = "[pool]\naddress = \"0x1111111111111111111111111111111111111111\"\n\
                        scheduler = \"0x2222222222222222222222222222222222222222\"\n";

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(n, v)| (n.to_string(), v.to_string()));
        from_str(text, Path::new("agent.toml"), env)
    }

    #[test]
    fn a_syntax_error_at_the_start_of_a_line_reports_that_line() {
        let err = parse(&format!("{POOL}\n= 5\n"), &[]).unwrap_err();
        let ConfigError::Parse { line, .. } = &err else {
            panic!("expected Parse, got {err:?}");
        };
        assert_eq!(*line, Some(5));
        assert!(err.to_string().contains("(line 5)"), "{err}");
    }

    #[test]
    fn line_numbers_count_from_one() {
        assert_eq!(line_of("", 0), 1);
        assert_eq!(line_of("a\nb", 2), 2);
        assert_eq!(line_of("a\nb", 1), 1);
        assert_eq!(line_of("a\n", 99), 2);
    }

    #[test]
    fn a_value_set_by_the_environment_names_its_variable() {
        let err = parse(POOL, &[("EDGEPOOL_AGENT_SLOTS", "0")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Invalid {
                key: "agent.slots (from EDGEPOOL_AGENT_SLOTS)".into(),
                value: "0".into(),
                expected: "a whole number from 1 to 1024".into(),
            }
        );
        let err = parse(POOL, &[("EDGEPOOL_AGENT_SLOTS", "-3")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("agent.slots (from EDGEPOOL_AGENT_SLOTS) = \"-3\""),
            "{err}"
        );
    }

    #[test]
    fn a_missing_pool_section_is_a_missing_key_not_a_serde_message() {
        let err = parse("", &[]).unwrap_err();
        assert!(matches!(&err, ConfigError::Missing { key, .. } if key == "pool.address"));
        let text = err.to_string();
        assert!(
            text.starts_with("required config key pool.address is missing"),
            "{text}"
        );
    }

    #[test]
    fn the_environment_alone_can_supply_the_pool() {
        let config = parse(
            "",
            &[
                (
                    "EDGEPOOL_POOL_ADDRESS",
                    "0x1111111111111111111111111111111111111111",
                ),
                (
                    "EDGEPOOL_POOL_SCHEDULER",
                    "0x2222222222222222222222222222222222222222",
                ),
            ],
        )
        .unwrap();
        assert_eq!(config.agent, AgentSection::default());
    }

    #[test]
    fn an_unknown_key_lists_the_keys_of_its_section() {
        let err = parse(&format!("{POOL}[log]\nlevle = \"info\"\n"), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown config key log.levle: [log] has level, format"
        );
    }
}
