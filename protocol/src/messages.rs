//! Protocol v1 message bodies: what travels inside an [`crate::envelope::Envelope`].
//!
//! Every message is a variant of [`Message`] wrapping a struct of its own. On the wire a message is
//! postcard-encoded, so the order of the variants of [`Message`] (and of every enum below) is part
//! of protocol v1: add new variants at the end only. [`MessageKind`] names the variants with the
//! same numbers.
//!
//! Who sends what (see [`crate::topics::Channel`]):
//!
//! | Kind               | From      | Channel    |
//! |--------------------|-----------|------------|
//! | `capacity`         | worker    | `capacity` (retained) |
//! | `heartbeat`        | worker    | `outbox`   |
//! | `assignment`       | scheduler | `inbox`    |
//! | `notification`     | scheduler | `inbox`    |
//! | `accept`           | worker    | `outbox`   |
//! | `decline`          | worker    | `outbox`   |
//! | `status_update`    | worker    | `outbox`   |
//! | `contribution`     | worker    | `outbox`   |
//! | `reveal`           | worker    | `outbox`   |
//! | `result_uploaded`  | worker    | `outbox`   |
//! | `secret_request`   | worker    | `outbox`   |
//! | `secret_response`  | scheduler | `inbox`    |
//!
//! Sizes: the envelope's [`crate::envelope::MAX_ENVELOPE_BYTES`] bounds every message. On top of
//! it, [`Message::validate`] refuses obviously bad values (over-long strings, too many GPUs or input
//! files, an enclave signature that is neither 32 nor 65 bytes, an unsafe dataset file name), so a
//! handler never has to re-check them.

mod assignment;
mod capacity;
mod contribution;
mod deal;
mod secrets;
mod validation;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::primitives::{Digest, TaskId};
use crate::status::{NotificationType, ReplicateStatus, ReplicateStatusCause};

pub use assignment::{Assignment, AssignmentError};
pub use capacity::{CapacityAdvertisement, CpuInfo, GpuInfo, TaskLimits, TeeKind};
pub use contribution::{Contribution, ContributionError};
pub use deal::{is_plain_file_name, AppRef, DatasetRef, DealSummary};
pub use secrets::{
    secret_request_report_data, Evidence, EvidenceKind, SecretRequest, SecretResponse,
    SecretResult, REPORT_DATA_DOMAIN,
};
pub use validation::ValidationError;

pub(crate) use validation::{check_count, check_optional_text, check_text};

/// The longest string field a message may carry, in bytes (URLs, names, details, arguments).
pub const MAX_TEXT_BYTES: usize = 4 * 1024;
/// The most GPUs a capacity advertisement may list.
pub const MAX_GPUS: usize = 64;
/// The most input files a deal may list.
pub const MAX_INPUT_FILES: usize = 1000;

/// A protocol v1 message body.
// An assignment is a few hundred bytes and a heartbeat a few dozen. A message is decoded once and
// moved into its handler, so boxing the large variants would cost an allocation for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// What a worker offers (retained on its `capacity` topic).
    Capacity(CapacityAdvertisement),
    /// A worker's current load.
    Heartbeat(Heartbeat),
    /// A task for a worker, with the scheduler's authorization.
    Assignment(Assignment),
    /// An instruction from the scheduler about a task.
    Notification(Notification),
    /// The worker takes an assigned task.
    Accept(Accept),
    /// The worker refuses an assigned task.
    Decline(Decline),
    /// A replicate status change.
    StatusUpdate(StatusUpdate),
    /// The worker's contribution (what it would send on-chain).
    Contribution(Contribution),
    /// The worker's reveal after consensus.
    Reveal(Reveal),
    /// Where the worker stored the result.
    ResultUploaded(ResultUploaded),
    /// An attested request for the secrets of a TEE task.
    SecretRequest(SecretRequest),
    /// The SMS's answer, relayed by the scheduler.
    SecretResponse(SecretResponse),
}

impl Message {
    /// The kind of this message.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Capacity(_) => MessageKind::Capacity,
            Message::Heartbeat(_) => MessageKind::Heartbeat,
            Message::Assignment(_) => MessageKind::Assignment,
            Message::Notification(_) => MessageKind::Notification,
            Message::Accept(_) => MessageKind::Accept,
            Message::Decline(_) => MessageKind::Decline,
            Message::StatusUpdate(_) => MessageKind::StatusUpdate,
            Message::Contribution(_) => MessageKind::Contribution,
            Message::Reveal(_) => MessageKind::Reveal,
            Message::ResultUploaded(_) => MessageKind::ResultUploaded,
            Message::SecretRequest(_) => MessageKind::SecretRequest,
            Message::SecretResponse(_) => MessageKind::SecretResponse,
        }
    }

    /// The task this message is about, if it is about one.
    pub fn task_id(&self) -> Option<TaskId> {
        match self {
            Message::Capacity(_) | Message::Heartbeat(_) => None,
            Message::Assignment(m) => Some(m.task_id),
            Message::Notification(m) => Some(m.task_id),
            Message::Accept(m) => Some(m.task_id),
            Message::Decline(m) => Some(m.task_id),
            Message::StatusUpdate(m) => Some(m.task_id),
            Message::Contribution(m) => Some(m.task_id),
            Message::Reveal(m) => Some(m.task_id),
            Message::ResultUploaded(m) => Some(m.task_id),
            Message::SecretRequest(m) => Some(m.task_id),
            Message::SecretResponse(m) => Some(m.task_id),
        }
    }

    /// Refuses obviously bad sizes and values (see the module documentation).
    ///
    /// # Errors
    /// The first [`ValidationError`] found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Message::Capacity(m) => m.validate(),
            Message::Heartbeat(_) | Message::Accept(_) | Message::Reveal(_) => Ok(()),
            Message::Assignment(m) => m.validate(),
            Message::Notification(m) => check_optional_text("notification.detail", &m.detail),
            Message::Decline(m) => check_text("decline.detail", &m.detail),
            Message::StatusUpdate(m) => check_optional_text("status_update.detail", &m.detail),
            Message::Contribution(m) => m.validate(),
            Message::ResultUploaded(m) => {
                check_text("result_uploaded.result_link", &m.result_link)?;
                if m.result_link.is_empty() {
                    return Err(ValidationError::Invalid {
                        field: "result_uploaded.result_link",
                        reason: "is empty",
                    });
                }
                Ok(())
            }
            Message::SecretRequest(m) => m.validate(),
            Message::SecretResponse(m) => m.validate(),
        }
    }
}

/// The kind of a [`Message`], as the envelope declares it (one byte on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
#[repr(u8)]
pub enum MessageKind {
    /// [`CapacityAdvertisement`].
    Capacity = 0,
    /// [`Heartbeat`].
    Heartbeat = 1,
    /// [`Assignment`].
    Assignment = 2,
    /// [`Notification`].
    Notification = 3,
    /// [`Accept`].
    Accept = 4,
    /// [`Decline`].
    Decline = 5,
    /// [`StatusUpdate`].
    StatusUpdate = 6,
    /// [`Contribution`].
    Contribution = 7,
    /// [`Reveal`].
    Reveal = 8,
    /// [`ResultUploaded`].
    ResultUploaded = 9,
    /// [`SecretRequest`].
    SecretRequest = 10,
    /// [`SecretResponse`].
    SecretResponse = 11,
}

impl MessageKind {
    /// Every kind, in wire order.
    pub const ALL: [MessageKind; 12] = [
        MessageKind::Capacity,
        MessageKind::Heartbeat,
        MessageKind::Assignment,
        MessageKind::Notification,
        MessageKind::Accept,
        MessageKind::Decline,
        MessageKind::StatusUpdate,
        MessageKind::Contribution,
        MessageKind::Reveal,
        MessageKind::ResultUploaded,
        MessageKind::SecretRequest,
        MessageKind::SecretResponse,
    ];

    /// A short stable name (for logs and metrics labels).
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageKind::Capacity => "capacity",
            MessageKind::Heartbeat => "heartbeat",
            MessageKind::Assignment => "assignment",
            MessageKind::Notification => "notification",
            MessageKind::Accept => "accept",
            MessageKind::Decline => "decline",
            MessageKind::StatusUpdate => "status_update",
            MessageKind::Contribution => "contribution",
            MessageKind::Reveal => "reveal",
            MessageKind::ResultUploaded => "result_uploaded",
            MessageKind::SecretRequest => "secret_request",
            MessageKind::SecretResponse => "secret_response",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<MessageKind> for u8 {
    fn from(kind: MessageKind) -> u8 {
        kind as u8
    }
}

/// A byte that is not a [`MessageKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown message kind {0}")]
pub struct UnknownKind(pub u8);

impl TryFrom<u8> for MessageKind {
    type Error = UnknownKind;

    fn try_from(value: u8) -> Result<Self, UnknownKind> {
        MessageKind::ALL
            .get(usize::from(value))
            .copied()
            .ok_or(UnknownKind(value))
    }
}

/// A worker's current load, sent periodically on its outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Tasks in progress.
    pub running_tasks: u32,
    /// Slots free for new tasks.
    pub free_slots: u32,
    /// Memory available for new tasks.
    pub free_memory_bytes: u64,
    /// Disk available for new tasks.
    pub free_disk_bytes: u64,
    /// Whether the worker takes new tasks: `false` while draining or while its storage is
    /// unavailable.
    pub accepting: bool,
}

/// An instruction from the scheduler about a task (iExec's `TaskNotification`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The task.
    pub task_id: TaskId,
    /// What to do.
    pub kind: NotificationType,
    /// The deadline of what is asked, when there is one (unix ms), e.g. the reveal deadline with
    /// `PLEASE_REVEAL`.
    pub deadline_ms: Option<u64>,
    /// Free text for humans.
    pub detail: Option<String>,
}

/// The worker takes an assigned task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// The task.
    pub task_id: TaskId,
}

/// The worker refuses an assigned task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decline {
    /// The task.
    pub task_id: TaskId,
    /// Why, for machines.
    pub cause: ReplicateStatusCause,
    /// Why, for humans.
    pub detail: String,
}

/// A replicate status change (iExec's `ReplicateStatusUpdate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The task.
    pub task_id: TaskId,
    /// The new status.
    pub status: ReplicateStatus,
    /// Why, for a failure.
    pub cause: Option<ReplicateStatusCause>,
    /// Free text for humans.
    pub detail: Option<String>,
    /// When the status changed (unix ms, the worker's clock).
    pub at_ms: u64,
}

/// The worker's reveal: the digest its contribution committed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reveal {
    /// The task.
    pub task_id: TaskId,
    /// The result digest.
    pub result_digest: Digest,
}

/// Where the worker stored the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultUploaded {
    /// The task.
    pub task_id: TaskId,
    /// The result link, as the chain's `finalize` records it.
    pub result_link: String,
}

/// One valid message of every kind, for the tests of this crate and, with the `samples` feature,
/// for the fuzz seeds of `edgepool-tests`.
#[cfg(any(test, feature = "samples"))]
#[doc(hidden)]
pub mod samples;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kind_byte_round_trips_and_unknown_bytes_are_refused() {
        for kind in MessageKind::ALL {
            assert_eq!(MessageKind::try_from(u8::from(kind)), Ok(kind));
        }
        assert_eq!(MessageKind::try_from(12), Err(UnknownKind(12)));
        assert_eq!(MessageKind::try_from(255), Err(UnknownKind(255)));
        assert!(postcard::from_bytes::<MessageKind>(&[12]).is_err());
    }

    #[test]
    fn every_sample_has_its_own_kind_and_its_first_wire_byte_is_the_kind() {
        let messages = samples::all();
        let kinds: Vec<MessageKind> = messages.iter().map(Message::kind).collect();
        assert_eq!(kinds, MessageKind::ALL.to_vec());
        for message in &messages {
            let bytes = postcard::to_allocvec(message).unwrap();
            assert_eq!(bytes[0], message.kind() as u8, "{}", message.kind());
        }
    }

    #[test]
    fn every_sample_round_trips_through_postcard_and_validates() {
        for message in samples::all() {
            let bytes = postcard::to_allocvec(&message).unwrap();
            assert_eq!(postcard::from_bytes::<Message>(&bytes).unwrap(), message);
            message.validate().unwrap();
        }
    }

    #[test]
    fn kind_names_are_unique() {
        let mut names: Vec<&str> = MessageKind::ALL.iter().map(MessageKind::as_str).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MessageKind::ALL.len());
    }

    #[test]
    fn over_long_details_are_refused() {
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        let decline = Message::Decline(Decline {
            task_id: TaskId::default(),
            cause: ReplicateStatusCause::NoFreeSlot,
            detail: long.clone(),
        });
        assert_eq!(
            decline.validate(),
            Err(ValidationError::TooLong {
                field: "decline.detail",
                len: MAX_TEXT_BYTES + 1,
                max: MAX_TEXT_BYTES
            })
        );
        let status = Message::StatusUpdate(StatusUpdate {
            task_id: TaskId::default(),
            status: ReplicateStatus::Computing,
            cause: None,
            detail: Some(long),
            at_ms: 0,
        });
        assert!(matches!(
            status.validate(),
            Err(ValidationError::TooLong { .. })
        ));
    }

    #[test]
    fn an_empty_result_link_is_refused() {
        let message = Message::ResultUploaded(ResultUploaded {
            task_id: TaskId::default(),
            result_link: String::new(),
        });
        assert!(matches!(
            message.validate(),
            Err(ValidationError::Invalid { .. })
        ));
    }

    #[test]
    fn every_message_but_capacity_and_heartbeat_names_its_task() {
        for message in samples::all() {
            let expect_task = !matches!(
                message.kind(),
                MessageKind::Capacity | MessageKind::Heartbeat
            );
            assert_eq!(
                message.task_id().is_some(),
                expect_task,
                "{}",
                message.kind()
            );
        }
    }
}
