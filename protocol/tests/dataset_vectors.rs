//! Every dataset-encryption vector of `tests/data/iexec/vectors.json` (made by the iExec SDK and
//! checked with iexec-common's Java code), and iexec-common's own AES fixture.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use edgepool_protocol::dataset::{self, DatasetError, DatasetKey, Decryptor};
use edgepool_protocol::Digest;
use serde_json::Value;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/iexec")
}

fn read(rel: &str) -> Vec<u8> {
    let path = data_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn vectors() -> Value {
    serde_json::from_slice(&read("vectors.json")).unwrap()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn cases(section: &str) -> Vec<Value> {
    vectors()["dataset_encryption"][section]
        .as_array()
        .unwrap()
        .clone()
}

/// Feeds `encrypted` to a [`Decryptor`] in chunks cycling through `sizes`.
fn decrypt_in_chunks(
    key: &DatasetKey,
    encrypted: &[u8],
    sizes: &[usize],
) -> Result<Vec<u8>, DatasetError> {
    let mut decryptor = Decryptor::new(key);
    let mut out = Vec::new();
    let mut rest = encrypted;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        decryptor.update(chunk, &mut out)?;
        rest = tail;
    }
    decryptor.finish(&mut out)?;
    Ok(out)
}

#[test]
fn every_vector_decrypts_to_its_plaintext_three_ways() {
    for v in cases("vectors") {
        let id = s(&v, "id");
        let key = DatasetKey::from_base64(s(&v, "key_base64")).unwrap();
        let encrypted = read(s(&v, "ciphertext_file"));
        let plain = read(s(&v, "plaintext_file"));
        assert_eq!(
            encrypted.len() as u64,
            v["ciphertext_len"].as_u64().unwrap(),
            "{id}"
        );
        assert_eq!(
            plain.len() as u64,
            v["plaintext_len"].as_u64().unwrap(),
            "{id}"
        );

        assert!(
            dataset::decrypt(&key, &encrypted).unwrap() == plain,
            "{id}: decrypt"
        );

        let mut streamed = Vec::new();
        let n = dataset::decrypt_stream(&key, encrypted.as_slice(), &mut streamed).unwrap();
        assert_eq!(n, plain.len() as u64, "{id}");
        assert!(streamed == plain, "{id}: decrypt_stream");

        for sizes in [&[1][..], &[7], &[4093], &[1, 7, 4093]] {
            assert!(
                decrypt_in_chunks(&key, &encrypted, sizes).unwrap() == plain,
                "{id}: Decryptor in chunks of {sizes:?}"
            );
        }
    }
}

#[test]
fn every_vector_has_the_sdk_checksum() {
    for v in cases("vectors") {
        let encrypted = read(s(&v, "ciphertext_file"));
        let expected: Digest = s(&v, "checksum").parse().unwrap();
        assert_eq!(dataset::checksum(&encrypted), expected, "{}", s(&v, "id"));
        assert_eq!(dataset::checksum(&encrypted).to_string(), s(&v, "checksum"));
    }
}

#[test]
fn re_encrypting_with_the_vector_key_and_iv_gives_the_ciphertext_byte_for_byte() {
    for v in cases("vectors") {
        let id = s(&v, "id");
        let key = DatasetKey::from_base64(s(&v, "key_base64")).unwrap();
        let iv: [u8; 16] = hex::decode(s(&v, "iv_hex").trim_start_matches("0x"))
            .unwrap()
            .try_into()
            .unwrap();
        let plain = read(s(&v, "plaintext_file"));
        let encrypted = read(s(&v, "ciphertext_file"));
        assert!(
            dataset::encrypt(&key, iv, &plain) == encrypted,
            "{id}: encrypt"
        );
        let mut streamed = Vec::new();
        let checksum = dataset::encrypt_stream(&key, iv, plain.as_slice(), &mut streamed).unwrap();
        assert!(streamed == encrypted, "{id}: encrypt_stream");
        assert_eq!(checksum.to_string(), s(&v, "checksum"), "{id}");
    }
}

#[test]
fn negative_vectors_give_their_specific_errors() {
    let negatives = cases("negative_vectors");
    assert_eq!(negatives.len(), 3);
    for v in negatives {
        let id = s(&v, "id");
        let key = DatasetKey::from_base64(s(&v, "key_base64")).unwrap();
        let encrypted = read(s(&v, "ciphertext_file"));
        let err = dataset::decrypt(&key, &encrypted).unwrap_err();
        match id {
            "dataset-neg-wrong-key" => {
                assert_eq!(err, DatasetError::BadPadding);
                // With the on-chain checksum of the (intact) file, it is a wrong key.
                let sum = dataset::checksum(&encrypted);
                assert_eq!(
                    dataset::decrypt_checked(&key, &sum, &encrypted),
                    Err(DatasetError::WrongKey)
                );
            }
            "dataset-neg-truncated" => assert_eq!(err, DatasetError::Truncated { body_len: 31 }),
            "dataset-neg-too-short" => {
                assert!(
                    matches!(err, DatasetError::TooShort { len } if len < 16),
                    "{err}"
                )
            }
            other => panic!("unknown negative vector {other}"),
        }
        // The streaming paths agree with the in-memory one.
        assert_eq!(
            decrypt_in_chunks(&key, &encrypted, &[1, 7]).unwrap_err(),
            err,
            "{id}"
        );
        let mut sink = Vec::new();
        assert_eq!(
            dataset::decrypt_stream(&key, encrypted.as_slice(), &mut sink).unwrap_err(),
            err,
            "{id}"
        );
    }
}

#[test]
fn the_cli_key_file_parses_with_its_final_newline() {
    let text = String::from_utf8(read("dataset/cli/hello.txt.key")).unwrap();
    let key = DatasetKey::from_base64(&text).unwrap();
    assert_eq!(key.to_base64().as_str(), text.trim());
    let plain = dataset::decrypt(&key, &read("dataset/cli/hello.txt.enc")).unwrap();
    assert_eq!(plain, read("dataset/cli/hello.txt"));
}

#[test]
fn the_key_file_of_the_sdk_vectors_parses() {
    let text = String::from_utf8(read("dataset/key.b64")).unwrap();
    let key = DatasetKey::from_base64(&text).unwrap();
    let first = &cases("vectors")[0];
    assert_eq!(key.to_base64().as_str(), s(first, "key_base64"));
}

#[test]
fn iexec_common_aes_fixture_decrypts_to_its_plaintext() {
    let dir = "upstream_fixtures/iexec-common/src/test/resources/security/aes";
    let key = DatasetKey::from_base64(&String::from_utf8(read(&format!("{dir}/key.txt"))).unwrap())
        .unwrap();
    let plain = dataset::decrypt(&key, &read(&format!("{dir}/encrypted-data.bin"))).unwrap();
    assert_eq!(plain, read(&format!("{dir}/plain-data.txt")));
    assert_eq!(plain, b"Some very useful data.");
}
