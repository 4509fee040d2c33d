//! [`Config::validate`]: the checks on values that types alone do not express.

use std::path::{Path, PathBuf};

use edgepool_protocol::Tag;

use super::schema::{key_kind, Config, KeyKind};
use super::ConfigError;

impl Config {
    /// Checks every value.
    ///
    /// Integer ranges come from [`KEYS`](super::KEYS), so a file, the environment and a
    /// configuration built in code are held to the same bounds.
    ///
    /// # Errors
    /// The first [`ConfigError::Invalid`] found, naming key, value and expectation (the value is
    /// hidden for the keys of [`SENSITIVE_KEYS`](super::SENSITIVE_KEYS)).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_broker()?;
        self.validate_pool()?;
        self.validate_identity()?;
        self.validate_agent()?;
        let l = &self.limits;
        range("limits.fuel", l.fuel)?;
        range("limits.memory_mb", l.memory_mb)?;
        range("limits.wall_clock_secs", l.wall_clock_secs)?;
        range("limits.output_mb", l.output_mb)?;
        range("limits.output_files", u64::from(l.output_files))?;
        range("limits.max_input_mb", l.max_input_mb)?;
        let f = &self.fetch;
        range("fetch.timeout_secs", f.timeout_secs)?;
        range("fetch.retries", u64::from(f.retries))?;
        range("fetch.max_download_mb", f.max_download_mb)?;
        range("fetch.cache_max_mb", f.cache_max_mb)?;
        for gateway in &f.ipfs_gateways {
            let host = gateway
                .strip_prefix("https://")
                .or_else(|| gateway.strip_prefix("http://"));
            if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
                return Err(ConfigError::invalid(
                    "fetch.ipfs_gateways",
                    gateway,
                    "http:// or https:// URLs",
                ));
            }
        }
        self.validate_log()
    }

    fn validate_broker(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        if broker_host_port(&b.url).is_none() {
            return Err(ConfigError::invalid(
                "broker.url",
                &b.url,
                "mqtt://HOST:PORT or mqtts://HOST:PORT",
            ));
        }
        non_empty("broker.client_id", b.client_id.as_deref())?;
        non_empty("broker.username", b.username.as_deref())?;
        for (key, path) in [
            ("broker.password_file", &b.password_file),
            ("broker.ca_file", &b.ca_file),
            ("broker.client_cert", &b.client_cert),
            ("broker.client_key", &b.client_key),
        ] {
            non_empty_path(key, path.as_deref())?;
        }
        if b.password_file.is_some() && b.username.is_none() {
            return Err(ConfigError::invalid(
                "broker.password_file",
                &display_path(b.password_file.as_ref()),
                "broker.username to be set as well",
            ));
        }
        match (&b.client_cert, &b.client_key) {
            (Some(cert), None) => {
                return Err(ConfigError::invalid(
                    "broker.client_cert",
                    &cert.display().to_string(),
                    "broker.client_key to be set as well",
                ))
            }
            (None, Some(key)) => {
                return Err(ConfigError::invalid(
                    "broker.client_key",
                    &key.display().to_string(),
                    "broker.client_cert to be set as well",
                ))
            }
            _ => {}
        }
        if (b.ca_file.is_some() || b.client_cert.is_some()) && !b.url.starts_with("mqtts://") {
            return Err(ConfigError::invalid(
                "broker.url",
                &b.url,
                "mqtts:// when broker.ca_file or broker.client_cert is set",
            ));
        }
        let t = &b.topic_base;
        if t.is_empty()
            || t.contains(['+', '#', '\0'])
            || t.starts_with(['/', '$'])
            || t.ends_with('/')
            || t.contains("//")
        {
            return Err(ConfigError::invalid(
                "broker.topic_base",
                t,
                "a topic prefix such as edgepool/v1: no wildcard, no empty level, \
                 no leading $ or /, no trailing /",
            ));
        }
        range("broker.keep_alive_secs", b.keep_alive_secs)?;
        range("broker.reconnect_max_secs", b.reconnect_max_secs)
    }

    fn validate_pool(&self) -> Result<(), ConfigError> {
        for (key, address) in [
            ("pool.address", self.pool.address),
            ("pool.scheduler", self.pool.scheduler),
        ] {
            if address.is_zero() {
                return Err(ConfigError::invalid(
                    key,
                    &address.to_string(),
                    "a non-zero address",
                ));
            }
        }
        Ok(())
    }

    fn validate_identity(&self) -> Result<(), ConfigError> {
        let i = &self.identity;
        non_empty_path("identity.keystore", i.keystore.as_deref())?;
        non_empty_path("identity.password_file", i.password_file.as_deref())?;
        if let Some(name) = &i.password_credential {
            if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
                return Err(ConfigError::invalid(
                    "identity.password_credential",
                    name,
                    "a systemd credential name (a file name, without /)",
                ));
            }
        }
        if let Some(name) = &i.password_env {
            let mut chars = name.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(ConfigError::invalid(
                    "identity.password_env",
                    name,
                    "the name of an environment variable (letters, digits and _)",
                ));
            }
        }
        Ok(())
    }

    fn validate_agent(&self) -> Result<(), ConfigError> {
        let a = &self.agent;
        for (key, path) in [
            ("agent.state_dir", &a.state_dir),
            ("agent.system_root", &a.system_root),
        ] {
            if !path.is_absolute() {
                return Err(ConfigError::invalid(
                    key,
                    &path.display().to_string(),
                    "an absolute path",
                ));
            }
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
        range("agent.slots", u64::from(a.slots))?;
        range("agent.heartbeat_secs", a.heartbeat_secs)?;
        range("agent.secret_timeout_secs", a.secret_timeout_secs)?;
        range("agent.min_free_disk_mb", a.min_free_disk_mb)
    }

    fn validate_log(&self) -> Result<(), ConfigError> {
        let level = &self.log.level;
        if level.trim().is_empty() {
            return Err(ConfigError::invalid(
                "log.level",
                level,
                "a tracing filter such as info or edgepool_agent=debug,info",
            ));
        }
        if let Err(e) = crate::logging::parse_filter(level) {
            return Err(ConfigError::invalid(
                "log.level",
                level,
                &format!("a tracing filter such as info or edgepool_agent=debug,info ({e})"),
            ));
        }
        choice("log.format", &self.log.format)
    }
}

/// Checks `value` against the range that [`KEYS`](super::KEYS) gives `key`.
fn range(key: &str, value: u64) -> Result<(), ConfigError> {
    let Some(KeyKind::Integer { min, max }) = key_kind(key) else {
        // Each caller names an integer key; the unit tests check every one of them.
        return Ok(());
    };
    if value < min || value > max {
        return Err(ConfigError::invalid(
            key,
            &value.to_string(),
            &format!("a whole number from {min} to {max}"),
        ));
    }
    Ok(())
}

/// Checks `value` against the words that [`KEYS`](super::KEYS) gives `key`.
fn choice(key: &str, value: &str) -> Result<(), ConfigError> {
    match key_kind(key) {
        Some(KeyKind::Choice(words)) if !words.contains(&value) => Err(ConfigError::invalid(
            key,
            value,
            &format!("one of {}", words.join(", ")),
        )),
        _ => Ok(()),
    }
}

fn non_empty(key: &str, value: Option<&str>) -> Result<(), ConfigError> {
    match value {
        Some("") => Err(ConfigError::invalid(key, "", "a non-empty value")),
        _ => Ok(()),
    }
}

fn non_empty_path(key: &str, value: Option<&Path>) -> Result<(), ConfigError> {
    match value {
        Some(path) if path.as_os_str().is_empty() => {
            Err(ConfigError::invalid(key, "", "a non-empty path"))
        }
        _ => Ok(()),
    }
}

fn display_path(path: Option<&PathBuf>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

/// Splits `mqtt://host:port` or `mqtts://host:port` into host and port (an IPv6 host in
/// brackets); `None` for anything else, including a path, user info or a port of 0.
pub fn broker_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("mqtts://")
        .or_else(|| url.strip_prefix("mqtt://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
        let (host, after) = stripped.split_once(']')?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        (host, after.strip_prefix(':')?)
    } else {
        let (host, port) = rest.rsplit_once(':')?;
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if host.is_empty() || !host.chars().all(valid) {
            return None;
        }
        (host, port)
    };
    if !port.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((host.to_string(), port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{HIDDEN, KEYS};

    const POOL: &str = "[pool]\naddress = \"0x1111111111111111111111111111111111111111\"\n\
                        scheduler = \"0x2222222222222222222222222222222222222222\"\n";

    /// Deserializes without the load-time checks, so that `validate` alone is exercised.
    fn config(extra: &str) -> Config {
        toml::from_str(&format!("{POOL}{extra}")).unwrap()
    }

    fn refused(extra: &str) -> (String, String, String) {
        match config(extra).validate() {
            Err(ConfigError::Invalid {
                key,
                value,
                expected,
            }) => (key, value, expected),
            other => panic!("{extra}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        config("").validate().unwrap();
    }

    #[test]
    fn every_integer_key_is_held_to_its_range() {
        for (key, kind) in KEYS {
            let KeyKind::Integer { min, max } = kind else {
                continue;
            };
            let (section, field) = key.split_once('.').unwrap();
            let type_max = if matches!(
                *key,
                "agent.slots" | "limits.output_files" | "fetch.retries"
            ) {
                u64::from(u32::MAX)
            } else {
                i64::MAX as u64
            };
            let mut outside = Vec::new();
            if *min > 0 {
                outside.push(min - 1);
            }
            if *max < type_max {
                outside.push(max + 1);
            }
            for value in outside {
                let (k, v, expected) = refused(&format!("[{section}]\n{field} = {value}\n"));
                assert_eq!(k, *key);
                assert_eq!(v, value.to_string());
                assert_eq!(expected, format!("a whole number from {min} to {max}"));
            }
        }
    }

    #[test]
    fn a_client_key_without_a_certificate_names_the_key() {
        let (key, value, expected) =
            refused("[broker]\nurl = \"mqtts://h:8883\"\nclient_key = \"/k.pem\"\n");
        assert_eq!(key, "broker.client_key");
        assert_eq!(value, "/k.pem");
        assert_eq!(expected, "broker.client_cert to be set as well");
    }

    #[test]
    fn a_password_mistaken_for_a_variable_name_is_not_echoed() {
        let (key, value, _) = refused("[identity]\npassword_env = \"correct horse!\"\n");
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("identity.password_env", HIDDEN)
        );
        let (key, value, _) = refused("[identity]\npassword_credential = \"a/b\"\n");
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("identity.password_credential", HIDDEN)
        );
        let (key, value, _) = refused("[broker]\npassword_file = \"s3cret\"\n");
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("broker.password_file", HIDDEN)
        );
    }

    #[test]
    fn a_topic_base_with_an_empty_level_or_wildcard_is_refused() {
        for bad in ["", "a/+/b", "a/#", "a//b", "/a", "a/", "$SYS"] {
            let (key, value, _) = refused(&format!("[broker]\ntopic_base = \"{bad}\"\n"));
            assert_eq!((key.as_str(), value.as_str()), ("broker.topic_base", bad));
        }
    }

    #[test]
    fn a_log_level_that_tracing_cannot_parse_is_refused() {
        let (key, value, _) = refused("[log]\nlevel = \"edgepool=loud\"\n");
        assert_eq!(
            (key.as_str(), value.as_str()),
            ("log.level", "edgepool=loud")
        );
        config("[log]\nlevel = \"edgepool_agent=debug,info\"\n")
            .validate()
            .unwrap();
    }

    #[test]
    fn broker_urls_need_a_scheme_a_host_and_a_port() {
        assert_eq!(
            broker_host_port("mqtts://broker.example:8883"),
            Some(("broker.example".into(), 8883))
        );
        assert_eq!(
            broker_host_port("mqtt://[::1]:1883/"),
            Some(("::1".into(), 1883))
        );
        for bad in [
            "http://h:1883",
            "mqtt://h",
            "mqtt://:1883",
            "mqtt://h:0",
            "mqtt://h:+1883",
            "mqtt://h:70000",
            "mqtt://u:p@h:1883",
            "mqtt://h:1883/path",
            "mqtt://h st:1883",
            "mqtt://[]:1883",
        ] {
            assert_eq!(broker_host_port(bad), None, "{bad}");
        }
    }
}
