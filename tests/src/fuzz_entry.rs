//! The entry functions of the fuzz targets (`fuzz/fuzz_targets/*.rs`), shared with the corpus
//! replay test (`tests/tests/fuzz_corpus.rs`) so that CI runs every committed corpus entry and
//! crash reproducer through exactly the code the fuzzer ran.
//!
//! Each entry takes arbitrary bytes and must return without panicking and within bounded memory,
//! whatever they are. Beyond "no panic", some entries assert properties that must hold for every
//! input (a message that decodes re-encodes to the same bytes; a tampered sealed secret never
//! opens); a violated property panics, so the fuzzer reports it as a crash.
//!
//! Inputs that carry two blobs (report and certificates, quote and collateral) start with the
//! length of the first one as a little-endian `u16` ([`split2`], [`join2`]).

use std::path::Path;
use std::sync::OnceLock;

use edgepool_attestation::EvidenceKind;
use edgepool_protocol::dataset::{self, DatasetKey};
use edgepool_protocol::digest::{self, ComputedFile};
use edgepool_protocol::envelope::{Envelope, PROTOCOL_VERSION};
use edgepool_protocol::messages::{Message, MessageKind, SecretResult};
use edgepool_protocol::result_archive::{
    decrypt_result, unzip_to_tree, BeneficiaryPrivateKey, ExtractLimits,
};
use edgepool_protocol::sms::{self, ReleasedSecrets};
use edgepool_protocol::tree::MemTree;
use edgepool_protocol::{Address, Signature, Signer, TaskId};

/// A fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and the corpus folder) and
/// its entry function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    ("envelope", envelope),
    ("message", message),
    ("computed_json", computed_json),
    ("snp_verify", snp_verify),
    ("dcap_verify", dcap_verify),
    ("cert_chain", cert_chain),
    ("result_archive", result_archive),
    ("dataset", dataset),
    ("sms_unseal", sms_unseal),
    ("config", config),
];

/// The topic the envelope target signs and opens on.
pub const TOPIC: &str =
    "edgepool/v1/0x9090909090909090909090909090909090909090/workers/0x0d8b662f44741b155626e10632f2239a5b3cadea/outbox";

/// "Now" for the attestation targets: inside the validity windows of the committed Intel
/// collateral (the value `attestation/tests/dcap.rs` uses).
pub const ATTESTATION_NOW: u64 = 1_751_328_000;

/// The TDX quote and collateral of `attestation/tests/data/intel` (dcap-qvl's samples).
pub const TDX_QUOTE: &[u8] =
    include_bytes!("../../attestation/tests/data/intel/dcap-qvl_tdx_quote");
/// See [`TDX_QUOTE`].
pub const TDX_COLLATERAL: &[u8] =
    include_bytes!("../../attestation/tests/data/intel/dcap-qvl_tdx_quote_collateral.json");
/// The SGX quote and collateral of `attestation/tests/data/intel` (dcap-qvl's samples).
pub const SGX_QUOTE: &[u8] =
    include_bytes!("../../attestation/tests/data/intel/dcap-qvl_sgx_quote");
/// See [`SGX_QUOTE`].
pub const SGX_COLLATERAL: &[u8] =
    include_bytes!("../../attestation/tests/data/intel/dcap-qvl_sgx_quote_collateral.json");

/// The beneficiary key of the iExec result-encryption vectors (RSA-4096, test key only).
const BENEFICIARY_KEY_PEM: &str =
    include_str!("../../protocol/tests/data/iexec/result_encryption/beneficiary_key.pem");

/// The dataset key of the iExec dataset vectors (base64).
const DATASET_KEY_B64: &str = include_str!("../../protocol/tests/data/iexec/dataset/key.b64");

/// Archive limits small enough that one input stays well inside the fuzzer's RSS limit.
pub const FUZZ_LIMITS: ExtractLimits = ExtractLimits {
    max_entries: 256,
    max_total_bytes: 8 << 20,
};

/// Splits `data` into two blobs: a little-endian `u16` length, that many bytes (fewer if the
/// input is shorter), then the rest.
pub fn split2(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (&[], &[]);
    };
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    rest.split_at(len)
}

/// The inverse of [`split2`], for writing seeds. `first` is cut at `u16::MAX` bytes.
pub fn join2(first: &[u8], second: &[u8]) -> Vec<u8> {
    let first = &first[..first.len().min(usize::from(u16::MAX))];
    let len = u16::try_from(first.len()).unwrap_or(u16::MAX);
    [&len.to_le_bytes()[..], first, second].concat()
}

/// The signer of the envelope target's "sign, then open" mode (the poco-1 worker key).
fn envelope_signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| {
        Signer::from_hex("0x8f7078e6b7e655597ef3eed5e43f048afaa670e5c72942176cbf6bcfd5085daa")
            .expect("a valid fixed key")
    })
}

/// The envelope: `Envelope::decode` and `Envelope::open` of raw payloads.
///
/// First byte even: the rest is a payload received on [`TOPIC`]. First byte odd: the second
/// byte is a declared kind and the rest a body, which is signed correctly and then opened, so
/// that the body decoder and [`Message::validate`] are reached behind a valid signature.
pub fn envelope(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let decoded = Envelope::decode(rest);
        let opened = Envelope::open(rest, TOPIC);
        if let Ok(opened) = opened {
            // What opens decodes, and says what the envelope says.
            let envelope = decoded.expect("an envelope that opens decodes");
            assert_eq!(opened.sender, envelope.sender);
            assert_eq!(opened.seq, envelope.seq);
            assert_eq!(opened.message.kind(), envelope.kind);
        }
        return;
    }
    let Some((&kind, body)) = rest.split_first() else {
        return;
    };
    let Ok(kind) = MessageKind::try_from(kind) else {
        return;
    };
    let signer = envelope_signer();
    let mut sealed = Envelope {
        version: PROTOCOL_VERSION,
        kind,
        sender: signer.address(),
        seq: 7,
        sent_at_ms: 1_700_000_000_000,
        body: body.to_vec(),
        signature: Signature::ZERO,
    };
    sealed.signature = signer.sign_personal(sealed.signing_hash(TOPIC).as_bytes());
    let Ok(bytes) = sealed.encode() else {
        return;
    };
    if let Ok(opened) = Envelope::open(&bytes, TOPIC) {
        assert_eq!(opened.sender, signer.address());
        assert_eq!(opened.message.kind(), kind);
        // Opened messages are valid and survive a reseal.
        opened
            .message
            .validate()
            .expect("opened messages are valid");
        let resealed = Envelope::seal(signer, TOPIC, 8, 1, &opened.message)
            .expect("an opened message reseals");
        let again = Envelope::open(&resealed, TOPIC).expect("a resealed message opens");
        assert_eq!(again.message, opened.message);
    }
    // Opening on another topic always fails: the topic is signed.
    assert!(Envelope::open(&bytes, "edgepool/v1/other").is_err());
}

/// Every message decoder: postcard of [`Message`] (each variant's body), then
/// [`Message::validate`]; a decoded message re-encodes to the bytes it came from.
pub fn message(data: &[u8]) {
    let Ok((message, rest)) = postcard::take_from_bytes::<Message>(data) else {
        return;
    };
    let _ = message.validate();
    let _ = message.task_id();
    let encoded = postcard::to_allocvec(&message).expect("a decoded message encodes");
    // postcard is canonical for our types except for non-minimal varints, which it accepts:
    // compare by value, not by bytes.
    let (again, tail) =
        postcard::take_from_bytes::<Message>(&encoded).expect("a re-encoded message decodes");
    assert!(tail.is_empty());
    assert_eq!(again, message);
    assert!(encoded.len() <= data.len() - rest.len());
}

/// `computed.json`: [`ComputedFile::parse`] and the result digest of an output folder holding
/// it (which follows `deterministic-output-path` and `callback-data`).
pub fn computed_json(data: &[u8]) {
    let parsed = ComputedFile::parse(data);
    let mut tree = MemTree::new();
    let inserted = tree
        .insert_file("/iexec_out/computed.json", data.to_vec())
        .and_then(|()| tree.insert_file("/iexec_out/result.txt", b"42\n".to_vec()))
        .and_then(|()| tree.insert_file("/iexec_out/sub/a.txt", b"a".to_vec()));
    assert!(inserted.is_ok());
    let from_tree = ComputedFile::read_from(&tree, "/iexec_out");
    assert_eq!(parsed.is_ok(), from_tree.is_ok());
    let _ = digest::result_digest(&tree, "/iexec_out");
    if let Ok(computed) = parsed {
        if let Some(callback) = computed.callback() {
            let _ = digest::web3_digest(callback);
        }
        if let Some(path) = &computed.deterministic_output_path {
            let _ = digest::path_digest(&tree, path);
        }
    }
}

/// The public SEV-SNP evidence the SNP target mutates (see `fuzz/README.md` for provenance):
/// report, then aux (the VCEK or VLEK in DER, and the AMD chain in PEM when present).
pub const SNP_EVIDENCE: [(&[u8], &[&[u8]]); 4] = [
    (
        include_bytes!("../../fuzz/seeds/snp/virtee-sev_report_milan.bin"),
        &[
            include_bytes!("../../fuzz/seeds/snp/virtee-sev_vcek_milan.der"),
            include_bytes!("../../fuzz/seeds/snp/trustee_milan_ask_ark_asvk.pem"),
        ],
    ),
    (
        include_bytes!("../../fuzz/seeds/snp/go-sev-guest_attestation.bin"),
        &[
            include_bytes!("../../fuzz/seeds/snp/go-sev-guest_vcek.testcer"),
            include_bytes!("../../fuzz/seeds/snp/trustee_milan_ask_ark_asvk.pem"),
        ],
    ),
    (
        include_bytes!("../../fuzz/seeds/snp/trustee_test-vlek-report.bin"),
        &[
            include_bytes!("../../fuzz/seeds/snp/trustee_test-vlek.der"),
            include_bytes!("../../fuzz/seeds/snp/trustee_genoa_ask_ark_asvk.pem"),
        ],
    ),
    (
        include_bytes!("../../fuzz/seeds/snp/virtee-sev_report_milan.bin"),
        &[include_bytes!(
            "../../fuzz/seeds/snp/virtee-sev_vcek_milan.der"
        )],
    ),
];

/// Applies a compact mutation to `base`, so that a target can explore around large valid
/// evidence while its corpus entries stay a few bytes long.
///
/// `spec` is `cut(u16 LE) ‖ n(u8) ‖ n × (offset(u16 LE) ‖ xor(u8)) ‖ tail`: keep the first `cut`
/// bytes of `base`, XOR one byte at each offset (modulo the kept length), append `tail`.
/// A spec shorter than its header leaves `base` as it is.
pub fn patch(base: &[u8], spec: &[u8]) -> Vec<u8> {
    let Some((cut, rest)) = spec.split_first_chunk::<2>() else {
        return base.to_vec();
    };
    let cut = usize::from(u16::from_le_bytes(*cut)).min(base.len());
    let mut out = base[..cut].to_vec();
    let Some((&n, mut rest)) = rest.split_first() else {
        return out;
    };
    for _ in 0..n {
        let Some((p, more)) = rest.split_first_chunk::<3>() else {
            break;
        };
        rest = more;
        if !out.is_empty() {
            let at = usize::from(u16::from_le_bytes([p[0], p[1]])) % out.len();
            out[at] ^= p[2];
        }
    }
    out.extend_from_slice(rest);
    out
}

/// The inverse of [`patch`] for seeds: no patch, keep everything, no tail.
pub const UNPATCHED: [u8; 3] = [0xff, 0xff, 0];

/// The SEV-SNP verifier, `snp::verify(report, aux)` at [`ATTESTATION_NOW`]. `data[0]` picks:
/// below 0x80, [`patch`]es of one of [`SNP_EVIDENCE`] (`data[0] % 8` selects the evidence and
/// whether the report or the aux is patched); otherwise arbitrary bytes ([`split2`]).
pub fn snp_verify(data: &[u8]) {
    let Some((&mode, spec)) = data.split_first() else {
        return;
    };
    if mode >= 0x80 {
        let (report, aux) = split2(spec);
        let _ = edgepool_attestation::snp::verify(report, aux, ATTESTATION_NOW);
        return;
    }
    let (report, aux) = SNP_EVIDENCE[usize::from(mode % 4)];
    let aux = aux.concat();
    let (report, aux) = if mode & 4 == 0 {
        (patch(report, spec), aux)
    } else {
        (report.to_vec(), patch(&aux, spec))
    };
    let _ = edgepool_attestation::snp::verify(&report, &aux, ATTESTATION_NOW);
}

/// The DCAP verifier, `dcap::verify` at [`ATTESTATION_NOW`]. `data[0]` picks: 0 and 1, a
/// [`patch`] of the committed TDX or SGX quote with its valid collateral; 2 and 3, the valid
/// quote with a patched collateral; otherwise arbitrary bytes ([`split2`]: quote, collateral),
/// verified as TDX and as SGX.
pub fn dcap_verify(data: &[u8]) {
    let Some((&mode, spec)) = data.split_first() else {
        return;
    };
    let (kind, quote, collateral) = match mode % 2 {
        0 => (EvidenceKind::Tdx, TDX_QUOTE, TDX_COLLATERAL),
        _ => (EvidenceKind::Sgx, SGX_QUOTE, SGX_COLLATERAL),
    };
    let verify = |quote: &[u8], collateral: &[u8]| {
        let _ = edgepool_attestation::dcap::verify(kind, quote, collateral, ATTESTATION_NOW);
    };
    match mode {
        0 | 1 => verify(&patch(quote, spec), collateral),
        2 | 3 => verify(quote, &patch(collateral, spec)),
        _ => {
            let (quote, collateral) = split2(spec);
            for kind in [EvidenceKind::Tdx, EvidenceKind::Sgx] {
                let _ =
                    edgepool_attestation::dcap::verify(kind, quote, collateral, ATTESTATION_NOW);
            }
        }
    }
}

/// Certificate chains: one chain of the valid TDX evidence ([`TDX_QUOTE`], [`TDX_COLLATERAL`]) is
/// replaced, chosen by `data[0] % 4`: the TCB info issuer chain, the QE identity issuer chain, the
/// PCK chain (which the collateral may carry instead of the quote; its base is the TCB chain) or
/// the PCK CRL issuer chain. Below 0x80 the new chain is a [`patch`] of the original PEM,
/// otherwise the bytes themselves. Everything before the chain checks is valid, so the PEM and
/// DER parsing, the chain building and the CRL lookups see the fuzzed bytes.
pub fn cert_chain(data: &[u8]) {
    static COLLATERAL: OnceLock<serde_json::Map<String, serde_json::Value>> = OnceLock::new();
    let Some((&which, spec)) = data.split_first() else {
        return;
    };
    let collateral = COLLATERAL.get_or_init(|| {
        serde_json::from_slice(TDX_COLLATERAL).expect("the committed collateral is a JSON object")
    });
    let field = match which % 4 {
        0 => "tcb_info_issuer_chain",
        1 => "qe_identity_issuer_chain",
        2 => "pck_certificate_chain",
        _ => "pck_crl_issuer_chain",
    };
    let pem = if which < 0x80 {
        let base = collateral
            .get(field)
            .or_else(|| collateral.get("tcb_info_issuer_chain"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        patch(base.as_bytes(), spec)
    } else {
        spec.to_vec()
    };
    let mut collateral = collateral.clone();
    collateral.insert(
        field.to_owned(),
        serde_json::Value::String(String::from_utf8_lossy(&pem).into_owned()),
    );
    let Ok(json) = serde_json::to_vec(&collateral) else {
        return;
    };
    let _ =
        edgepool_attestation::dcap::verify(EvidenceKind::Tdx, TDX_QUOTE, &json, ATTESTATION_NOW);
}

fn beneficiary_key() -> &'static BeneficiaryPrivateKey {
    static KEY: OnceLock<BeneficiaryPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        BeneficiaryPrivateKey::parse(BENEFICIARY_KEY_PEM).expect("the committed test key parses")
    })
}

/// Result archives: [`decrypt_result`] with the vectors' beneficiary key and [`unzip_to_tree`]
/// of the same bytes, under [`FUZZ_LIMITS`]; a decrypted payload is unzipped too.
pub fn result_archive(data: &[u8]) {
    if let Ok(tree) = unzip_to_tree(data, &FUZZ_LIMITS) {
        assert!(tree.entry_count() <= FUZZ_LIMITS.max_entries);
        assert!(tree.total_bytes() <= FUZZ_LIMITS.max_total_bytes);
    }
    if let Ok(plain) = decrypt_result(data, beneficiary_key(), &FUZZ_LIMITS) {
        assert!(plain.len() as u64 <= FUZZ_LIMITS.max_total_bytes);
        let _ = unzip_to_tree(&plain, &FUZZ_LIMITS);
    }
}

/// Dataset decryption: `data` as an encrypted dataset under the vectors' key, with its true
/// checksum (so that decryption is reached) and a wrong one; the slice and the streaming
/// decryptors agree.
pub fn dataset(data: &[u8]) {
    static KEY: OnceLock<DatasetKey> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        DatasetKey::from_base64(DATASET_KEY_B64.trim()).expect("the committed key is base64")
    });
    let checksum = dataset::checksum(data);
    let whole = dataset::decrypt_checked(key, &checksum, data);
    let mut streamed = Vec::new();
    let stream = dataset::decrypt_stream_checked(key, &checksum, data, &mut streamed);
    match (&whole, &stream) {
        (Ok(plain), Ok(_)) => assert_eq!(plain, &streamed),
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => {
            panic!("slice and stream decryption disagree: {whole:?} vs {stream:?}")
        }
        (Err(_), Err(_)) => {}
    }
    let wrong = edgepool_protocol::Digest::from([0x55; 32]);
    if wrong != checksum {
        assert!(dataset::decrypt_checked(key, &wrong, data).is_err());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = DatasetKey::from_base64(text);
    }
}

/// The SMS seal: `data[0]` picks a mode.
///
/// - 0: `sms::unseal` of a random answer (`sender_public_key(32) ‖ nonce(12) ‖ ciphertext`);
///   it must never open.
/// - 1: the plaintext decoder (`version ‖ postcard(ReleasedSecrets)`, what follows a
///   successful AES-GCM open).
/// - otherwise: a real seal of secrets taken from the input, then one byte of the answer
///   flipped: it opens untouched and never opens tampered.
pub fn sms_unseal(data: &[u8]) {
    let rng = ring::rand::SystemRandom::new();
    let task_id = TaskId::from([0x11; 32]);
    let challenge = Address::from([0x22; 20]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            let (Some((sender, rest)), true) = (rest.split_first_chunk::<32>(), rest.len() >= 44)
            else {
                return;
            };
            let Some((nonce, ciphertext)) = rest.split_first_chunk::<12>() else {
                return;
            };
            let Ok((private, _public)) = sms::ephemeral_key(&rng) else {
                return;
            };
            let answer = SecretResult::Sealed {
                sender_public_key: *sender,
                nonce: *nonce,
                ciphertext: ciphertext.to_vec(),
            };
            assert!(sms::unseal(private, &answer, &task_id, &challenge).is_err());
        }
        1 => {
            let _ = postcard::from_bytes::<ReleasedSecrets>(rest);
        }
        _ => {
            let Some((flip, rest)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let Some((enclave_key, rest)) = rest.split_first_chunk::<32>() else {
                return;
            };
            let secrets = ReleasedSecrets {
                dataset_key: (mode & 2 == 0).then_some([mode; 32]),
                enclave_key: *enclave_key,
                beneficiary_key: (!rest.is_empty())
                    .then(|| String::from_utf8_lossy(rest).into_owned()),
            };
            let Ok((private, public)) = sms::ephemeral_key(&rng) else {
                return;
            };
            let Ok(sealed) = sms::seal(&secrets, &public, &task_id, &challenge, &rng) else {
                return;
            };
            let SecretResult::Sealed {
                sender_public_key,
                nonce,
                mut ciphertext,
            } = sealed
            else {
                panic!("seal returned a refusal");
            };
            let mut sender_public_key = sender_public_key;
            let mut nonce = nonce;
            let at = usize::from(u16::from_le_bytes(*flip));
            let total = 32 + 12 + ciphertext.len();
            let tampered = at < total;
            if tampered {
                let bit = 1u8 << (at % 8);
                match at {
                    0..32 => sender_public_key[at] ^= bit,
                    32..44 => nonce[at - 32] ^= bit,
                    _ => ciphertext[at - 44] ^= bit,
                }
            }
            let answer = SecretResult::Sealed {
                sender_public_key,
                nonce,
                ciphertext,
            };
            let opened = sms::unseal(private, &answer, &task_id, &challenge);
            if tampered {
                assert!(opened.is_err(), "a tampered sealed answer opened");
            } else {
                assert_eq!(opened.ok().as_ref(), Some(&secrets));
            }
        }
    }
}

/// Configuration parsing: the agent's `config::from_str` over TOML text, with `EDGEPOOL_*`
/// environment overrides taken from the input, and the attestation `Policy::from_toml_str`.
///
/// The input is the TOML text, then optionally a NUL byte and `NAME=value` lines.
pub fn config(data: &[u8]) {
    let (text, env) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let environment: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = edgepool_agent::config::from_str(&text, Path::new("fuzz.toml"), environment);
    let _ = edgepool_attestation::policy::Policy::from_toml_str(&text);
}
