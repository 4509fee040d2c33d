//! The SEV-SNP verifier against real reports and AMD certificates (tests/data/snp, see its
//! PROVENANCE.md for the source of every file and what a verifier must conclude).

use edgepool_attestation::snp::{self, cert_table, CertKind, SnpError};
use edgepool_attestation::{Tcb, TeeKind};
use proptest::prelude::*;
use x509_cert_02::der::{Decode, DecodePem, Encode};

/// 2025-06-01T00:00:00Z: inside every certificate's validity window.
const NOW: u64 = 1_748_736_000;

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/snp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn virtee_report() -> Vec<u8> {
    let text = String::from_utf8(data("virtee-sev_report_milan.hex")).expect("ascii");
    hex::decode(text.trim()).expect("hex")
}

/// (ASK, ARK, ASVK) of a trustee bundle, DER.
fn bundle(name: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let certs = x509_cert_02::Certificate::load_pem_chain(&data(name)).expect("pem");
    let der: Vec<Vec<u8>> = certs.iter().map(|c| c.to_der().expect("der")).collect();
    (der[0].clone(), der[1].clone(), der[2].clone())
}

fn milan() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    bundle("trustee_milan_ask_ark_asvk.pem")
}

fn full_table(leaf_kind: CertKind, leaf: &[u8], inter: &[u8], ark: &[u8]) -> Vec<u8> {
    cert_table(&[
        (leaf_kind, leaf),
        (CertKind::Ask, inter),
        (CertKind::Ark, ark),
    ])
}

fn virtee_aux() -> Vec<u8> {
    let (ask, ark, _) = milan();
    full_table(
        CertKind::Vcek,
        &data("virtee-sev_vcek_milan.der"),
        &ask,
        &ark,
    )
}

#[test]
fn the_virtee_milan_report_gives_the_documented_claims() {
    let claims = snp::verify(&virtee_report(), &virtee_aux(), NOW).expect("valid");
    assert_eq!(claims.kind, TeeKind::SevSnp);
    assert_eq!(
        hex::encode(&claims.measurement),
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(
        hex::encode(&claims.report_data),
        "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
    );
    assert_eq!(
        claims.tcb,
        Tcb::Snp {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115
        }
    );
    assert!(!claims.debug);
    let chip = hex::encode(&claims.platform_id);
    assert_eq!(claims.platform_id.len(), 64);
    assert!(
        chip.starts_with("d49554ec") && chip.ends_with("541eb6"),
        "{chip}"
    );
    assert_eq!(claims.extra["version"], "2");
    assert_eq!(claims.extra["policy"], "0x30000");
    assert_eq!(claims.extra["vmpl"], "0");
    assert_eq!(claims.extra["current_fw"], "1.52.4");
    assert_eq!(claims.extra["signing_key"], "vcek");
    assert_eq!(claims.extra["product"], "Milan");
}

#[test]
fn the_go_sev_guest_report_is_valid_and_says_debug() {
    let (ask, ark, _) = milan();
    let aux = full_table(
        CertKind::Vcek,
        &data("go-sev-guest_vcek.testcer"),
        &ask,
        &ark,
    );
    let claims = snp::verify(&data("go-sev-guest_attestation.bin"), &aux, NOW).expect("valid");
    assert_eq!(
        hex::encode(&claims.measurement),
        "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
    );
    let mut want = vec![1u8, 2, 3, 4, 5];
    want.resize(64, 0);
    assert_eq!(claims.report_data, want);
    assert_eq!(
        claims.tcb,
        Tcb::Snp {
            bootloader: 2,
            tee: 0,
            snp: 5,
            microcode: 68
        }
    );
    assert!(claims.debug, "policy bit 19 is set");
    assert_eq!(claims.extra["policy"], "0xb0000");
    assert_eq!(claims.extra["vmpl"], "0");
    assert_eq!(claims.extra["version"], "2");
    assert_eq!(claims.extra["current_fw"], "1.49.3");
    assert_eq!(claims.extra["family_id"], "0".repeat(32));
    assert_eq!(claims.extra["image_id"], "0".repeat(32));
}

#[test]
fn the_trustee_vlek_report_verifies_through_the_asvk() {
    let (_, ark, asvk) = milan();
    let aux = full_table(CertKind::Vlek, &data("trustee_test-vlek.der"), &asvk, &ark);
    let claims = snp::verify(&data("trustee_test-vlek-report.bin"), &aux, NOW).expect("valid");
    assert_eq!(
        hex::encode(&claims.measurement),
        "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0"
    );
    let rd = hex::encode(&claims.report_data);
    assert!(
        rd.starts_with("819770b7") && rd.ends_with("a7bc27ca"),
        "{rd}"
    );
    assert_eq!(
        claims.tcb,
        Tcb::Snp {
            bootloader: 4,
            tee: 0,
            snp: 24,
            microcode: 217
        }
    );
    assert!(!claims.debug);
    assert_eq!(
        claims.platform_id,
        vec![0u8; 64],
        "chip id is masked under a VLEK"
    );
    assert_eq!(claims.extra["version"], "3");
    assert_eq!(claims.extra["signing_key"], "vlek");
    assert_eq!(claims.extra["vmpl"], "1");
    assert_eq!(claims.extra["policy"], "0x30000");
    assert_eq!(claims.extra["current_fw"], "1.55.29");
}

#[test]
fn a_table_with_only_the_vcek_uses_the_pinned_chain() {
    let aux = cert_table(&[(CertKind::Vcek, &data("virtee-sev_vcek_milan.der"))]);
    let claims = snp::verify(&virtee_report(), &aux, NOW).expect("valid");
    assert_eq!(claims.extra["product"], "Milan");
}

#[test]
fn a_vlek_alone_uses_the_pinned_asvk() {
    let aux = cert_table(&[(CertKind::Vlek, &data("trustee_test-vlek.der"))]);
    snp::verify(&data("trustee_test-vlek-report.bin"), &aux, NOW).expect("valid");
}

#[test]
fn one_flipped_bit_anywhere_in_the_signed_range_is_refused() {
    let aux = virtee_aux();
    let good = virtee_report();
    let mut checked = 0;
    for pos in (0..snp::SIGNED_LEN).step_by(7) {
        for bit in [0u8, 5] {
            let mut bad = good.clone();
            bad[pos] ^= 1 << bit;
            match snp::verify(&bad, &aux, NOW) {
                Err(SnpError::BadReportSignature)
                | Err(SnpError::UnsupportedVersion(_))
                | Err(SnpError::UnsupportedSignatureAlgorithm(_))
                | Err(SnpError::UnknownSigningKey(_))
                | Err(SnpError::MissingCertificate(_)) => checked += 1,
                other => panic!("byte {pos:#x} bit {bit}: {other:?}"),
            }
        }
    }
    assert_eq!(checked, 2 * snp::SIGNED_LEN.div_ceil(7));
    // virtee/sev's own negative test: byte 21 changed.
    let mut bad = good;
    bad[21] ^= 0xff;
    assert_eq!(
        snp::verify(&bad, &aux, NOW),
        Err(SnpError::BadReportSignature)
    );
}

#[test]
fn a_flipped_signature_bit_is_refused() {
    let aux = virtee_aux();
    for pos in [0x2A0, 0x2A0 + 47, 0x2A0 + 60, 0x2E8, 0x2E8 + 20, 0x2E8 + 71] {
        let mut bad = virtee_report();
        bad[pos] ^= 1;
        assert!(snp::verify(&bad, &aux, NOW).is_err(), "byte {pos:#x}");
    }
}

#[test]
fn swapped_vceks_are_refused() {
    let (ask, ark, _) = milan();
    let aux = full_table(
        CertKind::Vcek,
        &data("go-sev-guest_vcek.testcer"),
        &ask,
        &ark,
    );
    assert_eq!(
        snp::verify(&virtee_report(), &aux, NOW),
        Err(SnpError::BadReportSignature)
    );
}

#[test]
fn the_genoa_chain_for_a_milan_report_is_the_wrong_product() {
    let (ask, ark, _) = bundle("trustee_genoa_ask_ark_asvk.pem");
    let aux = full_table(
        CertKind::Vcek,
        &data("virtee-sev_vcek_milan.der"),
        &ask,
        &ark,
    );
    let err = snp::verify(&virtee_report(), &aux, NOW).expect_err("refused");
    assert!(
        matches!(
            err,
            SnpError::WrongProduct {
                expected: "Milan",
                found: "Genoa",
                ..
            }
        ),
        "{err:?}"
    );
    // The Genoa ASK alone (no ARK in the table) is refused the same way.
    let aux = cert_table(&[
        (CertKind::Vcek, &data("virtee-sev_vcek_milan.der")),
        (CertKind::Ask, &ask),
    ]);
    assert!(matches!(
        snp::verify(&virtee_report(), &aux, NOW),
        Err(SnpError::WrongProduct { .. })
    ));
}

#[test]
fn a_time_outside_the_vcek_validity_is_refused() {
    let aux = virtee_aux();
    // VCEK valid 2023-04-03 19:23:43 .. 2030-04-03 19:23:43 UTC.
    let before = 1_680_480_000; // 2023-04-03T00:00:00Z
    let after = 1_901_577_600; // 2030-04-04T00:00:00Z
    assert!(matches!(
        snp::verify(&virtee_report(), &aux, before),
        Err(SnpError::NotYetValid { cert: "VCEK", .. })
    ));
    assert!(matches!(
        snp::verify(&virtee_report(), &aux, after),
        Err(SnpError::Expired { cert: "VCEK", .. })
    ));
    // The VLEK's one-year window.
    let (_, ark, asvk) = milan();
    let aux = full_table(CertKind::Vlek, &data("trustee_test-vlek.der"), &asvk, &ark);
    let dec_2025 = 1_765_584_000; // 2025-12-13
    assert!(matches!(
        snp::verify(&data("trustee_test-vlek-report.bin"), &aux, dec_2025),
        Err(SnpError::Expired { cert: "VLEK", .. })
    ));
}

#[test]
fn truncated_reports_are_refused() {
    let aux = virtee_aux();
    let report = virtee_report();
    for len in [0, 1, 0x2A0, snp::REPORT_LEN - 1] {
        assert_eq!(
            snp::verify(&report[..len], &aux, NOW),
            Err(SnpError::Truncated {
                expected: snp::REPORT_LEN,
                found: len
            })
        );
    }
}

#[test]
fn a_report_without_its_signing_certificate_is_refused() {
    let (ask, ark, _) = milan();
    let aux = cert_table(&[(CertKind::Ask, &ask), (CertKind::Ark, &ark)]);
    assert_eq!(
        snp::verify(&virtee_report(), &aux, NOW),
        Err(SnpError::MissingCertificate("VCEK"))
    );
    assert_eq!(
        snp::verify(&virtee_report(), &[], NOW),
        Err(SnpError::MissingCertificate("VCEK"))
    );
}

/// A self-signed "ARK" with AMD's names but another key: RSA-PSS SHA-384 salt 48 like AMD's.
fn forged_ark() -> Vec<u8> {
    use rsa::pkcs8::EncodePublicKey;
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    let (_, ark, _) = milan();
    let mut cert = x509_cert_02::Certificate::from_der(&ark).expect("ark");
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa key");
    let spki = key.to_public_key().to_public_key_der().expect("spki");
    cert.tbs_certificate.subject_public_key_info =
        x509_cert_02::spki::SubjectPublicKeyInfoOwned::from_der(spki.as_bytes()).expect("spki");
    let tbs = cert.tbs_certificate.to_der().expect("tbs");
    let signer = rsa::pss::SigningKey::<sha2::Sha384>::new_with_salt_len(key, 48);
    let sig = signer.sign_with_rng(&mut rand::thread_rng(), &tbs).to_vec();
    cert.signature = x509_cert_02::der::asn1::BitString::from_bytes(&sig).expect("bits");
    cert.to_der().expect("der")
}

#[test]
fn a_forged_self_signed_ark_is_refused() {
    let (ask, _, _) = milan();
    let ark = forged_ark();
    let aux = full_table(
        CertKind::Vcek,
        &data("virtee-sev_vcek_milan.der"),
        &ask,
        &ark,
    );
    assert_eq!(
        snp::verify(&virtee_report(), &aux, NOW),
        Err(SnpError::UnpinnedRoot)
    );
}

#[test]
fn an_ask_signed_by_another_key_breaks_the_chain() {
    // The Milan ASVK in the ASK slot: pinned ARK, real AMD certificate, but not the VCEK's issuer.
    let (_, ark, asvk) = milan();
    let aux = full_table(
        CertKind::Vcek,
        &data("virtee-sev_vcek_milan.der"),
        &asvk,
        &ark,
    );
    assert!(matches!(
        snp::verify(&virtee_report(), &aux, NOW),
        Err(SnpError::ChainBroken { .. })
    ));
}

#[test]
fn pem_certificates_in_the_table_are_accepted() {
    let (ask, ark, _) = milan();
    let vcek =
        x509_cert_02::Certificate::from_der(&data("virtee-sev_vcek_milan.der")).expect("der");
    let pem = x509_cert_02::der::EncodePem::to_pem(&vcek, Default::default()).expect("pem");
    let aux = full_table(CertKind::Vcek, pem.as_bytes(), &ask, &ark);
    snp::verify(&virtee_report(), &aux, NOW).expect("valid");
    let _ = x509_cert_02::Certificate::from_pem(pem.as_bytes()).expect("round trip");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn verify_never_panics_on_random_bytes(
        report in proptest::collection::vec(any::<u8>(), 0..1400),
        aux in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = snp::verify(&report, &aux, NOW);
    }

    #[test]
    fn a_mutated_report_never_verifies_unless_the_byte_is_unsigned_padding(
        pos in 0usize..snp::REPORT_LEN,
        value in any::<u8>(),
    ) {
        let aux = virtee_aux();
        let mut report = virtee_report();
        let changed = report[pos] != value;
        report[pos] = value;
        let result = snp::verify(&report, &aux, NOW);
        // Bytes after S (0x330..) are reserved and outside the signature.
        if changed && pos < 0x330 {
            prop_assert!(result.is_err(), "byte {pos:#x} := {value:#x} verified");
        }
    }

    #[test]
    fn a_mutated_table_never_panics(pos in 0usize..4000, value in any::<u8>()) {
        let mut aux = virtee_aux();
        let pos = pos % aux.len();
        aux[pos] = value;
        let _ = snp::verify(&virtee_report(), &aux, NOW);
    }
}

#[test]
fn a_table_assembled_from_kds_files_keeps_the_intermediate_of_the_signing_key() {
    let bundle = data("trustee_milan_ask_ark_asvk.pem");
    let (ask, ark, asvk) = milan();
    // VCEK report: the ASK is kept, the ASVK dropped.
    let report = virtee_report();
    let aux = snp::assemble_cert_table(&report, &data("virtee-sev_vcek_milan.der"), Some(&bundle))
        .expect("assembled");
    let table = snp::parse_cert_table(&aux).expect("table");
    assert_eq!(table.ask, Some(&ask[..]));
    assert_eq!(table.ark, Some(&ark[..]));
    snp::verify(&report, &aux, NOW).expect("valid");
    // VLEK report: the ASVK goes in the ASK slot.
    let report = data("trustee_test-vlek-report.bin");
    let aux = snp::assemble_cert_table(&report, &data("trustee_test-vlek.der"), Some(&bundle))
        .expect("assembled");
    let table = snp::parse_cert_table(&aux).expect("table");
    assert!(table.vlek.is_some());
    assert_eq!(table.ask, Some(&asvk[..]));
    snp::verify(&report, &aux, NOW).expect("valid");
}
