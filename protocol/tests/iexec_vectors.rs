//! Every PoCo, EIP-191, tag, result-digest and upstream known-answer vector of
//! `tests/data/iexec/vectors.json` (made by the iExec SDK, ethers.js and iExec's Java code).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use edgepool_protocol::digest::{path_digest, web3_digest};
use edgepool_protocol::hash::{keccak256, keccak256_concat, sha256};
use edgepool_protocol::poco::{self, ContributionHashes, WorkerpoolAuthorization};
use edgepool_protocol::signature::eip191_hash;
use edgepool_protocol::tags::Tag;
use edgepool_protocol::tree::MemTree;
use edgepool_protocol::{Address, Bytes32, DealId, Digest, Signature, Signer, TaskId};
use serde_json::Value;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/iexec")
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(data_dir().join("vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn hex_bytes(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap()
}

/// Loads a directory of the vector set into a MemTree (files and subdirectories).
fn load_tree(dir: &Path) -> MemTree {
    fn walk(tree: &mut MemTree, base: &Path, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            if path.is_dir() {
                tree.insert_dir(&rel).unwrap();
                walk(tree, base, &path);
            } else {
                tree.insert_file(&rel, std::fs::read(&path).unwrap())
                    .unwrap();
            }
        }
    }
    let mut tree = MemTree::new();
    walk(&mut tree, dir, dir);
    tree
}

#[test]
fn poco_cases_match_byte_for_byte() {
    let v = vectors();
    let cases = v["poco"]["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let id = s(case, "id");
        let deal: DealId = s(case, "dealid").parse().unwrap();
        let index = case["task_index"].as_u64().unwrap();
        let task = poco::task_id(&deal, index);
        assert_eq!(task.to_string(), s(case, "taskid"), "{id} taskid");

        let worker = Signer::from_hex(s(case, "worker_private_key")).unwrap();
        let worker_address: Address = s(case, "worker_address").parse().unwrap();
        assert_eq!(worker.address(), worker_address, "{id} worker address");
        assert_eq!(
            worker.address().to_string(),
            s(case, "worker_address"),
            "{id} EIP-55"
        );

        let digest: Digest = s(case, "result_digest").parse().unwrap();
        let hashes = ContributionHashes::new(&worker_address, &task, &digest);
        assert_eq!(
            hashes.result_hash.to_string(),
            s(case, "result_hash"),
            "{id} result_hash"
        );
        assert_eq!(
            hashes.result_seal.to_string(),
            s(case, "result_seal"),
            "{id} result_seal"
        );
        assert_eq!(
            keccak256(&hex_bytes(s(case, "result_seal_packed_input"))),
            hashes.result_seal
        );

        let auth = &case["workerpool_authorization"];
        let scheduler = Signer::from_hex(s(auth, "scheduler_private_key")).unwrap();
        assert_eq!(
            scheduler.address().to_string(),
            s(auth, "scheduler_address")
        );
        let challenge: Address = s(auth, "enclave_challenge").parse().unwrap();
        let signed = WorkerpoolAuthorization::sign(&scheduler, worker_address, task, challenge);
        assert_eq!(
            signed.hash().to_string(),
            s(auth, "hash"),
            "{id} authorization hash"
        );
        assert_eq!(
            eip191_hash(signed.hash().as_bytes()).to_string(),
            s(auth, "eth_signed_message_hash"),
            "{id} eth signed message hash"
        );
        assert_eq!(
            signed.signature.to_string(),
            s(auth, "signature"),
            "{id} signature"
        );
        signed.verify(scheduler.address()).unwrap();
        assert!(
            signed.verify(worker_address).is_err(),
            "{id}: the worker did not sign"
        );

        // The scheduler's JSON (Jackson shape) deserializes into the same authorization.
        let from_json: WorkerpoolAuthorization =
            serde_json::from_value(auth["json_as_sent_by_scheduler"].clone()).unwrap();
        assert_eq!(from_json, signed, "{id} JSON shape");

        if let Some(tee) = case.get("tee") {
            let enclave = Signer::from_hex(s(tee, "enclave_challenge_private_key")).unwrap();
            assert_eq!(enclave.address(), challenge, "{id} enclave address");
            assert!(signed.is_tee());
            let message = poco::enclave_message_hash(&hashes.result_hash, &hashes.result_seal);
            assert_eq!(message.to_string(), s(tee, "enclave_message_hash"));
            assert_eq!(
                hashes.enclave_signature(&enclave).to_string(),
                s(tee, "enclave_signature"),
                "{id} enclave signature"
            );
            let challenge_hash = poco::post_compute_challenge_hash(&task, &worker_address);
            assert_eq!(
                challenge_hash.to_string(),
                s(tee, "post_compute_challenge_hash")
            );
            assert_eq!(
                enclave.sign_personal(challenge_hash.as_bytes()).to_string(),
                s(tee, "post_compute_challenge_signature")
            );
        } else {
            assert!(
                challenge.is_zero(),
                "{id}: standard tasks use the zero challenge"
            );
            assert!(!signed.is_tee());
        }
    }
}

#[test]
fn web3_result_digest_hashes_the_decoded_callback_bytes() {
    let v = vectors();
    for case in v["poco"]["web3_result_digest"].as_array().unwrap() {
        let digest = web3_digest(s(case, "callback_data")).unwrap();
        assert_eq!(digest.to_string(), s(case, "result_digest"));
        assert_ne!(
            digest.to_string(),
            s(case, "rust_post_compute_v0_variant_keccak_of_utf8_string")
        );
    }
}

#[test]
fn eip191_vectors_sign_and_recover_byte_for_byte() {
    let v = vectors();
    let cases = v["eip191"]["vectors"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let id = s(case, "id");
        let signer = Signer::from_hex(s(case, "private_key")).unwrap();
        assert_eq!(signer.address().to_string(), s(case, "address"), "{id}");
        let message = hex_bytes(s(case, "message_hex"));
        assert_eq!(message.len() as u64, case["message_len"].as_u64().unwrap());
        assert_eq!(
            eip191_hash(&message).to_string(),
            s(case, "eip191_digest"),
            "{id}"
        );
        let signature = signer.sign_personal(&message);
        assert_eq!(
            signature.to_string(),
            s(case, "signature"),
            "{id} signature"
        );
        assert_eq!(signature.0[64] as u64, case["v"].as_u64().unwrap());
        let parsed: Signature = s(case, "signature").parse().unwrap();
        assert_eq!(
            parsed.recover_personal(&message).unwrap().to_string(),
            s(case, "recovered_address"),
            "{id} recovery"
        );
    }
}

#[test]
fn worker_login_signatures_are_raw_ecdsa_over_the_digest() {
    let v = vectors();
    for case in v["worker_login"]["vectors"].as_array().unwrap() {
        let signer = Signer::from_hex(s(case, "private_key")).unwrap();
        let digest: Bytes32 = s(case, "digest").parse().unwrap();
        assert_eq!(
            keccak256(&hex_bytes(s(case, "web3j_decoded_bytes"))),
            digest
        );
        assert_eq!(
            signer.sign_prehashed(digest).to_string(),
            s(case, "signature")
        );
        let parsed: Signature = s(case, "signature").parse().unwrap();
        assert_eq!(parsed.recover_prehashed(digest).unwrap(), signer.address());
    }
}

#[test]
fn tampered_signatures_are_refused() {
    let v = vectors();
    let case = &v["eip191"]["vectors"][0];
    let message = hex_bytes(s(case, "message_hex"));
    let good: Signature = s(case, "signature").parse().unwrap();
    let address: Address = s(case, "address").parse().unwrap();

    let mut flipped = good;
    flipped.0[10] ^= 1;
    assert!(flipped.verify_personal(&message, address).is_err());

    let mut bad_v = good;
    bad_v.0[64] = 29;
    assert!(bad_v.recover_personal(&message).is_err());

    // The malleable twin (n - s, v flipped) recovers the same key but PoCo refuses it.
    let n = hex_bytes("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
    let mut high_s = good;
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = n[i] as i16 - good.0[32 + i] as i16 - borrow;
        high_s.0[32 + i] = d.rem_euclid(256) as u8;
        borrow = if d < 0 { 1 } else { 0 };
    }
    high_s.0[64] = if good.0[64] == 27 { 28 } else { 27 };
    assert_eq!(
        high_s.recover_personal(&message),
        Err(edgepool_protocol::SignatureError::HighS)
    );
    assert!("0x1234".parse::<Signature>().is_err());
}

#[test]
fn tag_vectors_match_the_sdk() {
    let v = vectors();
    let tags = &v["tags"];
    for case in tags["encode"].as_array().unwrap() {
        let input: Vec<String> = serde_json::from_value(case["input"].clone()).unwrap();
        let result = Tag::encode(&input);
        if case["ok"].as_bool().unwrap() {
            assert_eq!(result.unwrap().to_string(), s(case, "value"), "{input:?}");
        } else {
            let err = result.unwrap_err();
            assert_eq!(
                format!("ValidationError: {err}"),
                s(case, "error"),
                "{input:?}"
            );
        }
    }
    for case in tags["decode"].as_array().unwrap() {
        let input = s(case, "input");
        let result = Tag::decode_hex(input);
        if case["ok"].as_bool().unwrap() {
            let expected: Vec<String> = serde_json::from_value(case["value"].clone()).unwrap();
            assert_eq!(result.unwrap(), expected, "{input}");
        } else {
            let err = result.unwrap_err();
            assert_eq!(
                format!("ValidationError: {err}"),
                s(case, "error"),
                "{input}"
            );
        }
    }
    for case in tags["sum"].as_array().unwrap() {
        let input: Vec<Tag> = case["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| Tag::parse_strict(t.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(Tag::sum(&input).to_string(), s(case, "value"));
    }
}

#[test]
fn result_digest_vectors_match_iexec_common() {
    let v = vectors();
    let base = data_dir();
    for case in v["result_digest"]["cases"].as_array().unwrap() {
        let id = s(case, "id");
        let expected = s(case, "result_digest");
        let digest = if id == "dir-empty" {
            // An empty directory cannot live in git: the vector says to create it.
            let mut tree = MemTree::new();
            tree.insert_dir("dir-empty").unwrap();
            path_digest(&tree, "dir-empty").unwrap()
        } else {
            let path = base.join(s(case, "deterministic_output_path"));
            if path.is_dir() {
                path_digest(&load_tree(&path), "").unwrap()
            } else {
                let mut tree = MemTree::new();
                tree.insert_file("result.txt", std::fs::read(&path).unwrap())
                    .unwrap();
                path_digest(&tree, "result.txt").unwrap()
            }
        };
        assert_eq!(digest.to_string(), expected, "{id}");
        if let Some(variant) = case.get("rust_post_compute_v0_variant_skips_empty_files") {
            assert_ne!(digest.to_string(), variant.as_str().unwrap(), "{id}");
        }
        if let Some(files) = case["file_sha256"].as_object() {
            let dir = base.join(s(case, "deterministic_output_path"));
            for (name, want) in files {
                let file = if dir.is_dir() {
                    dir.join(name)
                } else {
                    dir.clone()
                };
                if file.is_file() {
                    assert_eq!(sha256(&std::fs::read(&file).unwrap()).to_string(), *want);
                }
            }
        }
    }
}

#[test]
fn upstream_known_answer_tests_match() {
    let v = vectors();
    let base = data_dir();
    for case in v["upstream_kats"]["vectors"].as_array().unwrap() {
        let id = s(case, "id");
        let expected = s(case, "expected_upstream");
        if id.starts_with("commons-poco-ChainUtilsTests") {
            let deal: DealId = s(&case["input"], "dealid").parse().unwrap();
            let index = case["input"]["task_index"].as_u64().unwrap();
            assert_eq!(poco::task_id(&deal, index).to_string(), expected, "{id}");
        } else if id.starts_with("commons-poco-HashUtilsTests") {
            let parts: Vec<Vec<u8>> = case["input"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| hex_bytes(p.as_str().unwrap()))
                .collect();
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            assert_eq!(keccak256_concat(&refs).to_string(), expected, "{id}");
            if refs.len() == 3 {
                let worker: Address = case["input"][0].as_str().unwrap().parse().unwrap();
                let task: TaskId = case["input"][1].as_str().unwrap().parse().unwrap();
                let challenge: Address = case["input"][2].as_str().unwrap().parse().unwrap();
                assert_eq!(
                    poco::authorization_hash(&worker, &task, &challenge).to_string(),
                    expected
                );
            }
        } else if id.starts_with("commons-poco-SignatureUtilsTests.shouldSignatureBeValid") {
            let hash: Bytes32 = s(&case["input"], "hash").parse().unwrap();
            let sig: Signature = s(&case["input"], "signature").parse().unwrap();
            assert_eq!(
                sig.recover_personal(hash.as_bytes()).unwrap().to_string(),
                expected
            );
        } else if id.starts_with("commons-poco-SignatureUtilsTests.shouldHashAndSign") {
            let signer = Signer::from_hex(s(&case["input"], "private_key")).unwrap();
            let decoded = hex_bytes(s(&case["input"], "web3j_decoded_bytes"));
            let digest = keccak256(&decoded);
            assert_eq!(digest.to_string(), s(&case["input"], "keccak256"));
            assert_eq!(signer.sign_prehashed(digest).to_string(), expected, "{id}");
        } else if id == "iexec-common-FileHashUtilsTests.shouldGetFileSha256" {
            let file = std::fs::read(base.join(s(&case["files"], "file"))).unwrap();
            let mut tree = MemTree::new();
            tree.insert_file("f", file).unwrap();
            assert_eq!(path_digest(&tree, "f").unwrap().to_string(), expected);
        } else if id == "iexec-common-FileHashUtilsTests.shouldGetFileTreeSha256SinceFileTree" {
            let tree = load_tree(&base.join(s(&case["files"], "directory")));
            assert_eq!(path_digest(&tree, "").unwrap().to_string(), expected);
        } else {
            // The AES and RSA fixtures are covered by dataset_vectors.rs and result_vectors.rs.
            assert!(
                id.starts_with("iexec-common-CipherUtilsTests"),
                "unhandled KAT {id}"
            );
        }
    }
}
