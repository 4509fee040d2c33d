//! The MQTT link to the broker (rumqttc): connection options, TLS, the worker's topics, error
//! classification and the tracking of QoS 1 publishes until the broker acknowledges them.
//!
//! The daemon owns the rumqttc event loop; this module holds what can be decided without the
//! network: [`options`] builds the `MqttOptions` from the configuration, [`PublishTracker`] maps
//! packet ids to what was published (so an outbox row is deleted only on its PUBACK), and
//! [`classify`] tells a failure worth retrying from one that needs the operator.

mod tls;
mod tracker;

use std::time::Duration;

use edgepool_protocol::primitives::Address;
use edgepool_protocol::topics::{TopicError, TopicPrefix};
use rumqttc::{ConnectReturnCode, ConnectionError, LastWill, MqttOptions, QoS, Transport};

use crate::config::Config;

pub use tls::client_config;
pub use tracker::{PublishTracker, Tracked, MAX_IN_FLIGHT};

/// The largest packet the agent sends. Envelopes are far smaller.
pub const MAX_PACKET_BYTES: usize = 256 * 1024;

/// The largest publish payload the agent reads: 1 MiB, four times the largest envelope
/// ([`edgepool_protocol::envelope::MAX_ENVELOPE_BYTES`]).
///
/// The client must be able to *read* whatever the broker delivers on the inbox, so that an
/// oversized payload is refused by the envelope check (`too_large`, counted) and acknowledged.
/// A packet above the client's limit is not a refusal but a connection error: the message is
/// never acknowledged, the persistent session redelivers it at every reconnect, and the agent
/// would loop on it for ever (found by `agent/tests/hostile`). The broker's own packet limit
/// must therefore be at most this (Mosquitto `max_packet_size 1048576`, rumqttd
/// `max_payload_size`; see deploy/README.md).
pub const MAX_INCOMING_PAYLOAD_BYTES: usize = 1024 * 1024;

/// [`MAX_INCOMING_PAYLOAD_BYTES`] plus the rest of a publish packet: the longest topic MQTT
/// allows (65,535 bytes and its length), the packet id and the fixed header.
pub const MAX_INCOMING_PACKET_BYTES: usize = MAX_INCOMING_PAYLOAD_BYTES + 65_535 + 2 + 2 + 5;

/// Why the link cannot be set up, or why it failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A configured value cannot be used.
    #[error("broker configuration: {0}")]
    Config(String),
    /// TLS material cannot be used.
    #[error("broker tls: {0}")]
    Tls(String),
    /// The topics cannot be built.
    #[error("broker topics: {0}")]
    Topic(#[from] TopicError),
    /// The broker refused the connection for a reason retrying will not fix.
    #[error("{0}")]
    Refused(String),
}

/// The four topics of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerTopics {
    /// Retained `online`/`offline`.
    pub presence: String,
    /// Retained signed capacity advertisement.
    pub capacity: String,
    /// Scheduler → worker.
    pub inbox: String,
    /// Worker → scheduler.
    pub outbox: String,
}

impl WorkerTopics {
    /// The topics of `worker` in the configured pool.
    ///
    /// # Errors
    /// [`LinkError::Topic`] for a topic base the protocol refuses.
    pub fn new(config: &Config, worker: Address) -> Result<Self, LinkError> {
        let prefix = TopicPrefix::new(&config.broker.topic_base, config.pool.address)?;
        Ok(Self {
            presence: prefix.presence(worker),
            capacity: prefix.capacity(worker),
            inbox: prefix.inbox(worker),
            outbox: prefix.outbox(worker),
        })
    }
}

/// The presence payloads.
pub const ONLINE: &[u8] = b"online";
/// See [`ONLINE`].
pub const OFFLINE: &[u8] = b"offline";

/// Builds the connection options: client id, keep-alive, the retained `offline` last will,
/// credentials and TLS, and a **persistent session with manual acknowledgements**.
///
/// What we send survives in the journal's outbox (re-sent after a reconnect, so the client's own
/// replay of a resumed session is dropped: see `Daemon::run`). What the scheduler sends must
/// survive our crashes too: with a persistent session the broker queues the inbox while we are
/// away (a PLEASE_REVEAL sent while we restart is not lost), and with manual acknowledgements an
/// inbox message is acknowledged only after its effects are committed, so a crash in between
/// gets it redelivered.
///
/// # Errors
/// [`LinkError::Config`] for an unreadable password file or URL, [`LinkError::Tls`] for TLS files.
pub fn options(
    config: &Config,
    worker: Address,
    topics: &WorkerTopics,
) -> Result<MqttOptions, LinkError> {
    let mut options = probe_options(config, worker)?;
    options.set_last_will(LastWill::new(
        &topics.presence,
        OFFLINE.to_vec(),
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(id) = &config.broker.client_id {
        options.set_client_id(id.clone());
    } else {
        options.set_client_id(format!("edgepool-{}", hex::encode(worker.as_bytes())));
    }
    options.set_clean_session(false).set_manual_acks(true);
    Ok(options)
}

/// The options of a short connection test (`doctor`): same broker, credentials and TLS, but its
/// own client id (so the running agent is not disconnected) and no last will (so its presence is
/// not touched).
///
/// # Errors
/// As [`options`].
pub fn probe_options(config: &Config, worker: Address) -> Result<MqttOptions, LinkError> {
    let broker = &config.broker;
    let (host, port) = crate::config::broker_host_port(&broker.url).ok_or_else(|| {
        LinkError::Config(format!("broker.url {:?} has no host:port", broker.url))
    })?;
    let client_id = format!("edgepool-doctor-{}", hex::encode(&worker.as_bytes()[..8]));
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(Duration::from_secs(broker.keep_alive_secs))
        .set_clean_session(true)
        .set_max_packet_size(MAX_INCOMING_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_inflight(tracker::MAX_IN_FLIGHT as u16 + 8);
    if let Some(username) = &broker.username {
        let password = match &broker.password_file {
            Some(path) => {
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    LinkError::Config(format!(
                        "cannot read broker.password_file {}: {e}",
                        path.display()
                    ))
                })?);
                text.trim_end_matches(['\n', '\r']).to_string()
            }
            None => String::new(),
        };
        options.set_credentials(username.clone(), password);
    }
    if broker.url.starts_with("mqtts://") {
        let client = match (&broker.client_cert, &broker.client_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        let tls = client_config(broker.ca_file.as_deref(), client)?;
        options.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(tls)),
        ));
    }
    Ok(options)
}

/// Socket options: `TCP_NODELAY`, because every publish is a small packet the agent wants on
/// the wire now (with Nagle's algorithm the first QoS 1 exchange of a connection waited ~40 ms
/// for a delayed ACK), and a connection timeout.
pub fn network_options() -> rumqttc::NetworkOptions {
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(10);
    network
}

/// What to do after a connection error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try again after a backoff (broker down, network trouble).
    Retry(String),
    /// Retrying cannot help: the credentials or the certificates are wrong.
    Fatal(String),
}

/// Classifies a connection error, with a message an operator can act on.
pub fn classify(error: &ConnectionError) -> Failure {
    match error {
        ConnectionError::ConnectionRefused(code) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword => {
                    "bad user name or password (check broker.username and broker.password_file)"
                }
                ConnectReturnCode::NotAuthorized => {
                    "not authorized (check broker.username, broker.password_file or the client certificate)"
                }
                ConnectReturnCode::BadClientId => "client id refused (check broker.client_id)",
                ConnectReturnCode::RefusedProtocolVersion => "MQTT 3.1.1 not supported by the broker",
                ConnectReturnCode::ServiceUnavailable => {
                    return Failure::Retry("broker refused the connection: service unavailable".into())
                }
                ConnectReturnCode::Success => "unexpected success code in a refusal",
            };
            Failure::Fatal(format!("broker refused the connection: {why}"))
        }
        other => {
            // rustls reports certificate trouble at several layers: `Tls(Io(InvalidCertificate))`
            // when we reject the broker, and, with TLS 1.3, `MqttState(Deserialization(Io(
            // AlertReceived(UnknownCA))))` when the broker rejects our client certificate.
            let detail = format!("{other:?}");
            if is_certificate_problem(&detail) {
                Failure::Fatal(format!(
                    "tls handshake failed: {other} [{}] (check broker.ca_file, broker.client_cert, \
                     broker.client_key and the broker host name)",
                    certificate_reason(&detail)
                ))
            } else {
                Failure::Retry(other.to_string())
            }
        }
    }
}

fn is_certificate_problem(detail: &str) -> bool {
    detail.contains("InvalidCertificate")
        || [
            "UnknownCA",
            "BadCertificate",
            "CertificateRequired",
            "CertificateUnknown",
            "CertificateExpired",
            "UnsupportedCertificate",
            "CertificateRevoked",
        ]
        .iter()
        .any(|alert| detail.contains(&format!("AlertReceived({alert})")))
}

/// The innermost rustls reason in a `Debug` rendering, e.g. `InvalidCertificate(UnknownIssuer)`.
fn certificate_reason(detail: &str) -> String {
    for marker in ["InvalidCertificate(", "AlertReceived("] {
        if let Some(at) = detail.find(marker) {
            let rest = &detail[at..];
            let end = rest.find(')').map_or(rest.len(), |i| i + 1);
            let mut reason = rest[..end].to_string();
            let open = reason.matches('(').count();
            let close = reason.matches(')').count();
            reason.extend(std::iter::repeat_n(')', open.saturating_sub(close)));
            return reason;
        }
    }
    "certificate".into()
}

/// Exponential backoff with jitter, bounded by `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// The first delay.
    pub const INITIAL: Duration = Duration::from_millis(200);

    /// A backoff that never waits more than `max`.
    pub fn new(max: Duration) -> Self {
        Self {
            next: Self::INITIAL.min(max),
            max,
        }
    }

    /// The next delay: the current step with ±25% jitter drawn from `unit` (in `[0, 1)`), then the
    /// step doubles up to the bound.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let factor = 0.75 + 0.5 * unit.clamp(0.0, 1.0);
        base.mul_f64(factor).min(self.max)
    }

    /// Back to the first delay, after a successful connection.
    pub fn reset(&mut self) {
        self.next = Self::INITIAL.min(self.max);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stays_bounded() {
        let mut b = Backoff::new(Duration::from_secs(2));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay(0.5)).collect();
        assert_eq!(delays[0], Duration::from_millis(200));
        assert_eq!(delays[1], Duration::from_millis(400));
        assert_eq!(delays[3], Duration::from_millis(1600));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert_eq!(delays[7], Duration::from_secs(2));
        let low = Backoff::new(Duration::from_secs(2)).next_delay(0.0);
        let high = Backoff::new(Duration::from_secs(2)).next_delay(0.999);
        assert_eq!(low, Duration::from_millis(150));
        assert!(high > Duration::from_millis(249) && high <= Duration::from_millis(250));
        b.reset();
        assert_eq!(b.next_delay(0.5), Duration::from_millis(200));
    }

    #[test]
    fn authentication_refusals_are_fatal_and_network_errors_are_retried() {
        let refused = classify(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword,
        ));
        assert!(matches!(&refused, Failure::Fatal(m) if m.contains("bad user name or password")));
        let down = classify(&ConnectionError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(matches!(down, Failure::Retry(_)));
        assert!(matches!(
            classify(&ConnectionError::NetworkTimeout),
            Failure::Retry(_)
        ));
    }

    #[test]
    fn certificate_rejections_either_way_are_fatal_and_name_the_reason() {
        let ours = ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        match classify(&ours) {
            Failure::Fatal(m) => assert!(m.contains("InvalidCertificate(UnknownIssuer)"), "{m}"),
            other => panic!("{other:?}"),
        }
        let theirs = ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        ));
        match classify(&theirs) {
            Failure::Fatal(m) => assert!(m.contains("AlertReceived(UnknownCA)"), "{m}"),
            other => panic!("{other:?}"),
        }
        let unrelated = ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::InternalError),
        ));
        assert!(matches!(classify(&unrelated), Failure::Retry(_)));
    }
}
