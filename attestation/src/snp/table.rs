//! The certificate table of an extended SNP report: what configfs-tsm's `auxblob` holds on an SNP
//! guest (the table the host handed to `SNP_GET_EXT_REPORT`, GHCB specification §4.1.8.1).
//!
//! The table is a run of 24-byte entries `GUID(16) ‖ offset(u32 LE) ‖ length(u32 LE)` ended by an
//! all-zero entry; offsets count from the start of the table. The GUIDs are stored in RFC 4122
//! byte order (as virtee/sev and the Linux host tools write them); the mixed-endian order of
//! Microsoft GUIDs is also recognised, since a reader cannot tell which a host used.

use super::SnpError;

/// The certificates a table may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// The chip's VCEK (`63da758d-e664-4564-adc5-f4b93be8accd`).
    Vcek,
    /// A VLEK (`a8074bc2-a25a-483e-aae6-39c045a0b8a1`).
    Vlek,
    /// The ASK, or the ASVK for a VLEK (`4ab7b379-bbac-4fe4-a02f-05aef327c782`).
    Ask,
    /// The ARK (`c0b406a4-a803-4952-9743-3fb6014cd0ae`).
    Ark,
}

impl CertKind {
    /// The entry's GUID in RFC 4122 byte order.
    pub fn guid(self) -> [u8; 16] {
        match self {
            CertKind::Vcek => [
                0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8,
                0xac, 0xcd,
            ],
            CertKind::Vlek => [
                0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0,
                0xb8, 0xa1,
            ],
            CertKind::Ask => [
                0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27,
                0xc7, 0x82,
            ],
            CertKind::Ark => [
                0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c,
                0xd0, 0xae,
            ],
        }
    }

    fn from_guid(guid: &[u8]) -> Option<Self> {
        [CertKind::Vcek, CertKind::Vlek, CertKind::Ask, CertKind::Ark]
            .into_iter()
            .find(|kind| {
                let be = kind.guid();
                guid == be || guid == mixed_endian(&be)
            })
    }
}

/// The same GUID with its first three fields little-endian (Microsoft's in-memory layout).
fn mixed_endian(be: &[u8; 16]) -> [u8; 16] {
    let mut out = *be;
    out[0..4].reverse();
    out[4..6].reverse();
    out[6..8].reverse();
    out
}

const ENTRY_LEN: usize = 24;
/// More entries than any host writes; bounds the walk over a hostile table.
const MAX_ENTRIES: usize = 64;

/// Builds a certificate table holding `entries` (the DER bytes of each certificate).
pub fn cert_table(entries: &[(CertKind, &[u8])]) -> Vec<u8> {
    let header = (entries.len() + 1) * ENTRY_LEN;
    let mut table =
        Vec::with_capacity(header + entries.iter().map(|(_, d)| d.len()).sum::<usize>());
    let mut offset = header;
    for (kind, der) in entries {
        table.extend_from_slice(&kind.guid());
        // A table larger than 4 GiB cannot be described; saturate and let the reader refuse it.
        table.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
        table.extend_from_slice(&u32::try_from(der.len()).unwrap_or(u32::MAX).to_le_bytes());
        offset += der.len();
    }
    table.extend_from_slice(&[0u8; ENTRY_LEN]);
    for (_, der) in entries {
        table.extend_from_slice(der);
    }
    table
}

/// The certificates found in a table, each as its raw bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CertTable<'a> {
    /// The VCEK.
    pub vcek: Option<&'a [u8]>,
    /// The VLEK.
    pub vlek: Option<&'a [u8]>,
    /// The ASK or ASVK.
    pub ask: Option<&'a [u8]>,
    /// The ARK.
    pub ark: Option<&'a [u8]>,
}

/// Parses a certificate table. Unknown GUIDs (e.g. a CRL entry) are skipped.
///
/// # Errors
/// [`SnpError::BadCertTable`] when an entry points outside the table or the terminator is missing.
pub fn parse_cert_table(table: &[u8]) -> Result<CertTable<'_>, SnpError> {
    let mut out = CertTable::default();
    for index in 0..MAX_ENTRIES {
        let at = index * ENTRY_LEN;
        let entry = table.get(at..at + ENTRY_LEN).ok_or_else(|| {
            SnpError::BadCertTable(format!("entry {index} at byte {at} runs past the table"))
        })?;
        let (guid, rest) = entry.split_at(16);
        let offset = le_u32(&rest[0..4]) as usize;
        let length = le_u32(&rest[4..8]) as usize;
        if guid.iter().all(|b| *b == 0) {
            return Ok(out);
        }
        let data = offset
            .checked_add(length)
            .and_then(|end| table.get(offset..end))
            .ok_or_else(|| {
                SnpError::BadCertTable(format!(
                    "entry {index} points at bytes {offset}+{length}, the table has {}",
                    table.len()
                ))
            })?;
        let slot = match CertKind::from_guid(guid) {
            Some(CertKind::Vcek) => &mut out.vcek,
            Some(CertKind::Vlek) => &mut out.vlek,
            Some(CertKind::Ask) => &mut out.ask,
            Some(CertKind::Ark) => &mut out.ark,
            None => continue,
        };
        if slot.is_some() {
            return Err(SnpError::BadCertTable(format!(
                "entry {index} repeats a certificate kind"
            )));
        }
        *slot = Some(data);
    }
    Err(SnpError::BadCertTable(format!(
        "no terminating entry within {MAX_ENTRIES} entries"
    )))
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_table_parses_back_to_the_same_certificates() {
        let table = cert_table(&[(CertKind::Vcek, b"leaf"), (CertKind::Ark, b"root!")]);
        let parsed = parse_cert_table(&table).expect("parses");
        assert_eq!(parsed.vcek, Some(&b"leaf"[..]));
        assert_eq!(parsed.ark, Some(&b"root!"[..]));
        assert_eq!(parsed.ask, None);
    }

    #[test]
    fn mixed_endian_guids_are_recognised() {
        let mut table = cert_table(&[(CertKind::Vcek, b"leaf")]);
        let me = mixed_endian(&CertKind::Vcek.guid());
        table[..16].copy_from_slice(&me);
        assert_eq!(
            parse_cert_table(&table).expect("parses").vcek,
            Some(&b"leaf"[..])
        );
    }

    #[test]
    fn an_entry_pointing_past_the_end_is_refused() {
        let mut table = cert_table(&[(CertKind::Vcek, b"leaf")]);
        table[20] = 0xff;
        assert!(matches!(
            parse_cert_table(&table),
            Err(SnpError::BadCertTable(_))
        ));
    }

    #[test]
    fn a_table_without_terminator_is_refused() {
        assert!(matches!(
            parse_cert_table(&[1u8; 30]),
            Err(SnpError::BadCertTable(_))
        ));
    }
}
