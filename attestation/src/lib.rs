//! `edgepool-attestation`: TEE evidence (AMD SEV-SNP, Intel TDX and SGX, software) and its
//! verification under a policy.
//!
//! Verification is pure over bytes: the trust anchors are pinned in the crate and "now" is an
//! argument, so the same evidence gives the same verdict on every machine and in every test.
//!
//! # Layout
//!
//! - [`claims`]: what a verified piece of evidence says ([`Claims`], [`TeeKind`], [`Tcb`]).
//! - [`snp`]: AMD SEV-SNP reports, the VCEK/VLEK → ASK/ASVK → ARK chain, the certificate table.
//! - [`dcap`]: Intel DCAP quotes (TDX v4/v5, SGX v3) with their collateral and TCB evaluation.
//! - [`software`]: the software attester and its verifier (no hardware guarantee).
//! - [`tsm`]: the configfs-tsm attester (`/sys/kernel/config/tsm/report`).
//! - [`policy`]: what a relying party accepts.
//!
//! [`verify`] dispatches on the evidence kind.

pub mod claims;
pub mod dcap;
pub mod policy;
pub mod snp;
pub mod software;
pub mod tsm;

pub use claims::{Claims, Tcb, TeeKind};
pub use edgepool_protocol::messages::{Evidence, EvidenceKind};

/// Why evidence was refused by a verifier (before any policy).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// An SEV-SNP report or its certificates.
    #[error("SEV-SNP: {0}")]
    Snp(#[from] snp::SnpError),
    /// A DCAP quote or its collateral.
    #[error("DCAP: {0}")]
    Dcap(#[from] dcap::DcapError),
    /// Software evidence.
    #[error("software evidence: {0}")]
    Software(#[from] software::SoftwareError),
}

/// Verifies `evidence` at `now_unix` (seconds since the epoch) against the pinned trust anchors
/// and returns what it claims. Says nothing about whether the claims are acceptable: that is
/// [`policy::Policy::check`].
///
/// # Errors
/// [`VerifyError`] saying which check failed.
pub fn verify(evidence: &Evidence, now_unix: u64) -> Result<Claims, VerifyError> {
    match evidence.kind {
        EvidenceKind::SevSnp => Ok(snp::verify(&evidence.report, &evidence.aux, now_unix)?),
        EvidenceKind::Tdx | EvidenceKind::Sgx => Ok(dcap::verify(
            evidence.kind,
            &evidence.report,
            &evidence.aux,
            now_unix,
        )?),
        EvidenceKind::Software => Ok(software::verify(&evidence.report, &evidence.aux)?),
    }
}

/// Why an attester could not produce evidence.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// This machine has no such attester (no configfs-tsm, no TEE, no device key…).
    #[error("attester unavailable: {0}")]
    Unavailable(String),
    /// Reading or writing the attester's files failed.
    #[error("attester I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The attester answered, but not as expected (a concurrent writer, a short blob, …).
    #[error("attester failed: {0}")]
    Failed(String),
}

/// Something that produces evidence binding 64 bytes of report data: configfs-tsm on SEV-SNP or
/// TDX hardware ([`tsm`]), or the software attester ([`software`]).
pub trait Attester: Send + Sync + std::fmt::Debug {
    /// What kind of evidence it produces.
    fn kind(&self) -> EvidenceKind;
    /// Evidence whose report data is `report_data`.
    ///
    /// # Errors
    /// [`AttestError`].
    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError>;
}
