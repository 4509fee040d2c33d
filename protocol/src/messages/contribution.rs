//! The worker's [`Contribution`]: the values it would send to the PoCo `contribute` call.

use serde::{Deserialize, Serialize};

use super::ValidationError;
use crate::poco::{self, ContributionHashes, NON_TEE_ENCLAVE_SIGNATURE};
use crate::primitives::{Address, Bytes32, Digest, TaskId};
use crate::signature::{Signature, SignatureError, Signer};

/// A worker's contribution to a task, sent on its outbox.
///
/// A standard task carries the zero enclave challenge and 32 zero bytes as enclave signature (as
/// iExec sends them); a TEE task carries its enclave challenge and the 65-byte signature of
/// `keccak256(resultHash ‖ resultSeal)` by the enclave key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// The task.
    pub task_id: TaskId,
    /// The result digest (kept by the scheduler until the reveal).
    pub result_digest: Digest,
    /// `keccak256(taskId ‖ digest)`.
    pub result_hash: Bytes32,
    /// `keccak256(worker ‖ taskId ‖ digest)`.
    pub result_seal: Bytes32,
    /// The task's enclave challenge, [`Address::ZERO`] for a standard task.
    pub enclave_challenge: Address,
    /// 65 bytes `r ‖ s ‖ v` for a TEE task, 32 zero bytes for a standard task.
    pub enclave_signature: Vec<u8>,
    /// Fuel the app used: anyone can replay the run and check it.
    pub fuel_used: u64,
}

/// Why a [`Contribution`]'s hashes or enclave signature do not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContributionError {
    /// `result_hash` is not `keccak256(taskId ‖ digest)`.
    #[error("result hash must be {expected}, found {found}")]
    ResultHashMismatch {
        /// The recomputed hash.
        expected: Bytes32,
        /// The hash sent.
        found: Bytes32,
    },
    /// `result_seal` is not `keccak256(worker ‖ taskId ‖ digest)`.
    #[error("result seal must be {expected}, found {found}")]
    ResultSealMismatch {
        /// The recomputed seal.
        expected: Bytes32,
        /// The seal sent.
        found: Bytes32,
    },
    /// A standard contribution whose enclave signature is not 32 zero bytes.
    #[error(
        "a standard contribution must carry 32 zero bytes as enclave signature, found {len} bytes"
    )]
    UnexpectedEnclaveSignature {
        /// The length of what was sent.
        len: usize,
    },
    /// A TEE contribution whose enclave signature is malformed or not by the enclave challenge.
    #[error("enclave signature: {0}")]
    EnclaveSignature(#[source] SignatureError),
}

impl Contribution {
    /// The contribution of `worker` to a standard task.
    pub fn standard(
        worker: Address,
        task_id: TaskId,
        result_digest: Digest,
        fuel_used: u64,
    ) -> Self {
        let hashes = ContributionHashes::new(&worker, &task_id, &result_digest);
        Self {
            task_id,
            result_digest,
            result_hash: hashes.result_hash,
            result_seal: hashes.result_seal,
            enclave_challenge: Address::ZERO,
            enclave_signature: NON_TEE_ENCLAVE_SIGNATURE.to_vec(),
            fuel_used,
        }
    }

    /// The contribution of `worker` to a TEE task, signed by the task's `enclave` key (whose
    /// address is the enclave challenge).
    pub fn tee(
        worker: Address,
        task_id: TaskId,
        result_digest: Digest,
        enclave: &Signer,
        fuel_used: u64,
    ) -> Self {
        let hashes = ContributionHashes::new(&worker, &task_id, &result_digest);
        Self {
            task_id,
            result_digest,
            result_hash: hashes.result_hash,
            result_seal: hashes.result_seal,
            enclave_challenge: enclave.address(),
            enclave_signature: hashes.enclave_signature(enclave).0.to_vec(),
            fuel_used,
        }
    }

    /// Whether this is a TEE contribution (non-zero enclave challenge).
    pub fn is_tee(&self) -> bool {
        !self.enclave_challenge.is_zero()
    }

    /// Recomputes the result hash and seal for `worker` and, for a TEE contribution, checks that
    /// the enclave signature (EIP-191 over `keccak256(resultHash ‖ resultSeal)`) recovers to the
    /// enclave challenge — what the PoCo contract checks on `contribute`.
    ///
    /// # Errors
    /// The first [`ContributionError`] found.
    pub fn verify_hashes(&self, worker: Address) -> Result<(), ContributionError> {
        let expected = ContributionHashes::new(&worker, &self.task_id, &self.result_digest);
        if expected.result_hash != self.result_hash {
            return Err(ContributionError::ResultHashMismatch {
                expected: expected.result_hash,
                found: self.result_hash,
            });
        }
        if expected.result_seal != self.result_seal {
            return Err(ContributionError::ResultSealMismatch {
                expected: expected.result_seal,
                found: self.result_seal,
            });
        }
        if !self.is_tee() {
            if self.enclave_signature != NON_TEE_ENCLAVE_SIGNATURE {
                return Err(ContributionError::UnexpectedEnclaveSignature {
                    len: self.enclave_signature.len(),
                });
            }
            return Ok(());
        }
        let signature = Signature::from_slice(&self.enclave_signature)
            .map_err(ContributionError::EnclaveSignature)?;
        let message = poco::enclave_message_hash(&self.result_hash, &self.result_seal);
        signature
            .verify_personal(message.as_bytes(), self.enclave_challenge)
            .map_err(ContributionError::EnclaveSignature)
    }

    /// Refuses an enclave signature that is neither 32 nor 65 bytes.
    ///
    /// # Errors
    /// [`ValidationError::EnclaveSignatureLength`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self.enclave_signature.len() {
            32 | 65 => Ok(()),
            found => Err(ValidationError::EnclaveSignatureLength { found }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// poco-2 of `tests/data/iexec/vectors.json` (a TEE task).
    fn poco2() -> Contribution {
        let worker: Address = "0x9d21148faceaA84a6417252A0025eFFFaF554DF6"
            .parse()
            .unwrap();
        let task: TaskId = "0x76b9ca6e7b36af39891a4a8b0f48d3f2bfb8d1685c045c71750b7e14e445fbb1"
            .parse()
            .unwrap();
        let digest: Digest = "0x9c39b4810a0488d608da1c02e61f319b79256267cebf2f376b669d3e2dfc39c0"
            .parse()
            .unwrap();
        let hashes = ContributionHashes::new(&worker, &task, &digest);
        let signature: Signature = "0x8ac06e2cd225af88bca62989883b47873a0ec0df6efd1cc8f55d48c3eab9a9f770f78e74639c0d840464c349816a49676b7f196d77869bd5b5301e594a61de761b".parse().unwrap();
        Contribution {
            task_id: task,
            result_digest: digest,
            result_hash: hashes.result_hash,
            result_seal: hashes.result_seal,
            enclave_challenge: "0x61900627251D586FEBDb43393eB9F1e18CFAaF11"
                .parse()
                .unwrap(),
            enclave_signature: signature.0.to_vec(),
            fuel_used: 0,
        }
    }

    fn poco2_worker() -> Address {
        "0x9d21148faceaA84a6417252A0025eFFFaF554DF6"
            .parse()
            .unwrap()
    }

    #[test]
    fn the_poco_vector_tee_contribution_verifies() {
        let contribution = poco2();
        assert_eq!(
            contribution.result_hash.to_string(),
            "0xece7e0b66818a7e657ccfc2017d9193d70c2c522ef65054035cccea74ed1e52d"
        );
        assert_eq!(
            contribution.result_seal.to_string(),
            "0xb60bea845889f397c9da865ce9f18be835c451ef318f13fd9ad34e5b03a97fec"
        );
        contribution.verify_hashes(poco2_worker()).unwrap();
        contribution.validate().unwrap();
    }

    #[test]
    fn the_poco_vector_enclave_key_makes_the_same_contribution() {
        let enclave =
            Signer::from_hex("0x581b2134ba9f07b313c4399e864f3bf01120321fa12a481b9e0929a1f1b8ac8b")
                .unwrap();
        let vector = poco2();
        let built = Contribution::tee(
            poco2_worker(),
            vector.task_id,
            vector.result_digest,
            &enclave,
            0,
        );
        assert_eq!(built, vector);
    }

    #[test]
    fn a_seal_computed_for_another_worker_is_refused() {
        let other: Address = "0x0d8B662f44741b155626E10632F2239a5B3cADeA"
            .parse()
            .unwrap();
        let err = poco2().verify_hashes(other).unwrap_err();
        assert!(
            matches!(err, ContributionError::ResultSealMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_result_hash_is_refused() {
        let mut contribution = poco2();
        contribution.result_hash.0[0] ^= 1;
        let err = contribution.verify_hashes(poco2_worker()).unwrap_err();
        assert!(
            matches!(err, ContributionError::ResultHashMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn an_enclave_signature_by_another_key_is_refused() {
        let mut contribution = poco2();
        let impostor = Signer::from_bytes(&[3; 32]).unwrap();
        let hashes = ContributionHashes::new(
            &poco2_worker(),
            &contribution.task_id,
            &contribution.result_digest,
        );
        contribution.enclave_signature = hashes.enclave_signature(&impostor).0.to_vec();
        let err = contribution.verify_hashes(poco2_worker()).unwrap_err();
        assert_eq!(
            err,
            ContributionError::EnclaveSignature(SignatureError::WrongSigner {
                expected: contribution.enclave_challenge,
                found: impostor.address()
            })
        );
    }

    #[test]
    fn a_tee_contribution_with_the_standard_placeholder_is_refused() {
        let mut contribution = poco2();
        contribution.enclave_signature = NON_TEE_ENCLAVE_SIGNATURE.to_vec();
        let err = contribution.verify_hashes(poco2_worker()).unwrap_err();
        assert_eq!(
            err,
            ContributionError::EnclaveSignature(SignatureError::Length { found: 32 })
        );
    }

    #[test]
    fn a_standard_contribution_carries_32_zero_bytes_and_verifies() {
        let vector = poco2();
        let contribution =
            Contribution::standard(poco2_worker(), vector.task_id, vector.result_digest, 42);
        assert_eq!(contribution.enclave_signature, vec![0u8; 32]);
        contribution.verify_hashes(poco2_worker()).unwrap();
        let mut signed = contribution;
        signed.enclave_signature = vector.enclave_signature;
        assert_eq!(
            signed.verify_hashes(poco2_worker()),
            Err(ContributionError::UnexpectedEnclaveSignature { len: 65 })
        );
    }

    #[test]
    fn enclave_signatures_of_other_lengths_are_invalid() {
        let mut contribution = poco2();
        for len in [0, 31, 33, 64, 66] {
            contribution.enclave_signature = vec![0; len];
            assert_eq!(
                contribution.validate(),
                Err(ValidationError::EnclaveSignatureLength { found: len })
            );
        }
    }
}
