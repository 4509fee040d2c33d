//! The result-encryption vector of `tests/data/iexec/vectors.json` (made by iexec-common's Java
//! code, checked with the iExec SDK), iexec-common's RSA fixture, and hostile archives.
#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edgepool_protocol::dataset::{self, DatasetKey};
use edgepool_protocol::result_archive::{
    self, ArchiveError, BeneficiaryPrivateKey, BeneficiaryPublicKey, ExtractLimits,
};
use edgepool_protocol::tree::MemTree;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/iexec")
}

fn read(rel: &str) -> Vec<u8> {
    let path = data_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_text(rel: &str) -> String {
    String::from_utf8(read(rel)).unwrap()
}

fn vector() -> Value {
    let all: Value = serde_json::from_slice(&read("vectors.json")).unwrap();
    all["result_encryption"]["vectors"][0].clone()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn hex_bytes(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap()
}

fn private_key() -> BeneficiaryPrivateKey {
    BeneficiaryPrivateKey::parse(&read_text(s(&vector(), "beneficiary_private_key_pem_file")))
        .unwrap()
}

fn entry_names(zip: &[u8]) -> Vec<String> {
    let mut archive = ZipArchive::new(Cursor::new(zip)).unwrap();
    (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().to_string())
        .collect()
}

fn entry(zip: &[u8], name: &str) -> Vec<u8> {
    let mut archive = ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut content = Vec::new();
    archive
        .by_name(name)
        .unwrap()
        .read_to_end(&mut content)
        .unwrap();
    content
}

/// Loads a directory of the vector set into a MemTree.
fn load_tree(dir: &Path) -> MemTree {
    fn walk(tree: &mut MemTree, base: &Path, dir: &Path) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
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

fn assert_same_files(tree: &MemTree, expected: &MemTree) {
    let got: Vec<_> = tree.files().collect();
    let want: Vec<_> = expected.files().collect();
    assert_eq!(got, want);
}

#[test]
fn decrypting_the_java_encrypted_result_gives_the_plain_zip_byte_for_byte() {
    let v = vector();
    let encrypted = read(s(&v, "encrypted_zip_file"));
    let plain =
        result_archive::decrypt_result(&encrypted, &private_key(), &ExtractLimits::default())
            .unwrap();
    assert_eq!(plain, read(s(&v, "expected_decrypted_equals")));
    assert_eq!(plain, read(s(&v, "sdk_decryptResult_output_file")));
    assert_eq!(
        edgepool_protocol::hash::sha256(&plain).to_string(),
        s(&v, "plain_zip_sha256")
    );
    assert_eq!(
        entry_names(&encrypted),
        ["aes-key.rsa", "iexec_out.zip.aes"]
    );
}

#[test]
fn the_rsa_layer_gives_the_recorded_aes_key_and_the_aes_layer_is_the_dataset_format() {
    let v = vector();
    let wrapped = read(s(&v, "aes_key_rsa_file"));
    assert_eq!(wrapped.len() as u64, v["aes_key_rsa_len"].as_u64().unwrap());
    let aes_key = private_key().decrypt_pkcs1v15(&wrapped).unwrap();
    assert_eq!(aes_key.as_slice(), read(s(&v, "aes_key_file")));
    assert_eq!(aes_key.as_slice(), hex_bytes(s(&v, "aes_key_hex")));

    let payload = read(s(&v, "zip_aes_file"));
    assert_eq!(payload.len() as u64, v["zip_aes_len"].as_u64().unwrap());
    assert_eq!(payload[..16], hex_bytes(s(&v, "zip_aes_iv_hex")));
    let key = DatasetKey::from_bytes(aes_key.as_slice().try_into().unwrap());
    assert_eq!(
        dataset::decrypt(&key, &payload).unwrap(),
        read(s(&v, "plain_zip_file"))
    );
}

#[test]
fn encrypt_then_decrypt_round_trips_with_the_pem_and_the_sms_forms_of_the_public_key() {
    let v = vector();
    let plain = read(s(&v, "plain_zip_file"));
    let private = private_key();
    let mut rng = StdRng::seed_from_u64(11);
    for file in [
        "beneficiary_public_key_pem_file",
        "beneficiary_public_key_sms_secret_file",
    ] {
        let public = BeneficiaryPublicKey::parse(&read_text(s(&v, file))).unwrap();
        assert_eq!(public, private.public_key(), "{file}");
        let encrypted = result_archive::encrypt_result(&plain, &public, &mut rng).unwrap();
        assert_eq!(
            entry_names(&encrypted),
            ["aes-key.rsa", "iexec_out.zip.aes"],
            "{file}"
        );
        assert_eq!(entry(&encrypted, "aes-key.rsa").len(), 512, "{file}");
        let back = result_archive::decrypt_result(&encrypted, &private, &ExtractLimits::default())
            .unwrap();
        assert_eq!(back, plain, "{file}");
    }
}

#[test]
fn two_encryptions_of_the_same_result_differ() {
    let plain = read(s(&vector(), "plain_zip_file"));
    let public = private_key().public_key();
    let mut rng = StdRng::seed_from_u64(12);
    let a = result_archive::encrypt_result(&plain, &public, &mut rng).unwrap();
    let b = result_archive::encrypt_result(&plain, &public, &mut rng).unwrap();
    assert_ne!(
        entry(&a, "iexec_out.zip.aes"),
        entry(&b, "iexec_out.zip.aes")
    );
    assert_ne!(entry(&a, "aes-key.rsa"), entry(&b, "aes-key.rsa"));
}

#[test]
fn unzipping_the_java_zip_gives_the_files_of_iexec_out() {
    let v = vector();
    let tree =
        result_archive::unzip_to_tree(&read(s(&v, "plain_zip_file")), &ExtractLimits::default())
            .unwrap();
    let expected = load_tree(&data_dir().join(s(&v, "plain_iexec_out_dir")));
    assert_same_files(&tree, &expected);
    assert_eq!(
        tree.read("computed.json").unwrap(),
        read("result_encryption/iexec_out/computed.json")
    );
}

#[test]
fn zip_tree_of_iexec_out_unzips_back_to_the_same_files_and_names_as_java() {
    let v = vector();
    let expected = load_tree(&data_dir().join(s(&v, "plain_iexec_out_dir")));
    let zip = result_archive::zip_tree(&expected, "").unwrap();
    assert_eq!(zip, result_archive::zip_tree(&expected, "").unwrap());
    let tree = result_archive::unzip_to_tree(&zip, &ExtractLimits::default()).unwrap();
    assert_same_files(&tree, &expected);
    let mut ours = entry_names(&zip);
    let mut java = entry_names(&read(s(&v, "plain_zip_file")));
    ours.sort();
    java.sort();
    assert_eq!(ours, java);

    // The same folder one level down: names stay relative to the zipped folder.
    let mut nested = MemTree::new();
    for (path, content) in expected.files() {
        nested
            .insert_file(&format!("task/iexec_out/{path}"), content)
            .unwrap();
    }
    assert_eq!(
        result_archive::zip_tree(&nested, "task/iexec_out").unwrap(),
        zip
    );
}

#[test]
fn iexec_common_rsa_fixture_decrypts_with_pkcs1_v15() {
    let dir = "upstream_fixtures/iexec-common/src/test/resources/security/rsa";
    let private = BeneficiaryPrivateKey::parse(&read_text(&format!("{dir}/key"))).unwrap();
    let public = BeneficiaryPublicKey::parse(&read_text(&format!("{dir}/key.pub"))).unwrap();
    assert_eq!(private.public_key(), public);
    let plain = private
        .decrypt_pkcs1v15(&read(&format!("{dir}/encrypted-data.bin")))
        .unwrap();
    assert_eq!(plain.as_slice(), read(&format!("{dir}/plain-data.txt")));
    assert_eq!(plain.as_slice(), b"A very useful data!");
}

#[test]
fn the_wrong_private_key_is_an_rsa_error() {
    let wrong = BeneficiaryPrivateKey::parse(&read_text(
        "upstream_fixtures/iexec-common/src/test/resources/security/rsa/key",
    ))
    .unwrap();
    let encrypted = read(s(&vector(), "encrypted_zip_file"));
    let err =
        result_archive::decrypt_result(&encrypted, &wrong, &ExtractLimits::default()).unwrap_err();
    assert!(matches!(err, ArchiveError::Rsa(_)), "{err}");
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, content) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(content).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// Rewrites the declared uncompressed size of the only entry, in its local and central headers.
fn declare_size(zip: &mut [u8], size: u32) {
    let find = |sig: &[u8]| zip.windows(4).position(|w| w == sig).unwrap();
    let local = find(b"PK\x03\x04");
    let central = find(b"PK\x01\x02");
    zip[local + 22..local + 26].copy_from_slice(&size.to_le_bytes());
    zip[central + 24..central + 28].copy_from_slice(&size.to_le_bytes());
}

fn small_limits() -> ExtractLimits {
    ExtractLimits {
        max_entries: 100,
        max_total_bytes: 1 << 20,
    }
}

#[test]
fn entries_that_climb_or_are_absolute_are_refused() {
    for name in ["../evil", "a/../../evil", "/abs", "..\\evil", "C:/evil"] {
        let zip = zip_of(&[("ok.txt", b"fine"), (name, b"evil")]);
        let err = result_archive::unzip_to_tree(&zip, &ExtractLimits::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::UnsafePath(_)), "{name}: {err}");
    }
}

#[test]
fn a_highly_compressible_bomb_is_refused_quickly() {
    let zeros = vec![0u8; 50 << 20];
    let bomb = zip_of(&[("zeros", &zeros)]);
    assert!(
        bomb.len() < 1 << 20,
        "the bomb compresses to {} bytes",
        bomb.len()
    );
    let started = Instant::now();
    let err = result_archive::unzip_to_tree(&bomb, &small_limits()).unwrap_err();
    assert_eq!(
        err,
        ArchiveError::TooLarge {
            entry: "zeros".into(),
            limit: 1 << 20
        }
    );

    // The same bomb with a header that claims 100 bytes: the limit is enforced while inflating.
    let mut liar = bomb.clone();
    declare_size(&mut liar, 100);
    let err = result_archive::unzip_to_tree(&liar, &small_limits()).unwrap_err();
    assert_eq!(
        err,
        ArchiveError::TooLarge {
            entry: "zeros".into(),
            limit: 1 << 20
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn an_entry_declaring_two_gigabytes_is_refused_without_allocating_them() {
    let mut zip = zip_of(&[("big", b"tiny content")]);
    declare_size(&mut zip, 2 << 30);
    let started = Instant::now();
    let err = result_archive::unzip_to_tree(&zip, &ExtractLimits::default()).unwrap_err();
    assert_eq!(
        err,
        ArchiveError::TooLarge {
            entry: "big".into(),
            limit: 1 << 30
        }
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn too_many_entries_are_refused_before_reading_any() {
    let names: Vec<String> = (0..101).map(|i| format!("f{i}")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let err = result_archive::unzip_to_tree(&zip_of(&entries), &small_limits()).unwrap_err();
    assert_eq!(
        err,
        ArchiveError::TooManyEntries {
            limit: 100,
            found: 101
        }
    );
}

#[test]
fn hostile_encrypted_archives_give_typed_errors() {
    let private = private_key();
    let v = vector();
    let wrapped = read(s(&v, "aes_key_rsa_file"));
    let payload = read(s(&v, "zip_aes_file"));
    let decrypt =
        |zip: &[u8], limits: &ExtractLimits| result_archive::decrypt_result(zip, &private, limits);

    let missing = zip_of(&[("aes-key.rsa", &wrapped)]);
    assert_eq!(
        decrypt(&missing, &ExtractLimits::default()).unwrap_err(),
        ArchiveError::MissingEntry("iexec_out.zip.aes".into())
    );
    let nested = zip_of(&[
        ("encrypted-iexec_out/aes-key.rsa", &wrapped),
        ("iexec_out.zip.aes", &payload),
    ]);
    assert_eq!(
        decrypt(&nested, &ExtractLimits::default()).unwrap_err(),
        ArchiveError::MissingEntry("aes-key.rsa".into())
    );
    let big_key = zip_of(&[
        ("aes-key.rsa", &[0u8; 1001]),
        ("iexec_out.zip.aes", &payload),
    ]);
    assert_eq!(
        decrypt(&big_key, &ExtractLimits::default()).unwrap_err(),
        ArchiveError::TooLarge {
            entry: "aes-key.rsa".into(),
            limit: 1000
        }
    );
    let zeros = vec![0u8; 50 << 20];
    let bomb = zip_of(&[("aes-key.rsa", &wrapped), ("iexec_out.zip.aes", &zeros)]);
    assert!(matches!(
        decrypt(&bomb, &small_limits()).unwrap_err(),
        ArchiveError::TooLarge { .. }
    ));
    let mut truncated = payload.clone();
    truncated.pop();
    let corrupt = zip_of(&[("aes-key.rsa", &wrapped), ("iexec_out.zip.aes", &truncated)]);
    assert!(matches!(
        decrypt(&corrupt, &ExtractLimits::default()).unwrap_err(),
        ArchiveError::Dataset(dataset::DatasetError::Truncated { .. })
    ));
    let legacy = zip_of(&[
        ("aes-key.rsa", base64_text(&wrapped).as_bytes()),
        ("iexec_out.zip.aes", &payload),
    ]);
    assert!(matches!(
        decrypt(&legacy, &ExtractLimits::default()).unwrap_err(),
        ArchiveError::LegacyFormat { .. }
    ));
    assert!(matches!(
        decrypt(b"not a zip at all", &ExtractLimits::default()).unwrap_err(),
        ArchiveError::Zip(_)
    ));
}

fn base64_text(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
