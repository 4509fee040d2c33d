//! `EDGEPOOL_<SECTION>_<KEY>` environment overrides.

use super::schema::{env_var_name, KeyKind, KEYS, SECTIONS};
use super::ConfigError;

/// Environment variables with the `EDGEPOOL_` prefix that are not configuration keys.
pub const NOT_KEYS: &[&str] = &[
    "EDGEPOOL_CONFIG",
    "EDGEPOOL_KEYSTORE_PASSWORD",
    "EDGEPOOL_LOG",
];

/// The variable that holds the keystore password when `identity.password_env` is not set.
const DEFAULT_PASSWORD_ENV: &str = "EDGEPOOL_KEYSTORE_PASSWORD";

/// A key set from the environment: `section.key` and the variable that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// `section.key`.
    pub key: String,
    /// The environment variable.
    pub variable: String,
}

/// Applies every `EDGEPOOL_<SECTION>_<KEY>` variable of `environment` to `table` and returns what
/// it set.
///
/// A variable naming a known section but an unknown key is refused (a typo must not be ignored);
/// the variables of [`NOT_KEYS`], the one named by `identity.password_env` (it holds a password)
/// and other `EDGEPOOL_*` variables are left alone. Names are matched without regard to case.
pub fn apply(
    table: &mut toml::Table,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut vars: Vec<(String, String)> = environment
        .into_iter()
        .filter(|(name, _)| has_prefix(name))
        .collect();
    vars.sort();
    let password_env = password_env(table, &vars);
    let mut applied = Vec::new();
    for (name, raw) in vars {
        if NOT_KEYS.iter().any(|n| n.eq_ignore_ascii_case(&name))
            || password_env.eq_ignore_ascii_case(&name)
        {
            continue;
        }
        let Some((key, kind)) = KEYS
            .iter()
            .find(|(key, _)| env_var_name(key).eq_ignore_ascii_case(&name))
        else {
            if let Some(section) = section_of(&name) {
                let rest = name[section_prefix(section).len()..].to_ascii_lowercase();
                return Err(ConfigError::UnknownKey(format!(
                    "{section}.{rest} (from {name})"
                )));
            }
            continue;
        };
        let value = convert(key, &name, &raw, *kind)?;
        let (section, field) = key.split_once('.').unwrap_or((key, ""));
        let section_table = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(inner) = section_table else {
            // `check_structure` refused a non-table section before the environment is applied.
            return Err(ConfigError::invalid(
                section,
                "not a table",
                &format!("a [{section}] table"),
            ));
        };
        inner.insert(field.to_string(), value);
        applied.push(Override {
            key: (*key).to_string(),
            variable: name,
        });
    }
    Ok(applied)
}

/// Whether `name` starts with `EDGEPOOL_` (in any case).
pub fn has_prefix(name: &str) -> bool {
    name.get(.."EDGEPOOL_".len())
        .is_some_and(|p| p.eq_ignore_ascii_case("EDGEPOOL_"))
}

fn section_prefix(section: &str) -> String {
    format!("EDGEPOOL_{}_", section.to_ascii_uppercase())
}

/// The section a variable name belongs to; the longest match, so that a section whose name
/// starts with another's (`log` and `log_shipping`) is told apart.
fn section_of(name: &str) -> Option<&'static str> {
    SECTIONS
        .iter()
        .filter(|s| {
            let prefix = section_prefix(s);
            name.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(&prefix))
        })
        .max_by_key(|s| s.len())
        .copied()
}

/// The variable holding the keystore password: from the environment, else the file, else the
/// default. It is never read as a configuration key.
fn password_env(table: &toml::Table, vars: &[(String, String)]) -> String {
    let own = env_var_name("identity.password_env");
    if let Some((_, value)) = vars.iter().find(|(n, _)| n.eq_ignore_ascii_case(&own)) {
        return value.clone();
    }
    table
        .get("identity")
        .and_then(|i| i.get("password_env"))
        .and_then(toml::Value::as_str)
        .unwrap_or(DEFAULT_PASSWORD_ENV)
        .to_string()
}

fn convert(key: &str, name: &str, raw: &str, kind: KeyKind) -> Result<toml::Value, ConfigError> {
    Ok(match kind {
        KeyKind::String | KeyKind::Path | KeyKind::Address | KeyKind::Choice(_) => {
            toml::Value::String(raw.to_string())
        }
        KeyKind::Integer { min, max } => {
            let n: i64 = raw.trim().parse().map_err(|_| {
                ConfigError::invalid(
                    &format!("{key} (from {name})"),
                    raw,
                    &format!("a whole number from {min} to {max}"),
                )
            })?;
            toml::Value::Integer(n)
        }
        KeyKind::StringList => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_key_has_its_own_variable() {
        let mut names: Vec<String> = KEYS.iter().map(|(k, _)| env_var_name(k)).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "two keys share a variable name");
        for name in NOT_KEYS {
            assert!(!names.contains(&name.to_string()), "{name} is also a key");
        }
    }

    #[test]
    fn keys_with_underscores_map_to_their_section() {
        let mut table = toml::Table::new();
        let applied = apply(
            &mut table,
            vars(&[
                ("EDGEPOOL_AGENT_STATE_DIR", "/srv/edgepool"),
                ("EDGEPOOL_BROKER_KEEP_ALIVE_SECS", "60"),
            ]),
        )
        .unwrap();
        assert_eq!(table["agent"]["state_dir"].as_str(), Some("/srv/edgepool"));
        assert_eq!(table["broker"]["keep_alive_secs"].as_integer(), Some(60));
        assert_eq!(applied.len(), 2);
    }

    #[test]
    fn an_unknown_key_of_a_known_section_is_refused_with_its_variable() {
        let err = apply(
            &mut toml::Table::new(),
            vars(&[("EDGEPOOL_BROKER_URLL", "mqtt://x:1")]),
        )
        .unwrap_err();
        assert_eq!(
            err,
            ConfigError::UnknownKey("broker.urll (from EDGEPOOL_BROKER_URLL)".into())
        );
    }

    #[test]
    fn variables_outside_the_sections_and_the_password_are_ignored() {
        let mut table = toml::Table::new();
        let applied = apply(
            &mut table,
            vars(&[
                ("EDGEPOOL_KEYSTORE_PASSWORD", "hunter2"),
                ("EDGEPOOL_LOG", "debug"),
                ("EDGEPOOL_CONFIG", "/etc/x.toml"),
                ("EDGEPOOL_SOMETHING_ELSE", "1"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert!(applied.is_empty());
        assert!(table.is_empty());
    }

    #[test]
    fn the_variable_named_by_password_env_is_not_a_key() {
        let mut table = toml::Table::new();
        let applied = apply(
            &mut table,
            vars(&[
                ("EDGEPOOL_IDENTITY_PASSWORD_ENV", "EDGEPOOL_AGENT_SECRET"),
                ("EDGEPOOL_AGENT_SECRET", "hunter2"),
            ]),
        )
        .unwrap();
        assert_eq!(applied.len(), 1);
        assert!(!table.contains_key("agent"));
    }

    #[test]
    fn the_longest_section_name_wins() {
        assert_eq!(section_of("EDGEPOOL_LOG_LEVEL"), Some("log"));
        assert_eq!(section_of("EDGEPOOL_LIMITS_FUEL"), Some("limits"));
        assert_eq!(section_of("EDGEPOOL_LOGS_LEVEL"), None);
    }

    #[test]
    fn integers_that_do_not_fit_name_key_and_variable() {
        let err = apply(
            &mut toml::Table::new(),
            vars(&[("EDGEPOOL_AGENT_SLOTS", "99999999999999999999")]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("agent.slots (from EDGEPOOL_AGENT_SLOTS)"),
            "{text}"
        );
        assert!(text.contains("99999999999999999999"), "{text}");
    }

    #[test]
    fn lists_are_split_on_commas_and_trimmed() {
        let mut table = toml::Table::new();
        apply(
            &mut table,
            vars(&[("EDGEPOOL_FETCH_IPFS_GATEWAYS", " https://a , ,https://b ")]),
        )
        .unwrap();
        let list: Vec<&str> = table["fetch"]["ipfs_gateways"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(list, ["https://a", "https://b"]);
    }
}
