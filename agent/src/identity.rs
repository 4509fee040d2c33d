//! The worker's wallet: an encrypted JSON keystore (v3, scrypt) made and opened with
//! ethers-signers, and the password sources.
//!
//! The password comes from, in this order: `identity.password_file`; the systemd credential
//! `$CREDENTIALS_DIRECTORY/<identity.password_credential>` (`LoadCredential=`); the environment
//! variable named by `identity.password_env`. Never from the command line, never in a log: the
//! password is held in [`Password`], which wipes itself and has a redacting `Debug`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use edgepool_protocol::signature::Signer;
use ethers_signers::{LocalWallet, WalletError};
use zeroize::Zeroizing;

use crate::config::IdentitySection;

/// The keystore password. Wiped on drop; `Debug` does not show it.
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password, dropping one final line ending (`\n` or `\r\n`) as a password file has.
    pub fn new(mut text: String) -> Self {
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Password(Zeroizing::new(text))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(redacted)")
    }
}

/// Where a password was found (for logs and `doctor`: says where, never what).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `identity.password_file`.
    File(PathBuf),
    /// A systemd credential file.
    Credential(PathBuf),
    /// An environment variable.
    Env(String),
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::File(p) => write!(f, "password file {}", p.display()),
            PasswordSource::Credential(p) => write!(f, "systemd credential {}", p.display()),
            PasswordSource::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// Why the wallet cannot be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No source holds a password.
    #[error(
        "no keystore password: expected identity.password_file, a systemd credential \
         ($CREDENTIALS_DIRECTORY/{credential}) or the environment variable {env}"
    )]
    NoPassword {
        /// The credential name looked for.
        credential: String,
        /// The environment variable looked for.
        env: String,
    },
    /// A password source exists but cannot be read.
    #[error("cannot read the keystore password from {source_name}: {reason}")]
    PasswordUnreadable {
        /// The source.
        source_name: String,
        /// The OS error.
        reason: String,
    },
    /// The password is empty.
    #[error("the keystore password from {0} is empty")]
    EmptyPassword(String),
    /// There is no keystore file.
    #[error("no keystore at {}: run `edgepool-agent init` first", .0.display())]
    NoKeystore(PathBuf),
    /// The keystore's MAC does not match: the password is wrong (or the file was altered).
    #[error("wrong keystore password for {} (the keystore MAC does not match)", .0.display())]
    WrongPassword(PathBuf),
    /// The keystore file is not a v3 keystore.
    #[error("keystore {} is not a valid v3 JSON keystore: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing the keystore failed.
    #[error("cannot write keystore {}: {reason}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
}

/// Finds the keystore password, trying the sources in order.
///
/// `env` looks a variable up (the process environment in production, a map in tests).
///
/// # Errors
/// [`IdentityError::NoPassword`] when no source has one; [`IdentityError::PasswordUnreadable`]
/// when a configured file cannot be read; [`IdentityError::EmptyPassword`].
pub fn find_password(
    identity: &IdentitySection,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Password, PasswordSource), IdentityError> {
    let found = if let Some(path) = &identity.password_file {
        let text = read_secret_file(path, &PasswordSource::File(path.clone()))?;
        Some((text, PasswordSource::File(path.clone())))
    } else {
        None
    };
    let credential = identity
        .password_credential
        .clone()
        .unwrap_or_else(|| "edgepool-keystore-password".into());
    let found = match found {
        Some(found) => Some(found),
        None => match env("CREDENTIALS_DIRECTORY") {
            Some(dir) if !dir.is_empty() => {
                let path = Path::new(&dir).join(&credential);
                if path.exists() {
                    let source = PasswordSource::Credential(path.clone());
                    Some((read_secret_file(&path, &source)?, source))
                } else {
                    None
                }
            }
            _ => None,
        },
    };
    let env_name = identity
        .password_env
        .clone()
        .unwrap_or_else(|| "EDGEPOOL_KEYSTORE_PASSWORD".into());
    let found = match found {
        Some(found) => Some(found),
        None => env(&env_name).map(|value| (value, PasswordSource::Env(env_name.clone()))),
    };
    let Some((text, source)) = found else {
        return Err(IdentityError::NoPassword {
            credential,
            env: env_name,
        });
    };
    let password = Password::new(text);
    if password.0.is_empty() {
        return Err(IdentityError::EmptyPassword(source.to_string()));
    }
    Ok((password, source))
}

fn read_secret_file(path: &Path, source: &PasswordSource) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(|e| IdentityError::PasswordUnreadable {
        source_name: source.to_string(),
        reason: e.to_string(),
    })
}

/// Reads a password from a file given on the command line (`init --password-file`).
///
/// # Errors
/// As [`find_password`].
pub fn password_from_file(path: &Path) -> Result<Password, IdentityError> {
    let source = PasswordSource::File(path.to_path_buf());
    let password = Password::new(read_secret_file(path, &source)?);
    if password.0.is_empty() {
        return Err(IdentityError::EmptyPassword(source.to_string()));
    }
    Ok(password)
}

/// Opens the keystore at `path`.
///
/// # Errors
/// [`IdentityError::NoKeystore`], [`IdentityError::WrongPassword`] or
/// [`IdentityError::Malformed`].
pub fn unlock(path: &Path, password: &Password) -> Result<Signer, IdentityError> {
    if !path.exists() {
        return Err(IdentityError::NoKeystore(path.to_path_buf()));
    }
    match LocalWallet::decrypt_keystore(path, password.as_bytes()) {
        Ok(wallet) => Ok(Signer::from_wallet(wallet)),
        Err(WalletError::EthKeystoreError(eth_keystore::KeystoreError::MacMismatch)) => {
            Err(IdentityError::WrongPassword(path.to_path_buf()))
        }
        Err(e) => Err(IdentityError::Malformed {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Creates a new random wallet and writes it encrypted to `path` (mode 0600), atomically: a
/// partial keystore never appears under the final name.
///
/// # Errors
/// [`IdentityError::Write`].
pub fn create(path: &Path, password: &Password) -> Result<Signer, IdentityError> {
    let write_error = |reason: String| IdentityError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| write_error("the path has no file name".into()))?;
    let partial_name = format!(".{file_name}.partial");
    let partial = dir.join(&partial_name);
    let mut rng = rand::rngs::OsRng;
    let signer = Signer::random(&mut rng);
    let secret = signer.secret_bytes();
    LocalWallet::encrypt_keystore(
        dir,
        &mut rng,
        secret.as_slice(),
        password.as_bytes(),
        Some(&partial_name),
    )
    .map_err(|e| write_error(e.to_string()))?;
    restrict_and_sync(&partial).map_err(|e| write_error(e.to_string()))?;
    std::fs::rename(&partial, path).map_err(|e| write_error(e.to_string()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // The rename is durable once the directory is synced; failure here is not fatal.
        let _ = d.sync_all();
    }
    Ok(signer)
}

fn restrict_and_sync(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.flush()?;
    file.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_created_keystore_unlocks_with_its_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        let password = Password::new("correct horse\n".into());
        let signer = create(&path, &password).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = unlock(&path, &Password::new("correct horse".into())).unwrap();
        assert_eq!(again.address(), signer.address());
        let wrong = unlock(&path, &Password::new("battery staple".into())).unwrap_err();
        assert!(matches!(wrong, IdentityError::WrongPassword(_)), "{wrong}");
        assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("partial")));
    }

    #[test]
    fn missing_and_malformed_keystores_have_their_own_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        let pw = Password::new("pw".into());
        assert!(matches!(
            unlock(&path, &pw),
            Err(IdentityError::NoKeystore(_))
        ));
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            unlock(&path, &pw),
            Err(IdentityError::Malformed { .. })
        ));
    }

    #[test]
    fn password_sources_are_tried_in_order_file_credential_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        std::fs::write(creds.join("edgepool-keystore-password"), "from-cred").unwrap();
        let creds_dir = creds.to_str().unwrap();
        let env = lookup(&[
            ("CREDENTIALS_DIRECTORY", creds_dir),
            ("EDGEPOOL_KEYSTORE_PASSWORD", "from-env"),
        ]);

        let mut identity = IdentitySection {
            password_file: Some(file.clone()),
            ..IdentitySection::default()
        };
        let (pw, source) = find_password(&identity, &env).unwrap();
        assert_eq!(
            (pw.0.as_str(), source),
            ("from-file", PasswordSource::File(file))
        );

        identity.password_file = None;
        let (pw, source) = find_password(&identity, &env).unwrap();
        assert_eq!(pw.0.as_str(), "from-cred");
        assert!(matches!(source, PasswordSource::Credential(_)));

        let env_only = lookup(&[("EDGEPOOL_KEYSTORE_PASSWORD", "from-env")]);
        let (pw, source) = find_password(&identity, &env_only).unwrap();
        assert_eq!(pw.0.as_str(), "from-env");
        assert_eq!(
            source,
            PasswordSource::Env("EDGEPOOL_KEYSTORE_PASSWORD".into())
        );

        let none = find_password(&identity, &lookup(&[])).unwrap_err();
        assert!(matches!(none, IdentityError::NoPassword { .. }), "{none}");
        let empty = find_password(&identity, &lookup(&[("EDGEPOOL_KEYSTORE_PASSWORD", "")]));
        assert!(matches!(empty, Err(IdentityError::EmptyPassword(_))));
    }

    #[test]
    fn a_password_never_shows_in_debug_or_errors() {
        let pw = Password::new("hunter2".into());
        assert_eq!(format!("{pw:?}"), "Password(redacted)");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        create(&path, &pw).unwrap();
        let err = unlock(&path, &Password::new("hunter3".into())).unwrap_err();
        assert!(!err.to_string().contains("hunter"));
    }
}
