//! Intel DCAP quotes: TDX v4/v5 and SGX v3 (filled by the attestation issue).

use crate::{Claims, EvidenceKind};

/// Why a DCAP quote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcapError {
    /// Placeholder until the verifier lands.
    #[error("the DCAP verifier is not built yet")]
    NotBuilt,
}

/// Verifies a TDX or SGX `quote` with its `collateral` at `now_unix`.
///
/// # Errors
/// [`DcapError`].
pub fn verify(
    _kind: EvidenceKind,
    _quote: &[u8],
    _collateral: &[u8],
    _now_unix: u64,
) -> Result<Claims, DcapError> {
    Err(DcapError::NotBuilt)
}
