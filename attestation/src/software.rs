//! The software attester: a device key signs the report data.
//!
//! **It gives no hardware guarantee.** The key sits in a file the agent owns; anyone with root
//! on the machine (or a copy of the file) can produce evidence for any report data, and nothing
//! measures the code that runs. It exists so that the whole TEE flow (attest, request, unseal,
//! run, enclave signature) can be run and tested on machines without a TEE. A relying party
//! accepts it only when its policy says so explicitly ([`crate::policy::Policy::allow_software`]),
//! and the default policy never does.
//!
//! # Report format (version 1)
//!
//! ```text
//! 0..8     magic "EPSWEV" ‖ 0x00 ‖ version 0x01
//! 8..40    Ed25519 public key of the device
//! 40..104  report data (64 bytes)
//! 104..168 Ed25519 signature over "edgepool/v1/software-evidence" ‖ bytes 0..104
//! ```
//!
//! `aux` is empty. The claims: kind [`TeeKind::Software`], measurement = sha256(public key),
//! [`Tcb::None`], debug false, platform id = the public key.

use std::io::Write;
use std::path::{Path, PathBuf};

use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{Evidence, EvidenceKind};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use zeroize::Zeroizing;

use crate::{AttestError, Attester, Claims, Tcb, TeeKind};

/// The magic and version that open a version-1 report.
pub const MAGIC_V1: [u8; 8] = *b"EPSWEV\x00\x01";
/// The domain tag hashed before the signed bytes.
pub const SIGNATURE_DOMAIN: &[u8] = b"edgepool/v1/software-evidence";
/// The length of a version-1 report.
pub const REPORT_LEN: usize = 168;
const SIGNED_LEN: usize = 104;

/// Why software evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoftwareError {
    /// The report is not [`REPORT_LEN`] bytes.
    #[error("a software report must be {REPORT_LEN} bytes, found {found}")]
    Length {
        /// Its length.
        found: usize,
    },
    /// The magic or version is not one this verifier knows.
    #[error("unknown software report magic or version {found}")]
    Version {
        /// The first 8 bytes, hex.
        found: String,
    },
    /// Software evidence carries no auxiliary data.
    #[error("software evidence must have empty aux data, found {found} bytes")]
    UnexpectedAux {
        /// Its length.
        found: usize,
    },
    /// The signature does not verify under the embedded key.
    #[error("the Ed25519 signature does not verify under the embedded device key")]
    Signature,
}

/// Verifies a software `report` (and that `aux` is empty) and returns its claims.
///
/// # Errors
/// [`SoftwareError`].
pub fn verify(report: &[u8], aux: &[u8]) -> Result<Claims, SoftwareError> {
    if report.len() != REPORT_LEN {
        return Err(SoftwareError::Length {
            found: report.len(),
        });
    }
    if report[..8] != MAGIC_V1 {
        return Err(SoftwareError::Version {
            found: hex::encode(&report[..8]),
        });
    }
    if !aux.is_empty() {
        return Err(SoftwareError::UnexpectedAux { found: aux.len() });
    }
    let public_key = &report[8..40];
    let mut message = SIGNATURE_DOMAIN.to_vec();
    message.extend_from_slice(&report[..SIGNED_LEN]);
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&message, &report[SIGNED_LEN..])
        .map_err(|_| SoftwareError::Signature)?;
    Ok(Claims {
        kind: TeeKind::Software,
        measurement: sha256(public_key).as_bytes().to_vec(),
        extra: std::collections::BTreeMap::new(),
        report_data: report[40..SIGNED_LEN].to_vec(),
        tcb: Tcb::None,
        debug: false,
        platform_id: public_key.to_vec(),
    })
}

/// The software attester over a device key kept in a file (PKCS#8, mode 0600, created on first
/// use). See the module documentation: **no hardware guarantee**.
pub struct SoftwareAttester {
    key: Ed25519KeyPair,
    path: PathBuf,
}

impl std::fmt::Debug for SoftwareAttester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareAttester")
            .field("path", &self.path)
            .field("public_key", &hex::encode(self.key.public_key().as_ref()))
            .finish()
    }
}

impl SoftwareAttester {
    /// Opens the device key at `path`, creating it (and its parent directory) when absent.
    ///
    /// # Errors
    /// [`AttestError::Io`] when the file cannot be read or written, [`AttestError::Failed`] when
    /// it does not hold an Ed25519 PKCS#8 key.
    pub fn open_or_create(path: &Path) -> Result<Self, AttestError> {
        let io = |source| AttestError::Io {
            path: path.to_path_buf(),
            source,
        };
        let document = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = ring::rand::SystemRandom::new();
                let generated = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| AttestError::Failed("generating the device key".into()))?;
                let bytes = Zeroizing::new(generated.as_ref().to_vec());
                write_private(path, &bytes).map_err(io)?;
                bytes
            }
            Err(e) => return Err(io(e)),
        };
        let key = Ed25519KeyPair::from_pkcs8(&document).map_err(|e| {
            AttestError::Failed(format!(
                "{} does not hold an Ed25519 PKCS#8 key: {e}",
                path.display()
            ))
        })?;
        Ok(Self {
            key,
            path: path.to_path_buf(),
        })
    }

    /// The device public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.key.public_key().as_ref());
        out
    }

    /// The measurement its evidence claims: sha256 of the public key.
    pub fn measurement(&self) -> [u8; 32] {
        sha256(&self.public_key()).0
    }
}

impl Attester for SoftwareAttester {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Software
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        let mut report = Vec::with_capacity(REPORT_LEN);
        report.extend_from_slice(&MAGIC_V1);
        report.extend_from_slice(self.key.public_key().as_ref());
        report.extend_from_slice(report_data);
        let mut message = SIGNATURE_DOMAIN.to_vec();
        message.extend_from_slice(&report);
        report.extend_from_slice(self.key.sign(&message).as_ref());
        Ok(Evidence {
            kind: EvidenceKind::Software,
            report,
            aux: Vec::new(),
        })
    }
}

/// Writes `bytes` to `path` with mode 0600 from the start (never world-readable, even briefly).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn attester() -> (tempfile::TempDir, SoftwareAttester) {
        let dir = tempfile::tempdir().unwrap();
        let attester = SoftwareAttester::open_or_create(&dir.path().join("k/device.key")).unwrap();
        (dir, attester)
    }

    #[test]
    fn evidence_verifies_and_claims_the_report_data_and_key_hash() {
        let (_dir, attester) = attester();
        let evidence = attester.attest(&[7u8; 64]).unwrap();
        let claims = verify(&evidence.report, &evidence.aux).unwrap();
        assert_eq!(claims.kind, TeeKind::Software);
        assert_eq!(claims.report_data, vec![7u8; 64]);
        assert_eq!(claims.measurement, attester.measurement().to_vec());
        assert_eq!(claims.tcb, Tcb::None);
        assert!(!claims.debug);
    }

    #[test]
    fn the_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let first = SoftwareAttester::open_or_create(&path).unwrap();
        let second = SoftwareAttester::open_or_create(&path).unwrap();
        assert_eq!(first.public_key(), second.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_garbage_key_file_is_a_typed_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(
            SoftwareAttester::open_or_create(&path),
            Err(AttestError::Failed(_))
        ));
    }

    #[test]
    fn every_flipped_bit_in_the_signed_range_or_signature_is_refused() {
        let (_dir, attester) = attester();
        let evidence = attester.attest(&[1u8; 64]).unwrap();
        for byte in 0..REPORT_LEN {
            let mut report = evidence.report.clone();
            report[byte] ^= 0x01;
            assert!(
                verify(&report, &[]).is_err(),
                "flip at byte {byte} accepted"
            );
        }
    }

    #[test]
    fn bad_lengths_versions_and_aux_are_typed() {
        let (_dir, attester) = attester();
        let evidence = attester.attest(&[1u8; 64]).unwrap();
        assert_eq!(
            verify(&evidence.report[..100], &[]),
            Err(SoftwareError::Length { found: 100 })
        );
        let mut report = evidence.report.clone();
        report[7] = 2;
        assert!(matches!(
            verify(&report, &[]),
            Err(SoftwareError::Version { .. })
        ));
        assert_eq!(
            verify(&evidence.report, &[1]),
            Err(SoftwareError::UnexpectedAux { found: 1 })
        );
    }
}
