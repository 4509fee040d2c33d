//! The configuration as an operator meets it: real TOML files in a temp dir, `EDGEPOOL_*`
//! variables, and the error text they would read.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use edgepool_agent::config::{
    self, AgentSection, BrokerSection, Config, ConfigError, FetchSection, IdentitySection, KeyKind,
    LimitsSection, LogSection, HIDDEN, KEYS,
};
use edgepool_protocol::Address;

const POOL_ADDRESS: &str = "0x1111111111111111111111111111111111111111";
const SCHEDULER: &str = "0x2222222222222222222222222222222222222222";

/// The smallest valid file: only `[pool]`.
fn pool() -> String {
    format!("[pool]\naddress = \"{POOL_ADDRESS}\"\nscheduler = \"{SCHEDULER}\"\n")
}

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes `agent.toml` and returns its path.
    fn file(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Loads `text` (after the pool) from a real file, with `vars` as the environment.
fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = Dir::new();
    let path = dir.file(&format!("{}{text}", pool()));
    config::load(&path, env(vars), false)
}

/// Loads a file whose whole text is `text` (no pool added).
fn load_raw(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = Dir::new();
    let path = dir.file(text);
    config::load(&path, env(vars), false)
}

fn as_table(config: &Config) -> toml::Table {
    match toml::Value::try_from(config).unwrap() {
        toml::Value::Table(t) => t,
        other => panic!("a config serializes to a table, not {other}"),
    }
}

fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let (section, field) = key.split_once('.').unwrap();
    table.get(section)?.get(field)
}

#[test]
fn a_file_with_only_the_pool_gives_every_default() {
    let config = load("", &[]).unwrap();
    assert_eq!(
        config.pool.address,
        POOL_ADDRESS.parse::<Address>().unwrap()
    );
    assert_eq!(config.pool.scheduler, SCHEDULER.parse::<Address>().unwrap());
    assert_eq!(config.broker, BrokerSection::default());
    assert_eq!(config.identity, IdentitySection::default());
    assert_eq!(config.agent, AgentSection::default());
    assert_eq!(config.limits, LimitsSection::default());
    assert_eq!(config.fetch, FetchSection::default());
    assert_eq!(config.log, LogSection::default());
    assert_eq!(config.broker.url, "mqtt://127.0.0.1:1883");
    assert_eq!(config.agent.state_dir, Path::new("/var/lib/edgepool"));
    assert_eq!(
        config.keystore_path(),
        Path::new("/var/lib/edgepool/keystore.json")
    );
    assert_eq!(config.agent.attestation, config::AttestationMode::Auto);
}

/// A value for `key` that differs from its default and passes validation together with the
/// others, as the variable's text and the value the loaded configuration must then hold.
fn override_for(key: &str) -> (&'static str, toml::Value) {
    let s = |v: &'static str| (v, toml::Value::String(v.to_string()));
    let n = |text: &'static str, v: i64| (text, toml::Value::Integer(v));
    let list = |text: &'static str, items: &[&str]| {
        let items = items.iter().map(|i| toml::Value::String(i.to_string()));
        (text, toml::Value::Array(items.collect()))
    };
    let address = |text: &'static str| {
        let parsed: Address = text.parse().unwrap();
        (text, toml::Value::try_from(parsed).unwrap())
    };
    match key {
        "broker.url" => s("mqtts://broker.example:8883"),
        "broker.client_id" => s("edgepool-test"),
        "broker.username" => s("worker"),
        "broker.password_file" => s("/run/secrets/broker-password"),
        "broker.ca_file" => s("/etc/edgepool/ca.pem"),
        "broker.client_cert" => s("/etc/edgepool/client.pem"),
        "broker.client_key" => s("/etc/edgepool/client.key"),
        "broker.topic_base" => s("acme/edgepool/v2"),
        "broker.keep_alive_secs" => n("45", 45),
        "broker.reconnect_max_secs" => n("120", 120),
        "pool.address" => address("0x3333333333333333333333333333333333333333"),
        "pool.scheduler" => address("0x4444444444444444444444444444444444444444"),
        "identity.keystore" => s("/srv/keys/worker.json"),
        "identity.password_file" => s("/run/secrets/keystore-password"),
        "identity.password_credential" => s("worker-password"),
        "identity.password_env" => s("WORKER_KEYSTORE_PASSWORD"),
        "agent.state_dir" => s("/srv/edgepool"),
        "agent.tags" => list(" gpu ,", &["gpu"]),
        "agent.slots" => n("4", 4),
        "agent.heartbeat_secs" => n(" 20 ", 20),
        "agent.attestation" => s("software"),
        "agent.software_key" => s("/srv/edgepool/device.key"),
        "agent.secret_timeout_secs" => n("30", 30),
        "agent.system_root" => s("/tmp/fake-root"),
        "agent.min_free_disk_mb" => n("0", 0),
        "limits.fuel" => n("5000", 5000),
        "limits.memory_mb" => n("512", 512),
        "limits.wall_clock_secs" => n("30", 30),
        "limits.output_mb" => n("8", 8),
        "limits.output_files" => n("10", 10),
        "limits.max_input_mb" => n("100", 100),
        "fetch.timeout_secs" => n("5", 5),
        "fetch.retries" => n("0", 0),
        "fetch.max_download_mb" => n("10", 10),
        "fetch.ipfs_gateways" => list(
            "https://a.example,https://b.example",
            &["https://a.example", "https://b.example"],
        ),
        "fetch.cache_max_mb" => n("1", 1),
        "log.level" => s("edgepool_agent=debug,info"),
        "log.format" => s("json"),
        other => panic!("no test value for config key {other}: add one to override_for"),
    }
}

#[test]
fn every_key_can_be_set_by_its_environment_variable() {
    let defaults = as_table(&load("", &[]).unwrap());
    let mut vars = Vec::new();
    for (key, _) in KEYS {
        let (text, _) = override_for(key);
        vars.push((config::env_var_name(key), text.to_string()));
    }
    let dir = Dir::new();
    let path = dir.file(&pool());
    let config = config::load(&path, vars, false).unwrap();
    let loaded = as_table(&config);
    for (key, _) in KEYS {
        let (_, expected) = override_for(key);
        assert_eq!(lookup(&loaded, key), Some(&expected), "{key}");
        assert_ne!(
            lookup(&defaults, key),
            Some(&expected),
            "{key}: pick a non-default"
        );
    }
}

#[test]
fn every_key_can_be_set_in_the_file() {
    let mut text = String::new();
    for section in config::SECTIONS {
        text.push_str(&format!("[{section}]\n"));
        for (key, _) in KEYS {
            if let Some(field) = key.strip_prefix(&format!("{section}.")) {
                let (_, value) = override_for(key);
                text.push_str(&format!("{field} = {value}\n"));
            }
        }
    }
    let loaded = as_table(&load_raw(&text, &[]).unwrap());
    for (key, _) in KEYS {
        assert_eq!(lookup(&loaded, key), Some(&override_for(key).1), "{key}");
    }
}

#[test]
fn the_environment_wins_over_the_file() {
    let config = load(
        "[broker]\nurl = \"mqtt://from-file:1883\"\nkeep_alive_secs = 60\n\
         [agent]\nslots = 2\ntags = [\"gpu\"]\n",
        &[
            ("EDGEPOOL_AGENT_SLOTS", "3"),
            ("EDGEPOOL_AGENT_TAGS", ""),
            ("EDGEPOOL_BROKER_KEEP_ALIVE_SECS", "90"),
        ],
    )
    .unwrap();
    assert_eq!(config.agent.slots, 3);
    assert!(config.agent.tags.is_empty());
    assert_eq!(config.broker.keep_alive_secs, 90);
    assert_eq!(config.broker.url, "mqtt://from-file:1883");
}

#[test]
fn an_unknown_key_in_the_file_is_refused_by_name() {
    let err = load("[broker]\nurll = \"mqtt://h:1883\"\n", &[]).unwrap_err();
    assert!(matches!(&err, ConfigError::UnknownKey(k) if k == "broker.urll"));
    let text = err.to_string();
    assert!(text.contains("unknown config key broker.urll"), "{text}");
    assert!(text.contains("url"), "{text}");
    let err = load("[tls]\nca = \"/ca.pem\"\n", &[]).unwrap_err();
    assert!(err.to_string().contains("unknown config key tls"), "{err}");
}

#[test]
fn an_unknown_key_in_the_environment_is_refused_by_name() {
    let err = load("", &[("EDGEPOOL_BROKER_URLL", "mqtt://h:1883")]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("broker.urll"), "{text}");
    assert!(text.contains("EDGEPOOL_BROKER_URLL"), "{text}");
    assert!(!text.contains("mqtt://h:1883"), "{text}");
}

#[test]
fn the_password_and_log_variables_are_not_keys() {
    let config = load(
        "",
        &[
            ("EDGEPOOL_KEYSTORE_PASSWORD", "-1 not a key"),
            ("EDGEPOOL_LOG", "trace"),
            ("EDGEPOOL_CONFIG", "/elsewhere.toml"),
        ],
    )
    .unwrap();
    assert_eq!(config, load("", &[]).unwrap());
}

#[test]
fn a_password_variable_with_a_key_like_name_is_not_read_as_a_key() {
    let config = load(
        "[identity]\npassword_env = \"EDGEPOOL_AGENT_PASSWORD\"\n",
        &[("EDGEPOOL_AGENT_PASSWORD", "-5 hunter2")],
    )
    .unwrap();
    assert_eq!(
        config.identity.password_env.as_deref(),
        Some("EDGEPOOL_AGENT_PASSWORD")
    );
}

/// Each rule: a file fragment, the environment, then the key, value and expectation the error
/// text must hold.
type Env = &'static [(&'static str, &'static str)];

#[rustfmt::skip]
const RULES: &[(&str, Env, &str, &str, &str)] = &[
    ("[broker]\nurl = \"http://h:1883\"", &[], "broker.url", "http://h:1883", "mqtt://HOST:PORT or mqtts://HOST:PORT"),
    ("[broker]\nurl = \"mqtt://h\"", &[], "broker.url", "mqtt://h", "mqtt://HOST:PORT"),
    ("[broker]\nurl = 1883", &[], "broker.url", "1883", "a string"),
    ("[broker]\nca_file = \"/ca.pem\"", &[], "broker.url", "mqtt://127.0.0.1:1883", "mqtts:// when broker.ca_file or broker.client_cert is set"),
    ("[broker]\nusername = \"\"", &[], "broker.username", "", "a non-empty value"),
    ("[broker]\npassword_file = \"/pw\"", &[], "broker.password_file", HIDDEN, "broker.username to be set as well"),
    ("[broker]\nurl = \"mqtts://h:8883\"\nclient_cert = \"/c.pem\"", &[], "broker.client_cert", "/c.pem", "broker.client_key to be set as well"),
    ("[broker]\ntopic_base = \"edgepool/#\"", &[], "broker.topic_base", "edgepool/#", "a topic prefix"),
    ("[broker]\nkeep_alive_secs = 4", &[], "broker.keep_alive_secs", "4", "a whole number from 5 to 3600"),
    ("", &[("EDGEPOOL_BROKER_RECONNECT_MAX_SECS", "0")], "broker.reconnect_max_secs (from EDGEPOOL_BROKER_RECONNECT_MAX_SECS)", "0", "a whole number from 1 to 3600"),
    ("", &[("EDGEPOOL_POOL_ADDRESS", "0xnothex")], "pool.address (from EDGEPOOL_POOL_ADDRESS)", "0xnothex", "an address: 0x and 40 hex digits"),
    ("", &[("EDGEPOOL_POOL_SCHEDULER", "0x0000000000000000000000000000000000000000",)], "pool.scheduler (from EDGEPOOL_POOL_SCHEDULER)", "0x0000000000000000000000000000000000000000", "a non-zero address"),
    ("[identity]\nkeystore = \"\"", &[], "identity.keystore", "", "a non-empty path"),
    ("[identity]\npassword_credential = \"../x\"", &[], "identity.password_credential", HIDDEN, "a systemd credential name"),
    ("[identity]\npassword_env = \"1X\"", &[], "identity.password_env", HIDDEN, "the name of an environment variable"),
    ("[agent]\nstate_dir = \"var/lib/edgepool\"", &[], "agent.state_dir", "var/lib/edgepool", "an absolute path"),
    ("[agent]\nsystem_root = \"fake\"", &[], "agent.system_root", "fake", "an absolute path"),
    ("[agent]\ntags = [\"fpga\"]", &[], "agent.tags", "fpga", "names among tee, scone, gramine, tdx, gpu"),
    ("[agent]\ntags = [\"gpu\", \"tee\"]", &[], "agent.tags", "gpu,tee", "no TEE tags"),
    ("[agent]\ntags = [1]", &[], "agent.tags", "[1]", "a list of strings"),
    ("[agent]\nslots = 0", &[], "agent.slots", "0", "a whole number from 1 to 1024"),
    ("", &[("EDGEPOOL_AGENT_SLOTS", "1025")], "agent.slots (from EDGEPOOL_AGENT_SLOTS)", "1025", "a whole number from 1 to 1024"),
    ("", &[("EDGEPOOL_AGENT_SLOTS", "four")], "agent.slots (from EDGEPOOL_AGENT_SLOTS)", "four", "a whole number from 1 to 1024"),
    ("[agent]\nslots = \"4\"", &[], "agent.slots", "4", "a whole number from 1 to 1024"),
    ("[agent]\nheartbeat_secs = -10", &[], "agent.heartbeat_secs", "-10", "a whole number from 1 to 3600"),
    ("[agent]\nattestation = \"SNP\"", &[], "agent.attestation", "SNP", "one of auto, snp, tdx, software, none"),
    ("", &[("EDGEPOOL_AGENT_ATTESTATION", "sgx")], "agent.attestation (from EDGEPOOL_AGENT_ATTESTATION)", "sgx", "one of auto, snp, tdx, software, none"),
    ("[limits]\nmemory_mb = 0", &[], "limits.memory_mb", "0", "a whole number from 1 to 65536"),
    ("[limits]\noutput_files = 9999999999", &[], "limits.output_files", "9999999999", "a whole number from 1 to 1000000"),
    ("[fetch]\nretries = 11", &[], "fetch.retries", "11", "a whole number from 0 to 10"),
    ("[fetch]\nipfs_gateways = [\"ftp://ipfs.example\"]", &[], "fetch.ipfs_gateways", "ftp://ipfs.example", "http:// or https:// URLs"),
    ("[log]\nformat = \"xml\"", &[], "log.format", "xml", "one of text, json"),
    ("[log]\nlevel = \"a=b=c\"", &[], "log.level", "a=b=c", "a tracing filter"),
];

#[test]
fn each_rule_names_key_value_and_expectation() {
    for (fragment, vars, key, value, expected) in RULES {
        let err = load(&format!("{fragment}\n"), vars).unwrap_err();
        let text = err.to_string();
        let head = format!("config key {key} = {value:?} is invalid: expected {expected}");
        assert!(
            text.starts_with(&head),
            "{fragment} {vars:?}\n got: {text}\nwant: {head}…"
        );
    }
}

#[test]
fn a_missing_file_is_an_error_unless_allowed() {
    let dir = Dir::new();
    let path = dir.dir.path().join("absent.toml");
    let err = config::load(&path, env(&[]), false).unwrap_err();
    assert!(matches!(&err, ConfigError::Read { path: p, .. } if *p == path));
    assert!(err.to_string().contains("absent.toml"), "{err}");

    let err = config::load(&path, env(&[]), true).unwrap_err();
    assert!(matches!(&err, ConfigError::Missing { key, .. } if key == "pool.address"));
    assert!(err.to_string().contains("EDGEPOOL_POOL_ADDRESS"), "{err}");

    let vars = env(&[
        ("EDGEPOOL_POOL_ADDRESS", POOL_ADDRESS),
        ("EDGEPOOL_POOL_SCHEDULER", SCHEDULER),
    ]);
    let config = config::load(&path, vars, true).unwrap();
    assert_eq!(config, load("", &[]).unwrap());
}

#[test]
fn a_directory_in_place_of_the_file_is_a_read_error() {
    let dir = Dir::new();
    let err = config::load(dir.dir.path(), env(&[]), true).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
}

#[test]
fn a_syntax_error_reports_its_line() {
    let text = format!("{}\n[agent]\nslots = = 2\n", pool());
    let err = load_raw(&text, &[]).unwrap_err();
    assert!(
        matches!(err, ConfigError::Parse { line: Some(6), .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("(line 6)"), "{err}");
    let err = load_raw(&format!("{}[agent]\n= 2\n", pool()), &[]).unwrap_err();
    assert!(err.to_string().contains("(line 5)"), "{err}");
}

#[test]
fn a_file_without_the_pool_names_the_missing_key() {
    let err = load_raw("[agent]\nslots = 2\n", &[]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("required config key pool.address is missing"),
        "{text}"
    );
    let err = load_raw(&format!("[pool]\naddress = \"{POOL_ADDRESS}\"\n"), &[]).unwrap_err();
    assert!(err.to_string().contains("pool.scheduler"), "{err}");
}

#[test]
fn a_password_is_never_echoed_in_an_error() {
    const SECRET: &str = "Tr0ub4dor&3";
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        // A password where a variable name, file or credential belongs.
        (format!("[identity]\npassword_env = \"{SECRET}\""), vec![]),
        ("[identity]\npassword_env = 31415926".to_string(), vec![]),
        (
            format!("[identity]\npassword_file = [\"{SECRET}\"]"),
            vec![],
        ),
        (
            format!("[identity]\npassword_credential = \"{SECRET}/\""),
            vec![],
        ),
        (format!("[broker]\npassword_file = \"{SECRET}\""), vec![]),
        (
            String::new(),
            vec![("EDGEPOOL_IDENTITY_PASSWORD_ENV", SECRET)],
        ),
        // A password under a key that does not exist.
        (format!("[identity]\npassword = \"{SECRET}\""), vec![]),
        (format!("[broker]\npassword = \"{SECRET}\""), vec![]),
        (String::new(), vec![("EDGEPOOL_IDENTITY_PASSWORD", SECRET)]),
        (String::new(), vec![("EDGEPOOL_BROKER_PASSWORD", SECRET)]),
        // A password in place of a section, or unquoted (a syntax error).
        (format!("identity = \"{SECRET}\""), vec![]),
        (format!("[identity]\npassword_env = {SECRET}"), vec![]),
    ];
    for (fragment, vars) in cases {
        let text = format!("{}{fragment}\n", pool());
        let err = load_raw(&text, &vars).unwrap_err();
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(
                !shown.contains(SECRET),
                "{fragment} {vars:?} leaked: {shown}"
            );
            assert!(!shown.contains("31415926"), "{fragment} leaked: {shown}");
        }
    }
}

#[test]
fn the_key_list_covers_every_kind_the_environment_converts() {
    // Guards the test above: a new kind must get a test value in `override_for`.
    for (key, kind) in KEYS {
        let (text, value) = override_for(key);
        let fits = match kind {
            KeyKind::String | KeyKind::Path | KeyKind::Choice(_) => value.is_str(),
            KeyKind::Address => value.is_str() && text.starts_with("0x"),
            KeyKind::Integer { min, max } => value
                .as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .is_some_and(|n| (*min..=*max).contains(&n)),
            KeyKind::StringList => value.is_array(),
        };
        assert!(fits, "{key}: test value {text:?} does not fit {kind:?}");
    }
}
