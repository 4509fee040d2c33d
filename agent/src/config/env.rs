//! `EDGEPOOL_<SECTION>_<KEY>` environment overrides.

use super::schema::{key_kind, KeyKind, SECTIONS};
use super::ConfigError;

/// Environment variables with the `EDGEPOOL_` prefix that are not configuration keys.
const NOT_KEYS: &[&str] = &[
    "EDGEPOOL_CONFIG",
    "EDGEPOOL_KEYSTORE_PASSWORD",
    "EDGEPOOL_LOG",
];

/// Applies every `EDGEPOOL_<SECTION>_<KEY>` variable of `environment` to `table`.
///
/// A variable naming a known section but an unknown key is refused (a typo must not be ignored);
/// other `EDGEPOOL_*` variables are left alone.
pub fn apply(
    table: &mut toml::Table,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut vars: Vec<(String, String)> = environment
        .into_iter()
        .filter(|(name, _)| name.starts_with("EDGEPOOL_") && !NOT_KEYS.contains(&name.as_str()))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let rest = name["EDGEPOOL_".len()..].to_ascii_lowercase();
        let Some(section) = SECTIONS.iter().find(|s| rest.starts_with(&format!("{s}_"))) else {
            continue;
        };
        let key = &rest[section.len() + 1..];
        let path = format!("{section}.{key}");
        let kind = key_kind(&path)
            .ok_or_else(|| ConfigError::UnknownKey(format!("{path} (from {name})")))?;
        let value = convert(&name, &raw, kind)?;
        let section_table = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match section_table {
            toml::Value::Table(inner) => {
                inner.insert(key.to_string(), value);
            }
            _ => {
                return Err(ConfigError::invalid(
                    section,
                    "not a table",
                    "a [section] table",
                ))
            }
        }
    }
    Ok(())
}

fn convert(name: &str, raw: &str, kind: KeyKind) -> Result<toml::Value, ConfigError> {
    Ok(match kind {
        KeyKind::String => toml::Value::String(raw.to_string()),
        KeyKind::Integer => {
            let n: i64 = raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::invalid(name, raw, "an integer"))?;
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
