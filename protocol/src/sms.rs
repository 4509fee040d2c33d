//! What the SMS (secret management service) and its clients agree on byte for byte: iExec's web3
//! secret challenge, and the sealed release of a TEE task's secrets ([`seal`] / [`unseal`]).
//!
//! # Sealing (version 1)
//!
//! The agent sends an ephemeral X25519 public key `R` in its `SecretRequest`. The SMS draws its
//! own ephemeral X25519 key `S` and:
//!
//! ```text
//! shared    = X25519(s, R)
//! key       = HKDF-SHA256(salt = "edgepool/v1/sms-seal/salt",
//!                         ikm  = shared,
//!                         info = "edgepool/v1/sms-seal/aes-256-gcm" ‖ S ‖ R)       (32 bytes)
//! aad       = "edgepool/v1/sms-seal/aad" ‖ taskId(32) ‖ enclaveChallenge(20)
//! plaintext = 0x01 (version) ‖ postcard(ReleasedSecrets)
//! sealed    = AES-256-GCM(key, nonce (12 random bytes), aad, plaintext)
//! ```
//!
//! Binding the task and the challenge in the AAD means a sealed answer moved to another task
//! does not open. The randomness (both ephemeral keys and the nonce) is an argument.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::hash::{keccak256, keccak256_concat};
use crate::messages::SecretResult;
use crate::primitives::{Address, Bytes32, TaskId};
use crate::status::ReplicateStatusCause;

/// iExec's SMS domain string.
pub const SMS_DOMAIN: &str = "IEXEC_SMS_DOMAIN";
/// HKDF salt of the seal.
pub const SEAL_SALT: &[u8] = b"edgepool/v1/sms-seal/salt";
/// HKDF info prefix of the seal (followed by the sender's then the recipient's public key).
pub const SEAL_INFO: &[u8] = b"edgepool/v1/sms-seal/aes-256-gcm";
/// AAD prefix of the seal (followed by the task id and the enclave challenge).
pub const SEAL_AAD: &[u8] = b"edgepool/v1/sms-seal/aad";
/// The version byte that opens the sealed plaintext.
pub const SEAL_VERSION: u8 = 1;

/// iExec's web3 secret challenge, which the owner of `secret_address` (a dataset) signs with
/// EIP-191 to push `secret_value` (iexec SDK `getChallengeForSetWeb3Secret`, iexec-sms
/// `AuthorizationService`):
/// `keccak256(keccak256("IEXEC_SMS_DOMAIN") ‖ secretAddress(20) ‖ keccak256(utf8(secretValue)))`.
/// The signed message is the 32 raw bytes of the challenge.
pub fn web3_secret_challenge(secret_address: &Address, secret_value: &str) -> Bytes32 {
    keccak256_concat(&[
        keccak256(SMS_DOMAIN.as_bytes()).as_bytes(),
        secret_address.as_bytes(),
        keccak256(secret_value.as_bytes()).as_bytes(),
    ])
}

/// iExec's web2 secret challenge (e.g. the beneficiary's result-encryption key, secret name
/// `iexec-result-encryption-public-key`):
/// `keccak256(keccak256("IEXEC_SMS_DOMAIN") ‖ owner(20) ‖ keccak256(utf8(key)) ‖ keccak256(utf8(value)))`.
pub fn web2_secret_challenge(owner: &Address, secret_key: &str, secret_value: &str) -> Bytes32 {
    keccak256_concat(&[
        keccak256(SMS_DOMAIN.as_bytes()).as_bytes(),
        owner.as_bytes(),
        keccak256(secret_key.as_bytes()).as_bytes(),
        keccak256(secret_value.as_bytes()).as_bytes(),
    ])
}

/// The secret name iExec uses for the beneficiary's result-encryption public key.
pub const RESULT_ENCRYPTION_KEY_NAME: &str = "iexec-result-encryption-public-key";

/// Why the SMS refused a secret request: the code that opens the `reason` of
/// [`SecretResult::Refused`] (`"<code>: <detail>"`), so that the agent can report a typed cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    /// The request is malformed.
    Malformed,
    /// The authorization is not the scheduler's, or not for this worker.
    Authorization,
    /// The task is not active.
    TaskNotActive,
    /// The deal is not tagged `tee`.
    NotTee,
    /// The enclave challenge is not the one the SMS made for this task.
    UnknownChallenge,
    /// The dataset order's restrictions (app, workerpool, requester) exclude this task.
    DatasetRestricted,
    /// The app checksum in the request is not the deal's.
    AppChecksum,
    /// The evidence does not verify.
    Evidence,
    /// The verified evidence is refused by the SMS policy.
    Policy,
    /// The evidence's report data is not bound to this request.
    Binding,
    /// A secret the task needs was never pushed.
    SecretMissing,
    /// The SMS failed.
    Internal,
    /// The deal encrypts its result and the beneficiary pushed no result-encryption key.
    ResultKeyMissing,
}

impl RefusalCode {
    /// Every code.
    pub const ALL: &'static [RefusalCode] = &[
        RefusalCode::Malformed,
        RefusalCode::Authorization,
        RefusalCode::TaskNotActive,
        RefusalCode::NotTee,
        RefusalCode::UnknownChallenge,
        RefusalCode::DatasetRestricted,
        RefusalCode::AppChecksum,
        RefusalCode::Evidence,
        RefusalCode::Policy,
        RefusalCode::Binding,
        RefusalCode::SecretMissing,
        RefusalCode::Internal,
        RefusalCode::ResultKeyMissing,
    ];

    /// The stable name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::Malformed => "malformed",
            RefusalCode::Authorization => "authorization",
            RefusalCode::TaskNotActive => "task-not-active",
            RefusalCode::NotTee => "not-tee",
            RefusalCode::UnknownChallenge => "unknown-challenge",
            RefusalCode::DatasetRestricted => "dataset-restricted",
            RefusalCode::AppChecksum => "app-checksum",
            RefusalCode::Evidence => "evidence",
            RefusalCode::Policy => "policy",
            RefusalCode::Binding => "binding",
            RefusalCode::SecretMissing => "secret-missing",
            RefusalCode::Internal => "internal",
            RefusalCode::ResultKeyMissing => "result-key-missing",
        }
    }

    /// The code that opens a refusal reason, if any.
    pub fn of_reason(reason: &str) -> Option<RefusalCode> {
        let code = reason.split(':').next().unwrap_or("").trim();
        RefusalCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == code)
    }

    /// The replicate cause an agent reports for this refusal.
    pub fn cause(self) -> ReplicateStatusCause {
        match self {
            RefusalCode::Malformed | RefusalCode::Authorization | RefusalCode::UnknownChallenge => {
                ReplicateStatusCause::InvalidAuthorization
            }
            RefusalCode::TaskNotActive => ReplicateStatusCause::TaskNotActive,
            RefusalCode::NotTee => ReplicateStatusCause::TeeNotSupported,
            RefusalCode::Evidence | RefusalCode::Policy | RefusalCode::Binding => {
                ReplicateStatusCause::AttestationRefused
            }
            RefusalCode::DatasetRestricted
            | RefusalCode::AppChecksum
            | RefusalCode::SecretMissing
            | RefusalCode::Internal => ReplicateStatusCause::GetDatasetSecretFailed,
            RefusalCode::ResultKeyMissing => ReplicateStatusCause::EncryptionPublicKeyMissing,
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The secrets the SMS releases to an attested TEE task. Zeroized on drop; `Debug` redacts.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct ReleasedSecrets {
    /// The dataset key (raw 32 bytes), when the deal has a dataset.
    pub dataset_key: Option<[u8; 32]>,
    /// The task's enclave private key (secp256k1); its address is the enclave challenge.
    pub enclave_key: [u8; 32],
    /// The beneficiary's result-encryption public key (PEM), when the deal asks for it.
    pub beneficiary_key: Option<String>,
}

impl fmt::Debug for ReleasedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleasedSecrets")
            .field("dataset_key", &self.dataset_key.map(|_| "<redacted>"))
            .field("enclave_key", &"<redacted>")
            .field("beneficiary_key", &self.beneficiary_key.is_some())
            .finish()
    }
}

/// Why sealing or unsealing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The random source failed.
    #[error("the random source failed")]
    Random,
    /// The peer's X25519 public key is unusable (e.g. a low-order point).
    #[error("the X25519 key agreement failed (bad public key)")]
    Agreement,
    /// The answer is a refusal, not sealed secrets.
    #[error("the SMS refused: {0}")]
    Refused(String),
    /// AES-GCM authentication failed: another key, task or challenge, or a tampered ciphertext.
    #[error("the sealed secrets do not open for this key, task and challenge")]
    Open,
    /// The plaintext version is not one this build knows.
    #[error("sealed secrets version {found} is not supported (expected {SEAL_VERSION})")]
    Version {
        /// The version byte.
        found: u8,
    },
    /// The plaintext does not decode.
    #[error("the sealed secrets do not decode")]
    Decode,
}

/// A fresh ephemeral X25519 key and its public half (what an agent puts in its request).
///
/// # Errors
/// [`SealError::Random`].
pub fn ephemeral_key(rng: &dyn SecureRandom) -> Result<(EphemeralPrivateKey, [u8; 32]), SealError> {
    let private = EphemeralPrivateKey::generate(&X25519, rng).map_err(|_| SealError::Random)?;
    let public = private
        .compute_public_key()
        .map_err(|_| SealError::Random)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(public.as_ref());
    Ok((private, out))
}

fn aad(task_id: &TaskId, enclave_challenge: &Address) -> Vec<u8> {
    [SEAL_AAD, task_id.as_bytes(), enclave_challenge.as_bytes()].concat()
}

fn aead_key(
    private: EphemeralPrivateKey,
    peer: &[u8; 32],
    sender: &[u8; 32],
    recipient: &[u8; 32],
) -> Result<LessSafeKey, SealError> {
    agreement::agree_ephemeral(private, &UnparsedPublicKey::new(&X25519, peer), |shared| {
        let info = [SEAL_INFO, sender.as_slice(), recipient.as_slice()];
        let prk = Salt::new(HKDF_SHA256, SEAL_SALT).extract(shared);
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| SealError::Agreement)?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    })
    .map_err(|_| SealError::Agreement)?
}

/// Seals `secrets` to the agent's ephemeral `recipient` key for `task_id` and
/// `enclave_challenge` (the SMS side).
///
/// # Errors
/// [`SealError::Random`], [`SealError::Agreement`].
pub fn seal(
    secrets: &ReleasedSecrets,
    recipient: &[u8; 32],
    task_id: &TaskId,
    enclave_challenge: &Address,
    rng: &dyn SecureRandom,
) -> Result<SecretResult, SealError> {
    let (private, sender) = ephemeral_key(rng)?;
    let key = aead_key(private, recipient, &sender, recipient)?;
    let mut nonce = [0u8; 12];
    rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
    let encoded = Zeroizing::new(postcard::to_allocvec(secrets).map_err(|_| SealError::Decode)?);
    let mut buffer = Vec::with_capacity(1 + encoded.len() + 16);
    buffer.push(SEAL_VERSION);
    buffer.extend_from_slice(&encoded);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad(task_id, enclave_challenge)),
        &mut buffer,
    )
    .map_err(|_| SealError::Agreement)?;
    Ok(SecretResult::Sealed {
        sender_public_key: sender,
        nonce,
        ciphertext: buffer,
    })
}

/// Opens the SMS's answer with the agent's ephemeral `private` key (consumed: it is single use).
///
/// # Errors
/// [`SealError::Refused`] for a refusal, [`SealError::Open`] when the ciphertext does not
/// authenticate for this key, task and challenge, then [`SealError::Version`] or
/// [`SealError::Decode`].
pub fn unseal(
    private: EphemeralPrivateKey,
    result: &SecretResult,
    task_id: &TaskId,
    enclave_challenge: &Address,
) -> Result<ReleasedSecrets, SealError> {
    let (sender, nonce, ciphertext) = match result {
        SecretResult::Refused { reason } => return Err(SealError::Refused(reason.clone())),
        SecretResult::Sealed {
            sender_public_key,
            nonce,
            ciphertext,
        } => (sender_public_key, nonce, ciphertext),
    };
    let mut recipient = [0u8; 32];
    recipient.copy_from_slice(
        private
            .compute_public_key()
            .map_err(|_| SealError::Agreement)?
            .as_ref(),
    );
    let key = aead_key(private, sender, sender, &recipient)?;
    let mut buffer = Zeroizing::new(ciphertext.clone());
    let plaintext = key
        .open_in_place(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad(task_id, enclave_challenge)),
            &mut buffer,
        )
        .map_err(|_| SealError::Open)?;
    let plaintext: &[u8] = plaintext;
    match plaintext.split_first() {
        Some((&SEAL_VERSION, body)) => postcard::from_bytes(body).map_err(|_| SealError::Decode),
        Some((&found, _)) => Err(SealError::Version { found }),
        None => Err(SealError::Decode),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn secrets() -> ReleasedSecrets {
        ReleasedSecrets {
            dataset_key: Some([9; 32]),
            enclave_key: [7; 32],
            beneficiary_key: Some("-----BEGIN PUBLIC KEY-----".into()),
        }
    }

    #[test]
    fn the_web3_secret_challenge_is_the_sdk_layout() {
        let address = Address([0x3b; 20]);
        let value = "yW5vSGtrY2Q0M2E3ZmNjZGQ4YmI5ZWQ1M2Y3YzhjNjM=";
        let mut preimage = keccak256(b"IEXEC_SMS_DOMAIN").as_bytes().to_vec();
        preimage.extend_from_slice(address.as_bytes());
        preimage.extend_from_slice(keccak256(value.as_bytes()).as_bytes());
        assert_eq!(web3_secret_challenge(&address, value), keccak256(&preimage));
        assert_ne!(
            web3_secret_challenge(&address, value),
            web3_secret_challenge(&address, "other")
        );
    }

    #[test]
    fn sealed_secrets_open_with_the_recipient_key_for_the_same_task() {
        let rng = SystemRandom::new();
        let (private, public) = ephemeral_key(&rng).unwrap();
        let task = TaskId::from([1; 32]);
        let challenge = Address([2; 20]);
        let sealed = seal(&secrets(), &public, &task, &challenge, &rng).unwrap();
        assert_eq!(
            unseal(private, &sealed, &task, &challenge).unwrap(),
            secrets()
        );
    }

    #[test]
    fn sealed_secrets_do_not_open_for_another_task_challenge_or_key() {
        let rng = SystemRandom::new();
        let task = TaskId::from([1; 32]);
        let challenge = Address([2; 20]);
        let (_, public) = ephemeral_key(&rng).unwrap();
        let sealed = seal(&secrets(), &public, &task, &challenge, &rng).unwrap();
        let (other, _) = ephemeral_key(&rng).unwrap();
        assert_eq!(
            unseal(other, &sealed, &task, &challenge),
            Err(SealError::Open)
        );

        let (private, public) = ephemeral_key(&rng).unwrap();
        let sealed = seal(&secrets(), &public, &task, &challenge, &rng).unwrap();
        assert_eq!(
            unseal(private, &sealed, &TaskId::from([3; 32]), &challenge),
            Err(SealError::Open)
        );
        let (private, public) = ephemeral_key(&rng).unwrap();
        let sealed = seal(&secrets(), &public, &task, &challenge, &rng).unwrap();
        assert_eq!(
            unseal(private, &sealed, &task, &Address([4; 20])),
            Err(SealError::Open)
        );
    }

    #[test]
    fn a_flipped_ciphertext_bit_does_not_open_and_a_refusal_is_typed() {
        let rng = SystemRandom::new();
        let (private, public) = ephemeral_key(&rng).unwrap();
        let task = TaskId::from([1; 32]);
        let mut sealed = seal(&secrets(), &public, &task, &Address([2; 20]), &rng).unwrap();
        if let SecretResult::Sealed { ciphertext, .. } = &mut sealed {
            ciphertext[0] ^= 1;
        }
        assert_eq!(
            unseal(private, &sealed, &task, &Address([2; 20])),
            Err(SealError::Open)
        );
        let (private, _) = ephemeral_key(&rng).unwrap();
        let refused = SecretResult::Refused {
            reason: "policy".into(),
        };
        assert_eq!(
            unseal(private, &refused, &task, &Address([2; 20])),
            Err(SealError::Refused("policy".into()))
        );
    }

    #[test]
    fn refusal_codes_round_trip_through_the_reason() {
        for code in RefusalCode::ALL {
            let reason = format!("{code}: because");
            assert_eq!(RefusalCode::of_reason(&reason), Some(*code));
        }
        assert_eq!(RefusalCode::of_reason("nonsense"), None);
    }

    #[test]
    fn debug_redacts_the_keys() {
        let text = format!("{:?}", secrets());
        assert!(text.contains("redacted"), "{text}");
        assert!(!text.contains("9, 9"), "{text}");
    }
}
