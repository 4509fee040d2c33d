//! EIP-191 `personal_sign` signatures as iExec and Solidity use them: secp256k1 over
//! `keccak256("\x19Ethereum Signed Message:\n" ‖ len ‖ message)`, serialized as 65 bytes
//! `r ‖ s ‖ v` with `v ∈ {27, 28}`.
//!
//! Signing uses `ethers-signers` (RFC 6979 deterministic nonces, low `s`), so signatures are
//! byte-identical to ethers.js and web3j for the same key and message. Recovery refuses what the
//! PoCo contracts refuse (OpenZeppelin `ECDSA`): `v` outside 27/28 and high-`s` (malleable) forms.

use std::fmt;
use std::str::FromStr;

use ethers_core::types::{RecoveryMessage, H256, U256};
use ethers_signers::{LocalWallet, Signer as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::keccak256_concat;
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
        if v != 27 && v != 28 {
            return Err(SignatureError::RecoveryByte { found: v });
        }
        let s = U256::from_big_endian(&self.0[32..64]);
        if s > secp256k1_half_order() {
            return Err(SignatureError::HighS);
        }
        let signature = ethers_core::types::Signature {
            r: U256::from_big_endian(&self.0[0..32]),
            s,
            v: u64::from(v),
        };
        signature
            .recover(RecoveryMessage::Hash(H256(digest.0)))
            .map(|a| Address(a.0))
            .map_err(|_| SignatureError::Unrecoverable)
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

fn secp256k1_half_order() -> U256 {
    // n / 2 for secp256k1, as OpenZeppelin ECDSA.tryRecover checks.
    U256::from_big_endian(&[
        0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b,
        0x20, 0xa0,
    ])
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
/// Its `Debug` shows the address only: the key never reaches a log.
#[derive(Clone)]
pub struct Signer {
    wallet: LocalWallet,
    address: Address,
}

impl Signer {
    /// From 32 private-key bytes.
    ///
    /// # Errors
    /// [`SignatureError::PrivateKey`] when the bytes are zero or not below the curve order.
    pub fn from_bytes(key: &[u8; 32]) -> Result<Self, SignatureError> {
        let wallet =
            LocalWallet::from_bytes(key).map_err(|e| SignatureError::PrivateKey(e.to_string()))?;
        Ok(Self::from_wallet(wallet))
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
        Self::from_wallet(LocalWallet::new(rng))
    }

    /// Wraps an ethers wallet (e.g. one opened from a keystore).
    pub fn from_wallet(wallet: LocalWallet) -> Self {
        let address = Address(wallet.address().0);
        Self { wallet, address }
    }

    /// The private key bytes (for sealing into a keystore or to an attested enclave).
    pub fn secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        out.copy_from_slice(self.wallet.signer().to_bytes().as_slice());
        out
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
        // sign_hash only fails for a digest the curve cannot sign, which a 32-byte hash never is.
        let signature = self
            .wallet
            .sign_hash(H256(digest.0))
            .expect("a 32-byte digest is always signable");
        let mut out = [0u8; 65];
        signature.r.to_big_endian(&mut out[0..32]);
        signature.s.to_big_endian(&mut out[32..64]);
        // ethers returns v = 27 + recovery id for non-transaction signatures.
        out[64] = u8::try_from(signature.v).expect("v is 27 or 28");
        Signature(out)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({}, key redacted)", self.address)
    }
}
