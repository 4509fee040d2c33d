//! The configuration schema: sections, keys, defaults and validation.

use std::path::PathBuf;

use edgepool_protocol::messages::TaskLimits;
use edgepool_protocol::{Address, Tag};
use serde::{Deserialize, Serialize};

/// The sections of the file, in documentation order.
pub const SECTIONS: &[&str] = &[
    "broker", "pool", "identity", "agent", "limits", "fetch", "log",
];

/// The type of a key's value: how an environment variable is converted and what a value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Free text (URLs, names, filters).
    String,
    /// A file or directory path (a non-empty string).
    Path,
    /// A whole number from `min` to `max` inclusive (the valid range, checked at load).
    Integer {
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// A list of strings, written comma-separated in the environment.
    StringList,
    /// An Ethereum address: `0x` and 40 hex digits (EIP-55 checksummed if mixed case).
    Address,
    /// One of a fixed set of lower-case words.
    Choice(&'static [&'static str]),
}

/// Shorthand for an integer key's range.
const fn int(min: u64, max: u64) -> KeyKind {
    KeyKind::Integer { min, max }
}

/// The accepted `agent.attestation` values.
pub const ATTESTATION_MODES: &[&str] = &["auto", "snp", "tdx", "software", "none"];

/// The accepted `log.format` values.
pub const LOG_FORMATS: &[&str] = &["text", "json"];

/// The largest size in MiB any size key accepts (16 TiB), so that sizes in bytes fit a `u64`.
const MAX_MIB: u64 = 16 * 1024 * 1024;

/// Every key as `section.key` with its kind. `EDGEPOOL_<SECTION>_<KEY>` (upper case, `.` as `_`)
/// overrides it; see [`env_var_name`].
pub const KEYS: &[(&str, KeyKind)] = &[
    ("broker.url", KeyKind::String),
    ("broker.client_id", KeyKind::String),
    ("broker.username", KeyKind::String),
    ("broker.password_file", KeyKind::Path),
    ("broker.ca_file", KeyKind::Path),
    ("broker.client_cert", KeyKind::Path),
    ("broker.client_key", KeyKind::Path),
    ("broker.topic_base", KeyKind::String),
    ("broker.keep_alive_secs", int(5, 3600)),
    ("broker.reconnect_max_secs", int(1, 3600)),
    ("pool.address", KeyKind::Address),
    ("pool.scheduler", KeyKind::Address),
    ("identity.keystore", KeyKind::Path),
    ("identity.password_file", KeyKind::Path),
    ("identity.password_credential", KeyKind::String),
    ("identity.password_env", KeyKind::String),
    ("agent.state_dir", KeyKind::Path),
    ("agent.tags", KeyKind::StringList),
    ("agent.slots", int(1, 1024)),
    ("agent.heartbeat_secs", int(1, 3600)),
    ("agent.attestation", KeyKind::Choice(ATTESTATION_MODES)),
    ("agent.software_key", KeyKind::Path),
    ("agent.secret_timeout_secs", int(1, 3600)),
    ("agent.system_root", KeyKind::Path),
    ("agent.min_free_disk_mb", int(0, MAX_MIB)),
    ("limits.fuel", int(1, i64::MAX as u64)),
    ("limits.memory_mb", int(1, 65_536)),
    ("limits.wall_clock_secs", int(1, 7 * 24 * 3600)),
    ("limits.output_mb", int(1, 65_536)),
    ("limits.output_files", int(1, 1_000_000)),
    ("limits.max_input_mb", int(1, 1_048_576)),
    ("fetch.timeout_secs", int(1, 3600)),
    ("fetch.retries", int(0, 10)),
    ("fetch.max_download_mb", int(1, 1_048_576)),
    ("fetch.ipfs_gateways", KeyKind::StringList),
    ("fetch.cache_max_mb", int(0, MAX_MIB)),
    ("log.level", KeyKind::String),
    ("log.format", KeyKind::Choice(LOG_FORMATS)),
];

/// Keys without a default: the file or the environment must set them.
pub const REQUIRED_KEYS: &[(&str, &str)] = &[
    (
        "pool.address",
        "the workerpool address (0x and 40 hex digits)",
    ),
    (
        "pool.scheduler",
        "the scheduler (workerpool owner) address (0x and 40 hex digits)",
    ),
];

/// Keys whose value is never repeated in an error: an operator may put the password itself there
/// by mistake (in place of a file, credential or variable name).
pub const SENSITIVE_KEYS: &[&str] = &[
    "broker.password_file",
    "identity.password_file",
    "identity.password_credential",
    "identity.password_env",
];

/// The kind of `section.key`, if it exists.
pub fn key_kind(path: &str) -> Option<KeyKind> {
    KEYS.iter()
        .find(|(key, _)| *key == path)
        .map(|(_, kind)| *kind)
}

/// Whether errors must hide the value of `section.key` (see [`SENSITIVE_KEYS`]).
pub fn is_sensitive(path: &str) -> bool {
    SENSITIVE_KEYS.contains(&path)
}

/// The environment variable that overrides `section.key`: `agent.state_dir` →
/// `EDGEPOOL_AGENT_STATE_DIR`.
pub fn env_var_name(path: &str) -> String {
    format!("EDGEPOOL_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The MQTT broker.
    #[serde(default)]
    pub broker: BrokerSection,
    /// The workerpool this agent serves.
    pub pool: PoolSection,
    /// The wallet.
    #[serde(default)]
    pub identity: IdentitySection,
    /// The agent itself.
    #[serde(default)]
    pub agent: AgentSection,
    /// Upper bounds on what one task may use.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Downloads of apps, datasets and input files.
    #[serde(default)]
    pub fetch: FetchSection,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
}

/// `[broker]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSection {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS). Default `mqtt://127.0.0.1:1883`.
    pub url: String,
    /// MQTT client id; default `edgepool-<worker address>`.
    pub client_id: Option<String>,
    /// Username for password authentication.
    pub username: Option<String>,
    /// File holding the broker password (needs `username`).
    pub password_file: Option<PathBuf>,
    /// PEM CA bundle to trust for `mqtts://` (default: the system's web PKI roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (needs `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Topic base; topics are `{topic_base}/{pool}/workers/{worker}/…`. Default `edgepool/v1`.
    pub topic_base: String,
    /// MQTT keep-alive in seconds (5–3600). Default 30.
    pub keep_alive_secs: u64,
    /// Upper bound of the reconnect backoff in seconds (1–3600). Default 30.
    pub reconnect_max_secs: u64,
}

impl Default for BrokerSection {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: None,
            username: None,
            password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            topic_base: "edgepool/v1".into(),
            keep_alive_secs: 30,
            reconnect_max_secs: 30,
        }
    }
}

/// `[pool]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// The workerpool address (required).
    pub address: Address,
    /// The scheduler (workerpool owner) address: the only signer whose tasks are accepted
    /// (required).
    pub scheduler: Address,
}

/// `[identity]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentitySection {
    /// The encrypted JSON keystore (v3, scrypt). Default `<state_dir>/keystore.json`.
    pub keystore: Option<PathBuf>,
    /// A file holding the keystore password.
    pub password_file: Option<PathBuf>,
    /// The name of a systemd credential (`LoadCredential=`) holding the password, read from
    /// `$CREDENTIALS_DIRECTORY/<name>`. Default `edgepool-keystore-password`.
    pub password_credential: Option<String>,
    /// The environment variable holding the password. Default `EDGEPOOL_KEYSTORE_PASSWORD`.
    pub password_env: Option<String>,
}

impl Default for IdentitySection {
    fn default() -> Self {
        Self {
            keystore: None,
            password_file: None,
            password_credential: Some("edgepool-keystore-password".into()),
            password_env: Some("EDGEPOOL_KEYSTORE_PASSWORD".into()),
        }
    }
}

/// Which attester the agent uses for TEE tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestationMode {
    /// Use whatever hardware attester is found; claim `tee` only if one works.
    Auto,
    /// AMD SEV-SNP through configfs-tsm or `/dev/sev-guest`.
    Snp,
    /// Intel TDX through configfs-tsm or `/dev/tdx_guest`.
    Tdx,
    /// A software attester (no hardware guarantee; accepted only by permissive SMS policies).
    Software,
    /// Never attest; never claim `tee`.
    None,
}

/// `[agent]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSection {
    /// Where the journal, keystore and cache live. Default `/var/lib/edgepool`.
    pub state_dir: PathBuf,
    /// Operator tags added to the detected ones (`tee` cannot be forced here).
    pub tags: Vec<String>,
    /// Tasks run at once (1–1024). Default 1.
    pub slots: u32,
    /// Seconds between heartbeats (1–3600). Default 10.
    pub heartbeat_secs: u64,
    /// Attester selection. Default `auto`.
    pub attestation: AttestationMode,
    /// The software attester's device key (Ed25519 PKCS#8, created 0600 on first use). Default
    /// `<state_dir>/attestation/software.key`.
    pub software_key: Option<PathBuf>,
    /// How long a TEE task waits for the SMS's answer to its secret request (1–3600 s; never
    /// past the contribution deadline). Default 120.
    pub secret_timeout_secs: u64,
    /// Filesystem root for hardware detection (`/sys`, `/proc`, `/dev`); tests point it at fake
    /// trees. Default `/`.
    pub system_root: PathBuf,
    /// Below this much free space (MiB, 0–16,777,216) in `state_dir` the agent accepts no task.
    /// Default 512.
    pub min_free_disk_mb: u64,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            state_dir: "/var/lib/edgepool".into(),
            tags: Vec::new(),
            slots: 1,
            heartbeat_secs: 10,
            attestation: AttestationMode::Auto,
            software_key: None,
            secret_timeout_secs: 120,
            system_root: "/".into(),
            min_free_disk_mb: 512,
        }
    }
}

/// `[limits]`: the most one task may use; assignments asking for more are declined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Wasm fuel (instructions, roughly; 1 to `i64::MAX`, the largest TOML integer). Default
    /// 10,000,000,000.
    pub fuel: u64,
    /// Linear memory in MiB (1–65,536). Default 256.
    pub memory_mb: u64,
    /// Wall-clock seconds (1–604,800, a week). Default 600.
    pub wall_clock_secs: u64,
    /// Output bytes in MiB (1–65,536). Default 64.
    pub output_mb: u64,
    /// Output files (1–1,000,000). Default 1,000.
    pub output_files: u32,
    /// Dataset plus input files in MiB (1–1,048,576). Default 1,024.
    pub max_input_mb: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let d = TaskLimits::default();
        Self {
            fuel: d.fuel,
            memory_mb: d.memory_bytes / MIB,
            wall_clock_secs: d.wall_clock_ms / 1000,
            output_mb: d.output_bytes / MIB,
            output_files: d.output_files,
            max_input_mb: d.max_input_bytes / MIB,
        }
    }
}

const MIB: u64 = 1024 * 1024;

impl LimitsSection {
    /// As the protocol's limits.
    pub fn to_task_limits(&self) -> TaskLimits {
        TaskLimits {
            fuel: self.fuel,
            memory_bytes: self.memory_mb.saturating_mul(MIB),
            wall_clock_ms: self.wall_clock_secs.saturating_mul(1000),
            output_bytes: self.output_mb.saturating_mul(MIB),
            output_files: self.output_files,
            max_input_bytes: self.max_input_mb.saturating_mul(MIB),
        }
    }
}

/// `[fetch]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchSection {
    /// Per-request timeout in seconds (1–3600). Default 60.
    pub timeout_secs: u64,
    /// Retries after a failed download (0–10). Default 3.
    pub retries: u32,
    /// Largest download in MiB (1–1,048,576). Default 1,024.
    pub max_download_mb: u64,
    /// IPFS gateways tried in order for `/ipfs/<cid>` URLs.
    pub ipfs_gateways: Vec<String>,
    /// Size cap of the content-addressed cache in MiB (0–16,777,216). Default 2,048.
    pub cache_max_mb: u64,
}

impl Default for FetchSection {
    fn default() -> Self {
        Self {
            timeout_secs: 60,
            retries: 3,
            max_download_mb: 1024,
            ipfs_gateways: vec!["https://ipfs.io".into()],
            cache_max_mb: 2048,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter (`info`, `edgepool_agent=debug,info`, …). Default `info`.
    pub level: String,
    /// `text` or `json`. Default `text`.
    pub format: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Config {
    /// The keystore path (`identity.keystore`, default `<state_dir>/keystore.json`).
    pub fn keystore_path(&self) -> PathBuf {
        self.identity
            .keystore
            .clone()
            .unwrap_or_else(|| self.agent.state_dir.join("keystore.json"))
    }

    /// The operator tags as a bitmap (validated at load).
    pub fn operator_tags(&self) -> Tag {
        Tag::encode(&self.agent.tags).unwrap_or(Tag::NONE)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A configuration with every optional key set, so that serializing it shows every field.
    fn everything() -> Config {
        let address: Address = "0x1111111111111111111111111111111111111111"
            .parse()
            .unwrap();
        let mut config = Config {
            broker: BrokerSection::default(),
            pool: PoolSection {
                address,
                scheduler: address,
            },
            identity: IdentitySection::default(),
            agent: AgentSection::default(),
            limits: LimitsSection::default(),
            fetch: FetchSection::default(),
            log: LogSection::default(),
        };
        let b = &mut config.broker;
        b.client_id = Some("c".into());
        b.username = Some("u".into());
        b.password_file = Some("/p".into());
        b.ca_file = Some("/ca".into());
        b.client_cert = Some("/cert".into());
        b.client_key = Some("/key".into());
        config.identity.keystore = Some("/ks".into());
        config.identity.password_file = Some("/pw".into());
        config.agent.software_key = Some("/sk".into());
        config
    }

    #[test]
    fn the_key_list_names_every_field_and_nothing_else() {
        let toml::Value::Table(table) = toml::Value::try_from(everything()).unwrap() else {
            panic!("a config serializes to a table");
        };
        let mut fields: Vec<String> = table
            .iter()
            .flat_map(|(section, inner)| {
                let inner = inner.as_table().unwrap();
                inner.keys().map(move |k| format!("{section}.{k}"))
            })
            .collect();
        fields.sort();
        let mut keys: Vec<String> = KEYS.iter().map(|(k, _)| (*k).to_string()).collect();
        keys.sort();
        assert_eq!(fields, keys);
        let mut sections: Vec<&str> = table.keys().map(String::as_str).collect();
        sections.sort_unstable();
        let mut known = SECTIONS.to_vec();
        known.sort_unstable();
        assert_eq!(sections, known);
    }

    #[test]
    fn required_and_sensitive_keys_are_keys() {
        for (key, _) in REQUIRED_KEYS {
            assert!(key_kind(key).is_some(), "{key}");
        }
        for key in SENSITIVE_KEYS {
            assert!(key_kind(key).is_some(), "{key}");
        }
    }

    #[test]
    fn the_attestation_words_are_the_enum_variants() {
        for word in ATTESTATION_MODES {
            let mode: AttestationMode =
                toml::Value::String((*word).to_string()).try_into().unwrap();
            assert_eq!(toml::Value::try_from(mode).unwrap().as_str(), Some(*word));
        }
    }

    #[test]
    fn variable_names_replace_the_dot_and_go_upper_case() {
        assert_eq!(env_var_name("agent.state_dir"), "EDGEPOOL_AGENT_STATE_DIR");
        assert_eq!(
            env_var_name("broker.keep_alive_secs"),
            "EDGEPOOL_BROKER_KEEP_ALIVE_SECS"
        );
    }
}
