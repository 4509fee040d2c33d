//! EIP-191 `personal_sign` signatures as iExec and Solidity use them: secp256k1 over
//! `keccak256("\x19Ethereum Signed Message:\n" ‖ len ‖ message)`, serialized as 65 bytes
//! `r ‖ s ‖ v` with `v ∈ {27, 28}`.
//!
//! The curve arithmetic is libsecp256k1 (the `secp256k1` crate, bundled C, built with its
//! `lowmemory` tables): RFC 6979 deterministic nonces and low `s`, so signatures are
//! byte-identical to ethers.js, web3j and ethers-rs for the same key and message (the vectors in
//! `tests/data/iexec` check it). It replaced k256 through ethers-signers on this path because a
//! task signs about twelve messages and recovers six signatures, and k256's recovery verifies the
//! recovered key again (two double-scalar multiplications per recovery): BENCHMARKS.md, issue 8,
//! per-task overhead. Recovery refuses what the PoCo contracts refuse (OpenZeppelin `ECDSA`): `v`
//! outside 27/28 and high-`s` (malleable) forms.

use std::fmt;
use std::str::FromStr;

use ethers_signers::LocalWallet;
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message, PublicKey, SecretKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::{keccak256, keccak256_concat};
use crate::primitives::{Address, Bytes32, ParseHexError};

/// Why a signature could not be made, parsed or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not 65 bytes.
    #[error("expected a 65-byte signature, found {found} bytes")]
    Length {
        /// Bytes given.
        found: usize,
    },
    /// Not valid hex.
    #[error("signature is not valid hex: {0}")]
    Hex(String),
    /// `v` is not 27 or 28.
    #[error("signature recovery byte v must be 27 or 28, found {found}")]
    RecoveryByte {
        /// The `v` found.
        found: u8,
    },
    /// `s` is in the upper half of the curve order (a malleable signature).
    #[error("signature s value is not in the lower half of the curve order")]
    HighS,
    /// The bytes are not a point on the curve for this message.
    #[error("no public key recovers from this signature")]
    Unrecoverable,
    /// The signature is valid but by someone else.
    #[error("signature is by {found}, expected {expected}")]
    WrongSigner {
        /// Who should have signed.
        expected: Address,
        /// Who did.
        found: Address,
    },
    /// The private key is not a valid secp256k1 scalar.
    #[error("invalid private key: {0}")]
    PrivateKey(String),
}

/// A 65-byte `r ‖ s ‖ v` ECDSA signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 65]);

impl Signature {
    /// 65 zero bytes (never valid; a placeholder in unsigned structures).
    pub const ZERO: Signature = Signature([0u8; 65]);

    /// Builds from a slice, which must be 65 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        let array: [u8; 65] = bytes
            .try_into()
            .map_err(|_| SignatureError::Length { found: bytes.len() })?;
        Ok(Signature(array))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 65] {
        &self.0
    }

    /// Recovers the signer of an EIP-191 signature over `message`.
    ///
    /// # Errors
    /// A `v` other than 27/28, a high `s`, or bytes from which no key recovers.
    pub fn recover_personal(&self, message: &[u8]) -> Result<Address, SignatureError> {
        self.recover_prehashed(eip191_hash(message))
    }

    /// Recovers the signer of a signature over the 32-byte `digest` (no prefix added).
    ///
    /// # Errors
    /// As [`Signature::recover_personal`].
    pub fn recover_prehashed(&self, digest: Bytes32) -> Result<Address, SignatureError> {
        let v = self.0[64];
        let recovery_id = match v {
            27 => RecoveryId::Zero,
            28 => RecoveryId::One,
            found => return Err(SignatureError::RecoveryByte { found }),
        };
        // Big-endian arrays of equal length compare as the numbers they encode.
        if self.0[32..64] > SECP256K1_HALF_ORDER[..] {
            return Err(SignatureError::HighS);
        }
        // `from_compact` refuses r or s equal to zero or not below the curve order.
        let signature = RecoverableSignature::from_compact(&self.0[..64], recovery_id)
            .map_err(|_| SignatureError::Unrecoverable)?;
        let key = signature
            .recover_ecdsa(Message::from_digest(digest.0))
            .map_err(|_| SignatureError::Unrecoverable)?;
        Ok(address_of(&key))
    }

    /// Checks that `expected` made this EIP-191 signature over `message`.
    ///
    /// # Errors
    /// [`SignatureError::WrongSigner`] when someone else signed, or why recovery failed.
    pub fn verify_personal(&self, message: &[u8], expected: Address) -> Result<(), SignatureError> {
        let found = self.recover_personal(message)?;
        if found == expected {
            Ok(())
        } else {
            Err(SignatureError::WrongSigner { expected, found })
        }
    }
}

/// n / 2 for secp256k1, big-endian: the largest `s` OpenZeppelin's `ECDSA.tryRecover` accepts.
const SECP256K1_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
];

/// The Ethereum address of a public key: the last 20 bytes of `keccak256(x ‖ y)`.
fn address_of(key: &PublicKey) -> Address {
    let uncompressed = key.serialize_uncompressed();
    let hash = keccak256(&uncompressed[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash.0[12..]);
    Address(address)
}

impl FromStr for Signature {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").ok_or_else(|| {
            SignatureError::Hex(
                ParseHexError::MissingPrefix {
                    found: s.chars().take(80).collect(),
                }
                .to_string(),
            )
        })?;
        let bytes = hex::decode(digits).map_err(|e| SignatureError::Hex(e.to_string()))?;
        Signature::from_slice(&bytes)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(0x{})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_string())
        } else {
            // serde implements arrays only up to 32 elements: write a fixed-size tuple.
            use serde::ser::SerializeTuple;
            let mut tuple = serializer.serialize_tuple(65)?;
            for byte in &self.0 {
                tuple.serialize_element(byte)?;
            }
            tuple.end()
        }
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = String::deserialize(deserializer)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            struct TupleVisitor;
            impl<'de> serde::de::Visitor<'de> for TupleVisitor {
                type Value = Signature;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("65 signature bytes")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Signature, A::Error> {
                    let mut out = [0u8; 65];
                    for (i, slot) in out.iter_mut().enumerate() {
                        *slot = seq
                            .next_element()?
                            .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                    }
                    Ok(Signature(out))
                }
            }
            deserializer.deserialize_tuple(65, TupleVisitor)
        }
    }
}

/// The EIP-191 (`personal_sign`) digest of `message`:
/// `keccak256("\x19Ethereum Signed Message:\n" ‖ decimal(len) ‖ message)`.
pub fn eip191_hash(message: &[u8]) -> Bytes32 {
    let prefix = format!("\x19Ethereum Signed Message:\n{}", message.len());
    keccak256_concat(&[prefix.as_bytes(), message])
}

/// A secp256k1 signing key with its address.
///
/// Its `Debug` shows the address only: the key never reaches a log. The key is overwritten
/// when the signer is dropped.
#[derive(Clone)]
pub struct Signer {
    key: ErasedOnDrop,
    address: Address,
}

/// libsecp256k1's key type is `Copy` and does not erase itself: this owner does, on drop.
#[derive(Clone)]
struct ErasedOnDrop(SecretKey);

impl Drop for ErasedOnDrop {
    fn drop(&mut self) {
        self.0.non_secure_erase();
    }
}

impl Signer {
    /// From 32 private-key bytes.
    ///
    /// # Errors
    /// [`SignatureError::PrivateKey`] when the bytes are zero or not below the curve order.
    pub fn from_bytes(key: &[u8; 32]) -> Result<Self, SignatureError> {
        let key = SecretKey::from_secret_bytes(*key).map_err(|_| {
            SignatureError::PrivateKey("expected a non-zero scalar below the curve order".into())
        })?;
        let address = address_of(&PublicKey::from_secret_key(&key));
        Ok(Self {
            key: ErasedOnDrop(key),
            address,
        })
    }

    /// From a `0x`-prefixed (or bare) hex private key.
    ///
    /// # Errors
    /// [`SignatureError::PrivateKey`] when it is not 32 hex bytes of a valid key.
    pub fn from_hex(key: &str) -> Result<Self, SignatureError> {
        let digits = key.trim().strip_prefix("0x").unwrap_or(key.trim());
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(digits, bytes.as_mut())
            .map_err(|_| SignatureError::PrivateKey("expected 64 hex digits".into()))?;
        Self::from_bytes(&bytes)
    }

    /// A fresh random key from `rng`.
    pub fn random<R: rand::CryptoRng + rand::RngCore>(rng: &mut R) -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        // A random 32-byte string is a valid key except with probability about 2^-128; the
        // loop is bounded by that in practice, and by the RNG's honesty in principle.
        loop {
            rng.fill_bytes(bytes.as_mut());
            if let Ok(signer) = Self::from_bytes(&bytes) {
                return signer;
            }
        }
    }

    /// Wraps an ethers wallet (e.g. one opened from a keystore).
    pub fn from_wallet(wallet: LocalWallet) -> Self {
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(wallet.signer().to_bytes().as_slice());
        Self::from_bytes(&bytes).expect("an ethers wallet always holds a valid secp256k1 key")
    }

    /// The private key bytes (for sealing into a keystore or to an attested enclave).
    pub fn secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.key.0.to_secret_bytes())
    }

    /// The address of this key.
    pub fn address(&self) -> Address {
        self.address
    }

    /// EIP-191 `personal_sign` of `message`.
    pub fn sign_personal(&self, message: &[u8]) -> Signature {
        self.sign_prehashed(eip191_hash(message))
    }

    /// Signs the 32-byte `digest` as is (no EIP-191 prefix).
    pub fn sign_prehashed(&self, digest: Bytes32) -> Signature {
        // RFC 6979 nonce; libsecp256k1 always produces the low-s form.
        let signature = RecoverableSignature::sign_ecdsa_recoverable(
            Message::from_digest(digest.0),
            &self.key.0,
        );
        let (recovery_id, compact) = signature.serialize_compact();
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&compact);
        // Ethereum's v = 27 + recovery id; the id is 0 or 1 for every signature libsecp256k1
        // makes (2 and 3 need r ≥ n, which happens with probability about 2^-127).
        out[64] = 27 + u8::from(recovery_id);
        Signature(out)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({}, key redacted)", self.address)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn signed() -> (Signer, Bytes32, Signature) {
        let signer = Signer::from_bytes(&[7u8; 32]).unwrap();
        let digest = eip191_hash(b"edgepool");
        let signature = signer.sign_prehashed(digest);
        (signer, digest, signature)
    }

    #[test]
    fn a_signature_recovers_to_its_signer_and_is_low_s_with_v_27_or_28() {
        let (signer, digest, signature) = signed();
        assert_eq!(
            signature.recover_prehashed(digest).unwrap(),
            signer.address()
        );
        assert!(signature.0[32..64] <= SECP256K1_HALF_ORDER[..]);
        assert!(matches!(signature.0[64], 27 | 28));
    }

    #[test]
    fn s_at_half_the_order_is_not_high_and_one_above_is() {
        let (_, digest, signature) = signed();
        let mut at_half = signature;
        at_half.0[32..64].copy_from_slice(&SECP256K1_HALF_ORDER);
        // Some key recovers (or none does), but it is not refused as malleable.
        assert_ne!(
            at_half.recover_prehashed(digest),
            Err(SignatureError::HighS)
        );
        let mut above = at_half;
        above.0[63] += 1;
        assert_eq!(above.recover_prehashed(digest), Err(SignatureError::HighS));
    }

    #[test]
    fn zero_or_out_of_range_r_and_s_recover_no_key() {
        let (_, digest, signature) = signed();
        let mut zero_r = signature;
        zero_r.0[..32].fill(0);
        assert_eq!(
            zero_r.recover_prehashed(digest),
            Err(SignatureError::Unrecoverable)
        );
        let mut zero_s = signature;
        zero_s.0[32..64].fill(0);
        assert_eq!(
            zero_s.recover_prehashed(digest),
            Err(SignatureError::Unrecoverable)
        );
        let mut huge_r = signature;
        huge_r.0[..32].fill(0xff);
        assert_eq!(
            huge_r.recover_prehashed(digest),
            Err(SignatureError::Unrecoverable)
        );
    }

    #[test]
    fn keys_outside_the_scalar_range_are_private_key_errors() {
        assert!(matches!(
            Signer::from_bytes(&[0u8; 32]),
            Err(SignatureError::PrivateKey(_))
        ));
        assert!(matches!(
            Signer::from_bytes(&[0xffu8; 32]),
            Err(SignatureError::PrivateKey(_))
        ));
    }

    #[test]
    fn a_signer_round_trips_through_its_secret_bytes_and_an_ethers_wallet() {
        let signer = Signer::random(&mut rand::rngs::OsRng);
        let again = Signer::from_bytes(&signer.secret_bytes()).unwrap();
        assert_eq!(again.address(), signer.address());
        let wallet = LocalWallet::from_bytes(signer.secret_bytes().as_ref()).unwrap();
        let from_wallet = Signer::from_wallet(wallet.clone());
        use ethers_signers::Signer as _;
        assert_eq!(from_wallet.address().0, wallet.address().0);
        assert_eq!(from_wallet.address(), signer.address());
    }
}
