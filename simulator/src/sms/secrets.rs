//! The SMS's secret store: dataset keys pushed by dataset owners and result-encryption keys
//! pushed by beneficiaries, each authorised by an EIP-191 signature over iExec's challenge.

use std::collections::BTreeMap;

use edgepool_protocol::dataset::DatasetKey;
use edgepool_protocol::primitives::Address;
use edgepool_protocol::signature::Signature;
use edgepool_protocol::sms::{
    web2_secret_challenge, web3_secret_challenge, RESULT_ENCRYPTION_KEY_NAME,
};
use zeroize::Zeroizing;

/// Why a secret push was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The signature is malformed or not by the expected signer.
    #[error("the push must be signed by {expected}: {reason}")]
    Signature {
        /// Who must sign (the dataset owner, the beneficiary).
        expected: Address,
        /// What failed.
        reason: String,
    },
    /// A dataset secret that is not the base64 of 32 bytes.
    #[error("a dataset secret must be the base64 of a 32-byte key")]
    InvalidDatasetKey,
    /// A result-encryption key that is empty or too long.
    #[error("a result-encryption key must be 1 to {max} bytes, found {found}")]
    InvalidResultKey {
        /// The limit.
        max: usize,
        /// Its length.
        found: usize,
    },
    /// Secrets are never overwritten silently (iExec answers 409).
    #[error("a secret already exists for {0} and cannot be overwritten")]
    AlreadyExists(Address),
    /// The SMS's vault could not keep it (nothing was stored).
    #[error("the SMS could not keep the secret: {0}")]
    Storage(String),
}

/// The largest result-encryption key accepted (a PEM RSA-4096 public key is about 800 bytes).
pub const MAX_RESULT_KEY_BYTES: usize = 16 * 1024;

/// The pushed secrets. Values are zeroized when dropped and never printed.
#[derive(Default)]
pub struct SecretStore {
    datasets: BTreeMap<Address, Zeroizing<String>>,
    result_keys: BTreeMap<Address, String>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("datasets", &self.datasets.keys().collect::<Vec<_>>())
            .field("result_keys", &self.result_keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretStore {
    /// Stores the key of `dataset`, pushed by its `owner` (the caller looks the owner up, as
    /// iExec's SMS reads it on-chain) with `signature` = EIP-191 over
    /// [`web3_secret_challenge`]`(dataset, value)`. `value` is the key in base64, as the iExec
    /// SDK pushes it.
    ///
    /// # Errors
    /// [`PushError`].
    pub fn push_dataset_secret(
        &mut self,
        dataset: Address,
        owner: Address,
        value: &str,
        signature: &Signature,
    ) -> Result<(), PushError> {
        self.check_dataset_secret(dataset, owner, value, signature)?;
        self.insert_dataset_secret(dataset, Zeroizing::new(value.to_string()));
        Ok(())
    }

    /// The checks of [`SecretStore::push_dataset_secret`], storing nothing.
    ///
    /// # Errors
    /// [`PushError`].
    pub fn check_dataset_secret(
        &self,
        dataset: Address,
        owner: Address,
        value: &str,
        signature: &Signature,
    ) -> Result<(), PushError> {
        let challenge = web3_secret_challenge(&dataset, value);
        signature
            .verify_personal(challenge.as_bytes(), owner)
            .map_err(|e| PushError::Signature {
                expected: owner,
                reason: e.to_string(),
            })?;
        DatasetKey::from_base64(value).map_err(|_| PushError::InvalidDatasetKey)?;
        if self.datasets.contains_key(&dataset) {
            return Err(PushError::AlreadyExists(dataset));
        }
        Ok(())
    }

    /// Stores a dataset key already checked (or read back from the vault).
    pub(crate) fn insert_dataset_secret(&mut self, dataset: Address, value: Zeroizing<String>) {
        self.datasets.insert(dataset, value);
    }

    /// Stores a result-encryption key already checked (or read back from the vault).
    pub(crate) fn insert_result_key(&mut self, beneficiary: Address, value: String) {
        self.result_keys.insert(beneficiary, value);
    }

    /// Stores the result-encryption public key of `beneficiary`, signed by the beneficiary over
    /// [`web2_secret_challenge`]`(beneficiary, "iexec-result-encryption-public-key", value)`.
    ///
    /// # Errors
    /// [`PushError`].
    pub fn push_result_encryption_key(
        &mut self,
        beneficiary: Address,
        value: &str,
        signature: &Signature,
    ) -> Result<(), PushError> {
        self.check_result_encryption_key(beneficiary, value, signature)?;
        self.insert_result_key(beneficiary, value.to_string());
        Ok(())
    }

    /// The checks of [`SecretStore::push_result_encryption_key`], storing nothing.
    ///
    /// # Errors
    /// [`PushError`].
    pub fn check_result_encryption_key(
        &self,
        beneficiary: Address,
        value: &str,
        signature: &Signature,
    ) -> Result<(), PushError> {
        let challenge = web2_secret_challenge(&beneficiary, RESULT_ENCRYPTION_KEY_NAME, value);
        signature
            .verify_personal(challenge.as_bytes(), beneficiary)
            .map_err(|e| PushError::Signature {
                expected: beneficiary,
                reason: e.to_string(),
            })?;
        if value.is_empty() || value.len() > MAX_RESULT_KEY_BYTES {
            return Err(PushError::InvalidResultKey {
                max: MAX_RESULT_KEY_BYTES,
                found: value.len(),
            });
        }
        if self.result_keys.contains_key(&beneficiary) {
            return Err(PushError::AlreadyExists(beneficiary));
        }
        Ok(())
    }

    /// Whether `dataset` has a key (iExec's `checkWeb3SecretExists`).
    pub fn has_dataset_secret(&self, dataset: &Address) -> bool {
        self.datasets.contains_key(dataset)
    }

    /// The raw key of `dataset`.
    pub(crate) fn dataset_key(&self, dataset: &Address) -> Option<[u8; 32]> {
        let value = self.datasets.get(dataset)?;
        DatasetKey::from_base64(value).ok().map(|k| *k.as_bytes())
    }

    /// Whether `beneficiary` pushed a result-encryption key.
    pub fn has_result_key(&self, beneficiary: &Address) -> bool {
        self.result_keys.contains_key(beneficiary)
    }

    /// The result-encryption key of `beneficiary`.
    pub(crate) fn result_key(&self, beneficiary: &Address) -> Option<&str> {
        self.result_keys.get(beneficiary).map(String::as_str)
    }
}
