//! Checks on the raw TOML table, before it becomes a [`Config`](super::Config): known sections
//! and keys, values of the right kind, required keys present. Each failure names the key.

use edgepool_protocol::Address;

use super::schema::{env_var_name, key_kind, KeyKind, REQUIRED_KEYS, SECTIONS};
use super::ConfigError;

/// Refuses sections and keys that the schema does not know, naming them in full, and sections
/// that are not tables.
pub fn check_structure(table: &toml::Table) -> Result<(), ConfigError> {
    for (section, value) in table {
        if !SECTIONS.contains(&section.as_str()) {
            return Err(ConfigError::UnknownKey(section.clone()));
        }
        let toml::Value::Table(inner) = value else {
            // The value itself is not shown: it may be anything, a secret included.
            return Err(ConfigError::invalid(
                section,
                &format!("a {}", value.type_str()),
                &format!("a [{section}] table"),
            ));
        };
        for key in inner.keys() {
            let path = format!("{section}.{key}");
            if key_kind(&path).is_none() {
                return Err(ConfigError::UnknownKey(path));
            }
        }
    }
    Ok(())
}

/// Checks that every value present has the kind of its key (see [`KEYS`](super::KEYS)).
///
/// Run on the merged table, so that a bad value names its key rather than surfacing as a
/// deserialization message.
pub fn check_values(table: &toml::Table) -> Result<(), ConfigError> {
    for (section, value) in table {
        let toml::Value::Table(inner) = value else {
            continue;
        };
        for (key, value) in inner {
            let path = format!("{section}.{key}");
            let kind = key_kind(&path).ok_or_else(|| ConfigError::UnknownKey(path.clone()))?;
            check_value(&path, value, kind)?;
        }
    }
    Ok(())
}

fn check_value(path: &str, value: &toml::Value, kind: KeyKind) -> Result<(), ConfigError> {
    let refuse = |expected: &str| Err(ConfigError::invalid(path, &show(value), expected));
    match (kind, value) {
        (KeyKind::String | KeyKind::Path, toml::Value::String(_)) => Ok(()),
        (KeyKind::String, _) => refuse("a string"),
        (KeyKind::Path, _) => refuse("a path (a string)"),
        (KeyKind::Integer { min, max }, toml::Value::Integer(n)) => match u64::try_from(*n) {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            _ => refuse(&format!("a whole number from {min} to {max}")),
        },
        (KeyKind::Integer { min, max }, _) => {
            refuse(&format!("a whole number from {min} to {max}"))
        }
        (KeyKind::StringList, toml::Value::Array(items)) if items.iter().all(|v| v.is_str()) => {
            Ok(())
        }
        (KeyKind::StringList, _) => refuse("a list of strings such as [\"a\", \"b\"]"),
        (KeyKind::Address, toml::Value::String(s)) => match s.parse::<Address>() {
            Ok(_) => Ok(()),
            Err(e) => refuse(&format!(
                "an address: 0x and 40 hex digits, EIP-55 checksummed if mixed case ({e})"
            )),
        },
        (KeyKind::Address, _) => refuse("an address: a string of 0x and 40 hex digits"),
        (KeyKind::Choice(words), toml::Value::String(s)) if words.contains(&s.as_str()) => Ok(()),
        (KeyKind::Choice(words), _) => refuse(&format!("one of {}", words.join(", "))),
    }
}

/// Refuses a configuration without its required keys, saying where they may be given.
pub fn check_required(table: &toml::Table) -> Result<(), ConfigError> {
    for (path, what) in REQUIRED_KEYS {
        let (section, key) = path.split_once('.').unwrap_or((path, ""));
        let present = table
            .get(section)
            .and_then(toml::Value::as_table)
            .is_some_and(|inner| inner.contains_key(key));
        if !present {
            return Err(ConfigError::Missing {
                key: (*path).to_string(),
                expected: format!(
                    "{what}, in the [{section}] section of the file or as {}",
                    env_var_name(path)
                ),
            });
        }
    }
    Ok(())
}

/// A value as an operator wrote it: strings without quotes, other values in TOML syntax.
fn show(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    fn invalid_key(err: ConfigError) -> (String, String, String) {
        match err {
            ConfigError::Invalid {
                key,
                value,
                expected,
            } => (key, value, expected),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_section_and_an_unknown_key_are_named_in_full() {
        let err = check_structure(&table("[brokers]\nurl = \"x\"")).unwrap_err();
        assert_eq!(err, ConfigError::UnknownKey("brokers".into()));
        let err = check_structure(&table("[broker]\nurll = \"x\"")).unwrap_err();
        assert_eq!(err, ConfigError::UnknownKey("broker.urll".into()));
        let err = check_structure(&table("[broker.tls]\nca = \"x\"")).unwrap_err();
        assert_eq!(err, ConfigError::UnknownKey("broker.tls".into()));
    }

    #[test]
    fn a_section_that_is_not_a_table_is_refused_without_echoing_it() {
        let (key, value, expected) =
            invalid_key(check_structure(&table("identity = \"hunter2\"")).unwrap_err());
        assert_eq!(key, "identity");
        assert_eq!(value, "a string");
        assert_eq!(expected, "a [identity] table");
    }

    #[test]
    fn a_negative_integer_names_the_key_and_the_range() {
        let (key, value, expected) =
            invalid_key(check_values(&table("[agent]\nslots = -1")).unwrap_err());
        assert_eq!(key, "agent.slots");
        assert_eq!(value, "-1");
        assert_eq!(expected, "a whole number from 1 to 1024");
    }

    #[test]
    fn an_integer_too_big_for_a_u32_field_is_refused_before_deserialization() {
        let (key, value, _) =
            invalid_key(check_values(&table("[limits]\noutput_files = 5000000000")).unwrap_err());
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("limits.output_files", "5000000000")
        );
    }

    #[test]
    fn a_bad_address_names_the_key_the_value_and_the_format() {
        let (key, value, expected) =
            invalid_key(check_values(&table("[pool]\naddress = \"0x12\"")).unwrap_err());
        assert_eq!(key, "pool.address");
        assert_eq!(value, "0x12");
        assert!(
            expected.starts_with("an address: 0x and 40 hex digits"),
            "{expected}"
        );
    }

    #[test]
    fn an_unknown_attestation_mode_lists_the_modes() {
        let (key, value, expected) =
            invalid_key(check_values(&table("[agent]\nattestation = \"sgx\"")).unwrap_err());
        assert_eq!(key, "agent.attestation");
        assert_eq!(value, "sgx");
        assert_eq!(expected, "one of auto, snp, tdx, software, none");
    }

    #[test]
    fn a_list_key_given_a_string_asks_for_a_list() {
        let (key, value, expected) =
            invalid_key(check_values(&table("[agent]\ntags = \"gpu\"")).unwrap_err());
        assert_eq!((key.as_str(), value.as_str()), ("agent.tags", "gpu"));
        assert!(expected.starts_with("a list of strings"), "{expected}");
    }

    #[test]
    fn a_sensitive_key_of_the_wrong_type_hides_its_value() {
        let (key, value, expected) =
            invalid_key(check_values(&table("[identity]\npassword_env = 12345678")).unwrap_err());
        assert_eq!(key, "identity.password_env");
        assert_eq!(value, crate::config::HIDDEN);
        assert_eq!(expected, "a string");
    }

    #[test]
    fn missing_required_keys_say_where_to_give_them() {
        let err = check_required(&toml::Table::new()).unwrap_err();
        let ConfigError::Missing { key, expected } = &err else {
            panic!("expected Missing, got {err:?}");
        };
        assert_eq!(key, "pool.address");
        assert!(expected.contains("[pool]"), "{expected}");
        assert!(expected.contains("EDGEPOOL_POOL_ADDRESS"), "{expected}");
        let only_address =
            table("[pool]\naddress = \"0x1111111111111111111111111111111111111111\"");
        let err = check_required(&only_address).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { key, .. } if key == "pool.scheduler"));
    }
}
