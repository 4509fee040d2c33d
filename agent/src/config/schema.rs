//! The configuration schema: sections, keys, defaults and validation.

use std::path::PathBuf;

use edgepool_protocol::messages::TaskLimits;
use edgepool_protocol::{Address, Tag};
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The sections of the file, in documentation order.
pub const SECTIONS: &[&str] = &[
    "broker", "pool", "identity", "agent", "limits", "fetch", "log",
];

/// The type of a key's value, used to convert environment variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A string (paths, URLs, addresses).
    String,
    /// A non-negative integer.
    Integer,
    /// A list of strings, written comma-separated in the environment.
    StringList,
}

/// Every key as `section.key` with its kind. `EDGEPOOL_<SECTION>_<KEY>` (upper case) overrides it.
pub const KEYS: &[(&str, KeyKind)] = &[
    ("broker.url", KeyKind::String),
    ("broker.client_id", KeyKind::String),
    ("broker.username", KeyKind::String),
    ("broker.password_file", KeyKind::String),
    ("broker.ca_file", KeyKind::String),
    ("broker.client_cert", KeyKind::String),
    ("broker.client_key", KeyKind::String),
    ("broker.topic_base", KeyKind::String),
    ("broker.keep_alive_secs", KeyKind::Integer),
    ("broker.reconnect_max_secs", KeyKind::Integer),
    ("pool.address", KeyKind::String),
    ("pool.scheduler", KeyKind::String),
    ("identity.keystore", KeyKind::String),
    ("identity.password_file", KeyKind::String),
    ("identity.password_credential", KeyKind::String),
    ("identity.password_env", KeyKind::String),
    ("agent.state_dir", KeyKind::String),
    ("agent.tags", KeyKind::StringList),
    ("agent.slots", KeyKind::Integer),
    ("agent.heartbeat_secs", KeyKind::Integer),
    ("agent.attestation", KeyKind::String),
    ("agent.system_root", KeyKind::String),
    ("agent.min_free_disk_mb", KeyKind::Integer),
    ("limits.fuel", KeyKind::Integer),
    ("limits.memory_mb", KeyKind::Integer),
    ("limits.wall_clock_secs", KeyKind::Integer),
    ("limits.output_mb", KeyKind::Integer),
    ("limits.output_files", KeyKind::Integer),
    ("limits.max_input_mb", KeyKind::Integer),
    ("fetch.timeout_secs", KeyKind::Integer),
    ("fetch.retries", KeyKind::Integer),
    ("fetch.max_download_mb", KeyKind::Integer),
    ("fetch.ipfs_gateways", KeyKind::StringList),
    ("fetch.cache_max_mb", KeyKind::Integer),
    ("log.level", KeyKind::String),
    ("log.format", KeyKind::String),
];

/// The kind of `section.key`, if it exists.
pub fn key_kind(path: &str) -> Option<KeyKind> {
    KEYS.iter()
        .find(|(key, _)| *key == path)
        .map(|(_, kind)| *kind)
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
    /// Filesystem root for hardware detection (`/sys`, `/proc`, `/dev`); tests point it at fake
    /// trees. Default `/`.
    pub system_root: PathBuf,
    /// Below this much free space in `state_dir` the agent accepts no task. Default 512.
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
            system_root: "/".into(),
            min_free_disk_mb: 512,
        }
    }
}

/// `[limits]`: the most one task may use; assignments asking for more are declined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Wasm fuel (instructions, roughly). Default 10,000,000,000.
    pub fuel: u64,
    /// Linear memory in MiB. Default 256.
    pub memory_mb: u64,
    /// Wall-clock seconds. Default 600.
    pub wall_clock_secs: u64,
    /// Output bytes in MiB. Default 64.
    pub output_mb: u64,
    /// Output files. Default 1,000.
    pub output_files: u32,
    /// Dataset plus input files in MiB. Default 1,024.
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
    /// Largest download in MiB. Default 1,024.
    pub max_download_mb: u64,
    /// IPFS gateways tried in order for `/ipfs/<cid>` URLs.
    pub ipfs_gateways: Vec<String>,
    /// Size cap of the content-addressed cache in MiB. Default 2,048.
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

    /// Checks every value.
    ///
    /// # Errors
    /// The first [`ConfigError::Invalid`] found, naming key, value and expectation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        let scheme_ok = b.url.starts_with("mqtt://") || b.url.starts_with("mqtts://");
        if !scheme_ok || broker_host_port(&b.url).is_none() {
            return Err(ConfigError::invalid(
                "broker.url",
                &b.url,
                "mqtt://HOST:PORT or mqtts://HOST:PORT",
            ));
        }
        if b.password_file.is_some() && b.username.is_none() {
            return Err(ConfigError::invalid(
                "broker.password_file",
                &display_path(b.password_file.as_ref()),
                "broker.username to be set as well",
            ));
        }
        if b.client_cert.is_some() != b.client_key.is_some() {
            return Err(ConfigError::invalid(
                "broker.client_cert",
                &display_path(b.client_cert.as_ref()),
                "broker.client_cert and broker.client_key together",
            ));
        }
        if (b.ca_file.is_some() || b.client_cert.is_some()) && !b.url.starts_with("mqtts://") {
            return Err(ConfigError::invalid(
                "broker.url",
                &b.url,
                "mqtts:// when TLS files are configured",
            ));
        }
        if b.topic_base.is_empty()
            || b.topic_base.contains(['+', '#'])
            || b.topic_base.ends_with('/')
        {
            return Err(ConfigError::invalid(
                "broker.topic_base",
                &b.topic_base,
                "a topic prefix without wildcards or trailing /",
            ));
        }
        range("broker.keep_alive_secs", b.keep_alive_secs, 5, 3600)?;
        range("broker.reconnect_max_secs", b.reconnect_max_secs, 1, 3600)?;
        if self.pool.address.is_zero() {
            return Err(ConfigError::invalid(
                "pool.address",
                &self.pool.address.to_string(),
                "a non-zero workerpool address",
            ));
        }
        if self.pool.scheduler.is_zero() {
            return Err(ConfigError::invalid(
                "pool.scheduler",
                &self.pool.scheduler.to_string(),
                "a non-zero scheduler address",
            ));
        }
        let a = &self.agent;
        if !a.state_dir.is_absolute() {
            return Err(ConfigError::invalid(
                "agent.state_dir",
                &a.state_dir.display().to_string(),
                "an absolute path",
            ));
        }
        if let Err(e) = Tag::encode(&a.tags) {
            return Err(ConfigError::invalid(
                "agent.tags",
                &a.tags.join(","),
                &format!("names among tee, scone, gramine, tdx, gpu ({e})"),
            ));
        }
        if a.tags
            .iter()
            .any(|t| matches!(t.as_str(), "tee" | "scone" | "gramine" | "tdx"))
        {
            return Err(ConfigError::invalid(
                "agent.tags",
                &a.tags.join(","),
                "no TEE tags: tee and its framework are claimed only when an attester works",
            ));
        }
        range("agent.slots", u64::from(a.slots), 1, 1024)?;
        range("agent.heartbeat_secs", a.heartbeat_secs, 1, 3600)?;
        let l = &self.limits;
        range("limits.fuel", l.fuel, 1, u64::MAX)?;
        range("limits.memory_mb", l.memory_mb, 1, 65_536)?;
        range(
            "limits.wall_clock_secs",
            l.wall_clock_secs,
            1,
            7 * 24 * 3600,
        )?;
        range("limits.output_mb", l.output_mb, 1, 65_536)?;
        range(
            "limits.output_files",
            u64::from(l.output_files),
            1,
            1_000_000,
        )?;
        range("limits.max_input_mb", l.max_input_mb, 1, 1_048_576)?;
        let f = &self.fetch;
        range("fetch.timeout_secs", f.timeout_secs, 1, 3600)?;
        range("fetch.retries", u64::from(f.retries), 0, 10)?;
        range("fetch.max_download_mb", f.max_download_mb, 1, 1_048_576)?;
        for gateway in &f.ipfs_gateways {
            if !(gateway.starts_with("http://") || gateway.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "fetch.ipfs_gateways",
                    gateway,
                    "http:// or https:// URLs",
                ));
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::invalid(
                "log.format",
                &self.log.format,
                "text or json",
            ));
        }
        Ok(())
    }
}

fn range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            key,
            &value.to_string(),
            &format!("a number from {min} to {max}"),
        ));
    }
    Ok(())
}

fn display_path(path: Option<&PathBuf>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

/// Splits `mqtt[s]://host:port` into host and port.
pub fn broker_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("mqtts://")
        .or_else(|| url.strip_prefix("mqtt://"))?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('@') {
        return None;
    }
    let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
        let (host, after) = stripped.split_once(']')?;
        (host, after.strip_prefix(':')?)
    } else {
        rest.rsplit_once(':')?
    };
    if host.is_empty() {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((host.to_string(), port))
}
