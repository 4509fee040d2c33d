//! The plain-text payload of presence topics.

use super::shorten;

/// The payload of a presence topic: plain text, retained. The last will is [`Presence::Offline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presence {
    /// `online`.
    Online,
    /// `offline`.
    Offline,
}

/// A presence payload that is neither `online` nor `offline`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected presence \"online\" or \"offline\", found {found:?}")]
pub struct UnknownPresence {
    /// The payload, lossily decoded and shortened.
    pub found: String,
}

impl Presence {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'static [u8] {
        match self {
            Presence::Online => b"online",
            Presence::Offline => b"offline",
        }
    }

    /// Parses a payload (exactly `online` or `offline`).
    ///
    /// # Errors
    /// [`UnknownPresence`] for anything else.
    pub fn parse(payload: &[u8]) -> Result<Presence, UnknownPresence> {
        match payload {
            b"online" => Ok(Presence::Online),
            b"offline" => Ok(Presence::Offline),
            _ => Err(UnknownPresence {
                found: shorten(&String::from_utf8_lossy(&payload[..payload.len().min(120)])),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_payloads_round_trip_and_anything_else_is_refused() {
        for presence in [Presence::Online, Presence::Offline] {
            assert_eq!(Presence::parse(presence.as_bytes()), Ok(presence));
        }
        for bad in [&b""[..], b"Online", b"online\n", b"\xff\xfe", b"offline "] {
            assert!(Presence::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Presence::Offline.as_bytes(), b"offline");
    }
}
