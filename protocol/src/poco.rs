//! The PoCo (Proof of Contribution) formulas of the iExec contracts, byte for byte:
//! task ids, result hash and seal, the WorkerpoolAuthorization and the TEE enclave messages;
//! [`consensus`] holds the consensus, score and reward arithmetic.

pub mod consensus;

use serde::{Deserialize, Serialize};

use crate::hash::keccak256_concat;
use crate::primitives::{Address, Bytes32, DealId, Digest, TaskId};
use crate::signature::{Signature, SignatureError, Signer};

/// `taskId = keccak256(dealId ‖ uint256(taskIndex))`.
pub fn task_id(deal_id: &DealId, task_index: u64) -> TaskId {
    let index = Bytes32::from_u64(task_index);
    TaskId(keccak256_concat(&[deal_id.as_bytes(), index.as_bytes()]))
}

/// `resultHash = keccak256(taskId ‖ resultDigest)`: what a contribution commits to.
pub fn result_hash(task_id: &TaskId, result_digest: &Digest) -> Bytes32 {
    keccak256_concat(&[task_id.as_bytes(), result_digest.as_bytes()])
}

/// `resultSeal = keccak256(worker ‖ taskId ‖ resultDigest)`: binds the result to the worker.
pub fn result_seal(worker: &Address, task_id: &TaskId, result_digest: &Digest) -> Bytes32 {
    keccak256_concat(&[
        worker.as_bytes(),
        task_id.as_bytes(),
        result_digest.as_bytes(),
    ])
}

/// The message a TEE enclave key signs (EIP-191): `keccak256(resultHash ‖ resultSeal)`.
pub fn enclave_message_hash(result_hash: &Bytes32, result_seal: &Bytes32) -> Bytes32 {
    keccak256_concat(&[result_hash.as_bytes(), result_seal.as_bytes()])
}

/// The post-compute challenge an enclave key signs (EIP-191): `keccak256(taskId ‖ worker)`.
pub fn post_compute_challenge_hash(task_id: &TaskId, worker: &Address) -> Bytes32 {
    keccak256_concat(&[task_id.as_bytes(), worker.as_bytes()])
}

/// The enclave signature a standard (non-TEE) contribution carries: 32 zero bytes as iExec sends
/// them. The chain does not check it when the enclave challenge is the zero address.
pub const NON_TEE_ENCLAVE_SIGNATURE: [u8; 32] = [0u8; 32];

/// The scheduler's permission for one worker to contribute to one task
/// (commons-poco `WorkerpoolAuthorization`).
///
/// In JSON it has iExec's Jackson shape (`workerWallet`, `chainTaskId`, `enclaveChallenge`,
/// `signature: {"value": …}`), so a scheduler's JSON deserializes directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerpoolAuthorization {
    /// The worker allowed to contribute.
    pub worker_wallet: Address,
    /// The task.
    pub chain_task_id: TaskId,
    /// The per-task enclave address for TEE tasks, [`Address::ZERO`] otherwise.
    pub enclave_challenge: Address,
    /// EIP-191 signature of [`WorkerpoolAuthorization::hash`] by the workerpool owner.
    #[serde(with = "signature_value")]
    pub signature: Signature,
}

impl WorkerpoolAuthorization {
    /// Builds and signs an authorization (what a scheduler does).
    pub fn sign(
        scheduler: &Signer,
        worker: Address,
        task_id: TaskId,
        enclave_challenge: Address,
    ) -> Self {
        let hash = authorization_hash(&worker, &task_id, &enclave_challenge);
        Self {
            worker_wallet: worker,
            chain_task_id: task_id,
            enclave_challenge,
            signature: scheduler.sign_personal(hash.as_bytes()),
        }
    }

    /// `keccak256(worker ‖ taskId ‖ enclaveChallenge)`.
    pub fn hash(&self) -> Bytes32 {
        authorization_hash(
            &self.worker_wallet,
            &self.chain_task_id,
            &self.enclave_challenge,
        )
    }

    /// Who signed it.
    ///
    /// # Errors
    /// When the signature is malformed or recovers no key.
    pub fn signer(&self) -> Result<Address, SignatureError> {
        self.signature.recover_personal(self.hash().as_bytes())
    }

    /// Checks that `scheduler` signed it.
    ///
    /// # Errors
    /// [`SignatureError::WrongSigner`] when someone else did, or why recovery failed.
    pub fn verify(&self, scheduler: Address) -> Result<(), SignatureError> {
        self.signature
            .verify_personal(self.hash().as_bytes(), scheduler)
    }

    /// Whether this authorization is for a TEE task (non-zero enclave challenge).
    pub fn is_tee(&self) -> bool {
        !self.enclave_challenge.is_zero()
    }
}

/// `keccak256(worker(20) ‖ taskId(32) ‖ enclaveChallenge(20))`.
pub fn authorization_hash(
    worker: &Address,
    task_id: &TaskId,
    enclave_challenge: &Address,
) -> Bytes32 {
    keccak256_concat(&[
        worker.as_bytes(),
        task_id.as_bytes(),
        enclave_challenge.as_bytes(),
    ])
}

/// The three values a worker sends on-chain to contribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContributionHashes {
    /// `keccak256(taskId ‖ digest)`.
    pub result_hash: Bytes32,
    /// `keccak256(worker ‖ taskId ‖ digest)`.
    pub result_seal: Bytes32,
}

impl ContributionHashes {
    /// Computes both hashes.
    pub fn new(worker: &Address, task_id: &TaskId, digest: &Digest) -> Self {
        Self {
            result_hash: result_hash(task_id, digest),
            result_seal: result_seal(worker, task_id, digest),
        }
    }

    /// The enclave signature over these hashes, by the per-task enclave key.
    pub fn enclave_signature(&self, enclave: &Signer) -> Signature {
        enclave.sign_personal(enclave_message_hash(&self.result_hash, &self.result_seal).as_bytes())
    }
}

/// Serializes a [`Signature`] as iExec's `{"value": "0x…"}` in JSON and as raw bytes in postcard.
mod signature_value {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::signature::Signature;

    #[derive(Serialize, Deserialize)]
    struct Value {
        value: Signature,
    }

    pub fn serialize<S: Serializer>(sig: &Signature, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            Value { value: *sig }.serialize(serializer)
        } else {
            sig.serialize(serializer)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Signature, D::Error> {
        if deserializer.is_human_readable() {
            Value::deserialize(deserializer).map(|v| v.value)
        } else {
            Signature::deserialize(deserializer)
        }
    }
}
