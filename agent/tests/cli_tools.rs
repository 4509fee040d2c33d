//! The tools CLI, run as a real process, agrees byte for byte with the iExec SDK vectors.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgepool-agent"))
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/tests/data/iexec")
}

fn vectors() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data().join("vectors.json")).unwrap()).unwrap()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

/// Runs and expects success; returns stdout without the final newline.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.strip_suffix('\n').unwrap_or(&text).to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn dataset_checksum_and_decrypt_match_every_sdk_vector() {
    let v = vectors();
    let tmp = tempfile::tempdir().unwrap();
    for case in v["dataset_encryption"]["vectors"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let enc = data().join(case["ciphertext_file"].as_str().unwrap());
        let key = data().join(case["key_file"].as_str().unwrap());
        let plain = data().join(case["plaintext_file"].as_str().unwrap());
        assert_eq!(
            ok(&["dataset", "checksum", p(&enc)]),
            case["checksum"].as_str().unwrap(),
            "{id}"
        );
        let out = tmp.path().join(format!("{id}.plain"));
        assert_eq!(
            ok(&[
                "dataset",
                "decrypt",
                "--key-file",
                p(&key),
                p(&enc),
                p(&out)
            ]),
            ""
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&plain).unwrap(),
            "{id}"
        );
    }
}

#[test]
fn dataset_decrypt_refuses_bad_inputs_and_leaves_no_output() {
    let v = vectors();
    let tmp = tempfile::tempdir().unwrap();
    for case in v["dataset_encryption"]["negative_vectors"]
        .as_array()
        .unwrap()
    {
        let id = case["id"].as_str().unwrap();
        let key = tmp.path().join(format!("{id}.key"));
        std::fs::write(&key, case["key_base64"].as_str().unwrap()).unwrap();
        let enc = data().join(case["ciphertext_file"].as_str().unwrap());
        let out = tmp.path().join(format!("{id}.plain"));
        let result = run(&[
            "dataset",
            "decrypt",
            "--key-file",
            p(&key),
            p(&enc),
            p(&out),
        ]);
        assert_eq!(result.status.code(), Some(1), "{id}");
        assert!(result.stdout.is_empty(), "{id}");
        assert!(!String::from_utf8_lossy(&result.stderr).is_empty(), "{id}");
        assert!(!out.exists(), "{id}: no partial plaintext may remain");
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".partial"))
            .collect();
        assert!(leftovers.is_empty(), "{id}: {leftovers:?}");
    }
}

#[test]
fn dataset_decrypt_with_the_checksum_tells_a_wrong_key_from_a_corrupt_file() {
    let v = vectors();
    let tmp = tempfile::tempdir().unwrap();
    let case = &v["dataset_encryption"]["vectors"][0];
    let enc = data().join(case["ciphertext_file"].as_str().unwrap());
    let key = data().join(case["key_file"].as_str().unwrap());
    let sum = case["checksum"].as_str().unwrap();
    let wrong = tmp.path().join("wrong.key");
    std::fs::write(&wrong, "VRvjSaP1pRM/KrWYJaiouV3QZfUAZU4dI3YjY+fHESc=\n").unwrap();
    let mut corrupt_bytes = std::fs::read(&enc).unwrap();
    corrupt_bytes[20] ^= 1;
    let corrupt = tmp.path().join("corrupt.enc");
    std::fs::write(&corrupt, corrupt_bytes).unwrap();
    let out = tmp.path().join("out");
    let decrypt = |key: &Path, input: &Path, checksum: &str| {
        run(&[
            "dataset",
            "decrypt",
            "--key-file",
            p(key),
            "--checksum",
            checksum,
            p(input),
            p(&out),
        ])
    };

    let wrong_key = decrypt(&wrong, &enc, sum);
    assert_eq!(wrong_key.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong_key.stderr).contains("wrong dataset key"));
    let corrupted = decrypt(&key, &corrupt, sum);
    assert_eq!(corrupted.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&corrupted.stderr).contains("checksum mismatch"));
    assert!(!out.exists());
    let bad_sum = decrypt(&key, &enc, "0x1234");
    assert_eq!(bad_sum.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_sum.stderr).contains("--checksum"));

    assert!(decrypt(&key, &enc, sum).status.success());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(data().join(case["plaintext_file"].as_str().unwrap())).unwrap()
    );
}

#[test]
fn dataset_encrypt_round_trips_with_given_and_generated_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = data().join("dataset/plain_1mib.bin");
    let key = data().join("dataset/key.b64");

    let enc = tmp.path().join("given.enc");
    let answer: Value = serde_json::from_str(&ok(&[
        "dataset",
        "encrypt",
        "--key-file",
        p(&key),
        p(&plain),
        p(&enc),
    ]))
    .unwrap();
    assert!(answer.get("key").is_none(), "a given key is never printed");
    let checksum = answer["checksum"].as_str().unwrap();
    assert_eq!(ok(&["dataset", "checksum", p(&enc)]), checksum);
    let back = tmp.path().join("given.plain");
    ok(&[
        "dataset",
        "decrypt",
        "--key-file",
        p(&key),
        p(&enc),
        p(&back),
    ]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&plain).unwrap()
    );

    let enc2 = tmp.path().join("generated.enc");
    let answer: Value =
        serde_json::from_str(&ok(&["dataset", "encrypt", p(&plain), p(&enc2)])).unwrap();
    let generated = answer["key"].as_str().unwrap();
    assert_eq!(
        generated.len(),
        44,
        "base64 of 32 bytes, as the SDK writes it"
    );
    let key2 = tmp.path().join("generated.key");
    std::fs::write(&key2, format!("{generated}\n")).unwrap();
    let back2 = tmp.path().join("generated.plain");
    ok(&[
        "dataset",
        "decrypt",
        "--key-file",
        p(&key2),
        p(&enc2),
        p(&back2),
    ]);
    assert_eq!(
        std::fs::read(&back2).unwrap(),
        std::fs::read(&plain).unwrap()
    );
    assert_ne!(std::fs::read(&enc).unwrap(), std::fs::read(&enc2).unwrap());
}

#[test]
fn result_digest_matches_every_vector() {
    let v = vectors();
    for case in v["result_digest"]["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let expected = case["result_digest"].as_str().unwrap();
        if id == "dir-empty" {
            let tmp = tempfile::tempdir().unwrap();
            assert_eq!(ok(&["result", "digest", p(tmp.path())]), expected);
        } else {
            let path = data().join(case["deterministic_output_path"].as_str().unwrap());
            assert_eq!(ok(&["result", "digest", p(&path)]), expected, "{id}");
        }
    }
}

#[test]
fn result_digest_follows_computed_json() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("computed.json"),
        r#"{"deterministic-output-path":"/iexec_out/out"}"#,
    )
    .unwrap();
    let sort_order = data().join("result_digest/dir-sort-order");
    std::fs::create_dir(tmp.path().join("out")).unwrap();
    for entry in std::fs::read_dir(&sort_order).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tmp.path().join("out").join(entry.file_name())).unwrap();
    }
    let expected = "0x52235c894313fc85050697fb0500a1f337ca41071e635c72140504b510402ac2";
    assert_eq!(
        ok(&["result", "digest", "--iexec-out", p(tmp.path())]),
        expected
    );

    std::fs::write(
        tmp.path().join("computed.json"),
        r#"{"callback-data":"0x0000000000000000000000000000000000000000000000000000000000000001"}"#,
    )
    .unwrap();
    assert_eq!(
        ok(&["result", "digest", "--iexec-out", p(tmp.path())]),
        "0xb10e2d527612073b26eecdfd717e6a320cf44b4afac2b0732d9fcbe2b7fa0cf6"
    );

    std::fs::remove_file(tmp.path().join("computed.json")).unwrap();
    let out = run(&["result", "digest", "--iexec-out", p(tmp.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("computed.json"));
}

#[test]
fn result_decrypt_gives_the_sdk_plain_zip_and_encrypt_round_trips() {
    let dir = data().join("result_encryption");
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("iexec_out.zip");
    ok(&[
        "result",
        "decrypt",
        "--private-key",
        p(&dir.join("beneficiary_key.pem")),
        p(&dir.join("encrypted-iexec_out.zip")),
        p(&plain),
    ]);
    assert_eq!(
        std::fs::read(&plain).unwrap(),
        std::fs::read(dir.join("iexec_out.zip")).unwrap()
    );

    for public in ["beneficiary_key.pub.pem", "beneficiary_key.pub.pem.b64"] {
        let enc = tmp.path().join(format!("{public}.enc.zip"));
        ok(&[
            "result",
            "encrypt",
            "--public-key",
            p(&dir.join(public)),
            p(&dir.join("iexec_out")),
            p(&enc),
        ]);
        let back = tmp.path().join(format!("{public}.zip"));
        ok(&[
            "result",
            "decrypt",
            "--private-key",
            p(&dir.join("beneficiary_key.pem")),
            p(&enc),
            p(&back),
        ]);
        let tree = edgepool_protocol::result_archive::unzip_to_tree(
            &std::fs::read(&back).unwrap(),
            &Default::default(),
        )
        .unwrap();
        for name in ["computed.json", "result.txt"] {
            assert_eq!(
                tree.read(name).unwrap(),
                std::fs::read(dir.join("iexec_out").join(name))
                    .unwrap()
                    .as_slice(),
                "{public} {name}"
            );
        }
    }

    // The wrong private key is refused and leaves nothing behind.
    let wrong = data().join("upstream_fixtures/iexec-common/src/test/resources/security/rsa/key");
    let out_zip = tmp.path().join("wrong.zip");
    let out = run(&[
        "result",
        "decrypt",
        "--private-key",
        p(&wrong),
        p(&dir.join("encrypted-iexec_out.zip")),
        p(&out_zip),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out_zip.exists());
}

#[test]
fn tag_commands_match_the_sdk() {
    let v = vectors();
    for case in v["tags"]["encode"].as_array().unwrap() {
        let names: Vec<String> = serde_json::from_value(case["input"].clone()).unwrap();
        let list = names.join(",");
        let out = run(&["tag", "encode", &list]);
        if case["ok"].as_bool().unwrap() {
            assert!(out.status.success(), "{list}");
            assert_eq!(
                String::from_utf8(out.stdout).unwrap().trim_end(),
                case["value"].as_str().unwrap()
            );
        } else {
            assert_eq!(out.status.code(), Some(1), "{list}");
            let wanted = case["error"]
                .as_str()
                .unwrap()
                .trim_start_matches("ValidationError: ");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(wanted),
                "{list}"
            );
        }
    }
    for case in v["tags"]["decode"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let out = run(&["tag", "decode", input]);
        if case["ok"].as_bool().unwrap() {
            let names: Vec<String> = serde_json::from_value(case["value"].clone()).unwrap();
            assert_eq!(
                String::from_utf8(out.stdout).unwrap().trim_end(),
                names.join(",")
            );
        } else {
            assert_eq!(out.status.code(), Some(1), "{input}");
        }
    }
    assert_eq!(
        ok(&["tag", "encode", "tee,gpu"]),
        "0x0000000000000000000000000000000000000000000000000000000000000101"
    );
    assert_eq!(
        ok(&[
            "tag",
            "decode",
            "0x0000000000000000000000000000000000000000000000000000000000000101"
        ]),
        "tee,gpu"
    );
}

#[test]
fn poco_commands_match_every_case() {
    let v = vectors();
    for case in v["poco"]["cases"].as_array().unwrap() {
        let deal = case["dealid"].as_str().unwrap();
        let index = case["task_index"].as_u64().unwrap().to_string();
        let task = ok(&["poco", "task-id", deal, &index]);
        assert_eq!(task, case["taskid"].as_str().unwrap());
        let answer: Value = serde_json::from_str(&ok(&[
            "poco",
            "hashes",
            "--task-id",
            &task,
            "--digest",
            case["result_digest"].as_str().unwrap(),
            "--worker",
            case["worker_address"].as_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(answer["result_hash"], case["result_hash"]);
        assert_eq!(answer["result_seal"], case["result_seal"]);
    }
}

#[test]
fn errors_have_distinct_exit_codes() {
    // Usage error (clap).
    assert_eq!(run(&["poco", "task-id"]).status.code(), Some(2));
    // Refused input.
    assert_eq!(
        run(&["poco", "task-id", "0x12", "0"]).status.code(),
        Some(1)
    );
    assert_eq!(
        run(&[
            "poco",
            "hashes",
            "--task-id",
            "0x00",
            "--digest",
            "0x00",
            "--worker",
            "0x00"
        ])
        .status
        .code(),
        Some(1)
    );
    // Missing file.
    let out = run(&["dataset", "checksum", "/nonexistent/file"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file"));
}
