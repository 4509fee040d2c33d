//! AMD SEV-SNP attestation reports and their certificate chains (filled by the attestation issue).

use crate::Claims;

/// Why an SEV-SNP report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
    /// Placeholder until the verifier lands.
    #[error("the SEV-SNP verifier is not built yet")]
    NotBuilt,
}

/// Verifies an SNP `report` with `aux` (the certificate table or chain) at `now_unix`.
///
/// # Errors
/// [`SnpError`].
pub fn verify(_report: &[u8], _aux: &[u8], _now_unix: u64) -> Result<Claims, SnpError> {
    Err(SnpError::NotBuilt)
}
