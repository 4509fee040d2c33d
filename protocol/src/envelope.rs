//! The signed envelope every MQTT payload of protocol v1 travels in (presence excepted), and the
//! replay protection receivers keep.
//!
//! # Wire form
//!
//! postcard of [`Envelope`]: `version(1) ‖ kind(1) ‖ sender(20) ‖ varint(seq) ‖ varint(sent_at_ms)
//! ‖ varint(len) ‖ body ‖ signature(65)`, where `body` is postcard of a [`Message`] and the whole
//! is at most [`MAX_ENVELOPE_BYTES`].
//!
//! # Signature
//!
//! The sender signs (EIP-191 `personal_sign` over the 32 bytes) the domain-separated hash
//!
//! ```text
//! keccak256("edgepool/v1/envelope" ‖ keccak256(topic) ‖ version ‖ kind ‖ sender(20)
//!           ‖ seq(u64 BE) ‖ sent_at_ms(u64 BE) ‖ keccak256(body))
//! ```
//!
//! Binding the topic means a message re-published on another topic (another worker's inbox, for
//! instance) fails verification.
//!
//! # What a receiver checks
//!
//! [`Envelope::open`] checks the size, the encoding, the version, the signature, the body's kind and
//! [`Message::validate`]. Two checks are separate so that callers compose them with their own
//! state: [`check_sender_for_topic`] (who may publish where) and [`SequenceTracker`] (replays and
//! reordering).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hash::{keccak256, keccak256_concat};
use crate::messages::{Message, MessageKind, ValidationError};
use crate::primitives::{Address, Bytes32};
use crate::signature::{Signature, SignatureError, Signer};
use crate::topics::{Channel, Topic};

mod sequence;

pub use sequence::SequenceTracker;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// The largest envelope, in bytes, that is sealed or opened: 256 KiB.
///
/// Datasets, apps and results never travel over MQTT, only their URLs and digests; the largest
/// legitimate payload is a secret request carrying attestation evidence (a few KiB to a few tens of
/// KiB with its certificate chain). Anything larger is refused before it is decoded, so a hostile
/// publisher cannot make a receiver allocate or hash more than this per message.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

/// The domain tag that starts the signing hash.
pub const ENVELOPE_DOMAIN: &[u8] = b"edgepool/v1/envelope";

/// Why an envelope was refused. Every failure of [`Envelope::seal`], [`Envelope::open`],
/// [`check_sender_for_topic`] and [`SequenceTracker::check`] is one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Over [`MAX_ENVELOPE_BYTES`].
    #[error("envelope must be at most {max} bytes, found {len}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a postcard envelope or body.
    #[error("malformed envelope: {0}")]
    Decode(String),
    /// Bytes left after the envelope or after its body.
    #[error("envelope or body has trailing bytes")]
    TrailingBytes,
    /// A version other than [`PROTOCOL_VERSION`].
    #[error("envelope version must be {PROTOCOL_VERSION}, found {found}")]
    UnsupportedVersion {
        /// The version byte.
        found: u8,
    },
    /// The body is not of the kind the envelope declares.
    #[error("envelope declares kind {declared}, body is {found}")]
    KindMismatch {
        /// The envelope's kind.
        declared: MessageKind,
        /// The body's kind.
        found: MessageKind,
    },
    /// The signature is malformed or not by the declared sender for this topic (tampering,
    /// forgery, or a message re-published on another topic).
    #[error("bad envelope signature: {0}")]
    BadSignature(#[source] SignatureError),
    /// On a worker's own topic, a sender other than that worker.
    #[error("sender must be worker {expected} on its own topic, found {found}")]
    WrongSender {
        /// The topic's worker.
        expected: Address,
        /// The sender.
        found: Address,
    },
    /// A sender that may not publish on this channel (on an inbox, anyone but the scheduler).
    #[error("sender {sender} may not publish on a worker {channel}")]
    SenderNotAllowed {
        /// The sender.
        sender: Address,
        /// The channel.
        channel: Channel,
    },
    /// A kind of message that does not travel on this channel.
    #[error("a {kind} message may not travel on a worker {channel}")]
    KindNotAllowed {
        /// The message kind.
        kind: MessageKind,
        /// The channel.
        channel: Channel,
    },
    /// A sequence number not above the last one accepted from this sender.
    #[error("sequence {seq} from {sender} must be above {last}")]
    Replay {
        /// The sender.
        sender: Address,
        /// The sequence number received.
        seq: u64,
        /// The last one accepted.
        last: u64,
    },
    /// The body fails [`Message::validate`].
    #[error("invalid message: {0}")]
    Invalid(#[from] ValidationError),
}

impl EnvelopeError {
    /// A short stable label, for metrics counters.
    pub fn reason(&self) -> &'static str {
        match self {
            EnvelopeError::TooLarge { .. } => "too_large",
            EnvelopeError::Decode(_) => "decode",
            EnvelopeError::TrailingBytes => "trailing_bytes",
            EnvelopeError::UnsupportedVersion { .. } => "unsupported_version",
            EnvelopeError::KindMismatch { .. } => "kind_mismatch",
            EnvelopeError::BadSignature(_) => "bad_signature",
            EnvelopeError::WrongSender { .. } => "wrong_sender",
            EnvelopeError::SenderNotAllowed { .. } => "sender_not_allowed",
            EnvelopeError::KindNotAllowed { .. } => "kind_not_allowed",
            EnvelopeError::Replay { .. } => "replay",
            EnvelopeError::Invalid(_) => "invalid",
        }
    }
}

/// A signed envelope as it travels (see the module documentation for the wire form).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`PROTOCOL_VERSION`].
    pub version: u8,
    /// The kind of the body.
    pub kind: MessageKind,
    /// The signer.
    pub sender: Address,
    /// Per-sender, strictly increasing, kept across restarts.
    pub seq: u64,
    /// When it was sealed (unix ms, the sender's clock).
    pub sent_at_ms: u64,
    /// postcard of the [`Message`].
    pub body: Vec<u8>,
    /// EIP-191 signature of [`Envelope::signing_hash`] by `sender`.
    pub signature: Signature,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("sender", &self.sender)
            .field("seq", &self.seq)
            .field("sent_at_ms", &self.sent_at_ms)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// What [`Envelope::open`] returns: an authenticated, valid message and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Who signed it.
    pub sender: Address,
    /// The sender's sequence number (check it with a [`SequenceTracker`]).
    pub seq: u64,
    /// When the sender sealed it (unix ms, the sender's clock).
    pub sent_at_ms: u64,
    /// The message.
    pub message: Message,
}

impl Envelope {
    /// The hash the sender signs, bound to `topic`.
    pub fn signing_hash(&self, topic: &str) -> Bytes32 {
        let topic_hash = keccak256(topic.as_bytes());
        let body_hash = keccak256(&self.body);
        keccak256_concat(&[
            ENVELOPE_DOMAIN,
            topic_hash.as_bytes(),
            &[self.version, u8::from(self.kind)],
            self.sender.as_bytes(),
            &self.seq.to_be_bytes(),
            &self.sent_at_ms.to_be_bytes(),
            body_hash.as_bytes(),
        ])
    }

    /// Encodes, signs and serializes `message` for publication on `topic`.
    ///
    /// # Errors
    /// [`EnvelopeError::Invalid`] when the message fails [`Message::validate`] (receivers would
    /// refuse it), [`EnvelopeError::TooLarge`] when the wire form exceeds [`MAX_ENVELOPE_BYTES`].
    pub fn seal(
        signer: &Signer,
        topic: &str,
        seq: u64,
        now_ms: u64,
        message: &Message,
    ) -> Result<Vec<u8>, EnvelopeError> {
        message.validate()?;
        let body = to_postcard(message);
        if body.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                len: body.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        let mut envelope = Envelope {
            version: PROTOCOL_VERSION,
            kind: message.kind(),
            sender: signer.address(),
            seq,
            sent_at_ms: now_ms,
            body,
            signature: Signature::ZERO,
        };
        envelope.signature = signer.sign_personal(envelope.signing_hash(topic).as_bytes());
        envelope.encode()
    }

    /// Serializes an already signed envelope.
    ///
    /// # Errors
    /// [`EnvelopeError::TooLarge`] when the wire form exceeds [`MAX_ENVELOPE_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let bytes = to_postcard(self);
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Parses the wire form without checking the signature or the body.
    ///
    /// # Errors
    /// [`EnvelopeError::TooLarge`] (checked before decoding), [`EnvelopeError::UnsupportedVersion`]
    /// (from the first byte, so a future version's layout is reported as such),
    /// [`EnvelopeError::Decode`] or [`EnvelopeError::TrailingBytes`]. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        match bytes.first() {
            None => return Err(EnvelopeError::Decode("empty payload".into())),
            Some(&found) if found != PROTOCOL_VERSION => {
                return Err(EnvelopeError::UnsupportedVersion { found })
            }
            Some(_) => {}
        }
        let (envelope, rest) = postcard::take_from_bytes::<Envelope>(bytes)
            .map_err(|e| EnvelopeError::Decode(e.to_string()))?;
        if !rest.is_empty() {
            return Err(EnvelopeError::TrailingBytes);
        }
        Ok(envelope)
    }

    /// Decodes the body of an envelope **without checking its signature**, its kind or
    /// [`Message::validate`]: only for an envelope that [`Envelope::open`] accepted before and
    /// that was kept where nobody else writes (the agent's journal keeps each assignment as
    /// received). Anything that arrives from outside goes through [`Envelope::open`].
    ///
    /// # Errors
    /// The [`Envelope::decode`] errors, [`EnvelopeError::Decode`] or
    /// [`EnvelopeError::TrailingBytes`] for the body. Never panics.
    pub fn decode_trusted(bytes: &[u8]) -> Result<Message, EnvelopeError> {
        let envelope = Envelope::decode(bytes)?;
        let (message, rest) = postcard::take_from_bytes::<Message>(&envelope.body)
            .map_err(|e| EnvelopeError::Decode(format!("body: {e}")))?;
        if !rest.is_empty() {
            return Err(EnvelopeError::TrailingBytes);
        }
        Ok(message)
    }

    /// Decodes and authenticates a payload received on `topic`: size, encoding, version, the
    /// signature by the declared sender over this topic, then the body, its kind and
    /// [`Message::validate`]. The signature is checked before the body is decoded.
    ///
    /// Sender-versus-topic rules and sequence numbers are checked separately
    /// ([`check_sender_for_topic`], [`SequenceTracker`]).
    ///
    /// # Errors
    /// The first [`EnvelopeError`] found. Never panics, whatever the input.
    pub fn open(bytes: &[u8], topic: &str) -> Result<Opened, EnvelopeError> {
        let envelope = Envelope::decode(bytes)?;
        let signer = envelope
            .signature
            .recover_personal(envelope.signing_hash(topic).as_bytes())
            .map_err(EnvelopeError::BadSignature)?;
        if signer != envelope.sender {
            return Err(EnvelopeError::BadSignature(SignatureError::WrongSigner {
                expected: envelope.sender,
                found: signer,
            }));
        }
        let (message, rest) = postcard::take_from_bytes::<Message>(&envelope.body)
            .map_err(|e| EnvelopeError::Decode(format!("body: {e}")))?;
        if !rest.is_empty() {
            return Err(EnvelopeError::TrailingBytes);
        }
        if message.kind() != envelope.kind {
            return Err(EnvelopeError::KindMismatch {
                declared: envelope.kind,
                found: message.kind(),
            });
        }
        message.validate()?;
        Ok(Opened {
            sender: envelope.sender,
            seq: envelope.seq,
            sent_at_ms: envelope.sent_at_ms,
            message,
        })
    }
}

/// postcard of a protocol type. Encoding into a `Vec` fails only for sequences of unknown length
/// and the like, which no protocol type has (and the tests encode every kind).
fn to_postcard<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("every protocol type has a postcard encoding")
}

/// Checks who may publish what on `topic`: the message's kind must travel on the topic's channel;
/// on a worker's capacity or outbox the sender must be that worker; on a worker's inbox it must be
/// the `scheduler` (which also relays the SMS's answers).
///
/// # Errors
/// [`EnvelopeError::KindNotAllowed`], [`EnvelopeError::WrongSender`] or
/// [`EnvelopeError::SenderNotAllowed`].
pub fn check_sender_for_topic(
    opened: &Opened,
    topic: &Topic,
    scheduler: Address,
) -> Result<(), EnvelopeError> {
    let kind = opened.message.kind();
    if !topic.channel.carries(kind) {
        return Err(EnvelopeError::KindNotAllowed {
            kind,
            channel: topic.channel,
        });
    }
    match topic.channel {
        Channel::Capacity | Channel::Outbox if opened.sender != topic.worker => {
            Err(EnvelopeError::WrongSender {
                expected: topic.worker,
                found: opened.sender,
            })
        }
        Channel::Inbox if opened.sender != scheduler => Err(EnvelopeError::SenderNotAllowed {
            sender: opened.sender,
            channel: topic.channel,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
