//! [`DealSummary`]: what a worker needs to know about a deal, with its app and dataset.

use serde::{Deserialize, Serialize};

use super::{check_count, check_optional_text, check_text, ValidationError, MAX_INPUT_FILES};
use crate::primitives::{Address, DealId, Digest};
use crate::tags::Tag;

/// What a worker needs to know about a deal (a subset of the on-chain deal and its parameters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealSummary {
    /// The deal.
    pub deal_id: DealId,
    /// The app.
    pub app: AppRef,
    /// The dataset, if the deal has one.
    pub dataset: Option<DatasetRef>,
    /// URLs of the input files (`iexec_input_files`), at most [`MAX_INPUT_FILES`].
    pub input_files: Vec<String>,
    /// The app's command line (`iexec_args`), split shell-like by the agent.
    pub args: String,
    /// The deal's tag (requirements such as `tee`).
    pub tag: Tag,
    /// The trust level the consensus needs.
    pub trust: u64,
    /// The category.
    pub category: u64,
    /// The category's reference time (`timeref`), in seconds. Never zero.
    pub time_ref_seconds: u64,
    /// When the deal started (unix ms): the deadlines derive from it.
    pub start_time_ms: u64,
    /// Who ordered the deal.
    pub requester: Address,
    /// Who receives the result.
    pub beneficiary: Address,
    /// The callback contract, [`Address::ZERO`] when none.
    pub callback: Address,
    /// Whether the result is encrypted for the beneficiary (`iexec_result_encryption`); the
    /// beneficiary's key then comes from the SMS.
    pub result_encryption: bool,
    /// Where results go (`iexec_result_storage_provider`, e.g. `ipfs`).
    pub result_storage_provider: String,
    /// The result proxy URL (`iexec_result_storage_proxy`), when not the default.
    pub result_storage_proxy: Option<String>,
    /// The deal's first task index.
    pub bot_first: u64,
    /// The deal's task count.
    pub bot_size: u64,
}

impl DealSummary {
    fn time_ref_ms(&self, multiple: u64) -> u64 {
        self.time_ref_seconds
            .saturating_mul(1000)
            .saturating_mul(multiple)
    }

    /// The contribution deadline: `start + 7·timeref` (unix ms).
    pub fn contribution_deadline_ms(&self) -> u64 {
        self.start_time_ms.saturating_add(self.time_ref_ms(7))
    }

    /// The final deadline: `start + 10·timeref` (unix ms).
    pub fn final_deadline_ms(&self) -> u64 {
        self.start_time_ms.saturating_add(self.time_ref_ms(10))
    }

    /// The reveal deadline for a consensus reached at `consensus_ms`: `consensus + 2·timeref`.
    pub fn reveal_deadline_ms(&self, consensus_ms: u64) -> u64 {
        consensus_ms.saturating_add(self.time_ref_ms(2))
    }

    /// Refuses obviously bad sizes and values.
    ///
    /// # Errors
    /// The first [`ValidationError`] found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_url("assignment.app.url", &self.app.url)?;
        if let Some(dataset) = &self.dataset {
            check_url("assignment.dataset.url", &dataset.url)?;
            check_text("assignment.dataset.filename", &dataset.filename)?;
            if !is_plain_file_name(&dataset.filename) {
                return Err(ValidationError::Invalid {
                    field: "assignment.dataset.filename",
                    reason: "must be a plain file name (not empty, no '/', '\\', NUL, '.' or '..')",
                });
            }
        }
        check_count(
            "assignment.input_files",
            self.input_files.len(),
            MAX_INPUT_FILES,
        )?;
        for url in &self.input_files {
            check_url("assignment.input_files", url)?;
        }
        check_text("assignment.args", &self.args)?;
        check_text(
            "assignment.result_storage_provider",
            &self.result_storage_provider,
        )?;
        check_optional_text(
            "assignment.result_storage_proxy",
            &self.result_storage_proxy,
        )?;
        if self.time_ref_seconds == 0 {
            return Err(ValidationError::Invalid {
                field: "assignment.time_ref_seconds",
                reason: "must not be zero",
            });
        }
        Ok(())
    }
}

fn check_url(field: &'static str, url: &str) -> Result<(), ValidationError> {
    check_text(field, url)?;
    if url.is_empty() {
        return Err(ValidationError::Invalid {
            field,
            reason: "is empty",
        });
    }
    Ok(())
}

/// A name that stays inside the directory it is joined to.
/// Whether `name` is one plain file name: not empty, not `.` or `..`, no `/`, `\` or NUL (the
/// rule for a dataset's `filename`, the name the app sees).
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// The app of a deal: a WebAssembly module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRef {
    /// The app's on-chain address.
    pub address: Address,
    /// Where to fetch the module.
    pub url: String,
    /// `0x` + sha256 of the module, as registered on-chain.
    pub checksum: Digest,
    /// The module's size when known (lets the worker refuse before fetching).
    pub size_bytes: Option<u64>,
}

/// The dataset of a deal: an encrypted file (`IV ‖ AES-256-CBC`) whose key the SMS holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRef {
    /// The dataset's on-chain address.
    pub address: Address,
    /// Where to fetch the encrypted file.
    pub url: String,
    /// `0x` + sha256 of the encrypted file, as registered on-chain.
    pub checksum: Digest,
    /// The name the app sees under `/iexec_in` (`IEXEC_DATASET_FILENAME`): a plain file name.
    pub filename: String,
    /// The encrypted file's size when known.
    pub size_bytes: Option<u64>,
    /// Whether the file is iExec-encrypted (its key is in the SMS, which the scheduler asks): only
    /// an attested TEE task can obtain the key, so a standard task with such a dataset is refused
    /// (`EDGEPOOL_ENCRYPTED_DATASET_NEEDS_TEE`). A plain dataset is given to a standard task as it
    /// is, after its checksum is verified (iExec's `downloadStandardDataset`).
    pub encrypted: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::messages::samples;

    #[test]
    fn deadlines_derive_from_start_and_timeref() {
        let mut deal = samples::assignment().deal;
        deal.start_time_ms = 1_700_000_000_000;
        deal.time_ref_seconds = 300;
        assert_eq!(
            deal.contribution_deadline_ms(),
            1_700_000_000_000 + 7 * 300_000
        );
        assert_eq!(deal.final_deadline_ms(), 1_700_000_000_000 + 10 * 300_000);
        assert_eq!(
            deal.reveal_deadline_ms(1_700_000_100_000),
            1_700_000_100_000 + 600_000
        );
        deal.time_ref_seconds = u64::MAX;
        assert_eq!(deal.final_deadline_ms(), u64::MAX);
    }

    #[test]
    fn dataset_file_names_that_leave_iexec_in_are_refused() {
        for name in ["", ".", "..", "../x", "a/b", "a\\b", "a\0b"] {
            let mut assignment = samples::assignment();
            assignment.deal.dataset.as_mut().unwrap().filename = name.to_string();
            assert!(
                matches!(assignment.validate(), Err(ValidationError::Invalid { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn too_many_input_files_and_a_zero_timeref_are_refused() {
        let mut assignment = samples::assignment();
        assignment.deal.input_files = vec!["https://x/y".into(); MAX_INPUT_FILES + 1];
        assert!(matches!(
            assignment.validate(),
            Err(ValidationError::TooMany { .. })
        ));
        let mut assignment = samples::assignment();
        assignment.deal.time_ref_seconds = 0;
        assert!(matches!(
            assignment.validate(),
            Err(ValidationError::Invalid {
                field: "assignment.time_ref_seconds",
                ..
            })
        ));
    }
}
