//! iExec tags: a `bytes32` bitmap of requirements (deal side) or capabilities (worker side).
//!
//! Names and bits as the iExec SDK's `TAG_MAP`: `tee` bit 0, `scone` bit 1, `gramine` bit 2,
//! `tdx` bit 3, `gpu` bit 8. Errors carry the SDK's messages.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::primitives::Bytes32;

/// The known tag names with their bit numbers, in ascending bit order.
pub const TAG_MAP: [(&str, u32); 5] = [
    ("tee", 0),
    ("scone", 1),
    ("gramine", 2),
    ("tdx", 3),
    ("gpu", 8),
];

/// Why a tag could not be encoded or decoded (messages as the iExec SDK's `ValidationError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// A name outside [`TAG_MAP`] (names are case-sensitive).
    #[error("Unknown tag {0}")]
    UnknownTag(String),
    /// A set bit with no name.
    #[error("Unknown bit {0} in tag")]
    UnknownBit(u32),
    /// Not `0x` + 64 lower-case hex digits.
    #[error("tag must be bytes32 hex string")]
    NotBytes32,
}

/// The TEE framework a tag selects (commons-poco `TeeUtils`: the low nibble must be exactly
/// `0x3`, `0x5` or `0x9`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeeFramework {
    /// `tee,scone`.
    Scone,
    /// `tee,gramine`.
    Gramine,
    /// `tee,tdx`.
    Tdx,
}

/// A tag bitmap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tag(pub Bytes32);

impl Tag {
    /// No requirement.
    pub const NONE: Tag = Tag(Bytes32::ZERO);
    /// `tee`.
    pub const TEE: Tag = Tag::bit(0);
    /// `scone`.
    pub const SCONE: Tag = Tag::bit(1);
    /// `gramine`.
    pub const GRAMINE: Tag = Tag::bit(2);
    /// `tdx`.
    pub const TDX: Tag = Tag::bit(3);
    /// `gpu`.
    pub const GPU: Tag = Tag::bit(8);

    const fn bit(n: u32) -> Tag {
        let mut bytes = [0u8; 32];
        bytes[31 - (n / 8) as usize] = 1 << (n % 8);
        Tag(Bytes32(bytes))
    }

    fn has_bit(&self, n: u32) -> bool {
        self.0 .0[31 - (n / 8) as usize] & (1 << (n % 8)) != 0
    }

    /// Encodes names (SDK `encodeTag`): empty names are ignored, unknown names refused.
    ///
    /// # Errors
    /// [`TagError::UnknownTag`] for a name outside [`TAG_MAP`].
    pub fn encode<S: AsRef<str>>(names: &[S]) -> Result<Tag, TagError> {
        let mut tag = Tag::NONE;
        for name in names {
            let name = name.as_ref();
            if name.is_empty() {
                continue;
            }
            let bit = TAG_MAP
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, bit)| *bit)
                .ok_or_else(|| TagError::UnknownTag(name.to_string()))?;
            tag = tag.union(Tag::bit(bit));
        }
        Ok(tag)
    }

    /// Encodes a comma-separated list such as `tee,gpu` (spaces around names are ignored).
    ///
    /// # Errors
    /// As [`Tag::encode`].
    pub fn encode_list(list: &str) -> Result<Tag, TagError> {
        let names: Vec<&str> = list.split(',').map(str::trim).collect();
        Tag::encode(&names)
    }

    /// Parses the SDK's strict form (`/^0x([0-9a-f]{2}){32}$/`) and decodes it to names.
    ///
    /// # Errors
    /// [`TagError::NotBytes32`] or [`TagError::UnknownBit`].
    pub fn decode_hex(s: &str) -> Result<Vec<&'static str>, TagError> {
        Tag::parse_strict(s)?.names()
    }

    /// Parses the SDK's strict form without checking the bits.
    ///
    /// # Errors
    /// [`TagError::NotBytes32`].
    pub fn parse_strict(s: &str) -> Result<Tag, TagError> {
        let digits = s.strip_prefix("0x").ok_or(TagError::NotBytes32)?;
        if digits.len() != 64
            || !digits
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(TagError::NotBytes32);
        }
        s.parse::<Bytes32>()
            .map(Tag)
            .map_err(|_| TagError::NotBytes32)
    }

    /// The names of the set bits, in ascending bit order (SDK `decodeTag`).
    ///
    /// # Errors
    /// [`TagError::UnknownBit`] for the lowest set bit without a name.
    pub fn names(&self) -> Result<Vec<&'static str>, TagError> {
        for n in 0..256 {
            if self.has_bit(n) && !TAG_MAP.iter().any(|(_, bit)| *bit == n) {
                return Err(TagError::UnknownBit(n));
            }
        }
        Ok(TAG_MAP
            .iter()
            .filter(|(_, bit)| self.has_bit(*bit))
            .map(|(name, _)| *name)
            .collect())
    }

    /// Bitwise OR (SDK `sumTags`).
    pub fn union(self, other: Tag) -> Tag {
        let mut out = self;
        for (a, b) in out.0 .0.iter_mut().zip(other.0 .0.iter()) {
            *a |= b;
        }
        out
    }

    /// OR of every tag in `tags` (SDK `sumTags`).
    pub fn sum(tags: &[Tag]) -> Tag {
        tags.iter().fold(Tag::NONE, |acc, t| acc.union(*t))
    }

    /// Whether every bit of `self` is also set in `other` (a deal's tag must be a subset of the
    /// worker's, as the PoCo matching checks).
    pub fn is_subset_of(&self, other: &Tag) -> bool {
        self.0
             .0
            .iter()
            .zip(other.0 .0.iter())
            .all(|(a, b)| a & !b == 0)
    }

    /// Whether every bit of `bits` is set in `self`.
    pub fn contains(&self, bits: Tag) -> bool {
        bits.is_subset_of(self)
    }

    /// Whether the `tee` bit is set (PoCo then requires an enclave challenge).
    pub fn is_tee(&self) -> bool {
        self.has_bit(0)
    }

    /// The TEE framework selected by the low nibble, if it is exactly one of iExec's forms.
    pub fn tee_framework(&self) -> Option<TeeFramework> {
        match self.0 .0[31] & 0x0f {
            0x3 => Some(TeeFramework::Scone),
            0x5 => Some(TeeFramework::Gramine),
            0x9 => Some(TeeFramework::Tdx),
            _ => None,
        }
    }
}

impl FromStr for Tag {
    type Err = TagError;

    /// Accepts either the hex form (`0x…`, 32 bytes, SDK-strict) or a comma-separated name list.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("0x") {
            let tag = Tag::parse_strict(s)?;
            tag.names()?;
            Ok(tag)
        } else {
            Tag::encode_list(s)
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.names() {
            Ok(names) => write!(f, "Tag({})", names.join(",")),
            Err(_) => write!(f, "Tag({})", self.0),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn deal_tag_must_be_a_subset_of_the_worker_tag() {
        let worker = Tag::encode(&["tee", "scone", "gpu"]).unwrap();
        assert!(Tag::TEE.is_subset_of(&worker));
        assert!(Tag::NONE.is_subset_of(&worker));
        assert!(!Tag::TDX.is_subset_of(&worker));
        assert!(worker.contains(Tag::GPU));
    }

    #[test]
    fn tee_framework_needs_the_exact_low_nibble() {
        assert_eq!(
            Tag::encode(&["tee", "scone"]).unwrap().tee_framework(),
            Some(TeeFramework::Scone)
        );
        assert_eq!(
            Tag::encode(&["tee", "tdx"]).unwrap().tee_framework(),
            Some(TeeFramework::Tdx)
        );
        assert_eq!(
            Tag::encode(&["tee", "gramine"]).unwrap().tee_framework(),
            Some(TeeFramework::Gramine)
        );
        assert_eq!(Tag::encode(&["tee"]).unwrap().tee_framework(), None);
        assert_eq!(
            Tag::encode(&["tee", "scone", "tdx"])
                .unwrap()
                .tee_framework(),
            None
        );
    }

    #[test]
    fn name_list_and_hex_forms_parse_to_the_same_tag() {
        let a: Tag = "tee, gpu".parse().unwrap();
        let b: Tag = "0x0000000000000000000000000000000000000000000000000000000000000101"
            .parse()
            .unwrap();
        assert_eq!(a, b);
    }
}
