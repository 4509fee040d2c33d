//! Hostile result archives given to `edgepool-agent result decrypt` (the beneficiary's side): a
//! zip bomb and entries that climb out of the directory. Typed errors, nothing written outside
//! the output path, no partial output, and the process's memory stays small however large the
//! payload inflates. (`protocol/tests/result_vectors.rs` covers the library's limits on
//! archives in memory.)

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::harness::{bin, repo};

fn vectors() -> PathBuf {
    repo().join("protocol/tests/data/iexec/result_encryption")
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

/// Runs `result decrypt` on `archive`; returns the exit code, stderr and the highest VmHWM
/// (KiB) seen while it ran.
fn decrypt(dir: &Path, archive: &[u8]) -> (Option<i32>, String, u64) {
    let input = dir.join("in.zip");
    std::fs::write(&input, archive).unwrap();
    let mut child = bin()
        .args(["result", "decrypt", "--private-key"])
        .arg(vectors().join("beneficiary_key.pem"))
        .arg(&input)
        .arg(dir.join("out/iexec_out.zip"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "result decrypt still running");
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (status.code(), stderr, peak)
}

/// Every path under `dir`.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn result_decrypt_refuses_zip_bombs_and_climbing_entries_in_bounded_memory() {
    let wrapped = std::fs::read(vectors().join("encrypted-iexec_out/aes-key.rsa")).unwrap();
    let payload = std::fs::read(vectors().join("encrypted-iexec_out/iexec_out.zip.aes")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("out")).unwrap();

    // A bomb: 128 MiB of zeros as the payload, deflated to a fraction of a MiB. It inflates
    // under the 1 GiB limit, decrypts to garbage and fails at the padding.
    let zeros = vec![0u8; 128 << 20];
    let bomb = zip_of(&[("aes-key.rsa", &wrapped), ("iexec_out.zip.aes", &zeros)]);
    drop(zeros);
    assert!(bomb.len() < 1 << 20, "the bomb is {} bytes", bomb.len());
    let (code, stderr, peak_kib) = decrypt(&work, &bomb);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("iexec_out.zip.aes"), "{stderr}");
    println!(
        "zip bomb (128 MiB inflated): exit {code:?}, peak VmHWM {peak_kib} KiB: {}",
        stderr.trim()
    );
    // Streamed: the process never holds the inflated payload (it did before, as one buffer).
    assert!(peak_kib < 64 * 1024, "peak {peak_kib} KiB");

    // Climbing and absolute entry names beside the real entries: only the two named entries
    // are ever read, nothing is created from the others.
    let climbing = zip_of(&[
        ("../evil.txt", b"evil"),
        ("/tmp/evil-absolute.txt", b"evil"),
        ("out/../../evil2.txt", b"evil"),
        ("aes-key.rsa", &wrapped),
        ("iexec_out.zip.aes", &payload),
    ]);
    let (code, stderr, _) = decrypt(&work, &climbing);
    assert_eq!(code, Some(0), "{stderr}");
    let plain = std::fs::read(work.join("out/iexec_out.zip")).unwrap();
    assert_eq!(
        plain,
        std::fs::read(vectors().join("iexec_out.zip")).unwrap()
    );

    // Only the input and the output exist: nothing beside or above them, no partial file
    // left by the failed bomb.
    let names: Vec<PathBuf> = listing(tmp.path());
    assert_eq!(
        names,
        vec![
            work.clone(),
            work.join("in.zip"),
            work.join("out"),
            work.join("out/iexec_out.zip"),
        ],
    );
    assert!(!Path::new("/tmp/evil-absolute.txt").exists());

    // A failed decryption leaves no output at all (the good one above is replaced by nothing).
    std::fs::remove_file(work.join("out/iexec_out.zip")).unwrap();
    let truncated = zip_of(&[
        ("aes-key.rsa", &wrapped),
        ("iexec_out.zip.aes", &payload[..payload.len() - 1]),
    ]);
    let (code, stderr, _) = decrypt(&work, &truncated);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(listing(&work.join("out")), Vec::<PathBuf>::new());
}
