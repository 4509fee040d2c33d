//! `edgepool-agent attest`, run as a real process on the real SEV-SNP vectors
//! (attestation/tests/data/snp, see its PROVENANCE.md).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Inside every vector certificate's validity window.
const NOW: &str = "2025-06-01T00:00:00Z";

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../attestation/tests/data/snp")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgepool-agent"))
        .args(args)
        .env_remove("EDGEPOOL_CONFIG")
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn verify_virtee(evidence: &str) -> Output {
    let vcek = data("virtee-sev_vcek_milan.der");
    let chain = data("trustee_milan_ask_ark_asvk.pem");
    let args = vec![
        "attest",
        "verify",
        "--kind",
        "snp",
        "--evidence",
        evidence,
        "--cert",
        &vcek,
        "--chain",
        &chain,
        "--now",
        NOW,
        "--json",
    ];
    run(&args)
}

#[test]
fn the_hex_virtee_report_is_valid_and_its_claims_are_printed() {
    let out = verify_virtee(&data("virtee-sev_report_milan.hex"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["valid"], true);
    let c = &v["claims"];
    assert_eq!(c["kind"], "sev-snp");
    assert_eq!(
        c["measurement"],
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(c["tcb"]["bootloader"], 3);
    assert_eq!(c["tcb"]["snp"], 8);
    assert_eq!(c["tcb"]["microcode"], 115);
    assert_eq!(c["debug"], false);
    assert_eq!(c["extra"]["current_fw"], "1.52.4");
}

#[test]
fn the_text_output_says_valid() {
    let vcek = data("virtee-sev_vcek_milan.der");
    let report = data("virtee-sev_report_milan.hex");
    // No --chain: the pinned Milan chain is used.
    let out = run(&[
        "attest",
        "verify",
        "--kind",
        "snp",
        "--evidence",
        &report,
        "--cert",
        &vcek,
        "--now",
        NOW,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("verdict: valid\n"), "{text}");
    assert!(text.contains("measurement: 7a1e5c26"), "{text}");
}

#[test]
fn a_tampered_report_is_refused_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(data("virtee-sev_report_milan.hex")).unwrap();
    let mut bytes = hex::decode(text.trim()).unwrap();
    bytes[0x90] ^= 1; // one bit of the measurement
    let path = tmp.path().join("tampered.bin");
    std::fs::write(&path, &bytes).unwrap();
    let out = verify_virtee(path.to_str().unwrap());
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["valid"], false);
    assert_eq!(v["verified"], false);
    assert!(v["reason"].as_str().unwrap().contains("signature"), "{v}");
}

#[test]
fn the_debug_report_verifies_but_the_default_policy_refuses_it() {
    let out = run(&[
        "attest",
        "verify",
        "--kind",
        "snp",
        "--evidence",
        &data("go-sev-guest_attestation.bin"),
        "--cert",
        &data("go-sev-guest_vcek.testcer"),
        "--chain",
        &data("trustee_milan_ask_ark_asvk.pem"),
        "--now",
        NOW,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["verified"], true);
    assert_eq!(v["valid"], false);
    assert_eq!(v["claims"]["debug"], true);
    assert!(v["reason"].as_str().unwrap().contains("debug"), "{v}");
}

#[test]
fn the_vlek_report_verifies_with_the_trustee_bundle() {
    let out = run(&[
        "attest",
        "verify",
        "--kind",
        "snp",
        "--evidence",
        &data("trustee_test-vlek-report.bin"),
        "--cert",
        &data("trustee_test-vlek.der"),
        "--chain",
        &data("trustee_milan_ask_ark_asvk.pem"),
        "--now",
        NOW,
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["claims"]["extra"]["signing_key"], "vlek");
}

#[test]
fn the_genoa_chain_and_an_expired_time_are_refused() {
    let report = data("virtee-sev_report_milan.hex");
    let vcek = data("virtee-sev_vcek_milan.der");
    let genoa = data("trustee_genoa_ask_ark_asvk.pem");
    let out = run(&[
        "attest",
        "verify",
        "--kind",
        "snp",
        "--evidence",
        &report,
        "--cert",
        &vcek,
        "--chain",
        &genoa,
        "--now",
        NOW,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(json(&out)["reason"].as_str().unwrap().contains("Genoa"));
    let out = verify_virtee(&report);
    assert_eq!(out.status.code(), Some(0));
    let args = vec![
        "attest",
        "verify",
        "--kind",
        "snp",
        "--evidence",
        &report,
        "--cert",
        &vcek,
        "--now",
        "2031-01-01T00:00:00Z",
        "--json",
    ];
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(json(&out)["reason"].as_str().unwrap().contains("expired"));
}

#[test]
fn usage_errors_exit_2_and_missing_files_exit_3() {
    let report = data("virtee-sev_report_milan.hex");
    // snp without --cert
    let out = run(&["attest", "verify", "--kind", "snp", "--evidence", &report]);
    assert_eq!(out.status.code(), Some(2));
    // a bad --now
    let vcek = data("virtee-sev_vcek_milan.der");
    let out = run(&[
        "attest",
        "verify",
        "--kind",
        "snp",
        "--evidence",
        &report,
        "--cert",
        &vcek,
        "--now",
        "yesterday",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // --cert with tdx
    let out = run(&[
        "attest",
        "verify",
        "--kind",
        "tdx",
        "--evidence",
        &report,
        "--cert",
        &vcek,
    ]);
    assert_eq!(out.status.code(), Some(2));
    // an unknown kind (clap)
    let out = run(&["attest", "verify", "--kind", "sev", "--evidence", &report]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "attest",
        "verify",
        "--kind",
        "snp",
        "--evidence",
        "/nonexistent/report",
        "--cert",
        &vcek,
    ]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn show_without_configfs_tsm_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgepool-agent"))
        .args(["attest", "show", "--json", "--config"])
        .arg(tmp.path().join("absent.toml"))
        .env("EDGEPOOL_AGENT_SYSTEM_ROOT", tmp.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["available"], false);
    assert!(
        v["reason"].as_str().unwrap().contains("configfs-tsm"),
        "{v}"
    );
}

fn intel(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../attestation/tests/data/intel")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

/// The virtee report's measurement (PROVENANCE.md).
const VIRTEE_MEASUREMENT: &str =
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";

fn verify_virtee_with_policy(policy: &str) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let report = data("virtee-sev_report_milan.hex");
    let vcek = data("virtee-sev_vcek_milan.der");
    let chain = data("trustee_milan_ask_ark_asvk.pem");
    run(&[
        "attest",
        "verify",
        "--kind",
        "snp",
        "--evidence",
        &report,
        "--cert",
        &vcek,
        "--chain",
        &chain,
        "--now",
        NOW,
        "--json",
        "--policy",
        path.to_str().unwrap(),
    ])
}

#[test]
fn a_policy_file_decides_the_verdict() {
    // The report's own measurement on the allow-list: accepted.
    let out = verify_virtee_with_policy(&format!(
        "[measurements]\nsev-snp = [\"{VIRTEE_MEASUREMENT}\"]\n"
    ));
    assert_eq!(out.status.code(), Some(0), "{}", json(&out));
    // Another measurement only: refused, and the reason says so.
    let out = verify_virtee_with_policy(&format!(
        "[measurements]\nsev-snp = [\"{}\"]\n",
        "00".repeat(48)
    ));
    assert_eq!(out.status.code(), Some(1));
    let reason = json(&out)["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("policy"), "{reason}");
    // A minimum TCB above the reported one (snp 8): refused.
    let out = verify_virtee_with_policy(
        "[min_snp_tcb]\nbootloader = 0\ntee = 0\nsnp = 9\nmicrocode = 0\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", json(&out));
    // SEV-SNP not among the accepted kinds: refused.
    let out = verify_virtee_with_policy("accepted_kinds = [\"tdx\"]\n");
    assert_eq!(out.status.code(), Some(1), "{}", json(&out));
    // A policy file that is not a policy: a config error (exit 4), not a verdict.
    let out = verify_virtee_with_policy("allow_debug = true\n");
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn tdx_and_sgx_quotes_verify_with_their_collateral() {
    // Inside the collateral window (2025-06-19..07-19).
    let now = "2025-07-01T00:00:00Z";
    let out = run(&[
        "attest",
        "verify",
        "--kind",
        "tdx",
        "--evidence",
        &intel("dcap-qvl_tdx_quote"),
        "--collateral",
        &intel("dcap-qvl_tdx_quote_collateral.json"),
        "--now",
        now,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", json(&out));
    let v = json(&out);
    assert!(
        v.to_string().contains("91eb2b44d141d4ece09f0c75c2c53d24"),
        "{v}"
    );
    // The SGX quote verifies, but ConfigurationAndSWHardeningNeeded is not accepted by default.
    let out = run(&[
        "attest",
        "verify",
        "--kind",
        "sgx",
        "--evidence",
        &intel("dcap-qvl_sgx_quote"),
        "--collateral",
        &intel("dcap-qvl_sgx_quote_collateral.json"),
        "--now",
        now,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", json(&out));
    assert!(json(&out)["reason"].as_str().unwrap().contains("policy"));
    // The TDX quote with the SGX collateral: invalid.
    let out = run(&[
        "attest",
        "verify",
        "--kind",
        "tdx",
        "--evidence",
        &intel("dcap-qvl_tdx_quote"),
        "--collateral",
        &intel("dcap-qvl_sgx_quote_collateral.json"),
        "--now",
        now,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(json(&out)["reason"].as_str().unwrap().contains("invalid"));
}

#[test]
fn show_with_the_software_attester_prints_its_claims_and_the_default_policy_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[pool]\naddress = \"0x1111111111111111111111111111111111111111\"\n\
             scheduler = \"0x2222222222222222222222222222222222222222\"\n\
             [agent]\nstate_dir = \"{}\"\nattestation = \"software\"\n",
            tmp.path().join("state").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgepool-agent"))
        .args(["attest", "show", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["claims"]["kind"], "software", "{v}");
    assert!(v["reason"].as_str().unwrap().contains("policy"), "{v}");
}
