//! Fixed-size values of the iExec world: [`Address`] (20 bytes) and [`Bytes32`] with its named
//! forms [`TaskId`], [`DealId`] and [`Digest`].
//!
//! Human-readable formats (JSON, TOML, the CLI) carry them as `0x` hex strings: addresses in their
//! EIP-55 checksummed form, 32-byte values in lower case. Binary formats (postcard) carry the raw
//! bytes with no length prefix.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::keccak256;

/// Why a hex string is not a valid [`Address`] or [`Bytes32`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseHexError {
    /// The `0x` prefix is missing.
    #[error("expected a 0x-prefixed hex string, found {found:?}")]
    MissingPrefix {
        /// The input, shortened.
        found: String,
    },
    /// The wrong number of hex digits.
    #[error("expected {expected} hex digits after 0x, found {found}")]
    Length {
        /// Digits wanted.
        expected: usize,
        /// Digits given.
        found: usize,
    },
    /// A character that is not a hex digit.
    #[error("invalid hex digit {digit:?} at position {position}")]
    Digit {
        /// The character.
        digit: char,
        /// Its byte offset in the input.
        position: usize,
    },
    /// Mixed-case address whose case does not match its EIP-55 checksum.
    #[error("address {found} fails its EIP-55 checksum (expected {expected})")]
    Checksum {
        /// The input.
        found: String,
        /// The correctly checksummed form of the same bytes.
        expected: String,
    },
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Parses `0x` + exactly `2 * N` hex digits (either case).
fn parse_fixed_hex<const N: usize>(s: &str) -> Result<[u8; N], ParseHexError> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| ParseHexError::MissingPrefix { found: shorten(s) })?;
    if digits.len() != 2 * N {
        return Err(ParseHexError::Length {
            expected: 2 * N,
            found: digits.chars().count(),
        });
    }
    let mut out = [0u8; N];
    for (i, chunk) in digits.as_bytes().chunks_exact(2).enumerate() {
        let hi = hex_value(chunk[0], 2 + 2 * i)?;
        let lo = hex_value(chunk[1], 3 + 2 * i)?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_value(c: u8, position: usize) -> Result<u8, ParseHexError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseHexError::Digit {
            digit: c as char,
            position,
        }),
    }
}

/// A 20-byte Ethereum address.
///
/// Displays in EIP-55 checksummed form. Parsing accepts all-lower-case and all-upper-case hex as
/// they are, and checks the checksum of mixed-case input.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The zero address (`0x000…0`): the enclave challenge of a standard (non-TEE) task.
    pub const ZERO: Address = Address([0u8; 20]);

    /// Whether this is the zero address.
    pub fn is_zero(&self) -> bool {
        self.0 == [0u8; 20]
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The EIP-55 checksummed form, `0x` included.
    pub fn to_checksum(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = keccak256(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash.0[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The lower-case hex form, `0x` included (as used in MQTT topics).
    pub fn to_lower_hex(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }
}

impl FromStr for Address {
    type Err = ParseHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = parse_fixed_hex::<20>(s)?;
        let address = Address(bytes);
        let digits = &s[2..];
        let has_lower = digits.bytes().any(|c| c.is_ascii_lowercase());
        let has_upper = digits.bytes().any(|c| c.is_ascii_uppercase());
        if has_lower && has_upper {
            let expected = address.to_checksum();
            if expected[2..] != *digits {
                return Err(ParseHexError::Checksum {
                    found: s.to_string(),
                    expected,
                });
            }
        }
        Ok(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_checksum())
    }
}

impl From<[u8; 20]> for Address {
    fn from(bytes: [u8; 20]) -> Self {
        Address(bytes)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_checksum())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = String::deserialize(deserializer)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 20]>::deserialize(deserializer).map(Address)
        }
    }
}

/// A 32-byte value (a Solidity `bytes32`): hashes, ids, digests.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Bytes32(pub [u8; 32]);

impl Bytes32 {
    /// All zeroes.
    pub const ZERO: Bytes32 = Bytes32([0u8; 32]);

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A big-endian `uint256` holding `value` (Solidity's `abi.encode(uint256)`).
    pub fn from_u64(value: u64) -> Self {
        let mut out = [0u8; 32];
        out[24..].copy_from_slice(&value.to_be_bytes());
        Bytes32(out)
    }
}

impl FromStr for Bytes32 {
    type Err = ParseHexError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_fixed_hex::<32>(s).map(Bytes32)
    }
}

impl fmt::Display for Bytes32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Bytes32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl From<[u8; 32]> for Bytes32 {
    fn from(bytes: [u8; 32]) -> Self {
        Bytes32(bytes)
    }
}

impl Serialize for Bytes32 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_string())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Bytes32 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = String::deserialize(deserializer)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Bytes32)
        }
    }
}

macro_rules! bytes32_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Bytes32);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0 .0
            }
        }

        impl FromStr for $name {
            type Err = ParseHexError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl From<Bytes32> for $name {
            fn from(value: Bytes32) -> Self {
                $name(value)
            }
        }

        impl From<[u8; 32]> for $name {
            fn from(bytes: [u8; 32]) -> Self {
                $name(Bytes32(bytes))
            }
        }
    };
}

bytes32_newtype!(
    /// An on-chain task id: `keccak256(dealId ‖ uint256(taskIndex))` (see [`crate::poco::task_id`]).
    TaskId
);
bytes32_newtype!(
    /// An on-chain deal id.
    DealId
);
bytes32_newtype!(
    /// A result digest or a content checksum (`0x` + 64 hex digits).
    Digest
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn address_displays_in_eip55_form() {
        let a: Address = "0x9d21148faceaa84a6417252a0025efffaf554df6"
            .parse()
            .unwrap();
        assert_eq!(a.to_string(), "0x9d21148faceaA84a6417252A0025eFFFaF554DF6");
    }

    #[test]
    fn address_with_wrong_mixed_case_is_refused() {
        let err = "0x9D21148faceaA84a6417252A0025eFFFaF554DF6"
            .parse::<Address>()
            .unwrap_err();
        assert!(matches!(err, ParseHexError::Checksum { .. }), "{err}");
    }

    #[test]
    fn address_in_upper_case_is_accepted_without_checksum() {
        let a: Address = "0x9D21148FACEAA84A6417252A0025EFFFAF554DF6"
            .parse()
            .unwrap();
        assert_eq!(a.to_string(), "0x9d21148faceaA84a6417252A0025eFFFaF554DF6");
    }

    #[test]
    fn malformed_hex_gives_typed_errors() {
        assert!(matches!(
            "9d21".parse::<Address>(),
            Err(ParseHexError::MissingPrefix { .. })
        ));
        assert!(matches!(
            "0x9d21".parse::<Address>(),
            Err(ParseHexError::Length {
                expected: 40,
                found: 4
            })
        ));
        assert!(matches!(
            "0xzz21148faceaa84a6417252a0025efffaf554df6".parse::<Address>(),
            Err(ParseHexError::Digit {
                digit: 'z',
                position: 2
            })
        ));
        // Multi-byte characters must not panic on slicing.
        assert!("0xé".parse::<Bytes32>().is_err());
        assert!("0x€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€"
            .parse::<Address>()
            .is_err());
    }

    #[test]
    fn bytes32_serializes_as_hex_in_json_and_raw_in_postcard() {
        let id: TaskId = "0x76b9ca6e7b36af39891a4a8b0f48d3f2bfb8d1685c045c71750b7e14e445fbb1"
            .parse()
            .unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(
            json,
            "\"0x76b9ca6e7b36af39891a4a8b0f48d3f2bfb8d1685c045c71750b7e14e445fbb1\""
        );
        let bin = postcard::to_allocvec(&id).unwrap();
        assert_eq!(bin, id.as_bytes().to_vec());
        assert_eq!(postcard::from_bytes::<TaskId>(&bin).unwrap(), id);
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), id);
    }

    #[test]
    fn address_serializes_as_checksum_in_json_and_raw_in_postcard() {
        let a: Address = "0x61900627251D586FEBDb43393eB9F1e18CFAaF11"
            .parse()
            .unwrap();
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            "\"0x61900627251D586FEBDb43393eB9F1e18CFAaF11\""
        );
        assert_eq!(postcard::to_allocvec(&a).unwrap(), a.0.to_vec());
    }
}
