//! The secret management service (SMS), sans-IO: it holds dataset keys and result-encryption
//! keys, makes one enclave key per TEE task (its address is the task's enclave challenge) and
//! releases a task's secrets only to attested evidence bound to the request.
//!
//! [`Sms::handle`] checks, in this order: the request's shape, the scheduler's authorization
//! (signature, worker = sender), that the task is active and its deal tagged `tee`, the enclave
//! challenge (the one made for this task), the app checksum, the dataset order's restrictions,
//! the evidence ([`edgepool_attestation::verify`], then the [`Policy`]) and the binding (the
//! evidence's report data is [`SecretRequest::report_data`]). Only then does it seal the dataset
//! key, the enclave key and (when the deal encrypts results) the beneficiary's key to the
//! request's ephemeral key ([`edgepool_protocol::sms::seal`]). A refusal is a [`Refusal`] whose
//! code opens the reason string the agent receives.
//!
//! Replays: the report data binds the task, the challenge, the ephemeral key and the app, so
//! evidence taken from another request fails the binding; the sealed answer opens only with the
//! ephemeral private key and for this task and challenge.

mod secrets;
#[cfg(test)]
mod tests;
pub mod vault;

use std::collections::BTreeMap;

use edgepool_attestation::policy::{Policy, PolicyError};
use edgepool_protocol::messages::{DealSummary, SecretRequest, SecretResponse, SecretResult};
use edgepool_protocol::primitives::{Address, TaskId};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::sms::{seal, RefusalCode, ReleasedSecrets};
use ring::rand::{SecureRandom, SystemRandom};

pub use secrets::{PushError, SecretStore, MAX_RESULT_KEY_BYTES};
pub use vault::{Vault, VaultError};

use edgepool_protocol::signature::Signature;

/// The restrictions of the dataset order the deal matched (the zero address means any).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatasetRestrictions {
    /// The only app allowed.
    pub app: Address,
    /// The only workerpool allowed.
    pub workerpool: Address,
    /// The only requester allowed.
    pub requester: Address,
}

/// What the SMS knows about the task of a request (in iExec it reads it on-chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContext {
    /// The task.
    pub task_id: TaskId,
    /// Its deal.
    pub deal: DealSummary,
    /// The deal's workerpool.
    pub workerpool: Address,
    /// Whether the task is active (initialized, not final, before its deadline).
    pub active: bool,
    /// The dataset order's restrictions.
    pub dataset_restrictions: DatasetRestrictions,
}

/// Why the SMS refused a request. [`Refusal::code`] opens the reason sent to the agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is malformed.
    #[error("{0}")]
    Malformed(String),
    /// The request is for another task than the context's.
    #[error("the request is for task {found}, the context for {expected}")]
    WrongTask {
        /// The context's task.
        expected: TaskId,
        /// The request's.
        found: TaskId,
    },
    /// The authorization is not signed by the scheduler.
    #[error("the authorization is not signed by the scheduler {scheduler}: {reason}")]
    AuthorizationSignature {
        /// The trusted scheduler.
        scheduler: Address,
        /// What failed.
        reason: String,
    },
    /// The authorization is for another worker than the sender.
    #[error("the authorization is for worker {authorized}, the request comes from {sender}")]
    AuthorizationForOtherWorker {
        /// The authorized worker.
        authorized: Address,
        /// The sender.
        sender: Address,
    },
    /// The task is not active.
    #[error("task {0} is not active")]
    TaskNotActive(TaskId),
    /// The deal's tag has no `tee`.
    #[error("the deal of task {0} is not tagged tee")]
    NotTee(TaskId),
    /// The challenge is not the one made for the task.
    #[error("enclave challenge {found} was not made for task {task_id}")]
    UnknownChallenge {
        /// The task.
        task_id: TaskId,
        /// The request's challenge.
        found: Address,
    },
    /// The app checksum is not the deal's.
    #[error("app checksum {found} is not the deal's {expected}")]
    AppChecksum {
        /// The deal's.
        expected: edgepool_protocol::primitives::Digest,
        /// The request's.
        found: edgepool_protocol::primitives::Digest,
    },
    /// The dataset order excludes this task.
    #[error("the dataset order restricts {field} to {allowed}, the deal has {found}")]
    DatasetRestricted {
        /// `app`, `workerpool` or `requester`.
        field: &'static str,
        /// The allowed address.
        allowed: Address,
        /// The deal's.
        found: Address,
    },
    /// The evidence does not verify.
    #[error("{0}")]
    Evidence(String),
    /// The SMS policy refuses the verified claims.
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// The evidence is not bound to this request.
    #[error("the evidence's report data is not bound to this request (task, challenge, key, app)")]
    Binding,
    /// The deal's dataset has no key in the SMS.
    #[error("no key was pushed for dataset {0}")]
    DatasetSecretMissing(Address),
    /// The deal encrypts results and the beneficiary pushed no key.
    #[error("beneficiary {0} pushed no result-encryption key")]
    ResultKeyMissing(Address),
    /// Sealing failed.
    #[error("sealing failed: {0}")]
    Seal(String),
}

impl Refusal {
    /// The wire code of this refusal.
    pub fn code(&self) -> RefusalCode {
        match self {
            Refusal::Malformed(_) | Refusal::WrongTask { .. } => RefusalCode::Malformed,
            Refusal::AuthorizationSignature { .. }
            | Refusal::AuthorizationForOtherWorker { .. } => RefusalCode::Authorization,
            Refusal::TaskNotActive(_) => RefusalCode::TaskNotActive,
            Refusal::NotTee(_) => RefusalCode::NotTee,
            Refusal::UnknownChallenge { .. } => RefusalCode::UnknownChallenge,
            Refusal::AppChecksum { .. } => RefusalCode::AppChecksum,
            Refusal::DatasetRestricted { .. } => RefusalCode::DatasetRestricted,
            Refusal::Evidence(_) => RefusalCode::Evidence,
            Refusal::Policy(_) => RefusalCode::Policy,
            Refusal::Binding => RefusalCode::Binding,
            Refusal::DatasetSecretMissing(_) => RefusalCode::SecretMissing,
            Refusal::ResultKeyMissing(_) => RefusalCode::ResultKeyMissing,
            Refusal::Seal(_) => RefusalCode::Internal,
        }
    }

    /// The reason string of [`SecretResult::Refused`]: `"<code>: <message>"`.
    pub fn reason(&self) -> String {
        let text = format!("{}: {self}", self.code());
        // The protocol bounds the reason; cut on a char boundary.
        text.chars().take(1000).collect()
    }
}

/// Why the SMS could not make an enclave key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// The random source failed.
    #[error("the random source failed")]
    Random,
    /// The vault could not keep the new enclave key (no challenge is handed out).
    #[error("the SMS could not keep the enclave key: {0}")]
    Vault(String),
}

/// The SMS of one workerpool.
pub struct Sms {
    scheduler: Address,
    policy: Policy,
    secrets: SecretStore,
    enclaves: BTreeMap<TaskId, Signer>,
    rng: SystemRandom,
    vault: Option<Vault>,
    /// Enclave keys of finished tasks the vault could not delete, why (drained by the pool).
    vault_failures: Vec<String>,
}

impl std::fmt::Debug for Sms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sms")
            .field("scheduler", &self.scheduler)
            .field("policy", &self.policy)
            .field("secrets", &self.secrets)
            .field("enclaves", &self.enclaves.len())
            .field("vault", &self.vault.is_some())
            .finish()
    }
}

impl Sms {
    /// An SMS trusting authorizations signed by `scheduler`, verifying evidence under `policy`.
    pub fn new(scheduler: Address, policy: Policy) -> Self {
        Self {
            scheduler,
            policy,
            secrets: SecretStore::default(),
            enclaves: BTreeMap::new(),
            rng: SystemRandom::new(),
            vault: None,
            vault_failures: Vec::new(),
        }
    }

    /// [`Sms::new`] kept in the vault at `path` (created if missing, mode 0600): the enclave
    /// keys, dataset keys and result-encryption keys it held are restored, and every new one is
    /// kept there before it is used (what `serve` does, so TEE tasks survive a restart). Pushes
    /// that must be kept go through [`Sms::push_dataset_secret`] and
    /// [`Sms::push_result_encryption_key`]; [`Sms::secrets_mut`] changes memory only.
    ///
    /// # Errors
    /// [`VaultError`].
    pub fn open_persistent(
        scheduler: Address,
        policy: Policy,
        path: &std::path::Path,
    ) -> Result<Self, VaultError> {
        let vault = Vault::open(path)?;
        let content = vault.load()?;
        let mut sms = Self::new(scheduler, policy);
        sms.enclaves.extend(content.enclaves);
        for (dataset, value) in content.datasets {
            sms.secrets.insert_dataset_secret(dataset, value);
        }
        for (beneficiary, value) in content.result_keys {
            sms.secrets.insert_result_key(beneficiary, value);
        }
        sms.vault = Some(vault);
        Ok(sms)
    }

    /// How many enclave keys the SMS holds (one per TEE task placed).
    pub fn enclave_count(&self) -> usize {
        self.enclaves.len()
    }

    /// Pushes the key of `dataset` (see [`SecretStore::push_dataset_secret`]), kept in the vault
    /// first when there is one.
    ///
    /// # Errors
    /// [`PushError`] (`Storage` when the vault failed: nothing was stored).
    pub fn push_dataset_secret(
        &mut self,
        dataset: Address,
        owner: Address,
        value: &str,
        signature: &Signature,
    ) -> Result<(), PushError> {
        self.secrets
            .check_dataset_secret(dataset, owner, value, signature)?;
        if let Some(vault) = &self.vault {
            vault
                .put_dataset_secret(&dataset, value)
                .map_err(|e| PushError::Storage(e.to_string()))?;
        }
        self.secrets
            .insert_dataset_secret(dataset, zeroize::Zeroizing::new(value.to_string()));
        Ok(())
    }

    /// Pushes the result-encryption key of `beneficiary` (see
    /// [`SecretStore::push_result_encryption_key`]), kept in the vault first when there is one.
    ///
    /// # Errors
    /// [`PushError`] (`Storage` when the vault failed: nothing was stored).
    pub fn push_result_encryption_key(
        &mut self,
        beneficiary: Address,
        value: &str,
        signature: &Signature,
    ) -> Result<(), PushError> {
        self.secrets
            .check_result_encryption_key(beneficiary, value, signature)?;
        if let Some(vault) = &self.vault {
            vault
                .put_result_key(&beneficiary, value)
                .map_err(|e| PushError::Storage(e.to_string()))?;
        }
        self.secrets
            .insert_result_key(beneficiary, value.to_string());
        Ok(())
    }

    /// The policy evidence is checked against.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the policy (tests switch between the simulator's and the hardware-only one).
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// The pushed secrets.
    pub fn secrets(&self) -> &SecretStore {
        &self.secrets
    }

    /// The pushed secrets, to push more (see [`SecretStore::push_dataset_secret`] and
    /// [`SecretStore::push_result_encryption_key`]).
    pub fn secrets_mut(&mut self) -> &mut SecretStore {
        &mut self.secrets
    }

    /// The enclave challenge of `task_id`: the address of the task's enclave key, made on the
    /// first call and the same on every later one.
    ///
    /// # Errors
    /// [`SmsError::Random`].
    pub fn enclave_challenge(&mut self, task_id: TaskId) -> Result<Address, SmsError> {
        if let Some(key) = self.enclaves.get(&task_id) {
            return Ok(key.address());
        }
        // A uniformly random 32-byte string is a valid secp256k1 scalar except with probability
        // about 2^-128; a few draws are plenty.
        for _ in 0..8 {
            let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
            self.rng
                .fill(bytes.as_mut())
                .map_err(|_| SmsError::Random)?;
            if let Ok(key) = Signer::from_bytes(&bytes) {
                let address = key.address();
                // Kept before the challenge is handed out: a restarted SMS serves the same one.
                if let Some(vault) = &self.vault {
                    vault
                        .put_enclave(&task_id, &key)
                        .map_err(|e| SmsError::Vault(e.to_string()))?;
                }
                self.enclaves.insert(task_id, key);
                return Ok(address);
            }
        }
        Err(SmsError::Random)
    }

    /// Forgets the enclave key of `task_id`, a task that is final: no secret request about it
    /// can be answered any more, and the key is dropped from memory and from the vault. When the
    /// vault cannot delete it, the key stays there (it opens nothing: the task is over) and the
    /// failure is kept for [`Sms::take_vault_failures`].
    pub fn forget_task(&mut self, task_id: &TaskId) {
        if self.enclaves.remove(task_id).is_none() {
            return;
        }
        if let Some(vault) = &self.vault {
            if let Err(e) = vault.forget_enclave(task_id) {
                self.vault_failures.push(format!(
                    "the SMS vault could not forget the enclave key of finished task {task_id}: {e}"
                ));
            }
        }
    }

    /// What went wrong in the vault since the last call (see [`Sms::forget_task`]).
    pub fn take_vault_failures(&mut self) -> Vec<String> {
        std::mem::take(&mut self.vault_failures)
    }

    /// Answers a secret request from `sender` about the task described by `ctx`, at `now_unix`
    /// (seconds; certificate validity). Never panics; every refusal is a [`Refusal`] in the
    /// answer's reason.
    pub fn handle(
        &self,
        request: &SecretRequest,
        sender: Address,
        ctx: &TaskContext,
        now_unix: u64,
    ) -> SecretResponse {
        let result = match self.release(request, sender, ctx, now_unix) {
            Ok(result) => result,
            Err(refusal) => SecretResult::Refused {
                reason: refusal.reason(),
            },
        };
        SecretResponse {
            task_id: request.task_id,
            ephemeral_public_key: request.ephemeral_public_key,
            result,
        }
    }

    /// The checks of [`Sms::handle`], then the sealed secrets.
    ///
    /// # Errors
    /// The first [`Refusal`] that applies.
    pub fn release(
        &self,
        request: &SecretRequest,
        sender: Address,
        ctx: &TaskContext,
        now_unix: u64,
    ) -> Result<SecretResult, Refusal> {
        let task_id = request.task_id;
        request
            .validate()
            .map_err(|e| Refusal::Malformed(e.to_string()))?;
        if ctx.task_id != task_id {
            return Err(Refusal::WrongTask {
                expected: ctx.task_id,
                found: task_id,
            });
        }
        request.authorization.verify(self.scheduler).map_err(|e| {
            Refusal::AuthorizationSignature {
                scheduler: self.scheduler,
                reason: e.to_string(),
            }
        })?;
        if request.authorization.worker_wallet != sender {
            return Err(Refusal::AuthorizationForOtherWorker {
                authorized: request.authorization.worker_wallet,
                sender,
            });
        }
        if !ctx.active {
            return Err(Refusal::TaskNotActive(task_id));
        }
        let deal = &ctx.deal;
        if !deal.tag.is_tee() {
            return Err(Refusal::NotTee(task_id));
        }
        let enclave = self
            .enclaves
            .get(&task_id)
            .filter(|key| key.address() == request.enclave_challenge)
            .ok_or(Refusal::UnknownChallenge {
                task_id,
                found: request.enclave_challenge,
            })?;
        if request.app_checksum != deal.app.checksum {
            return Err(Refusal::AppChecksum {
                expected: deal.app.checksum,
                found: request.app_checksum,
            });
        }
        if deal.dataset.is_some() {
            let r = &ctx.dataset_restrictions;
            for (field, allowed, found) in [
                ("app", r.app, deal.app.address),
                ("workerpool", r.workerpool, ctx.workerpool),
                ("requester", r.requester, deal.requester),
            ] {
                if !allowed.is_zero() && allowed != found {
                    return Err(Refusal::DatasetRestricted {
                        field,
                        allowed,
                        found,
                    });
                }
            }
        }
        let claims = edgepool_attestation::verify(&request.evidence, now_unix)
            .map_err(|e| Refusal::Evidence(e.to_string()))?;
        self.policy.check(&claims)?;
        if claims.report_data.as_slice() != request.report_data().as_slice() {
            return Err(Refusal::Binding);
        }
        let dataset_key = match &deal.dataset {
            None => None,
            Some(dataset) => Some(
                self.secrets
                    .dataset_key(&dataset.address)
                    .ok_or(Refusal::DatasetSecretMissing(dataset.address))?,
            ),
        };
        let beneficiary_key = if deal.result_encryption {
            Some(
                self.secrets
                    .result_key(&deal.beneficiary)
                    .ok_or(Refusal::ResultKeyMissing(deal.beneficiary))?
                    .to_string(),
            )
        } else {
            None
        };
        let secrets = ReleasedSecrets {
            dataset_key,
            enclave_key: *enclave.secret_bytes(),
            beneficiary_key,
        };
        seal(
            &secrets,
            &request.ephemeral_public_key,
            &task_id,
            &request.enclave_challenge,
            &self.rng,
        )
        .map_err(|e| Refusal::Seal(e.to_string()))
    }
}
