//! [`ValidationError`] and the size checks every message's `validate` uses.

use super::MAX_TEXT_BYTES;

/// Why a message was refused by [`Message::validate`](super::Message::validate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A string or byte field is longer than allowed.
    #[error("{field} must be at most {max} bytes, found {len}")]
    TooLong {
        /// The field, as `message.field`.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A list has more entries than allowed.
    #[error("{field} must have at most {max} entries, found {count}")]
    TooMany {
        /// The field, as `message.field`.
        field: &'static str,
        /// Its entries.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An enclave signature that is neither 32 nor 65 bytes.
    #[error("enclave signature must be 32 or 65 bytes, found {found}")]
    EnclaveSignatureLength {
        /// Its length.
        found: usize,
    },
    /// Any other impossible value.
    #[error("{field} {reason}")]
    Invalid {
        /// The field, as `message.field`.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Refuses a string over [`MAX_TEXT_BYTES`].
pub(crate) fn check_text(field: &'static str, text: &str) -> Result<(), ValidationError> {
    check_len(field, text.len(), MAX_TEXT_BYTES)
}

/// Refuses an optional string over [`MAX_TEXT_BYTES`].
pub(crate) fn check_optional_text(
    field: &'static str,
    text: &Option<String>,
) -> Result<(), ValidationError> {
    text.as_deref().map_or(Ok(()), |t| check_text(field, t))
}

/// Refuses a length over `max`.
pub(crate) fn check_len(
    field: &'static str,
    len: usize,
    max: usize,
) -> Result<(), ValidationError> {
    if len > max {
        Err(ValidationError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

/// Refuses a list of more than `max` entries.
pub(crate) fn check_count(
    field: &'static str,
    count: usize,
    max: usize,
) -> Result<(), ValidationError> {
    if count > max {
        Err(ValidationError::TooMany { field, count, max })
    } else {
        Ok(())
    }
}
