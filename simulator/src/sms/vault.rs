//! The SMS's vault: what the SMS must still know after a restart of `edgepool-sim serve`, in one
//! SQLite file (mode 0600, `synchronous=FULL`; the only module of the SMS that knows SQL).
//!
//! Kept: each task's enclave key (a TEE task assigned before a restart must be served its
//! secrets after it, under the same challenge), each dataset key and each result-encryption key
//! pushed. Written before the SMS answers (an enclave challenge is only handed out once its key
//! is kept), read once at start. Secret values are never logged or printed; rows are plain
//! bytes protected by the file's mode, as iExec's SMS keeps them in its own database.

use std::path::{Path, PathBuf};

use edgepool_protocol::primitives::{Address, TaskId};
use edgepool_protocol::signature::Signer;
use rusqlite::{params, Connection};
use zeroize::Zeroizing;

/// Numbered migrations; `PRAGMA user_version` holds how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE enclave_key (
        task BLOB PRIMARY KEY,
        secret BLOB NOT NULL
    ) STRICT;
    CREATE TABLE dataset_secret (
        dataset BLOB PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE result_key (
        beneficiary BLOB PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;"];

/// Why the vault failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// SQLite failed.
    #[error("SMS vault: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The file or its permissions could not be set up.
    #[error("SMS vault {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A stored row does not decode (its content is not printed).
    #[error("SMS vault: a {table} row does not decode")]
    Corrupt {
        /// The table.
        table: &'static str,
    },
    /// The file was written by a newer version.
    #[error("SMS vault: schema version {found} is newer than this build's {known}")]
    TooNew {
        /// The version found.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

/// What the vault held at start.
#[derive(Default)]
pub struct VaultContent {
    /// Enclave keys by task.
    pub enclaves: Vec<(TaskId, Signer)>,
    /// Dataset keys (base64) by dataset.
    pub datasets: Vec<(Address, Zeroizing<String>)>,
    /// Result-encryption keys by beneficiary.
    pub result_keys: Vec<(Address, String)>,
}

impl std::fmt::Debug for VaultContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultContent")
            .field("enclaves", &self.enclaves.len())
            .field("datasets", &self.datasets.len())
            .field("result_keys", &self.result_keys.len())
            .finish()
    }
}

/// The open vault.
pub struct Vault {
    conn: Connection,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens (or creates) the vault at `path`; the file is made (or set back to) mode 0600.
    ///
    /// # Errors
    /// [`VaultError`].
    pub fn open(path: &Path) -> Result<Vault, VaultError> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let io = |source| VaultError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Created 0600 before SQLite opens it; SQLite gives its journal the same mode.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A forgotten key's bytes are overwritten in the file, not left on a free page.
        conn.pragma_update(None, "secure_delete", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > known {
            return Err(VaultError::TooNew {
                found: version,
                known,
            });
        }
        for (i, migration) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(i + 1).unwrap_or(i64::MAX),
            )?;
            tx.commit()?;
        }
        Ok(Vault { conn })
    }

    /// Everything the vault holds.
    ///
    /// # Errors
    /// [`VaultError`].
    pub fn load(&self) -> Result<VaultContent, VaultError> {
        let mut content = VaultContent::default();
        let mut stmt = self.conn.prepare("SELECT task, secret FROM enclave_key")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                Zeroizing::new(r.get::<_, Vec<u8>>(1)?),
            ))
        })?;
        for row in rows {
            let (task, secret) = row?;
            let corrupt = VaultError::Corrupt {
                table: "enclave_key",
            };
            let task: [u8; 32] = task.try_into().map_err(|_| corrupt)?;
            let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
                secret
                    .as_slice()
                    .try_into()
                    .map_err(|_| VaultError::Corrupt {
                        table: "enclave_key",
                    })?,
            );
            let signer = Signer::from_bytes(&secret).map_err(|_| VaultError::Corrupt {
                table: "enclave_key",
            })?;
            content.enclaves.push((TaskId::from(task), signer));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT dataset, value FROM dataset_secret")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                Zeroizing::new(r.get::<_, String>(1)?),
            ))
        })?;
        for row in rows {
            let (dataset, value) = row?;
            let dataset = address(dataset, "dataset_secret")?;
            content.datasets.push((dataset, value));
        }
        let mut stmt = self
            .conn
            .prepare("SELECT beneficiary, value FROM result_key")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (beneficiary, value) = row?;
            content
                .result_keys
                .push((address(beneficiary, "result_key")?, value));
        }
        Ok(content)
    }

    /// Keeps the enclave key of `task`.
    ///
    /// # Errors
    /// [`VaultError::Sql`].
    pub fn put_enclave(&self, task: &TaskId, key: &Signer) -> Result<(), VaultError> {
        let secret = key.secret_bytes();
        self.conn.execute(
            "INSERT OR REPLACE INTO enclave_key (task, secret) VALUES (?1, ?2)",
            params![task.as_bytes().as_slice(), secret.as_slice()],
        )?;
        Ok(())
    }

    /// Forgets the enclave key of `task` (a finished task's); nothing when it has none.
    ///
    /// # Errors
    /// [`VaultError::Sql`].
    pub fn forget_enclave(&self, task: &TaskId) -> Result<(), VaultError> {
        self.conn.execute(
            "DELETE FROM enclave_key WHERE task = ?1",
            params![task.as_bytes().as_slice()],
        )?;
        Ok(())
    }

    /// Keeps the key (base64) of `dataset`.
    ///
    /// # Errors
    /// [`VaultError::Sql`].
    pub fn put_dataset_secret(&self, dataset: &Address, value: &str) -> Result<(), VaultError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO dataset_secret (dataset, value) VALUES (?1, ?2)",
            params![dataset.as_bytes().as_slice(), value],
        )?;
        Ok(())
    }

    /// Keeps the result-encryption key of `beneficiary`.
    ///
    /// # Errors
    /// [`VaultError::Sql`].
    pub fn put_result_key(&self, beneficiary: &Address, value: &str) -> Result<(), VaultError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO result_key (beneficiary, value) VALUES (?1, ?2)",
            params![beneficiary.as_bytes().as_slice(), value],
        )?;
        Ok(())
    }
}

fn address(bytes: Vec<u8>, table: &'static str) -> Result<Address, VaultError> {
    let bytes: [u8; 20] = bytes
        .try_into()
        .map_err(|_| VaultError::Corrupt { table })?;
    Ok(Address(bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sms::Sms;
    use edgepool_attestation::policy::Policy;

    #[test]
    fn a_finished_tasks_enclave_key_leaves_the_vault_and_its_bytes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sms.sqlite");
        let scheduler = Address([1; 20]);
        let (done, running) = (TaskId::from([7; 32]), TaskId::from([8; 32]));
        let mut sms = Sms::open_persistent(scheduler, Policy::simulator(), &path).unwrap();
        sms.enclave_challenge(done).unwrap();
        let kept = sms.enclave_challenge(running).unwrap();
        let secret_of = |task: TaskId| {
            let content = Vault::open(&path).unwrap().load().unwrap();
            let (_, key) = content
                .enclaves
                .into_iter()
                .find(|(t, _)| *t == task)
                .unwrap();
            key.secret_bytes().to_vec()
        };
        let secret = secret_of(done);
        let in_file = |needle: &[u8]| {
            std::fs::read_dir(dir.path()).unwrap().flatten().any(|e| {
                let bytes = std::fs::read(e.path()).unwrap();
                bytes.windows(needle.len()).any(|w| w == needle)
            })
        };
        assert!(
            in_file(&secret),
            "the key is in the vault while its task runs"
        );
        sms.forget_task(&done);
        sms.forget_task(&done); // twice: nothing more happens
        assert!(sms.take_vault_failures().is_empty());
        assert_eq!(sms.enclave_count(), 1);
        assert!(
            !in_file(&secret),
            "the forgotten key's bytes are still in the vault's files"
        );
        let mut again = Sms::open_persistent(scheduler, Policy::simulator(), &path).unwrap();
        assert_eq!(again.enclave_count(), 1);
        assert_eq!(again.enclave_challenge(running).unwrap(), kept);
    }

    #[test]
    fn a_reopened_sms_keeps_its_enclave_keys_and_pushed_secrets_in_a_private_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sms.sqlite");
        let scheduler = Address([1; 20]);
        let task = TaskId::from([7; 32]);
        let owner = Signer::from_bytes(&[5; 32]).unwrap();
        let dataset = Address([9; 20]);
        let value = edgepool_protocol::dataset::DatasetKey::from_bytes([4; 32]).to_base64();
        let challenge = {
            let mut sms = Sms::open_persistent(scheduler, Policy::simulator(), &path).unwrap();
            let signature = owner.sign_personal(
                edgepool_protocol::sms::web3_secret_challenge(&dataset, &value).as_bytes(),
            );
            sms.push_dataset_secret(dataset, owner.address(), &value, &signature)
                .unwrap();
            // A second push is refused and changes nothing, kept or not.
            assert!(sms
                .push_dataset_secret(dataset, owner.address(), &value, &signature)
                .is_err());
            sms.enclave_challenge(task).unwrap()
        };
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut again = Sms::open_persistent(scheduler, Policy::simulator(), &path).unwrap();
        assert_eq!(again.enclave_count(), 1);
        assert_eq!(again.enclave_challenge(task).unwrap(), challenge);
        assert!(again.secrets().has_dataset_secret(&dataset));
        assert_eq!(again.secrets().dataset_key(&dataset), Some([4; 32]));
        // An SMS without the vault knows none of it.
        let mut fresh = Sms::new(scheduler, Policy::simulator());
        assert_ne!(fresh.enclave_challenge(task).unwrap(), challenge);
        // Debug never prints a secret.
        let shown = format!(
            "{again:?} {:?}",
            Vault::open(&path).unwrap().load().unwrap()
        );
        assert!(!shown.contains(value.as_str()));
    }
}
