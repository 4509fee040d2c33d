//! The DCAP verifier against real quotes and collateral (dcap-qvl's samples, see
//! `tests/data/PROVENANCE.md`), and against every single-bit and single-byte tamper we can name.

use edgepool_attestation::claims::TcbStatus;
use edgepool_attestation::dcap::{self, ChainKind, CollateralItem, CrlKind, DcapError};
use edgepool_attestation::{Claims, Evidence, EvidenceKind, Tcb, TeeKind};
use proptest::prelude::*;

const TDX_QUOTE: &[u8] = include_bytes!("data/intel/dcap-qvl_tdx_quote");
const TDX_COLLATERAL: &[u8] = include_bytes!("data/intel/dcap-qvl_tdx_quote_collateral.json");
const SGX_QUOTE: &[u8] = include_bytes!("data/intel/dcap-qvl_sgx_quote");
const SGX_COLLATERAL: &[u8] = include_bytes!("data/intel/dcap-qvl_sgx_quote_collateral.json");

/// 2025-07-01T00:00:00Z: inside the collateral window 2025-06-19..2025-07-19.
const NOW: u64 = 1_751_328_000;
/// 2025-08-01T00:00:00Z: after every `nextUpdate`.
const AFTER: u64 = 1_754_006_400;
/// 2025-06-01T00:00:00Z: before every `issueDate`.
const BEFORE: u64 = 1_748_736_000;

/// End of the TDX v4 quote's signed range (header 48 + TD report 584) and its signature data.
const TDX_SIGNED_END: usize = 632;
const TDX_SIG: usize = 636; // after the u32 length
const TDX_QE_REPORT: usize = TDX_SIG + 64 + 64 + 6;
const TDX_QE_SIG: usize = TDX_QE_REPORT + 384;
const TDX_QE_AUTH: usize = TDX_QE_SIG + 64 + 2;
/// The SGX v3 quote: header 48 + enclave report 384, then the signature data.
const SGX_SIGNED_END: usize = 432;
const SGX_SIG: usize = 436;
const SGX_QE_REPORT: usize = SGX_SIG + 64 + 64;
const SGX_QE_SIG: usize = SGX_QE_REPORT + 384;

fn tdx(quote: &[u8], collateral: &[u8], now: u64) -> Result<Claims, DcapError> {
    dcap::verify(EvidenceKind::Tdx, quote, collateral, now)
}

fn sgx(quote: &[u8], collateral: &[u8], now: u64) -> Result<Claims, DcapError> {
    dcap::verify(EvidenceKind::Sgx, quote, collateral, now)
}

fn flipped(bytes: &[u8], index: usize, mask: u8) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[index] ^= mask;
    v
}

/// The collateral with `field` (a JSON string) changed by `edit`.
fn collateral_with(collateral: &[u8], field: &str, edit: impl FnOnce(&mut String)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(collateral).expect("collateral JSON");
    let mut s = v[field].as_str().expect("a string field").to_owned();
    edit(&mut s);
    v[field] = serde_json::Value::String(s);
    serde_json::to_vec(&v).expect("serialises")
}

/// Flips the hex digit at `index` of a hex string.
fn flip_hex_digit(s: &mut String, index: usize) {
    let c = s.as_bytes()[index];
    let new = if c == b'0' { '1' } else { '0' };
    s.replace_range(index..index + 1, &new.to_string());
}

#[test]
fn the_tdx_quote_verifies_up_to_date_with_the_provenance_claims() {
    assert_eq!(
        TDX_QUOTE.len(),
        5006,
        "the vector with its 70 trailing bytes"
    );
    let c = tdx(TDX_QUOTE, TDX_COLLATERAL, NOW).expect("valid");
    assert_eq!(c.kind, TeeKind::Tdx);
    assert_eq!(
        hex::encode(&c.measurement),
        "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
    );
    assert_eq!(
        hex::encode(&c.report_data),
        "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20"
    );
    assert_eq!(
        c.tcb,
        Tcb::Dcap {
            status: TcbStatus::UpToDate,
            advisories: vec![]
        }
    );
    assert!(!c.debug);
    assert_eq!(hex::encode(&c.platform_id), "b0c06f000000");
    assert_eq!(c.extra["fmspc"], "b0c06f000000");
    assert_eq!(c.extra["td_attributes"], "0000001000000000");
    assert!(c.extra["rtmr0"].starts_with("44c0197b") && c.extra["rtmr0"].ends_with("9bc9c0"));
    for key in [
        "rtmr1",
        "rtmr2",
        "rtmr3",
        "mrseam",
        "mrsignerseam",
        "xfam",
        "mrconfigid",
        "mrowner",
    ] {
        assert!(c.extra.contains_key(key), "{key}");
    }
    assert_eq!(c.extra["quote_version"], "4");
}

#[test]
fn the_tdx_quote_verifies_without_its_trailing_bytes_too() {
    let c = tdx(&TDX_QUOTE[..4936], TDX_COLLATERAL, NOW).expect("valid");
    assert_eq!(c.measurement.len(), 48);
}

#[test]
fn the_sgx_quote_needs_configuration_and_sw_hardening() {
    let c = sgx(SGX_QUOTE, SGX_COLLATERAL, NOW).expect("valid");
    assert_eq!(c.kind, TeeKind::Sgx);
    assert_eq!(
        hex::encode(&c.measurement),
        "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    );
    assert_eq!(
        c.extra["mrsigner"],
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    let mut report_data = b"Hello, world!".to_vec();
    report_data.resize(64, 0);
    assert_eq!(c.report_data, report_data);
    let Tcb::Dcap { status, advisories } = &c.tcb else {
        panic!("a DCAP TCB: {:?}", c.tcb)
    };
    assert_eq!(*status, TcbStatus::ConfigurationAndSWHardeningNeeded);
    let mut advisories = advisories.clone();
    advisories.sort();
    assert_eq!(advisories, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert!(!c.debug);
    assert_eq!(c.platform_id.len(), 6);
    assert_eq!(c.extra["fmspc"], hex::encode(&c.platform_id));
    assert_eq!(c.extra["isvprodid"], "0");
    assert_eq!(c.extra["isvsvn"], "0");
}

#[test]
fn the_crate_level_verify_dispatches_dcap_evidence() {
    let evidence = Evidence {
        kind: EvidenceKind::Tdx,
        report: TDX_QUOTE.to_vec(),
        aux: TDX_COLLATERAL.to_vec(),
    };
    let c = edgepool_attestation::verify(&evidence, NOW).expect("valid");
    assert_eq!(c.kind, TeeKind::Tdx);
}

#[test]
fn every_flipped_bit_in_the_signed_range_of_the_tdx_quote_is_refused() {
    for i in 0..TDX_SIGNED_END {
        for bit in [0x01u8, 0x80] {
            let r = tdx(&flipped(TDX_QUOTE, i, bit), TDX_COLLATERAL, NOW);
            match r {
                Err(DcapError::BadQuoteSignature) => {}
                // version, key type and tee_type: refused before the signature (version 5
                // reads the body as a v5 descriptor).
                Err(
                    DcapError::UnsupportedVersion { .. }
                    | DcapError::UnsupportedBody { .. }
                    | DcapError::Truncated { .. }
                    | DcapError::UnsupportedKeyType(_)
                    | DcapError::UnsupportedTeeType(_)
                    | DcapError::WrongTeeType { .. },
                ) if i < 8 => {}
                other => panic!("byte {i} bit {bit:#x}: {other:?}"),
            }
        }
    }
}

#[test]
fn every_flipped_byte_in_the_signed_range_of_the_sgx_quote_is_refused() {
    for i in 8..SGX_SIGNED_END {
        assert_eq!(
            sgx(&flipped(SGX_QUOTE, i, 0x10), SGX_COLLATERAL, NOW).err(),
            Some(DcapError::BadQuoteSignature),
            "byte {i}"
        );
    }
}

#[test]
fn a_flipped_bit_in_the_quote_signature_or_attestation_key_is_refused() {
    for i in [TDX_SIG, TDX_SIG + 63, TDX_SIG + 64, TDX_SIG + 127] {
        assert_eq!(
            tdx(&flipped(TDX_QUOTE, i, 0x04), TDX_COLLATERAL, NOW).err(),
            Some(DcapError::BadQuoteSignature),
            "byte {i}"
        );
    }
    assert_eq!(
        sgx(&flipped(SGX_QUOTE, SGX_SIG + 5, 0x04), SGX_COLLATERAL, NOW).err(),
        Some(DcapError::BadQuoteSignature)
    );
}

#[test]
fn a_flipped_bit_in_the_qe_report_or_its_signature_is_refused() {
    for i in (TDX_QE_REPORT..TDX_QE_SIG + 64).step_by(7) {
        assert_eq!(
            tdx(&flipped(TDX_QUOTE, i, 0x02), TDX_COLLATERAL, NOW).err(),
            Some(DcapError::BadQeReportSignature),
            "byte {i}"
        );
    }
    for i in (SGX_QE_REPORT..SGX_QE_SIG + 64).step_by(11) {
        assert_eq!(
            sgx(&flipped(SGX_QUOTE, i, 0x02), SGX_COLLATERAL, NOW).err(),
            Some(DcapError::BadQeReportSignature),
            "byte {i}"
        );
    }
}

#[test]
fn a_flipped_bit_in_the_qe_authentication_data_breaks_the_binding() {
    assert_eq!(
        tdx(&flipped(TDX_QUOTE, TDX_QE_AUTH, 0x01), TDX_COLLATERAL, NOW).err(),
        Some(DcapError::QeBindingMismatch)
    );
}

#[test]
fn a_flipped_bit_in_the_pck_chain_is_refused() {
    // Inside the base64 of the PEM chain near its end (the root's signature).
    let pem_end = 4936 - 100;
    let r = tdx(&flipped(TDX_QUOTE, pem_end, 0x01), TDX_COLLATERAL, NOW);
    assert!(
        matches!(
            r,
            Err(DcapError::Chain {
                which: ChainKind::Pck,
                ..
            }) | Err(DcapError::UnpinnedRoot {
                which: ChainKind::Pck,
                ..
            })
        ),
        "{r:?}"
    );
}

#[test]
fn a_tampered_tcb_info_byte_is_refused() {
    let col = collateral_with(TDX_COLLATERAL, "tcb_info", |s| {
        *s = s.replacen(
            "\"tcbEvaluationDataNumber\":17",
            "\"tcbEvaluationDataNumber\":18",
            1,
        );
    });
    assert_ne!(col, TDX_COLLATERAL);
    assert_eq!(
        tdx(TDX_QUOTE, &col, NOW).err(),
        Some(DcapError::CollateralSignature {
            which: CollateralItem::TcbInfo
        })
    );
}

#[test]
fn a_tampered_qe_identity_byte_is_refused() {
    let col = collateral_with(SGX_COLLATERAL, "qe_identity", |s| {
        *s = s.replacen(
            "\"miscselect\":\"00000000\"",
            "\"miscselect\":\"00000001\"",
            1,
        );
    });
    assert_ne!(col, SGX_COLLATERAL);
    assert_eq!(
        sgx(SGX_QUOTE, &col, NOW).err(),
        Some(DcapError::CollateralSignature {
            which: CollateralItem::QeIdentity
        })
    );
}

#[test]
fn a_tampered_collateral_signature_is_refused() {
    for (field, which) in [
        ("tcb_info_signature", CollateralItem::TcbInfo),
        ("qe_identity_signature", CollateralItem::QeIdentity),
    ] {
        let col = collateral_with(TDX_COLLATERAL, field, |s| flip_hex_digit(s, 40));
        assert_eq!(
            tdx(TDX_QUOTE, &col, NOW).err(),
            Some(DcapError::CollateralSignature { which }),
            "{field}"
        );
    }
}

#[test]
fn a_tampered_crl_is_refused() {
    // A byte of the CRL's signature (its last bytes): still parses, no longer verifies.
    let col = collateral_with(TDX_COLLATERAL, "pck_crl", |s| {
        let i = s.len() - 4;
        flip_hex_digit(s, i);
    });
    assert_eq!(
        tdx(TDX_QUOTE, &col, NOW).err(),
        Some(DcapError::CrlSignature(CrlKind::Pck))
    );
    let col = collateral_with(TDX_COLLATERAL, "root_ca_crl", |s| {
        let i = s.len() - 4;
        flip_hex_digit(s, i);
    });
    assert_eq!(
        tdx(TDX_QUOTE, &col, NOW).err(),
        Some(DcapError::CrlSignature(CrlKind::Root))
    );
}

#[test]
fn a_time_after_the_collateral_window_is_refused() {
    assert!(matches!(
        tdx(TDX_QUOTE, TDX_COLLATERAL, AFTER),
        Err(DcapError::CollateralExpired {
            which: CollateralItem::TcbInfo,
            ..
        })
    ));
    assert!(matches!(
        sgx(SGX_QUOTE, SGX_COLLATERAL, AFTER),
        Err(DcapError::CollateralExpired { .. })
    ));
}

#[test]
fn a_time_before_the_collateral_window_is_refused() {
    assert!(matches!(
        tdx(TDX_QUOTE, TDX_COLLATERAL, BEFORE),
        Err(DcapError::CollateralNotYetValid {
            which: CollateralItem::TcbInfo,
            ..
        })
    ));
}

#[test]
fn a_quote_of_the_other_kind_is_refused() {
    assert_eq!(
        sgx(TDX_QUOTE, TDX_COLLATERAL, NOW).err(),
        Some(DcapError::WrongTeeType {
            expected: EvidenceKind::Sgx,
            found: 0x81
        })
    );
    assert_eq!(
        tdx(SGX_QUOTE, SGX_COLLATERAL, NOW).err(),
        Some(DcapError::WrongTeeType {
            expected: EvidenceKind::Tdx,
            found: 0
        })
    );
}

#[test]
fn every_truncation_of_the_quote_is_refused_as_truncated() {
    for len in (0..4936).step_by(13).chain([4935]) {
        let r = tdx(&TDX_QUOTE[..len], TDX_COLLATERAL, NOW);
        assert!(
            matches!(r, Err(DcapError::Truncated { .. })),
            "{len}: {r:?}"
        );
    }
    for len in (0..SGX_QUOTE.len()).step_by(17) {
        let r = sgx(&SGX_QUOTE[..len], SGX_COLLATERAL, NOW);
        // The SGX vector has no trailing bytes: every shorter prefix is truncated.
        assert!(
            matches!(r, Err(DcapError::Truncated { .. })),
            "{len}: {r:?}"
        );
    }
}

#[test]
fn the_sgx_collateral_does_not_verify_the_tdx_quote() {
    assert!(matches!(
        tdx(TDX_QUOTE, SGX_COLLATERAL, NOW),
        Err(DcapError::CollateralKindMismatch(_))
    ));
    assert!(matches!(
        sgx(SGX_QUOTE, TDX_COLLATERAL, NOW),
        Err(DcapError::CollateralKindMismatch(_))
    ));
}

#[test]
fn collateral_that_is_not_json_is_malformed() {
    assert!(matches!(
        tdx(TDX_QUOTE, b"{\"tcb_info\": 1}", NOW),
        Err(DcapError::MalformedCollateral(_))
    ));
    assert!(matches!(
        tdx(TDX_QUOTE, b"", NOW),
        Err(DcapError::MalformedCollateral(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn verify_never_panics_on_a_mutated_quote(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut q = TDX_QUOTE.to_vec();
        for (i, b) in &edits {
            let i = i.index(q.len());
            q[i] = *b;
        }
        if truncate {
            q.truncate(cut.index(q.len()));
        }
        let r = tdx(&q, TDX_COLLATERAL, NOW);
        // Edits in the 70 trailing bytes or no-op edits may leave the quote valid.
        if let Ok(c) = r {
            prop_assert_eq!(c.kind, TeeKind::Tdx);
        }
    }

    #[test]
    fn verify_never_panics_on_mutated_collateral(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        tdx_collateral in any::<bool>(),
    ) {
        let (quote, mut col, kind) = if tdx_collateral {
            (TDX_QUOTE, TDX_COLLATERAL.to_vec(), EvidenceKind::Tdx)
        } else {
            (SGX_QUOTE, SGX_COLLATERAL.to_vec(), EvidenceKind::Sgx)
        };
        for (i, b) in &edits {
            let i = i.index(col.len());
            col[i] = *b;
        }
        let _ = dcap::verify(kind, quote, &col, NOW);
    }
}

/// No real v5 quote is in the vector set (trustee's `tdx_quote_5.dat` is binary and could not be
/// fetched byte-exact). The v4 quote re-framed as v5 (body type 2, the same TD report 1.0) parses
/// through to the real signature data, and is refused because the signed range now includes the
/// body descriptor.
#[test]
fn the_tdx_quote_reframed_as_v5_parses_and_fails_only_its_signature() {
    let mut v5 = Vec::with_capacity(TDX_QUOTE.len() + 6);
    v5.extend_from_slice(&5u16.to_le_bytes());
    v5.extend_from_slice(&TDX_QUOTE[2..48]);
    v5.extend_from_slice(&2u16.to_le_bytes());
    v5.extend_from_slice(&584u32.to_le_bytes());
    v5.extend_from_slice(&TDX_QUOTE[48..]);
    assert_eq!(
        tdx(&v5, TDX_COLLATERAL, NOW).err(),
        Some(DcapError::BadQuoteSignature)
    );
    // And truncating it anywhere is still a truncation.
    assert!(matches!(
        tdx(&v5[..48 + 6 + 100], TDX_COLLATERAL, NOW),
        Err(DcapError::Truncated { .. })
    ));
}
