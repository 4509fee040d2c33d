//! `deploy/agent.toml`, the example configuration shipped to operators, stays in step with the
//! schema: it loads, it holds the defaults, and it lists every key (optional ones commented out as
//! `# key = value`, with values of the right type).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

use super::schema::{Config, PoolSection, KEYS, SECTIONS};
use super::{from_str, AgentSection, BrokerSection, FetchSection, IdentitySection};
use super::{LimitsSection, LogSection};

const EXAMPLE: &str = include_str!("../../../deploy/agent.toml");
const ORIGIN: &str = "deploy/agent.toml";

/// A key line, `key = value` or commented out as `# key = value`: its key and whether it is
/// commented out. Prose comments do not match (they never have an identifier then ` = `).
fn key_line(line: &str) -> Option<(&str, bool)> {
    let (body, commented) = match line.strip_prefix("# ") {
        Some(rest) => (rest, true),
        None => (line, false),
    };
    let (key, _) = body.split_once(" = ")?;
    let is_identifier = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    is_identifier.then_some((key, commented))
}

/// Every `section.key` of the file, set or commented out, in file order.
fn listed_keys(text: &str) -> Vec<(String, bool)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((key, commented)) = key_line(line) {
            keys.push((format!("{section}.{key}"), commented));
        }
    }
    keys
}

/// The example with every commented-out key line enabled.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match key_line(line) {
            Some((_, true)) => &line[2..],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_config_loads_with_the_agents_loader() {
    let config = from_str(EXAMPLE, Path::new(ORIGIN), Vec::new());
    assert!(config.is_ok(), "{ORIGIN} does not load: {config:?}");
}

#[test]
fn the_example_config_holds_the_defaults_and_example_pool_addresses() {
    let config = from_str(EXAMPLE, Path::new(ORIGIN), Vec::new()).unwrap();
    let expected = Config {
        broker: BrokerSection::default(),
        pool: PoolSection {
            address: "0x1111111111111111111111111111111111111111"
                .parse()
                .unwrap(),
            scheduler: "0x2222222222222222222222222222222222222222"
                .parse()
                .unwrap(),
        },
        identity: IdentitySection::default(),
        agent: AgentSection::default(),
        limits: LimitsSection::default(),
        fetch: FetchSection::default(),
        log: LogSection::default(),
    };
    assert_eq!(config, expected);
}

#[test]
fn the_example_config_lists_every_schema_key_exactly_once() {
    let listed: Vec<String> = listed_keys(EXAMPLE).into_iter().map(|(k, _)| k).collect();
    let unique: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "a key is listed twice: {listed:?}"
    );
    let schema: BTreeSet<&str> = KEYS.iter().map(|(key, _)| *key).collect();
    let missing: Vec<_> = schema.difference(&unique).collect();
    let unknown: Vec<_> = unique.difference(&schema).collect();
    assert!(missing.is_empty(), "{ORIGIN} lacks {missing:?}");
    assert!(
        unknown.is_empty(),
        "{ORIGIN} lists unknown keys {unknown:?}"
    );
}

#[test]
fn the_example_config_has_its_sections_in_documentation_order() {
    let sections: Vec<&str> = EXAMPLE
        .lines()
        .filter_map(|l| l.strip_prefix('[').and_then(|l| l.strip_suffix(']')))
        .collect();
    assert_eq!(sections, SECTIONS);
}

#[test]
fn the_commented_out_keys_of_the_example_have_values_of_the_right_type() {
    let commented: Vec<String> = listed_keys(EXAMPLE)
        .into_iter()
        .filter(|(_, c)| *c)
        .map(|(k, _)| k)
        .collect();
    assert!(!commented.is_empty());
    let text = uncommented(EXAMPLE);
    let table: toml::Table = toml::from_str(&text).unwrap();
    for key in &commented {
        let (section, name) = key.split_once('.').unwrap();
        assert!(table[section].get(name).is_some(), "{key} not enabled");
    }
    // Types only: together, the optional keys need not make a valid configuration (a CA file
    // needs an mqtts:// URL), so `validate` is not run here.
    let typed: Result<Config, _> = toml::Value::Table(table).try_into();
    assert!(
        typed.is_ok(),
        "enabled example keys are mistyped: {typed:?}"
    );
}
