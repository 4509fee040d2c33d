//! Statuses, notification types and failure causes, with iExec's names and order.
//!
//! Each enum serializes as its iExec name (`"APP_DOWNLOADING"`) in human formats and as its
//! variant index in postcard, so the order here is part of protocol v1: add new variants at the
//! end only.

use std::fmt;
use std::str::FromStr;

/// A name that is not a variant of the enum it was parsed as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {found:?}")]
pub struct UnknownName {
    /// The enum's name.
    pub kind: &'static str,
    /// The input.
    pub found: String,
}

macro_rules! iexec_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every variant, in protocol order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The iExec name.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { kind: stringify!($name), found: s.chars().take(80).collect() }),
                }
            }
        }
    };
}

iexec_enum!(
    /// The status of one worker's replicate of a task (iexec-common `ReplicateStatus`).
    ReplicateStatus {
        /// Assigned, nothing done yet.
        Created = "CREATED",
        /// Starting (admission, journal).
        Starting = "STARTING",
        /// Could not start.
        StartFailed = "START_FAILED",
        /// Started.
        Started = "STARTED",
        /// Fetching the app.
        AppDownloading = "APP_DOWNLOADING",
        /// The app could not be fetched or did not match its checksum.
        AppDownloadFailed = "APP_DOWNLOAD_FAILED",
        /// The app is local and verified.
        AppDownloaded = "APP_DOWNLOADED",
        /// Fetching the dataset and input files.
        DataDownloading = "DATA_DOWNLOADING",
        /// The dataset or an input file could not be fetched or verified.
        DataDownloadFailed = "DATA_DOWNLOAD_FAILED",
        /// Dataset and inputs are local and verified.
        DataDownloaded = "DATA_DOWNLOADED",
        /// The app runs.
        Computing = "COMPUTING",
        /// The app failed or hit a limit.
        ComputeFailed = "COMPUTE_FAILED",
        /// The app finished and the digest is known.
        Computed = "COMPUTED",
        /// Sending the contribution.
        Contributing = "CONTRIBUTING",
        /// The contribution was refused.
        ContributeFailed = "CONTRIBUTE_FAILED",
        /// The contribution is recorded.
        Contributed = "CONTRIBUTED",
        /// Sending the reveal.
        Revealing = "REVEALING",
        /// The reveal was refused.
        RevealFailed = "REVEAL_FAILED",
        /// The reveal is recorded.
        Revealed = "REVEALED",
        /// The scheduler asked for the result.
        ResultUploadRequested = "RESULT_UPLOAD_REQUESTED",
        /// Uploading the result.
        ResultUploading = "RESULT_UPLOADING",
        /// The upload failed.
        ResultUploadFailed = "RESULT_UPLOAD_FAILED",
        /// The result is stored.
        ResultUploaded = "RESULT_UPLOADED",
        /// Finishing.
        Completing = "COMPLETING",
        /// Finishing failed.
        CompleteFailed = "COMPLETE_FAILED",
        /// Done.
        Completed = "COMPLETED",
        /// Failed for good.
        Failed = "FAILED",
        /// Stopped on the scheduler's order.
        Aborted = "ABORTED",
        /// Resuming after a restart.
        Recovering = "RECOVERING",
        /// The scheduler lost contact with the worker.
        WorkerLost = "WORKER_LOST",
    }
);

impl ReplicateStatus {
    /// Whether nothing more happens to the replicate after this status.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ReplicateStatus::Completed
                | ReplicateStatus::Failed
                | ReplicateStatus::Aborted
                | ReplicateStatus::WorkerLost
        )
    }

    /// Whether this status reports a failure of a step.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            ReplicateStatus::StartFailed
                | ReplicateStatus::AppDownloadFailed
                | ReplicateStatus::DataDownloadFailed
                | ReplicateStatus::ComputeFailed
                | ReplicateStatus::ContributeFailed
                | ReplicateStatus::RevealFailed
                | ReplicateStatus::ResultUploadFailed
                | ReplicateStatus::CompleteFailed
                | ReplicateStatus::Failed
        )
    }
}

iexec_enum!(
    /// The scheduler's view of a task (iexec-core `TaskStatus`).
    TaskStatus {
        /// Seen on-chain.
        Received = "RECEIVED",
        /// Being initialized on-chain.
        Initializing = "INITIALIZING",
        /// Initialized on-chain.
        Initialized = "INITIALIZED",
        /// Initialization failed.
        InitializeFailed = "INITIALIZE_FAILED",
        /// Replicates are running.
        Running = "RUNNING",
        /// Every replicate failed.
        RunningFailed = "RUNNING_FAILED",
        /// The contribution deadline passed without consensus.
        ContributionTimeout = "CONTRIBUTION_TIMEOUT",
        /// Consensus reached.
        ConsensusReached = "CONSENSUS_REACHED",
        /// Being reopened after a missed reveal.
        Reopening = "REOPENING",
        /// Reopened.
        Reopened = "REOPENED",
        /// Reopening failed.
        ReopenFailed = "REOPEN_FAILED",
        /// At least one contributor revealed.
        AtLeastOneRevealed = "AT_LEAST_ONE_REVEALED",
        /// A worker was asked for the result.
        ResultUploadRequested = "RESULT_UPLOAD_REQUESTED",
        /// The result is being uploaded.
        ResultUploading = "RESULT_UPLOADING",
        /// The result is stored.
        ResultUploaded = "RESULT_UPLOADED",
        /// No result arrived in time.
        ResultUploadTimeout = "RESULT_UPLOAD_TIMEOUT",
        /// Being finalized on-chain.
        Finalizing = "FINALIZING",
        /// Finalized on-chain.
        Finalized = "FINALIZED",
        /// Finalization failed.
        FinalizeFailed = "FINALIZE_FAILED",
        /// The final deadline passed.
        FinalDeadlineReached = "FINAL_DEADLINE_REACHED",
        /// Done.
        Completed = "COMPLETED",
        /// Failed for good.
        Failed = "FAILED",
    }
);

iexec_enum!(
    /// The on-chain status of a task (PoCo `IexecLibCore_v5.TaskStatusEnum`).
    ChainTaskStatus {
        /// Not initialized.
        Unset = "UNSET",
        /// Accepting contributions.
        Active = "ACTIVE",
        /// Consensus reached; accepting reveals.
        Revealing = "REVEALING",
        /// Finalized.
        Completed = "COMPLETED",
        /// Claimed after the final deadline.
        Failed = "FAILED",
    }
);

iexec_enum!(
    /// What the scheduler asks a worker to do next (iexec-common `TaskNotificationType`).
    NotificationType {
        /// Carry on with the current step.
        PleaseContinue = "PLEASE_CONTINUE",
        /// Wait.
        PleaseWait = "PLEASE_WAIT",
        /// Start the replicate.
        PleaseStart = "PLEASE_START",
        /// Fetch the app.
        PleaseDownloadApp = "PLEASE_DOWNLOAD_APP",
        /// Fetch the data.
        PleaseDownloadData = "PLEASE_DOWNLOAD_DATA",
        /// Run the app.
        PleaseCompute = "PLEASE_COMPUTE",
        /// Contribute (compute first if there is no result yet).
        PleaseContribute = "PLEASE_CONTRIBUTE",
        /// Reveal.
        PleaseReveal = "PLEASE_REVEAL",
        /// Upload the result.
        PleaseUpload = "PLEASE_UPLOAD",
        /// Abort: consensus was reached without this worker.
        PleaseAbortConsensusReached = "PLEASE_ABORT_CONSENSUS_REACHED",
        /// Abort: the contribution deadline passed.
        PleaseAbortContributionTimeout = "PLEASE_ABORT_CONTRIBUTION_TIMEOUT",
        /// Complete and forget the task.
        PleaseComplete = "PLEASE_COMPLETE",
        /// Abort.
        PleaseAbort = "PLEASE_ABORT",
    }
);

iexec_enum!(
    /// Why a replicate step failed or a task was declined (iexec-common `ReplicateStatusCause`,
    /// the causes a wasm worker can meet, then edgepool's own).
    ReplicateStatusCause {
        /// The task is not active on-chain.
        TaskNotActive = "TASK_NOT_ACTIVE",
        /// The task description is invalid.
        TaskDescriptionInvalid = "TASK_DESCRIPTION_INVALID",
        /// The worker's stake is too low.
        StakeTooLow = "STAKE_TOO_LOW",
        /// A contribution from this worker already exists.
        ContributionAlreadySet = "CONTRIBUTION_ALREADY_SET",
        /// Consensus was reached.
        ConsensusReached = "CONSENSUS_REACHED",
        /// The app could not be fetched or did not match its checksum.
        AppDownloadFailed = "APP_DOWNLOAD_FAILED",
        /// An input file could not be fetched.
        InputFilesDownloadFailed = "INPUT_FILES_DOWNLOAD_FAILED",
        /// The dataset could not be fetched.
        DatasetFileDownloadFailed = "DATASET_FILE_DOWNLOAD_FAILED",
        /// The dataset did not match its on-chain checksum.
        DatasetFileBadChecksum = "DATASET_FILE_BAD_CHECKSUM",
        /// The dataset did not decrypt with the key the SMS released.
        DatasetFileDecryptionFailed = "PRE_COMPUTE_DATASET_DECRYPTION_FAILED",
        /// The SMS refused or failed to release the dataset secret.
        GetDatasetSecretFailed = "TEE_SESSION_GENERATION_PRE_COMPUTE_GET_DATASET_SECRET_FAILED",
        /// The WorkerpoolAuthorization is invalid.
        InvalidAuthorization = "TEE_SESSION_GENERATION_INVALID_AUTHORIZATION",
        /// The app is not available locally.
        AppNotFoundLocally = "APP_NOT_FOUND_LOCALLY",
        /// The app failed (trap, non-zero exit, bad computed.json).
        AppComputeFailed = "APP_COMPUTE_FAILED",
        /// The app ran past its wall-clock limit.
        AppComputeTimeout = "APP_COMPUTE_TIMEOUT",
        /// The computed.json file is missing.
        ComputedFileNotFound = "POST_COMPUTE_COMPUTED_FILE_NOT_FOUND",
        /// The result digest could not be computed.
        ResultDigestComputationFailed = "POST_COMPUTE_RESULT_DIGEST_COMPUTATION_FAILED",
        /// The result archive could not be built.
        OutFolderZipFailed = "POST_COMPUTE_OUT_FOLDER_ZIP_FAILED",
        /// Result encryption failed.
        EncryptionFailed = "POST_COMPUTE_ENCRYPTION_FAILED",
        /// The beneficiary public key is malformed.
        MalformedEncryptionPublicKey = "POST_COMPUTE_MALFORMED_ENCRYPTION_PUBLIC_KEY",
        /// The task needs a TEE this worker does not have.
        TeeNotSupported = "TEE_NOT_SUPPORTED",
        /// No result digest to contribute.
        DeterminismHashNotFound = "DETERMINISM_HASH_NOT_FOUND",
        /// No enclave signature for a TEE contribution.
        EnclaveSignatureNotFound = "ENCLAVE_SIGNATURE_NOT_FOUND",
        /// No WorkerpoolAuthorization for the task.
        WorkerpoolAuthorizationNotFound = "WORKERPOOL_AUTHORIZATION_NOT_FOUND",
        /// No result link to report.
        ResultLinkMissing = "RESULT_LINK_MISSING",
        /// The contribution deadline passed.
        ContributionTimeout = "CONTRIBUTION_TIMEOUT",
        /// The reveal deadline passed.
        RevealTimeout = "REVEAL_TIMEOUT",
        /// The worker gave the task up.
        AbortedByWorker = "ABORTED_BY_WORKER",
        /// The reveal cannot be made.
        CannotReveal = "CANNOT_REVEAL",
        /// Anything else.
        Unknown = "UNKNOWN",
        /// edgepool: the app ran out of fuel (instructions).
        OutOfFuel = "EDGEPOOL_OUT_OF_FUEL",
        /// edgepool: the app exceeded its memory or table limit.
        MemoryLimitExceeded = "EDGEPOOL_MEMORY_LIMIT_EXCEEDED",
        /// edgepool: the app exceeded its output bytes or file count limit.
        OutputLimitExceeded = "EDGEPOOL_OUTPUT_LIMIT_EXCEEDED",
        /// edgepool: the app recursed beyond the stack limit.
        StackOverflow = "EDGEPOOL_STACK_OVERFLOW",
        /// edgepool: the module is not valid WebAssembly or not a WASI command.
        InvalidModule = "EDGEPOOL_INVALID_MODULE",
        /// edgepool: no free task slot.
        NoFreeSlot = "EDGEPOOL_NO_FREE_SLOT",
        /// edgepool: not enough memory or disk for the declared sizes.
        InsufficientResources = "EDGEPOOL_INSUFFICIENT_RESOURCES",
        /// edgepool: the task's tag needs a capability this worker lacks.
        TagMismatch = "EDGEPOOL_TAG_MISMATCH",
        /// edgepool: a deadline of the task has passed.
        DeadlinePassed = "EDGEPOOL_DEADLINE_PASSED",
        /// edgepool: the task id is not keccak256(deal ‖ index).
        TaskIdMismatch = "EDGEPOOL_TASK_ID_MISMATCH",
        /// edgepool: the agent is draining (shutting down) and takes no new task.
        Draining = "EDGEPOOL_DRAINING",
        /// edgepool: the state directory is read-only or full.
        StorageUnavailable = "EDGEPOOL_STORAGE_UNAVAILABLE",
        /// edgepool: attestation evidence could not be produced.
        AttestationFailed = "EDGEPOOL_ATTESTATION_FAILED",
        /// edgepool: the SMS refused the evidence (verification, policy or binding).
        AttestationRefused = "EDGEPOOL_ATTESTATION_REFUSED",
        /// edgepool: a standard (non-TEE) task names an encrypted dataset, whose key only an
        /// attested TEE task can obtain.
        EncryptedDatasetNeedsTee = "EDGEPOOL_ENCRYPTED_DATASET_NEEDS_TEE",
        /// The deal encrypts its result and no beneficiary public key was released for the task
        /// (iExec's name; last here so that postcard keeps the positions of the others).
        EncryptionPublicKeyMissing = "POST_COMPUTE_ENCRYPTION_PUBLIC_KEY_MISSING",
        /// edgepool: a standard (non-TEE) task asks for result encryption, which iExec offers
        /// only to TEE tasks (the beneficiary's key is released to an attested enclave).
        ResultEncryptionNeedsTee = "EDGEPOOL_RESULT_ENCRYPTION_NEEDS_TEE",
    }
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replicate_statuses_keep_iexec_order_and_names() {
        let names: Vec<&str> = ReplicateStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), 30);
        assert_eq!(names[0], "CREATED");
        assert_eq!(names[5], "APP_DOWNLOAD_FAILED");
        assert_eq!(names[29], "WORKER_LOST");
        for s in ReplicateStatus::ALL {
            assert_eq!(s.as_str().parse::<ReplicateStatus>().unwrap(), *s);
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }

    #[test]
    fn postcard_encodes_statuses_by_position() {
        let bytes = postcard::to_allocvec(&ReplicateStatus::Computing).unwrap();
        assert_eq!(bytes, vec![10]);
    }

    #[test]
    fn unknown_names_are_refused() {
        let err = "RUNNING".parse::<ReplicateStatus>().unwrap_err();
        assert_eq!(err.to_string(), "unknown ReplicateStatus \"RUNNING\"");
    }

    #[test]
    fn every_cause_name_is_unique() {
        let mut names: Vec<&str> = ReplicateStatusCause::ALL
            .iter()
            .map(|c| c.as_str())
            .collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
