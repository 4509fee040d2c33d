//! AMD SEV-SNP attestation reports and their certificate chains.
//!
//! [`verify`] takes the raw report and `aux`, the certificate table of an extended report (what
//! configfs-tsm's `auxblob` holds on an SNP guest; build one with [`cert_table`]), and checks, in
//! this order:
//!
//! 1. the report: at least 0x4A0 bytes, version 2 or newer (fields are read at their offsets,
//!    so newer versions parse), signature algorithm 1 (ECDSA P-384 with SHA-384);
//! 2. the signing key the report names (`KEY_INFO`): its VCEK or VLEK must be in the table;
//! 3. the report signature over bytes 0x000–0x29F with that key (R and S little-endian);
//! 4. the chain VCEK → ASK → ARK or VLEK → ASVK → ARK, RSA-PSS SHA-384 salt 48, every
//!    certificate valid at `now`; the ARK is one of the pinned ARKs (Milan, Genoa, Turin) byte
//!    for byte. A missing ASK/ASVK or ARK is taken from the pinned chain of the product;
//! 5. the signing certificate's SPL extensions equal `REPORTED_TCB`, and a VCEK's hwID equals
//!    `CHIP_ID`.
//!
//! The signature is checked before anything that reads the report's contents, so a changed byte
//! in the signed range is always reported as [`SnpError::BadReportSignature`] (or as a parse
//! error when it makes the report unreadable).

mod chain;
mod report;
mod table;

pub use report::{Report, SigningKey, TcbVersion, REPORT_LEN, SIGNED_LEN};
pub use table::{cert_table, parse_cert_table, CertKind, CertTable};

use crate::{Claims, Tcb, TeeKind};

/// An AMD EPYC product line with its own ARK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Product {
    /// EPYC 7003 (Zen 3).
    Milan,
    /// EPYC 9004 (Zen 4).
    Genoa,
    /// EPYC 9005 (Zen 5).
    Turin,
}

impl Product {
    /// `Milan`, `Genoa`, `Turin` (as AMD's KDS spells them).
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    fn find_in(name: &str) -> Option<Product> {
        [Product::Milan, Product::Genoa, Product::Turin]
            .into_iter()
            .find(|p| name.contains(p.as_str()))
    }
}

/// Why an SEV-SNP report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpError {
    /// The report is shorter than a report.
    #[error("report is {found} bytes, expected at least {expected}")]
    Truncated {
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// A report version older than 2.
    #[error("report version {0} is not supported (expected 2 or newer)")]
    UnsupportedVersion(u32),
    /// A signature algorithm other than 1 (ECDSA P-384 with SHA-384).
    #[error("signature algorithm {0} is not supported (expected 1, ECDSA P-384/SHA-384)")]
    UnsupportedSignatureAlgorithm(u32),
    /// `KEY_INFO` names no VCEK or VLEK (7 = the report is unsigned).
    #[error("the report's signing key {0} is neither a VCEK (0) nor a VLEK (1)")]
    UnknownSigningKey(u32),
    /// The report's CPUID fields name a processor this verifier has no root for.
    #[error("CPUID family {family:#x} model {model:#x} is not a known SEV-SNP product")]
    UnknownProduct {
        /// CPUID family.
        family: u8,
        /// CPUID model.
        model: u8,
    },
    /// The auxiliary data is not a well-formed certificate table.
    #[error("certificate table: {0}")]
    BadCertTable(String),
    /// The signing certificate the report names is not in the table.
    #[error("the {0} certificate the report names is missing")]
    MissingCertificate(&'static str),
    /// A certificate does not parse (or has the wrong key type).
    #[error("{cert} certificate: {reason}")]
    BadCertificate {
        /// Which certificate.
        cert: &'static str,
        /// Why.
        reason: String,
    },
    /// The report signature does not verify with the signing certificate's key.
    #[error("the report signature does not verify with the signing certificate")]
    BadReportSignature,
    /// A link of the certificate chain does not verify.
    #[error("certificate chain broken at {which}: {reason}")]
    ChainBroken {
        /// The link, e.g. `VCEK by ASK`.
        which: String,
        /// Why.
        reason: String,
    },
    /// The table's ARK is not one of the pinned AMD roots.
    #[error("the ARK is not a pinned AMD root (Milan, Genoa or Turin)")]
    UnpinnedRoot,
    /// The certificates belong to another product than the report (e.g. Genoa for Milan).
    #[error("the {found_from} is for {found}, but the {expected_from} says {expected}")]
    WrongProduct {
        /// The product named first.
        expected: &'static str,
        /// Who named it.
        expected_from: &'static str,
        /// The other product.
        found: &'static str,
        /// Who named it.
        found_from: &'static str,
    },
    /// A certificate is not valid yet at `now`.
    #[error("{cert} is not valid before {not_before} (valid until {not_after}), now is {now}")]
    NotYetValid {
        /// Which certificate.
        cert: &'static str,
        /// Start of validity (Unix seconds).
        not_before: u64,
        /// End of validity (Unix seconds).
        not_after: u64,
        /// The time checked.
        now: u64,
    },
    /// A certificate has expired at `now`.
    #[error("{cert} expired at {not_after} (valid from {not_before}), now is {now}")]
    Expired {
        /// Which certificate.
        cert: &'static str,
        /// Start of validity (Unix seconds).
        not_before: u64,
        /// End of validity (Unix seconds).
        not_after: u64,
        /// The time checked.
        now: u64,
    },
    /// A TCB SPL in the signing certificate differs from `REPORTED_TCB`.
    #[error("{field} SPL: certificate says {certified:?}, report says {reported}")]
    TcbMismatch {
        /// `bootloader`, `tee`, `snp`, `microcode`.
        field: &'static str,
        /// The certificate's value (`None`: extension missing).
        certified: Option<u8>,
        /// The report's value.
        reported: u8,
    },
    /// The VCEK's hwID is not the report's `CHIP_ID`.
    #[error("the VCEK's hwID does not match the report's chip_id")]
    ChipIdMismatch,
}

/// Verifies an SNP `report` with `aux` (a certificate table, see [`cert_table`]) at `now_unix`
/// (seconds since the epoch) against the pinned AMD roots.
///
/// # Errors
/// [`SnpError`] naming the first check that failed.
pub fn verify(report: &[u8], aux: &[u8], now_unix: u64) -> Result<Claims, SnpError> {
    let report = Report::parse(report)?;
    let key = report.signing_key()?;
    let table = if aux.is_empty() {
        CertTable::default()
    } else {
        parse_cert_table(aux)?
    };
    let (role, leaf) = match key {
        SigningKey::Vcek => ("VCEK", table.vcek),
        SigningKey::Vlek => ("VLEK", table.vlek),
    };
    let leaf = chain::Cert::parse(role, leaf.ok_or(SnpError::MissingCertificate(role))?)?;
    chain::check_report_signature(&report, &leaf)?;
    let product = chain::check_chain(&report, key, &leaf, &table, now_unix)?;
    let spl = report.reported_tcb().spl(product);
    chain::check_leaf_matches(&report, key, &leaf, product, spl)?;
    Ok(claims(&report, key, product))
}

/// Builds the certificate table for `report` from files as AMD's KDS hands them out: the signing
/// certificate `leaf` (DER or PEM; a VCEK or a VLEK, as the report's `KEY_INFO` says) and
/// optionally the KDS `cert_chain` PEM bundle (ASK or ASVK, and ARK; a bundle holding both ASK and
/// ASVK, like trustee's, is fine: the one matching the signing key is kept).
///
/// # Errors
/// [`SnpError::BadCertificate`] when a certificate does not parse; the report itself is not
/// checked here (an unreadable report is taken as VCEK-signed and refused by [`verify`]).
pub fn assemble_cert_table(
    report: &[u8],
    leaf: &[u8],
    chain_pem: Option<&[u8]>,
) -> Result<Vec<u8>, SnpError> {
    let key = Report::parse(report)
        .and_then(|r| r.signing_key())
        .unwrap_or(SigningKey::Vcek);
    let (leaf_kind, role) = match key {
        SigningKey::Vcek => (CertKind::Vcek, "VCEK"),
        SigningKey::Vlek => (CertKind::Vlek, "VLEK"),
    };
    let leaf = chain::Cert::parse(role, leaf)?;
    let mut inter = None;
    let mut ark = None;
    if let Some(pem) = chain_pem {
        for cert in chain::Cert::parse_pem_bundle(pem)? {
            match (cert.subject_role(), key) {
                (Some("ARK"), _) => ark = Some(cert.der),
                (Some("ASVK"), SigningKey::Vlek) | (Some("ASK"), SigningKey::Vcek) => {
                    inter = Some(cert.der)
                }
                _ => {}
            }
        }
    }
    let mut entries: Vec<(CertKind, &[u8])> = vec![(leaf_kind, &leaf.der)];
    if let Some(der) = &inter {
        entries.push((CertKind::Ask, der));
    }
    if let Some(der) = &ark {
        entries.push((CertKind::Ark, der));
    }
    Ok(cert_table(&entries))
}

fn claims(report: &Report<'_>, key: SigningKey, product: Product) -> Claims {
    let spl = report.reported_tcb().spl(product);
    let mut extra = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: String| {
        extra.insert(k.to_owned(), v);
    };
    put("version", report.version().to_string());
    put("product", product.as_str().to_owned());
    put("signing_key", key.as_str().to_owned());
    put("vmpl", report.vmpl().to_string());
    put("policy", format!("{:#x}", report.policy()));
    put("guest_svn", report.guest_svn().to_string());
    put("host_data", hex::encode(report.host_data()));
    put("family_id", hex::encode(report.family_id()));
    put("image_id", hex::encode(report.image_id()));
    put("id_key_digest", hex::encode(report.id_key_digest()));
    put("report_id", hex::encode(report.report_id()));
    put("platform_info", format!("{:#x}", report.platform_info()));
    put("reported_tcb", format!("{:#018x}", report.reported_tcb().0));
    put("current_tcb", format!("{:#018x}", report.current_tcb().0));
    put(
        "committed_tcb",
        format!("{:#018x}", report.committed_tcb().0),
    );
    put("launch_tcb", format!("{:#018x}", report.launch_tcb().0));
    put("current_fw", report.current_version());
    put("committed_fw", report.committed_version());
    if let Some(fmc) = spl.fmc {
        put("fmc_spl", fmc.to_string());
    }
    Claims {
        kind: TeeKind::SevSnp,
        measurement: report.measurement().to_vec(),
        extra,
        report_data: report.report_data().to_vec(),
        tcb: Tcb::Snp {
            bootloader: spl.bootloader,
            tee: spl.tee,
            snp: spl.snp,
            microcode: spl.microcode,
        },
        debug: report.debug(),
        platform_id: report.chip_id().to_vec(),
    }
}
