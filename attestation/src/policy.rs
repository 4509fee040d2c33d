//! What a relying party accepts (filled by the attestation issue).
