//! The TEE secret exchange (BRIEF §6): an attested [`SecretRequest`] from the worker and the SMS's
//! [`SecretResponse`], relayed by the scheduler.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{check_text, ValidationError};
use crate::hash::keccak256_concat;
use crate::poco::WorkerpoolAuthorization;
use crate::primitives::{Address, Digest, TaskId};

/// The domain tag hashed first into the report data of a secret request.
pub const REPORT_DATA_DOMAIN: &[u8] = b"edgepool/v1/report-data";

/// The 64-byte report data an agent asks its attester to put in the evidence of a
/// [`SecretRequest`], binding the evidence to this request:
///
/// ```text
/// report_data[0..32]  = keccak256("edgepool/v1/report-data" ‖ taskId(32) ‖ enclaveChallenge(20)
///                                 ‖ ephemeralPublicKey(32) ‖ appChecksum(32))
/// report_data[32..64] = 0
/// ```
///
/// The SMS recomputes it from the request and compares it with the report data inside the verified
/// evidence: evidence made for another task, challenge, key or app does not match.
pub fn secret_request_report_data(
    task_id: &TaskId,
    enclave_challenge: &Address,
    ephemeral_public_key: &[u8; 32],
    app_checksum: &Digest,
) -> [u8; 64] {
    let hash = keccak256_concat(&[
        REPORT_DATA_DOMAIN,
        task_id.as_bytes(),
        enclave_challenge.as_bytes(),
        ephemeral_public_key,
        app_checksum.as_bytes(),
    ]);
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(hash.as_bytes());
    out
}

/// An attested request for the secrets of a TEE task (the dataset key and the enclave key),
/// sent on the worker's outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRequest {
    /// The task.
    pub task_id: TaskId,
    /// The scheduler's authorization for this worker and task (the SMS checks it).
    pub authorization: WorkerpoolAuthorization,
    /// The task's enclave challenge (equal to the authorization's, never zero).
    pub enclave_challenge: Address,
    /// The agent's ephemeral X25519 public key: the secrets are sealed to it.
    pub ephemeral_public_key: [u8; 32],
    /// The sha256 of the app module the secrets are for.
    pub app_checksum: Digest,
    /// Evidence whose report data is [`SecretRequest::report_data`].
    pub evidence: Evidence,
}

impl SecretRequest {
    /// The report data the evidence must carry (see [`secret_request_report_data`]).
    pub fn report_data(&self) -> [u8; 64] {
        secret_request_report_data(
            &self.task_id,
            &self.enclave_challenge,
            &self.ephemeral_public_key,
            &self.app_checksum,
        )
    }

    /// Refuses a zero challenge, an authorization for another task or challenge, and empty
    /// evidence. The evidence itself is bounded only by the envelope size.
    ///
    /// # Errors
    /// The first [`ValidationError`] found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.enclave_challenge.is_zero() {
            return Err(ValidationError::Invalid {
                field: "secret_request.enclave_challenge",
                reason: "must not be the zero address",
            });
        }
        if self.authorization.chain_task_id != self.task_id
            || self.authorization.enclave_challenge != self.enclave_challenge
        {
            return Err(ValidationError::Invalid {
                field: "secret_request.authorization",
                reason: "must be for the request's task and enclave challenge",
            });
        }
        if self.evidence.report.is_empty() {
            return Err(ValidationError::Invalid {
                field: "secret_request.evidence.report",
                reason: "is empty",
            });
        }
        Ok(())
    }
}

/// Attestation evidence as the attester produced it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// What produced it.
    pub kind: EvidenceKind,
    /// The report or quote.
    pub report: Vec<u8>,
    /// What the verifier needs besides the report: the certificate chain (VCEK/VLEK for SEV-SNP)
    /// or collateral; empty when the report is self-contained.
    pub aux: Vec<u8>,
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evidence")
            .field("kind", &self.kind)
            .field("report_len", &self.report.len())
            .field("aux_len", &self.aux.len())
            .finish()
    }
}

/// The kind of [`Evidence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EvidenceKind {
    /// An AMD SEV-SNP attestation report (configfs-tsm); `aux` holds the certificate chain.
    SevSnp,
    /// An Intel TDX quote (DCAP).
    Tdx,
    /// An Intel SGX quote (DCAP).
    Sgx,
    /// The software attester: no hardware protection; refused unless the SMS policy allows it.
    Software,
}

/// The SMS's answer to a [`SecretRequest`], sent on the worker's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretResponse {
    /// The task.
    pub task_id: TaskId,
    /// The ephemeral public key of the request answered: a worker that asked twice for the same
    /// task (a restart while a request was in flight) matches the answer to the request whose
    /// private key it still holds, and drops the stale one.
    pub ephemeral_public_key: [u8; 32],
    /// The sealed secrets, or why not.
    pub result: SecretResult,
}

impl SecretResponse {
    /// Refuses a ciphertext too short to hold the AES-GCM tag and an over-long refusal reason.
    ///
    /// # Errors
    /// The first [`ValidationError`] found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match &self.result {
            SecretResult::Sealed { ciphertext, .. } if ciphertext.len() < AES_GCM_TAG_BYTES => {
                Err(ValidationError::Invalid {
                    field: "secret_response.ciphertext",
                    reason: "is shorter than the 16-byte AES-GCM tag",
                })
            }
            SecretResult::Sealed { .. } => Ok(()),
            SecretResult::Refused { reason } => check_text("secret_response.reason", reason),
        }
    }
}

const AES_GCM_TAG_BYTES: usize = 16;

/// The secrets sealed to the request's ephemeral key (X25519 → HKDF-SHA256 → AES-256-GCM), or a
/// refusal.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretResult {
    /// The sealed secrets.
    Sealed {
        /// The SMS's ephemeral X25519 public key.
        sender_public_key: [u8; 32],
        /// The AES-GCM nonce.
        nonce: [u8; 12],
        /// The AES-GCM ciphertext, tag included.
        ciphertext: Vec<u8>,
    },
    /// The SMS refused (policy, binding, authorization…).
    Refused {
        /// Why, for humans.
        reason: String,
    },
}

impl fmt::Debug for SecretResult {
    // The ciphertext is safe to show, but long and useless in a log: show its length.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretResult::Sealed {
                sender_public_key,
                nonce,
                ciphertext,
            } => f
                .debug_struct("Sealed")
                .field("sender_public_key", &hex::encode(sender_public_key))
                .field("nonce", &hex::encode(nonce))
                .field("ciphertext_len", &ciphertext.len())
                .finish(),
            SecretResult::Refused { reason } => {
                f.debug_struct("Refused").field("reason", reason).finish()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hash::keccak256;
    use crate::messages::samples;

    #[test]
    fn report_data_is_the_domain_separated_hash_then_zeroes() {
        let request = samples::secret_request();
        let mut preimage = b"edgepool/v1/report-data".to_vec();
        preimage.extend_from_slice(request.task_id.as_bytes());
        preimage.extend_from_slice(request.enclave_challenge.as_bytes());
        preimage.extend_from_slice(&request.ephemeral_public_key);
        preimage.extend_from_slice(request.app_checksum.as_bytes());
        let data = request.report_data();
        assert_eq!(&data[..32], keccak256(&preimage).as_bytes());
        assert_eq!(&data[32..], &[0u8; 32]);
    }

    #[test]
    fn report_data_of_fixed_inputs_is_pinned() {
        let data = secret_request_report_data(
            &TaskId::from([0x11; 32]),
            &Address([0x22; 20]),
            &[0x33; 32],
            &Digest::from([0x44; 32]),
        );
        assert_eq!(
            hex::encode(&data[..32]),
            "a30efe554f2432ed5e74c40f0a00feba751b9842c70df03fe15fefdc15ea9862"
        );
    }

    #[test]
    fn report_data_changes_with_every_bound_field() {
        let base = samples::secret_request();
        let mut other_key = base.clone();
        other_key.ephemeral_public_key[0] ^= 1;
        let mut other_app = base.clone();
        other_app.app_checksum.0 .0[0] ^= 1;
        let mut other_challenge = base.clone();
        other_challenge.enclave_challenge.0[0] ^= 1;
        let mut other_task = base.clone();
        other_task.task_id.0 .0[0] ^= 1;
        for other in [other_key, other_app, other_challenge, other_task] {
            assert_ne!(other.report_data(), base.report_data());
        }
    }

    #[test]
    fn a_request_with_a_zero_challenge_or_another_authorization_is_invalid() {
        let mut request = samples::secret_request();
        request.enclave_challenge = Address::ZERO;
        assert!(matches!(
            request.validate(),
            Err(ValidationError::Invalid { .. })
        ));
        let mut request = samples::secret_request();
        request.enclave_challenge.0[19] ^= 1;
        assert!(matches!(
            request.validate(),
            Err(ValidationError::Invalid { .. })
        ));
        let mut request = samples::secret_request();
        request.evidence.report.clear();
        assert!(matches!(
            request.validate(),
            Err(ValidationError::Invalid { .. })
        ));
    }

    #[test]
    fn a_ciphertext_shorter_than_the_tag_is_invalid() {
        let response = SecretResponse {
            task_id: TaskId::default(),
            ephemeral_public_key: [0; 32],
            result: SecretResult::Sealed {
                sender_public_key: [1; 32],
                nonce: [2; 12],
                ciphertext: vec![0; 15],
            },
        };
        assert!(matches!(
            response.validate(),
            Err(ValidationError::Invalid { .. })
        ));
    }

    #[test]
    fn debug_shows_lengths_not_payloads() {
        let response = samples::secret_response();
        let text = format!("{response:?}");
        assert!(text.contains("ciphertext_len"), "{text}");
        let text = format!("{:?}", samples::secret_request().evidence);
        assert!(text.contains("report_len"), "{text}");
    }
}
