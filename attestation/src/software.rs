//! The software attester: a device key signs the report data. It gives no hardware guarantee
//! (filled by the attestation issue).

use crate::Claims;

/// Why software evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoftwareError {
    /// Placeholder until the verifier lands.
    #[error("the software verifier is not built yet")]
    NotBuilt,
}

/// Verifies software evidence.
///
/// # Errors
/// [`SoftwareError`].
pub fn verify(_report: &[u8], _aux: &[u8]) -> Result<Claims, SoftwareError> {
    Err(SoftwareError::NotBuilt)
}
