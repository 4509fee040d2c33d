//! The seeds of the fuzz targets: valid inputs taken from the committed vectors and from the
//! encoders of the protocol crate, in the input format of each [`crate::fuzz_entry`] function.
//!
//! The ignored test `write_fuzz_seeds` (`tests/fuzz_corpus.rs`) writes them to
//! `fuzz/corpus/<target>/seed-<name>`; the replay test runs them on every build.

use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::messages::{samples, Message};
use edgepool_protocol::sms::ReleasedSecrets;

use crate::fuzz_entry::{join2, SNP_EVIDENCE, TOPIC, UNPATCHED};

const ENCRYPTED_RESULT: &[u8] =
    include_bytes!("../../protocol/tests/data/iexec/result_encryption/encrypted-iexec_out.zip");
const PLAIN_RESULT: &[u8] =
    include_bytes!("../../protocol/tests/data/iexec/result_encryption/iexec_out.zip");
const COMPUTED_JSON: &[u8] =
    include_bytes!("../../protocol/tests/data/iexec/result_encryption/iexec_out/computed.json");
const DATASET_HELLO: &[u8] =
    include_bytes!("../../protocol/tests/data/iexec/dataset/cli/hello.txt.enc");
const DATASET_16: &[u8] =
    include_bytes!("../../protocol/tests/data/iexec/dataset/enc_16bytes.bin.enc");
const DATASET_EMPTY: &[u8] =
    include_bytes!("../../protocol/tests/data/iexec/dataset/enc_empty.bin.enc");
const DATASET_WRONG_KEY: &[u8] =
    include_bytes!("../../protocol/tests/data/iexec/dataset/negative/dataset-neg-wrong-key.bin");
const AGENT_TOML: &[u8] = include_bytes!("../../deploy/agent.toml");

/// One seed: the target, a file name (without the `seed-` prefix) and the input.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The target name (see [`crate::fuzz_entry::TARGETS`]).
    pub target: &'static str,
    /// A short file name.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed {
        target,
        name: name.into(),
        bytes: bytes.into(),
    }
}

/// Every generated seed.
///
/// # Panics
/// When a sample message no longer seals (a bug in the protocol crate's samples).
pub fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    let worker = samples::worker();
    for (i, message) in samples::all().iter().enumerate() {
        let kind = message.kind();
        let body = postcard::to_allocvec(message).expect("samples encode");
        out.push(seed("message", format!("{kind}"), body.clone()));
        let sealed = Envelope::seal(&worker, TOPIC, 1 + i as u64, 1_700_000_000_000, message)
            .expect("samples seal");
        out.push(seed(
            "envelope",
            format!("sealed-{kind}"),
            [&[0u8][..], &sealed].concat(),
        ));
        out.push(seed(
            "envelope",
            format!("body-{kind}"),
            [&[1u8, u8::from(kind)][..], &body].concat(),
        ));
    }
    out.push(seed("message", "refused-secret", {
        let refused = Message::SecretResponse(edgepool_protocol::messages::SecretResponse {
            task_id: samples::task_id(),
            ephemeral_public_key: [9; 32],
            result: edgepool_protocol::messages::SecretResult::Refused {
                reason: "policy".into(),
            },
        });
        postcard::to_allocvec(&refused).expect("encodes")
    }));

    out.push(seed("computed_json", "vector", COMPUTED_JSON));
    for (name, json) in [
        (
            "path-file",
            r#"{"deterministic-output-path":"/iexec_out/result.txt"}"#,
        ),
        (
            "path-dir",
            r#"{"deterministic-output-path":"/iexec_out/sub"}"#,
        ),
        (
            "path-relative",
            r#"{"deterministic-output-path":"sub/a.txt"}"#,
        ),
        (
            "callback",
            r#"{"callback-data":"0x0000000000000000000000000000000000000000000000000000000000000001"}"#,
        ),
        (
            "all-keys",
            r#"{"deterministic-output-path":"/iexec_out","callback-data":"","task-id":"0x01","result-digest":"0x02","enclave-signature":"0x03","error-message":"x"}"#,
        ),
    ] {
        out.push(seed("computed_json", name, json));
    }

    // Valid evidence, unpatched (mode 0/1: TDX/SGX), and one small raw quote header.
    out.push(seed(
        "dcap_verify",
        "tdx",
        [&[0u8][..], &UNPATCHED].concat(),
    ));
    out.push(seed(
        "dcap_verify",
        "sgx",
        [&[1u8][..], &UNPATCHED].concat(),
    ));
    out.push(seed(
        "dcap_verify",
        "tdx-collateral",
        [&[2u8][..], &UNPATCHED].concat(),
    ));
    out.push(seed(
        "dcap_verify",
        "raw-header",
        join2(&[4, 0, 2, 0, 0x81, 0, 0, 0], b"{}"),
    ));
    for (which, field) in [
        (0u8, "tcb_info_issuer_chain"),
        (1, "qe_identity_issuer_chain"),
        (2, "pck_certificate_chain"),
        (3, "pck_crl_issuer_chain"),
    ] {
        out.push(seed(
            "cert_chain",
            field,
            [&[which][..], &UNPATCHED].concat(),
        ));
    }
    for i in 0..SNP_EVIDENCE.len() {
        let i = u8::try_from(i).expect("four pieces of evidence");
        out.push(seed(
            "snp_verify",
            format!("evidence-{i}"),
            [&[i][..], &UNPATCHED].concat(),
        ));
    }
    out.push(seed(
        "snp_verify",
        "raw",
        [
            &[0x80u8][..],
            &join2(SNP_EVIDENCE[0].0, SNP_EVIDENCE[0].1[0]),
        ]
        .concat(),
    ));

    out.push(seed("result_archive", "encrypted", ENCRYPTED_RESULT));
    out.push(seed("result_archive", "plain", PLAIN_RESULT));

    for (name, bytes) in [
        ("hello", DATASET_HELLO),
        ("16bytes", DATASET_16),
        ("empty", DATASET_EMPTY),
        ("wrong-key", DATASET_WRONG_KEY),
    ] {
        out.push(seed("dataset", name, bytes));
    }

    let mut tampered = vec![2u8, 0xff, 0xff];
    tampered.extend_from_slice(&[0x42; 32]);
    out.push(seed("sms_unseal", "roundtrip-no-flip", tampered.clone()));
    tampered.extend_from_slice(b"-----BEGIN PUBLIC KEY-----\n");
    tampered[1] = 50;
    tampered[2] = 0;
    out.push(seed("sms_unseal", "roundtrip-flip", tampered));
    let secrets = ReleasedSecrets {
        dataset_key: Some([1; 32]),
        enclave_key: [2; 32],
        beneficiary_key: Some("pem".into()),
    };
    out.push(seed(
        "sms_unseal",
        "plaintext",
        [
            &[1u8][..],
            &postcard::to_allocvec(&secrets).expect("encodes"),
        ]
        .concat(),
    ));
    out.push(seed("sms_unseal", "random", [0u8; 80].to_vec()));

    out.push(seed("config", "deploy-example", AGENT_TOML));
    out.push(seed(
        "config",
        "with-env",
        [
            AGENT_TOML,
            b"\0EDGEPOOL_AGENT_SLOTS=3\nEDGEPOOL_LOG_LEVEL=debug\n",
        ]
        .concat(),
    ));
    out.push(seed(
        "config",
        "policy",
        "accepted_kinds = [\"sev-snp\", \"tdx\"]\naccepted_tcb_statuses = [\"UpToDate\"]\n[measurements]\ntdx = []\n".as_bytes().to_vec(),
    ));
    out
}
