//! The two hash functions of the iExec formats: Keccak-256 (PoCo, EIP-191, EIP-55) and SHA-256
//! (checksums, web2 result digests).

use crate::primitives::Bytes32;

/// Keccak-256 (the Ethereum variant, not NIST SHA3-256) of `data`.
pub fn keccak256(data: &[u8]) -> Bytes32 {
    let mut hasher = Keccak256::new();
    hasher.update(data);
    hasher.finalize()
}

/// Keccak-256 of the concatenation of `parts`, without building the concatenation
/// (iExec's `HashUtils.concatenateAndHash`, Solidity's `keccak256(abi.encodePacked(...))`).
pub fn keccak256_concat(parts: &[&[u8]]) -> Bytes32 {
    let mut hasher = Keccak256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize()
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Bytes32 {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.finalize()
}

/// Incremental Keccak-256.
pub struct Keccak256(tiny_keccak::Keccak);

impl Keccak256 {
    /// A hasher over the empty input.
    pub fn new() -> Self {
        Self(tiny_keccak::Keccak::v256())
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        use tiny_keccak::Hasher;
        self.0.update(data);
    }

    /// The hash of everything fed so far.
    pub fn finalize(self) -> Bytes32 {
        use tiny_keccak::Hasher;
        let mut out = [0u8; 32];
        self.0.finalize(&mut out);
        Bytes32(out)
    }
}

impl Default for Keccak256 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Keccak256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keccak256")
    }
}

/// Incremental SHA-256 (ring, hardware-accelerated where the CPU allows).
#[derive(Clone)]
pub struct Sha256(ring::digest::Context);

impl Sha256 {
    /// A hasher over the empty input.
    pub fn new() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The hash of everything fed so far.
    pub fn finalize(self) -> Bytes32 {
        let digest = self.0.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Bytes32(out)
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

impl std::io::Write for Sha256 {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keccak_of_empty_input_is_the_well_known_constant() {
        assert_eq!(
            keccak256(b"").to_string(),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn sha256_of_empty_input_is_the_well_known_constant() {
        assert_eq!(
            sha256(b"").to_string(),
            "0xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn concat_hash_equals_hash_of_concatenation() {
        assert_eq!(keccak256_concat(&[b"ab", b"", b"c"]), keccak256(b"abc"));
    }
}
