//! Whether an assignment is taken: every check of the issue, pure (time and resources are
//! arguments), each refusal a typed [`Refusal`] with the iExec cause sent in the `Decline`.

use edgepool_protocol::messages::{Assignment, AssignmentError, TaskLimits};
use edgepool_protocol::primitives::Address;
use edgepool_protocol::status::ReplicateStatusCause;
use edgepool_protocol::tags::Tag;

/// What the agent has to offer right now.
#[derive(Debug, Clone)]
pub struct Resources {
    /// The scheduler whose tasks are accepted.
    pub scheduler: Address,
    /// Our address.
    pub worker: Address,
    /// Current time, ms since the epoch.
    pub now_ms: u64,
    /// Free task slots.
    pub free_slots: u32,
    /// Memory available for a new task.
    pub free_memory_bytes: u64,
    /// Disk available in the state directory, beyond the operator's reserve.
    pub free_disk_bytes: u64,
    /// Our tags (detected and operator).
    pub tags: Tag,
    /// The most one task may ask for (configuration).
    pub max_limits: TaskLimits,
    /// Whether the agent is draining.
    pub draining: bool,
    /// Free space in the state directory when it is below the operator's reserve
    /// (`agent.min_free_disk_mb`), with the reserve; `None` when the reserve holds.
    pub disk_low: Option<(u64, u64)>,
    /// Why the journal cannot be written now (disk full to the last byte, read-only state
    /// directory, I/O errors); `None` when it can.
    pub journal_unwritable: Option<String>,
}

/// Why an assignment is declined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The assignment itself does not verify (task id, index, authorization).
    #[error("{0}")]
    Invalid(#[from] AssignmentError),
    /// The contribution deadline has passed.
    #[error("the contribution deadline {deadline_ms} has passed (now {now_ms})")]
    DeadlinePassed {
        /// The deadline.
        deadline_ms: u64,
        /// Now.
        now_ms: u64,
    },
    /// The agent is shutting down.
    #[error("the agent is draining and takes no new task")]
    Draining,
    /// Every slot is busy.
    #[error("no free slot")]
    NoFreeSlot,
    /// The task asks for more than the configured per-task limits.
    #[error("the task asks for {field} = {requested}, the most this worker allows is {allowed}")]
    LimitsTooHigh {
        /// The limit.
        field: &'static str,
        /// Asked for.
        requested: u64,
        /// Allowed.
        allowed: u64,
    },
    /// The journal cannot be written (the state directory is full to the last byte, read-only
    /// or failing): a task could not be journaled, so none is taken until it can.
    #[error(
        "the journal in the state directory cannot be written ({0}): no new task until it can"
    )]
    JournalUnwritable(String),
    /// The state directory's disk is below the operator's reserve: no new task until space
    /// returns (the journal must keep room to record what running tasks do).
    #[error("the state directory has {free} bytes free, below the reserve of {reserve} (agent.min_free_disk_mb)")]
    DiskFull {
        /// Free bytes.
        free: u64,
        /// The reserve.
        reserve: u64,
    },
    /// Not enough memory or disk for the declared sizes.
    #[error("not enough {what}: the task needs {needed} bytes, {available} are free")]
    InsufficientResources {
        /// `memory` or `disk`.
        what: &'static str,
        /// Needed.
        needed: u64,
        /// Free.
        available: u64,
    },
    /// The task's tag needs capabilities this worker lacks.
    #[error("the task needs tags {needed}, this worker has {ours}")]
    TagMismatch {
        /// The deal's tag.
        needed: String,
        /// Ours.
        ours: String,
    },
    /// A TEE task, but no attester works here (the attestation issue).
    #[error("the task needs a TEE and this worker has no working attester")]
    TeeNotSupported,
    /// A standard task whose deal asks for an encrypted result: as in iExec, result encryption
    /// is for TEE tasks only (the SMS releases the beneficiary's key to an attested enclave), so
    /// the result could only be uploaded in clear.
    #[error("the deal asks for result encryption and the task is not a TEE task: the beneficiary's key is released only to an attested enclave (tag tee)")]
    ResultEncryptionUnavailable,
    /// A standard task with an encrypted dataset: its key only goes to an attested TEE task, so
    /// the app would get ciphertext (iExec gives datasets to standard tasks as they are).
    #[error("the dataset is encrypted and the task is not a TEE task: its key is released only to an attested enclave")]
    EncryptedDatasetNeedsTee,
}

impl Refusal {
    /// The iExec cause of the `Decline`.
    pub fn cause(&self) -> ReplicateStatusCause {
        match self {
            Refusal::Invalid(AssignmentError::TaskIdMismatch { .. }) => {
                ReplicateStatusCause::TaskIdMismatch
            }
            Refusal::Invalid(AssignmentError::AuthorizationSignature(_))
            | Refusal::Invalid(AssignmentError::AuthorizationForOtherTask { .. })
            | Refusal::Invalid(AssignmentError::AuthorizationForOtherWorker { .. }) => {
                ReplicateStatusCause::WorkerpoolAuthorizationNotFound
            }
            Refusal::Invalid(_) => ReplicateStatusCause::TaskDescriptionInvalid,
            Refusal::DeadlinePassed { .. } => ReplicateStatusCause::DeadlinePassed,
            Refusal::Draining => ReplicateStatusCause::Draining,
            Refusal::NoFreeSlot => ReplicateStatusCause::NoFreeSlot,
            Refusal::LimitsTooHigh { .. }
            | Refusal::InsufficientResources { .. }
            | Refusal::DiskFull { .. }
            | Refusal::JournalUnwritable(_) => ReplicateStatusCause::InsufficientResources,
            Refusal::TagMismatch { .. } => ReplicateStatusCause::TagMismatch,
            Refusal::TeeNotSupported => ReplicateStatusCause::TeeNotSupported,
            Refusal::ResultEncryptionUnavailable => ReplicateStatusCause::ResultEncryptionNeedsTee,
            Refusal::EncryptedDatasetNeedsTee => ReplicateStatusCause::EncryptedDatasetNeedsTee,
        }
    }
}

/// Checks an assignment, cheapest and most fundamental checks first.
///
/// # Errors
/// The first [`Refusal`] that applies.
pub fn admit(assignment: &Assignment, resources: &Resources) -> Result<(), Refusal> {
    assignment.verify(resources.scheduler, resources.worker)?;
    let deadline_ms = assignment.deal.contribution_deadline_ms();
    if resources.now_ms >= deadline_ms {
        return Err(Refusal::DeadlinePassed {
            deadline_ms,
            now_ms: resources.now_ms,
        });
    }
    if resources.draining {
        return Err(Refusal::Draining);
    }
    if let Some(reason) = &resources.journal_unwritable {
        return Err(Refusal::JournalUnwritable(reason.clone()));
    }
    if let Some((free, reserve)) = resources.disk_low {
        return Err(Refusal::DiskFull { free, reserve });
    }
    if !assignment.deal.tag.is_subset_of(&resources.tags) {
        if assignment.deal.tag.is_tee() && !resources.tags.is_tee() {
            return Err(Refusal::TeeNotSupported);
        }
        return Err(Refusal::TagMismatch {
            needed: tag_names(assignment.deal.tag),
            ours: tag_names(resources.tags),
        });
    }
    if !assignment.is_tee()
        && assignment
            .deal
            .dataset
            .as_ref()
            .is_some_and(|d| d.encrypted)
    {
        return Err(Refusal::EncryptedDatasetNeedsTee);
    }
    if !assignment.is_tee() && assignment.deal.result_encryption {
        // Never upload in clear what the requester asked to be encrypted. A TEE task gets the
        // beneficiary's key from the SMS with its other secrets (`pipeline::job`).
        return Err(Refusal::ResultEncryptionUnavailable);
    }
    if let Some((field, requested, allowed)) =
        assignment.limits.first_exceeding(&resources.max_limits)
    {
        return Err(Refusal::LimitsTooHigh {
            field,
            requested,
            allowed,
        });
    }
    if resources.free_slots == 0 {
        return Err(Refusal::NoFreeSlot);
    }
    let memory = assignment.limits.memory_bytes;
    if memory > resources.free_memory_bytes {
        return Err(Refusal::InsufficientResources {
            what: "memory",
            needed: memory,
            available: resources.free_memory_bytes,
        });
    }
    let disk = declared_download_bytes(assignment);
    if disk > resources.free_disk_bytes {
        return Err(Refusal::InsufficientResources {
            what: "disk",
            needed: disk,
            available: resources.free_disk_bytes,
        });
    }
    Ok(())
}

/// What the downloads will occupy on disk, from the sizes the deal declares (app and dataset),
/// bounded by the task's input limit when a size is not declared.
pub fn declared_download_bytes(assignment: &Assignment) -> u64 {
    let deal = &assignment.deal;
    let app = deal.app.size_bytes.unwrap_or(0);
    let dataset = deal
        .dataset
        .as_ref()
        .map(|d| d.size_bytes.unwrap_or(assignment.limits.max_input_bytes))
        .unwrap_or(0);
    app.saturating_add(dataset)
}

fn tag_names(tag: Tag) -> String {
    tag.names()
        .map(|names| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(",")
            }
        })
        .unwrap_or_else(|_| tag.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use edgepool_protocol::messages::{AppRef, DealSummary};
    use edgepool_protocol::poco::{self, WorkerpoolAuthorization};
    use edgepool_protocol::primitives::{DealId, Digest};
    use edgepool_protocol::signature::Signer;

    const T0: u64 = 1_700_000_000_000;

    fn keys() -> (Signer, Signer) {
        (
            Signer::from_bytes(&[1; 32]).unwrap(),
            Signer::from_bytes(&[2; 32]).unwrap(),
        )
    }

    fn assignment(tag: Tag) -> Assignment {
        let (scheduler, worker) = keys();
        let deal = DealSummary {
            deal_id: DealId::from([7; 32]),
            app: AppRef {
                address: Address([0xa1; 20]),
                url: "http://127.0.0.1:1/app.wasm".into(),
                checksum: Digest::from([1; 32]),
                size_bytes: Some(1000),
            },
            dataset: None,
            input_files: Vec::new(),
            args: String::new(),
            tag,
            trust: 1,
            category: 0,
            time_ref_seconds: 10,
            start_time_ms: T0,
            requester: Address([0x51; 20]),
            beneficiary: Address([0x52; 20]),
            callback: Address::ZERO,
            result_encryption: false,
            result_storage_provider: "ipfs".into(),
            result_storage_proxy: None,
            bot_first: 0,
            bot_size: 1,
        };
        let task_id = poco::task_id(&deal.deal_id, 0);
        Assignment {
            deal,
            task_index: 0,
            task_id,
            authorization: WorkerpoolAuthorization::sign(
                &scheduler,
                worker.address(),
                task_id,
                Address::ZERO,
            ),
            limits: TaskLimits::default(),
        }
    }

    fn resources() -> Resources {
        let (scheduler, worker) = keys();
        Resources {
            scheduler: scheduler.address(),
            worker: worker.address(),
            now_ms: T0 + 1,
            free_slots: 1,
            free_memory_bytes: 1 << 40,
            free_disk_bytes: 1 << 40,
            tags: Tag::encode(&["gpu"]).unwrap(),
            max_limits: TaskLimits::default(),
            draining: false,
            disk_low: None,
            journal_unwritable: None,
        }
    }

    #[test]
    fn an_unwritable_journal_declines_every_task_with_its_reason() {
        let refusal = admit(
            &assignment(Tag::NONE),
            &Resources {
                journal_unwritable: Some("read-only file system".into()),
                ..resources()
            },
        )
        .unwrap_err();
        assert!(
            matches!(refusal, Refusal::JournalUnwritable(ref r) if r == "read-only file system"),
            "{refusal}"
        );
        assert!(refusal.to_string().contains("cannot be written"));
        assert_eq!(refusal.cause(), ReplicateStatusCause::InsufficientResources);
    }

    #[test]
    fn below_the_disk_reserve_every_task_is_declined_with_insufficient_resources() {
        let refusal = admit(
            &assignment(Tag::NONE),
            &Resources {
                disk_low: Some((1 << 20, 4 << 20)),
                ..resources()
            },
        )
        .unwrap_err();
        assert!(matches!(refusal, Refusal::DiskFull { .. }), "{refusal}");
        assert_eq!(refusal.cause(), ReplicateStatusCause::InsufficientResources);
    }

    #[test]
    fn a_valid_assignment_on_a_free_worker_is_admitted() {
        admit(&assignment(Tag::NONE), &resources()).unwrap();
        admit(&assignment(Tag::encode(&["gpu"]).unwrap()), &resources()).unwrap();
    }

    #[test]
    fn each_refusal_has_its_cause() {
        let a = assignment(Tag::NONE);
        let cases: Vec<(Resources, ReplicateStatusCause)> = vec![
            (
                Resources {
                    now_ms: a.deal.contribution_deadline_ms(),
                    ..resources()
                },
                ReplicateStatusCause::DeadlinePassed,
            ),
            (
                Resources {
                    draining: true,
                    ..resources()
                },
                ReplicateStatusCause::Draining,
            ),
            (
                Resources {
                    free_slots: 0,
                    ..resources()
                },
                ReplicateStatusCause::NoFreeSlot,
            ),
            (
                Resources {
                    free_memory_bytes: 1,
                    ..resources()
                },
                ReplicateStatusCause::InsufficientResources,
            ),
            (
                Resources {
                    free_disk_bytes: 1,
                    ..resources()
                },
                ReplicateStatusCause::InsufficientResources,
            ),
            (
                Resources {
                    max_limits: TaskLimits {
                        fuel: 1,
                        ..TaskLimits::default()
                    },
                    ..resources()
                },
                ReplicateStatusCause::InsufficientResources,
            ),
            (
                Resources {
                    scheduler: Address([9; 20]),
                    ..resources()
                },
                ReplicateStatusCause::WorkerpoolAuthorizationNotFound,
            ),
            (
                Resources {
                    worker: Address([9; 20]),
                    ..resources()
                },
                ReplicateStatusCause::WorkerpoolAuthorizationNotFound,
            ),
        ];
        for (r, cause) in cases {
            assert_eq!(admit(&a, &r).unwrap_err().cause(), cause);
        }
        let mut wrong_id = assignment(Tag::NONE);
        wrong_id.task_index = 0;
        wrong_id.task_id = poco::task_id(&DealId::from([8; 32]), 0);
        assert_eq!(
            admit(&wrong_id, &resources()).unwrap_err().cause(),
            ReplicateStatusCause::TaskIdMismatch
        );
    }

    #[test]
    fn an_encrypted_dataset_needs_a_tee_task() {
        let mut a = assignment(Tag::NONE);
        a.deal.dataset = Some(edgepool_protocol::messages::DatasetRef {
            address: Address([0xd1; 20]),
            url: "http://127.0.0.1:1/data".into(),
            checksum: Digest::from([2; 32]),
            filename: "data.csv".into(),
            size_bytes: Some(10),
            encrypted: true,
        });
        let refusal = admit(&a, &resources()).unwrap_err();
        assert_eq!(refusal, Refusal::EncryptedDatasetNeedsTee);
        assert_eq!(
            refusal.cause(),
            ReplicateStatusCause::EncryptedDatasetNeedsTee
        );
        if let Some(d) = a.deal.dataset.as_mut() {
            d.encrypted = false;
        }
        admit(&a, &resources()).unwrap();

        // The same dataset in a TEE task, on a worker whose attester works: admitted.
        let (scheduler, worker) = keys();
        let mut tee = a.clone();
        tee.deal.tag = Tag::encode(&["tee"]).unwrap();
        if let Some(d) = tee.deal.dataset.as_mut() {
            d.encrypted = true;
        }
        tee.authorization = WorkerpoolAuthorization::sign(
            &scheduler,
            worker.address(),
            tee.task_id,
            Address([5; 20]),
        );
        let attested = Resources {
            tags: Tag::encode(&["tee", "gpu"]).unwrap(),
            ..resources()
        };
        admit(&tee, &attested).unwrap();
    }

    #[test]
    fn result_encryption_is_declined_for_a_standard_task_and_admitted_for_a_tee_task() {
        let mut standard = assignment(Tag::NONE);
        standard.deal.result_encryption = true;
        let refusal = admit(&standard, &resources()).unwrap_err();
        assert_eq!(refusal, Refusal::ResultEncryptionUnavailable);
        assert_eq!(
            refusal.cause(),
            ReplicateStatusCause::ResultEncryptionNeedsTee
        );
        assert!(refusal.to_string().contains("not a TEE task"), "{refusal}");

        let (scheduler, worker) = keys();
        let mut tee = assignment(Tag::encode(&["tee"]).unwrap());
        tee.deal.result_encryption = true;
        tee.authorization = WorkerpoolAuthorization::sign(
            &scheduler,
            worker.address(),
            tee.task_id,
            Address([5; 20]),
        );
        let attested = Resources {
            tags: Tag::encode(&["tee"]).unwrap(),
            ..resources()
        };
        admit(&tee, &attested).unwrap();
    }

    #[test]
    fn tags_must_be_a_subset_of_ours_and_tee_needs_an_attester() {
        let tdx = Tag::encode(&["tee", "tdx"]).unwrap();
        let (scheduler, worker) = keys();
        let mut a = assignment(tdx);
        a.authorization = WorkerpoolAuthorization::sign(
            &scheduler,
            worker.address(),
            a.task_id,
            Address([5; 20]),
        );
        assert_eq!(admit(&a, &resources()), Err(Refusal::TeeNotSupported));
        let gpu_only = Resources {
            tags: Tag::NONE,
            ..resources()
        };
        let refusal = admit(&assignment(Tag::encode(&["gpu"]).unwrap()), &gpu_only).unwrap_err();
        assert_eq!(refusal.cause(), ReplicateStatusCause::TagMismatch);
        assert!(refusal.to_string().contains("gpu"), "{refusal}");
    }
}
