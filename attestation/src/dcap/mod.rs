//! Intel DCAP quotes: TDX (quote v4 and v5) and SGX (quote v3), verified against the pinned
//! Intel SGX Root CA with the collateral passed as the evidence's `aux`.
//!
//! # What is checked
//!
//! [`verify`] runs our own checks first, so that the usual refusals are precise
//! [`DcapError`] variants, then hands the quote to [dcap-qvl](https://github.com/Phala-Network/dcap-qvl)
//! (pinned `=0.7.1`), which repeats the cryptography and does the TCB evaluation:
//!
//! 1. the quote parses by lengths (trailing bytes tolerated), its version suits its `tee_type`
//!    and the `tee_type` matches the `kind` asked for ([`quote`]);
//! 2. the quote signature (ECDSA P-256 by the attestation key over header and body);
//! 3. the QE report signature by the PCK leaf, and the QE report data binding
//!    `SHA-256(attestation key ‖ QE auth data) ‖ 0³²`;
//! 4. the collateral is for this TEE type (`TDX`/`TD_QE` or `SGX`/`QE`) and its FMSPC is the
//!    PCK certificate's;
//! 5. the root CRL is signed by the pinned root and the PCK CRL by the PCK CA;
//! 6. the TCB info and the QE identity: signed by the TCB Signing certificate over their exact
//!    JSON text, that certificate chained to the pinned root and not revoked, and "now" inside
//!    `issueDate..=nextUpdate` ([`collateral`]);
//! 7. both CRLs current at "now"; the PCK chain (PCK → Platform/Processor CA → pinned root)
//!    valid at "now", no serial on the CRL of its issuer;
//! 8. dcap-qvl: all of the above again (webpki path building with CRLs), QE identity
//!    (MRSIGNER, ISVPRODID, MISCSELECT/ATTRIBUTES masks, QE TCB level), FMSPC and TCB type
//!    match, platform TCB level (CPUSVN components, PCESVN, for TDX `tdxtcbcomponents`), the TDX
//!    module identity and module TCB level, the converged status and advisories; `Revoked` and
//!    "no matching TCB level" are refusals.
//!
//! Debug enclaves and TDs are *not* refused here: they verify with `debug: true` and the policy
//! refuses them, as for SEV-SNP.
//!
//! # Layout
//!
//! - [`quote`]: the quote layout, read by offset.
//! - `pki`: PEM chains, signatures, CRLs, the chain to the pinned root.
//! - [`collateral`]: the collateral JSON and its validity windows.
//! - `upstream`: the dcap-qvl call and the mapping of its errors.

pub mod collateral;
pub(crate) mod pki;
pub mod quote;
mod upstream;

use std::collections::BTreeMap;

use crate::claims::{Claims, Tcb, TeeKind};
use crate::EvidenceKind;
use quote::{sgx, td, Body};

/// The Intel SGX Root CA (DER), the trust anchor of every DCAP chain.
///
/// SHA-256 `44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3`; the copy in
/// google/go-tdx-guest `verify/trusted_root.pem` (see `attestation/tests/data/PROVENANCE.md`).
pub const INTEL_SGX_ROOT_CA_DER: &[u8] = include_bytes!("intel_sgx_root_ca.der");

/// Which certificate chain a chain error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    /// PCK leaf → PCK Platform/Processor CA → root.
    Pck,
    /// Intel SGX TCB Signing → root (signs the TCB info and the QE identity).
    TcbSigning,
}

impl std::fmt::Display for ChainKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChainKind::Pck => "PCK chain",
            ChainKind::TcbSigning => "TCB signing chain",
        })
    }
}

/// A signed collateral document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollateralItem {
    /// The TCB info (`tcb_info`).
    TcbInfo,
    /// The QE identity (`qe_identity`).
    QeIdentity,
}

impl std::fmt::Display for CollateralItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CollateralItem::TcbInfo => "TCB info",
            CollateralItem::QeIdentity => "QE identity",
        })
    }
}

/// A certificate revocation list in the collateral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlKind {
    /// The root CA CRL (revokes PCK CAs and the TCB Signing certificate).
    Root,
    /// The PCK CRL of the PCK Platform/Processor CA (revokes PCK leaves).
    Pck,
}

impl std::fmt::Display for CrlKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CrlKind::Root => "root CA CRL",
            CrlKind::Pck => "PCK CRL",
        })
    }
}

/// Why a DCAP quote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcapError {
    /// `verify` was called with a kind that is not TDX or SGX.
    #[error("evidence kind {0:?} is not a DCAP quote")]
    NotDcap(EvidenceKind),
    /// The quote ends before a part its lengths announce.
    #[error("quote truncated in the {what}: needs {needed} bytes, has {found}")]
    Truncated {
        /// The part being read.
        what: &'static str,
        /// The length needed up to the end of that part.
        needed: usize,
        /// The quote's length.
        found: usize,
    },
    /// A quote version this verifier does not know, or one that does not suit the TEE type
    /// (SGX is v3, TDX v4 or v5).
    #[error("unsupported quote version {version} for tee_type {tee_type:#010x}")]
    UnsupportedVersion {
        /// The header's version.
        version: u16,
        /// The header's `tee_type`.
        tee_type: u32,
    },
    /// A `tee_type` that is neither SGX (0x00000000) nor TDX (0x00000081).
    #[error("unsupported tee_type {0:#010x}")]
    UnsupportedTeeType(u32),
    /// The quote's TEE type is not the kind the caller expects.
    #[error("expected a {expected:?} quote, the header says tee_type {found:#010x}")]
    WrongTeeType {
        /// The kind asked for.
        expected: EvidenceKind,
        /// The header's `tee_type`.
        found: u32,
    },
    /// An attestation key type other than ECDSA-256 with P-256.
    #[error("unsupported attestation key type {0} (expected 2, ECDSA P-256)")]
    UnsupportedKeyType(u16),
    /// A v5 body type or size this verifier does not know.
    #[error("unsupported v5 body type {body_type} of {size} bytes")]
    UnsupportedBody {
        /// The body type.
        body_type: u16,
        /// The announced size.
        size: usize,
    },
    /// Certification data other than a PCK chain (type 5) without a chain in the collateral.
    #[error("unsupported certification data type {0} (expected 5, PCK chain)")]
    UnsupportedCertData(u16),
    /// The attestation key's signature over the header and body does not verify.
    #[error("the quote signature does not verify with the attestation key")]
    BadQuoteSignature,
    /// The PCK key's signature over the QE report does not verify.
    #[error("the QE report signature does not verify with the PCK certificate")]
    BadQeReportSignature,
    /// The QE report data is not `SHA-256(attestation key ‖ QE auth data) ‖ 0³²`.
    #[error("the QE report data does not bind the attestation key")]
    QeBindingMismatch,
    /// A certificate chain is malformed, broken or outside its validity at "now".
    #[error("{which}: {reason}")]
    Chain {
        /// Which chain.
        which: ChainKind,
        /// What is wrong.
        reason: String,
    },
    /// A chain does not lead to the pinned Intel SGX Root CA.
    #[error("{which} ends at {subject}, not at the pinned Intel SGX Root CA")]
    UnpinnedRoot {
        /// Which chain.
        which: ChainKind,
        /// The subject of the unknown root or issuer.
        subject: String,
    },
    /// A certificate of a chain is on a CRL.
    #[error("{which}: {subject} (serial {serial}) is revoked")]
    Revoked {
        /// Which chain.
        which: ChainKind,
        /// The revoked certificate.
        subject: String,
        /// Its serial number (hex).
        serial: String,
    },
    /// A CRL is not signed by its issuer (the pinned root, or the PCK CA).
    #[error("the {0} is not signed by its issuer")]
    CrlSignature(CrlKind),
    /// A CRL is outside its `thisUpdate..nextUpdate` window at "now".
    #[error("the {0} is not current")]
    CrlNotCurrent(CrlKind),
    /// The TCB info or QE identity signature over its exact JSON text does not verify.
    #[error("the {which} signature does not verify with the TCB signing certificate")]
    CollateralSignature {
        /// Which document.
        which: CollateralItem,
    },
    /// "now" is after the document's `nextUpdate`.
    #[error("the {which} expired at {next_update} (now {now})")]
    CollateralExpired {
        /// Which document.
        which: CollateralItem,
        /// Its `nextUpdate` (seconds since the epoch).
        next_update: u64,
        /// The verification time.
        now: u64,
    },
    /// "now" is before the document's `issueDate`.
    #[error("the {which} is issued at {issue_date}, after now ({now})")]
    CollateralNotYetValid {
        /// Which document.
        which: CollateralItem,
        /// Its `issueDate` (seconds since the epoch).
        issue_date: u64,
        /// The verification time.
        now: u64,
    },
    /// The collateral is not the expected JSON, or a field in it cannot be decoded.
    #[error("malformed collateral: {0}")]
    MalformedCollateral(String),
    /// The collateral is for the other TEE type (TDX TCB info for an SGX quote, …).
    /// (Checked before the CRLs, so a whole bundle for the wrong TEE type says this.)
    #[error("collateral for another TEE type: {0}")]
    CollateralKindMismatch(String),
    /// The TCB info is for another platform (its FMSPC is not the PCK certificate's).
    #[error("the TCB info is for another FMSPC than the PCK certificate's")]
    FmspcMismatch,
    /// No TCB level of the TCB info is met by the platform's SVNs.
    #[error("no TCB level of the TCB info matches the platform: {0}")]
    TcbNoMatchingLevel(String),
    /// The platform's or the QE's TCB level is `Revoked`.
    #[error("the TCB level is revoked")]
    TcbRevoked,
    /// The QE report does not match the QE identity (signer, product, attributes, SVN).
    #[error("the QE does not match the QE identity: {0}")]
    QeIdentityMismatch(String),
    /// The TDX module (MRSIGNERSEAM, SEAM attributes, module SVN) does not match the TCB info.
    #[error("the TDX module does not match the TCB info: {0}")]
    TdxModuleMismatch(String),
    /// TD attributes that no TD may have: migratable, SEPT_VE_DISABLE clear, reserved bits,
    /// service TDs bound.
    #[error("TD attributes refused: {0}")]
    TdAttributes(String),
    /// Another refusal by dcap-qvl (its message).
    #[error("refused by the DCAP verifier: {0}")]
    Rejected(String),
    /// The pinned root does not parse: a build defect, not an input error.
    #[error("internal: {0}")]
    Internal(String),
}

/// Verifies a TDX or SGX `quote` with its `collateral` at `now_unix` (seconds since the epoch)
/// against the pinned [`INTEL_SGX_ROOT_CA_DER`], and returns its claims.
///
/// `collateral` is dcap-qvl's `QuoteCollateralV3` as JSON (see [`collateral`]). `kind` must be
/// [`EvidenceKind::Tdx`] or [`EvidenceKind::Sgx`] and match the quote's `tee_type`.
///
/// Claims: `measurement` is MRTD (48 bytes) or MRENCLAVE (32); `extra` holds, hex-encoded, for
/// TDX `rtmr0`..`rtmr3`, `mrseam`, `mrsignerseam`, `td_attributes`, `xfam`, `mrconfigid`,
/// `mrowner`, `mrownerconfig`, `quote_version`, for SGX `mrsigner`, `isvprodid`, `isvsvn`,
/// `attributes` (the two SVNs in decimal), and for both `fmspc`; `platform_id` is the FMSPC;
/// `debug` is TUD (`td_attributes` byte 0: DEBUG and the profiling bits) for TDX and
/// `attributes` DEBUG for SGX.
///
/// # Errors
/// [`DcapError`] saying which check failed.
pub fn verify(
    kind: EvidenceKind,
    quote: &[u8],
    collateral: &[u8],
    now_unix: u64,
) -> Result<Claims, DcapError> {
    let expected = match kind {
        EvidenceKind::Tdx => quote::TEE_TYPE_TDX,
        EvidenceKind::Sgx => quote::TEE_TYPE_SGX,
        other => return Err(DcapError::NotDcap(other)),
    };
    let q = quote::parse(quote)?;
    if q.tee_type != expected {
        return Err(DcapError::WrongTeeType {
            expected: kind,
            found: q.tee_type,
        });
    }
    if !pki::verify_p256(q.attestation_key, q.signed, q.signature) {
        return Err(DcapError::BadQuoteSignature);
    }

    let col = collateral::parse(collateral)?;
    let root = pki::pinned_root()?;
    let pck_pem = match &col.pck_certificate_chain {
        Some(chain) => chain.as_bytes(),
        None if q.cert_type == quote::CERT_TYPE_PCK_CHAIN => q.cert_data,
        None => return Err(DcapError::UnsupportedCertData(q.cert_type)),
    };
    let pck_chain = pki::pem_chain(pck_pem).map_err(|reason| DcapError::Chain {
        which: ChainKind::Pck,
        reason,
    })?;
    let Some(pck_leaf) = pck_chain.first() else {
        return Err(DcapError::Chain {
            which: ChainKind::Pck,
            reason: "empty".into(),
        });
    };
    if !pki::verify_p256(pck_leaf.public_key(), q.qe_report, q.qe_report_signature) {
        return Err(DcapError::BadQeReportSignature);
    }
    check_qe_binding(&q)?;
    let pck_ext =
        dcap_qvl::intel::parse_pck_extension(&pck_leaf.der).map_err(|e| DcapError::Chain {
            which: ChainKind::Pck,
            reason: format!("the PCK certificate's SGX extension: {e:#}"),
        })?;
    collateral::check_kind_and_fmspc(&col, q.tee_type, &pck_ext.fmspc)?;

    let crl = |bytes: &[u8], which: CrlKind| {
        pki::Crl::from_der(bytes)
            .map_err(|e| DcapError::MalformedCollateral(format!("{which}: {e}")))
    };
    let root_crl = crl(&col.root_ca_crl, CrlKind::Root)?;
    let pck_crl = crl(&col.pck_crl, CrlKind::Pck)?;
    if !root_crl.is_signed_by(&root) {
        return Err(DcapError::CrlSignature(CrlKind::Root));
    }
    if !pck_crl.is_signed_by(pki::issuer_of(pck_leaf, &pck_chain, &root)) {
        return Err(DcapError::CrlSignature(CrlKind::Pck));
    }
    for (which, chain_pem, json, sig) in [
        (
            CollateralItem::TcbInfo,
            &col.tcb_info_issuer_chain,
            &col.tcb_info,
            &col.tcb_info_signature,
        ),
        (
            CollateralItem::QeIdentity,
            &col.qe_identity_issuer_chain,
            &col.qe_identity,
            &col.qe_identity_signature,
        ),
    ] {
        let chain = pki::pem_chain(chain_pem.as_bytes()).map_err(|reason| DcapError::Chain {
            which: ChainKind::TcbSigning,
            reason,
        })?;
        pki::check_chain(ChainKind::TcbSigning, &chain, &root, &[&root_crl], now_unix)?;
        let signer = chain.first().map(pki::Cert::public_key).unwrap_or_default();
        if !pki::verify_p256(signer, json.as_bytes(), sig) {
            return Err(DcapError::CollateralSignature { which });
        }
        collateral::check_window(which, json, now_unix)?;
    }
    // The CRLs' windows after the documents': the PCK CRL and the TCB info are issued
    // together, and "the TCB info expired" says best what stale collateral means.
    for (c, which) in [(&root_crl, CrlKind::Root), (&pck_crl, CrlKind::Pck)] {
        if !c.is_current(now_unix) {
            return Err(DcapError::CrlNotCurrent(which));
        }
    }
    pki::check_chain(
        ChainKind::Pck,
        &pck_chain,
        &root,
        &[&root_crl, &pck_crl],
        now_unix,
    )?;

    let verdict = upstream::verify(quote, col, now_unix)?;
    Ok(claims(&q, verdict))
}

/// The QE report data must be `SHA-256(attestation key ‖ QE auth data) ‖ 0³²`. (dcap-qvl 0.7.1
/// compares only the first half; Intel's QVL also requires the zeros.)
fn check_qe_binding(q: &quote::ParsedQuote<'_>) -> Result<(), DcapError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(q.attestation_key);
    ctx.update(q.qe_auth_data);
    let digest = ctx.finish();
    let report_data = &q.qe_report[sgx::REPORT_DATA];
    if report_data[..32] != *digest.as_ref() || report_data[32..].iter().any(|&b| b != 0) {
        return Err(DcapError::QeBindingMismatch);
    }
    Ok(())
}

fn claims(q: &quote::ParsedQuote<'_>, verdict: upstream::Verdict) -> Claims {
    let mut extra = BTreeMap::new();
    let mut put = |k: &str, v: &[u8]| {
        extra.insert(k.to_owned(), hex::encode(v));
    };
    let (kind, measurement, report_data, debug) = match q.body {
        Body::Td(b) => {
            for (i, r) in td::RTMR.iter().enumerate() {
                put(&format!("rtmr{i}"), &b[r.clone()]);
            }
            put("mrseam", &b[td::MRSEAM]);
            put("mrsignerseam", &b[td::MRSIGNERSEAM]);
            put("td_attributes", &b[td::TD_ATTRIBUTES]);
            put("xfam", &b[td::XFAM]);
            put("mrconfigid", &b[td::MRCONFIGID]);
            put("mrowner", &b[td::MROWNER]);
            put("mrownerconfig", &b[td::MROWNERCONFIG]);
            if let Some(s) = b.get(td::MRSERVICETD) {
                put("mrservicetd", s);
            }
            (
                TeeKind::Tdx,
                b[td::MRTD].to_vec(),
                b[td::REPORT_DATA].to_vec(),
                b[td::TD_ATTRIBUTES.start] != 0,
            )
        }
        Body::Sgx(b) => {
            put("mrsigner", &b[sgx::MRSIGNER]);
            put("attributes", &b[sgx::ATTRIBUTES]);
            let le = |r: core::ops::Range<usize>| u16::from_le_bytes([b[r.start], b[r.start + 1]]);
            extra.insert("isvprodid".into(), le(sgx::ISVPRODID).to_string());
            extra.insert("isvsvn".into(), le(sgx::ISVSVN).to_string());
            (
                TeeKind::Sgx,
                b[sgx::MRENCLAVE].to_vec(),
                b[sgx::REPORT_DATA].to_vec(),
                b[sgx::ATTRIBUTES.start] & sgx::FLAG_DEBUG != 0,
            )
        }
    };
    extra.insert("fmspc".into(), hex::encode(verdict.fmspc));
    extra.insert("quote_version".into(), q.version.to_string());
    Claims {
        kind,
        measurement,
        extra,
        report_data,
        tcb: Tcb::Dcap {
            status: verdict.status,
            advisories: verdict.advisories,
        },
        debug,
        platform_id: verdict.fmspc.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_root_is_the_intel_sgx_root_ca() {
        let d = ring::digest::digest(&ring::digest::SHA256, INTEL_SGX_ROOT_CA_DER);
        assert_eq!(
            hex::encode(d),
            "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
        );
        let root = pki::pinned_root().expect("parses");
        assert!(root.public_key().len() == 65);
    }

    #[test]
    fn the_qe_binding_requires_the_upper_half_of_the_qe_report_data_to_be_zero() {
        let raw = include_bytes!("../../tests/data/intel/dcap-qvl_tdx_quote");
        let q = quote::parse(raw).expect("parses");
        check_qe_binding(&q).expect("the real quote binds");
        let mut qe_report = q.qe_report.to_vec();
        qe_report[sgx::REPORT_DATA.end - 1] ^= 1;
        let tampered = quote::ParsedQuote {
            qe_report: &qe_report,
            ..q
        };
        assert_eq!(
            check_qe_binding(&tampered),
            Err(DcapError::QeBindingMismatch)
        );
    }

    #[test]
    fn a_snp_kind_is_not_a_dcap_quote() {
        assert_eq!(
            verify(EvidenceKind::SevSnp, &[], &[], 0),
            Err(DcapError::NotDcap(EvidenceKind::SevSnp))
        );
    }
}
