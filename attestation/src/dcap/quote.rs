//! The DCAP quote layout: header, report body (SGX enclave report, TDX TD report 1.0/1.5) and the
//! ECDSA signature data, read by offset with every length checked.
//!
//! Layout (Intel "TDX DCAP Quote Generation Library and Quote Verification Library" API spec):
//!
//! ```text
//! v3 (SGX)  header 48 | enclave report 384                    | u32 len | signature data v3
//! v4 (TDX)  header 48 | TD report 1.0 584                     | u32 len | signature data v4
//! v5 (TDX)  header 48 | u16 body type | u32 body size | body  | u32 len | signature data v4
//!
//! signature data v3: sig 64 | att key 64 | QE report 384 | QE sig 64 | u16 n | QE auth n
//!                    | u16 cert type | u32 m | cert data m
//! signature data v4: sig 64 | att key 64 | u16 type (6) | u32 m | QE report 384 | QE sig 64
//!                    | u16 n | QE auth n | u16 cert type | u32 k | cert data k
//! ```
//!
//! The quote signature covers the header and the body (for v5 including the body type and
//! size). Bytes after the signature data are ignored: configfs-tsm and some quote providers
//! hand out fixed-size buffers.

use super::DcapError;

/// Quote header length.
pub(crate) const HEADER_LEN: usize = 48;
/// SGX enclave report (also the QE report) length.
pub(crate) const ENCLAVE_REPORT_LEN: usize = 384;
/// TDX TD report 1.0 length.
pub(crate) const TD_REPORT10_LEN: usize = 584;
/// TDX TD report 1.5 length (1.0 plus `tee_tcb_svn2` and `mr_servicetd`).
pub(crate) const TD_REPORT15_LEN: usize = 648;
/// TDX TD report 1.5 with the service TD extension (v5 body type 4).
pub(crate) const TD_REPORT15_EX_LEN: usize = 885;

/// `tee_type` of an SGX quote.
pub const TEE_TYPE_SGX: u32 = 0x0000_0000;
/// `tee_type` of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x0000_0081;
/// ECDSA-256 with P-256, the only attestation key type Intel's QEs use.
const ATT_KEY_TYPE_ECDSA_P256: u16 = 2;
/// Certification data type: the PCK leaf, its CA and the root as concatenated PEM.
pub(crate) const CERT_TYPE_PCK_CHAIN: u16 = 5;
/// Certification data type (v4/v5 only): QE report certification data wrapping the above.
const CERT_TYPE_QE_REPORT: u16 = 6;

/// The report body of a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body<'a> {
    /// An SGX enclave report (384 bytes).
    Sgx(&'a [u8]),
    /// A TDX TD report: 1.0 (584 bytes) or 1.5 (648 or 885 bytes; the first 584 are as 1.0).
    Td(&'a [u8]),
}

/// A quote split into its parts; all slices borrow from the input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParsedQuote<'a> {
    /// Quote format version (3, 4 or 5).
    pub version: u16,
    /// `tee_type` from the header.
    pub tee_type: u32,
    /// The report body.
    pub body: Body<'a>,
    /// The bytes the attestation key signs: header and body.
    pub signed: &'a [u8],
    /// ECDSA P-256 signature `r ‖ s` over `signed`.
    pub signature: &'a [u8],
    /// The attestation public key `x ‖ y`.
    pub attestation_key: &'a [u8],
    /// The QE's enclave report.
    pub qe_report: &'a [u8],
    /// ECDSA P-256 signature `r ‖ s` of the PCK key over `qe_report`.
    pub qe_report_signature: &'a [u8],
    /// QE authentication data (hashed into the QE report data).
    pub qe_auth_data: &'a [u8],
    /// Certification data type (5 = PEM chain).
    pub cert_type: u16,
    /// Certification data.
    pub cert_data: &'a [u8],
}

/// A cursor over the quote that turns every short read into [`DcapError::Truncated`].
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DcapError> {
        let end = self.pos.checked_add(len).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(DcapError::Truncated {
                what,
                needed: self.pos.saturating_add(len),
                found: self.bytes.len(),
            });
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DcapError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DcapError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32_len(&mut self, what: &'static str) -> Result<usize, DcapError> {
        usize::try_from(self.u32(what)?).map_err(|_| DcapError::Truncated {
            what,
            needed: usize::MAX,
            found: self.bytes.len(),
        })
    }
}

/// Splits `quote` into its parts.
///
/// # Errors
/// [`DcapError::Truncated`], [`DcapError::UnsupportedVersion`],
/// [`DcapError::UnsupportedTeeType`], [`DcapError::UnsupportedKeyType`],
/// [`DcapError::UnsupportedBody`], [`DcapError::UnsupportedCertData`].
pub(crate) fn parse(quote: &[u8]) -> Result<ParsedQuote<'_>, DcapError> {
    let mut r = Reader {
        bytes: quote,
        pos: 0,
    };
    let version = r.u16("header")?;
    let key_type = r.u16("header")?;
    let tee_type = r.u32("header")?;
    r.take(HEADER_LEN - 8, "header")?;
    match (version, tee_type) {
        (3, TEE_TYPE_SGX) | (4 | 5, TEE_TYPE_TDX) => {}
        (3..=5, TEE_TYPE_SGX | TEE_TYPE_TDX) => {
            return Err(DcapError::UnsupportedVersion { version, tee_type })
        }
        (3..=5, _) => return Err(DcapError::UnsupportedTeeType(tee_type)),
        _ => return Err(DcapError::UnsupportedVersion { version, tee_type }),
    }
    if key_type != ATT_KEY_TYPE_ECDSA_P256 {
        return Err(DcapError::UnsupportedKeyType(key_type));
    }

    let body = match version {
        3 => Body::Sgx(r.take(ENCLAVE_REPORT_LEN, "enclave report")?),
        4 => Body::Td(r.take(TD_REPORT10_LEN, "TD report")?),
        _ => {
            let body_type = r.u16("body descriptor")?;
            let size = r.u32_len("body descriptor")?;
            let expected = match body_type {
                2 => TD_REPORT10_LEN,
                3 => TD_REPORT15_LEN,
                4 => TD_REPORT15_EX_LEN,
                _ => return Err(DcapError::UnsupportedBody { body_type, size }),
            };
            if size != expected {
                return Err(DcapError::UnsupportedBody { body_type, size });
            }
            Body::Td(r.take(size, "TD report")?)
        }
    };
    let signed = &quote[..r.pos];

    let sig_len = r.u32_len("signature data length")?;
    let sig_data = r.take(sig_len, "signature data")?;
    let mut s = Reader {
        bytes: sig_data,
        pos: 0,
    };
    let signature = s.take(64, "quote signature")?;
    let attestation_key = s.take(64, "attestation key")?;
    if version >= 4 {
        let outer_type = s.u16("certification data")?;
        if outer_type != CERT_TYPE_QE_REPORT {
            return Err(DcapError::UnsupportedCertData(outer_type));
        }
        let outer_len = s.u32_len("certification data")?;
        let inner = s.take(outer_len, "certification data")?;
        s = Reader {
            bytes: inner,
            pos: 0,
        };
    }
    let qe_report = s.take(ENCLAVE_REPORT_LEN, "QE report")?;
    let qe_report_signature = s.take(64, "QE report signature")?;
    let auth_len = usize::from(s.u16("QE authentication data")?);
    let qe_auth_data = s.take(auth_len, "QE authentication data")?;
    let cert_type = s.u16("PCK certification data")?;
    let cert_len = s.u32_len("PCK certification data")?;
    let cert_data = s.take(cert_len, "PCK certification data")?;

    Ok(ParsedQuote {
        version,
        tee_type,
        body,
        signed,
        signature,
        attestation_key,
        qe_report,
        qe_report_signature,
        qe_auth_data,
        cert_type,
        cert_data,
    })
}

/// Offsets in the SGX enclave report.
pub(crate) mod sgx {
    use core::ops::Range;
    pub const ATTRIBUTES: Range<usize> = 48..64;
    pub const MRENCLAVE: Range<usize> = 64..96;
    pub const MRSIGNER: Range<usize> = 128..160;
    pub const ISVPRODID: Range<usize> = 256..258;
    pub const ISVSVN: Range<usize> = 258..260;
    pub const REPORT_DATA: Range<usize> = 320..384;
    /// `attributes.flags` bit 1: the enclave was launched in debug mode.
    pub const FLAG_DEBUG: u8 = 0x02;
}

/// Offsets in the TDX TD report 1.0 (the first 584 bytes of every TD report).
pub(crate) mod td {
    use core::ops::Range;
    pub const MRSEAM: Range<usize> = 16..64;
    pub const MRSIGNERSEAM: Range<usize> = 64..112;
    pub const TD_ATTRIBUTES: Range<usize> = 120..128;
    pub const XFAM: Range<usize> = 128..136;
    pub const MRTD: Range<usize> = 136..184;
    pub const MRCONFIGID: Range<usize> = 184..232;
    pub const MROWNER: Range<usize> = 232..280;
    pub const MROWNERCONFIG: Range<usize> = 280..328;
    pub const RTMR: [Range<usize>; 4] = [328..376, 376..424, 424..472, 472..520];
    pub const REPORT_DATA: Range<usize> = 520..584;
    /// The 1.5 report's `mr_servicetd` (bodies of 648 bytes and more).
    pub const MRSERVICETD: Range<usize> = 600..648;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u16, tee_type: u32) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[0..2].copy_from_slice(&version.to_le_bytes());
        h[2..4].copy_from_slice(&2u16.to_le_bytes());
        h[4..8].copy_from_slice(&tee_type.to_le_bytes());
        h
    }

    fn sig_data_v4(cert: &[u8]) -> Vec<u8> {
        let mut inner = vec![0x11; ENCLAVE_REPORT_LEN];
        inner.extend_from_slice(&[0x22; 64]);
        inner.extend_from_slice(&32u16.to_le_bytes());
        inner.extend_from_slice(&[0x33; 32]);
        inner.extend_from_slice(&5u16.to_le_bytes());
        inner.extend_from_slice(&(cert.len() as u32).to_le_bytes());
        inner.extend_from_slice(cert);
        let mut s = vec![0x44; 64];
        s.extend_from_slice(&[0x55; 64]);
        s.extend_from_slice(&6u16.to_le_bytes());
        s.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        s.extend_from_slice(&inner);
        s
    }

    #[test]
    fn a_v5_quote_with_a_td15_body_is_split_at_the_right_offsets() {
        let mut q = header(5, TEE_TYPE_TDX);
        q.extend_from_slice(&3u16.to_le_bytes());
        q.extend_from_slice(&(TD_REPORT15_LEN as u32).to_le_bytes());
        let mut body = vec![0u8; TD_REPORT15_LEN];
        body[td::MRTD].fill(0xAB);
        q.extend_from_slice(&body);
        let sig = sig_data_v4(b"PEM");
        q.extend_from_slice(&(sig.len() as u32).to_le_bytes());
        q.extend_from_slice(&sig);
        q.extend_from_slice(&[0u8; 17]); // trailing bytes are tolerated

        let p = parse(&q).expect("parses");
        assert_eq!(p.version, 5);
        assert_eq!(p.signed.len(), HEADER_LEN + 6 + TD_REPORT15_LEN);
        let Body::Td(b) = p.body else {
            panic!("a TD body")
        };
        assert_eq!(b.len(), TD_REPORT15_LEN);
        assert_eq!(&b[td::MRTD], &[0xAB; 48][..]);
        assert_eq!(p.signature, &[0x44; 64][..]);
        assert_eq!(p.attestation_key, &[0x55; 64][..]);
        assert_eq!(p.qe_report, &[0x11; ENCLAVE_REPORT_LEN][..]);
        assert_eq!(p.qe_auth_data, &[0x33; 32][..]);
        assert_eq!((p.cert_type, p.cert_data), (5, &b"PEM"[..]));
    }

    #[test]
    fn a_v5_body_size_that_does_not_match_its_type_is_refused() {
        let mut q = header(5, TEE_TYPE_TDX);
        q.extend_from_slice(&3u16.to_le_bytes());
        q.extend_from_slice(&(TD_REPORT10_LEN as u32).to_le_bytes());
        q.extend_from_slice(&[0u8; TD_REPORT15_LEN]);
        assert!(matches!(
            parse(&q),
            Err(DcapError::UnsupportedBody { body_type: 3, .. })
        ));
    }

    #[test]
    fn a_huge_declared_length_is_a_truncation_not_a_panic() {
        let mut q = header(4, TEE_TYPE_TDX);
        q.extend_from_slice(&[0u8; TD_REPORT10_LEN]);
        q.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&q), Err(DcapError::Truncated { .. })));
    }

    #[test]
    fn an_sgx_header_with_version_4_is_unsupported() {
        let q = header(4, TEE_TYPE_SGX);
        assert!(matches!(
            parse(&q),
            Err(DcapError::UnsupportedVersion { version: 4, .. })
        ));
    }
}
