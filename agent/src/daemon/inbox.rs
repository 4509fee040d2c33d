//! Opening what arrives on the worker's inbox: every check of the envelope (size, decoding,
//! version, kind, signature), the sender (only the configured scheduler), and the sequence
//! (replays and reordering refused). What passes is dispatched; nothing else changes state.

use edgepool_protocol::envelope::{
    check_sender_for_topic, Envelope, EnvelopeError, Opened, SequenceTracker,
};
use edgepool_protocol::primitives::Address;
use edgepool_protocol::topics::{Topic, TopicPrefix};

/// Why an inbox message was refused.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The envelope failed a check.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The topic is not one of ours.
    #[error("not a worker topic: {0}")]
    Topic(String),
}

impl InboxError {
    /// A short stable reason for logs and counters.
    pub fn reason(&self) -> &'static str {
        match self {
            InboxError::Envelope(e) => e.reason(),
            InboxError::Topic(_) => "topic",
        }
    }
}

/// Opens and checks one inbox payload. The caller records the sequence number durably and then
/// accepts it in `peers`.
///
/// # Errors
/// [`InboxError`] for any failed check.
pub fn open(
    payload: &[u8],
    topic: &str,
    pool: Address,
    topic_base: &str,
    scheduler: Address,
    peers: &SequenceTracker,
) -> Result<Opened, InboxError> {
    let prefix =
        TopicPrefix::new(topic_base, pool).map_err(|e| InboxError::Topic(e.to_string()))?;
    let parsed = Topic::parse(&prefix, topic).map_err(|e| InboxError::Topic(e.to_string()))?;
    let opened = Envelope::open(payload, topic)?;
    check_sender_for_topic(&opened, &parsed, scheduler)?;
    peers.check(opened.sender, opened.seq)?;
    Ok(opened)
}

/// Logs an accepted message the daemon does not act on (assignments, notifications and SMS
/// answers go to the task side).
pub fn ignore(opened: &Opened) {
    let kind = opened.message.kind();
    tracing::debug!(kind = kind.as_str(), "accepted, nothing to do");
}
