//! The configfs-tsm attester against a fake tree in a temp dir.
//!
//! A plain directory cannot compute `outblob` when `inblob` is written, so each test makes
//! `outblob` a FIFO and runs a "kernel" thread: the attester's read of `outblob` blocks until the
//! thread opens the FIFO; the thread then reads the `inblob` the attester wrote, sets
//! `generation` as the kernel would (or as a concurrent writer would make it), and answers with a
//! report that embeds the report data. No sleeps: the FIFO open is the synchronisation.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

use edgepool_attestation::tsm::TsmAttester;
use edgepool_attestation::{AttestError, Attester, EvidenceKind};

fn entry(root: &Path, provider: &str, aux: Option<&[u8]>) -> PathBuf {
    let dir = root.join("test-entry");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("provider"), format!("{provider}\n")).expect("provider");
    std::fs::write(dir.join("generation"), "7\n").expect("generation");
    std::fs::write(dir.join("inblob"), b"").expect("inblob");
    if let Some(aux) = aux {
        std::fs::write(dir.join("auxblob"), aux).expect("auxblob");
    }
    let status = Command::new("mkfifo")
        .arg(dir.join("outblob"))
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    dir
}

/// Answers one read of `outblob`: `REPORT:` followed by the inblob, after setting `generation`
/// to 7 + `writes`.
fn fake_kernel(dir: PathBuf, writes: u64) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("outblob"))
            .expect("open fifo");
        let inblob = std::fs::read(dir.join("inblob")).expect("inblob");
        std::fs::write(dir.join("generation"), format!("{}\n", 7 + writes)).expect("gen");
        let mut report = b"REPORT:".to_vec();
        report.extend_from_slice(&inblob);
        out.write_all(&report).expect("answer");
        inblob
    })
}

#[test]
fn an_snp_entry_gives_the_report_and_the_certificate_table() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = entry(root.path(), "sev_guest", Some(b"cert table"));
    let attester = TsmAttester::with_entry(root.path(), "test-entry").expect("open");
    assert_eq!(attester.kind(), EvidenceKind::SevSnp);
    let kernel = fake_kernel(dir.clone(), 1);
    let data = [0x5a; 64];
    let evidence = attester.attest(&data).expect("attest");
    assert_eq!(
        kernel.join().expect("kernel"),
        data.to_vec(),
        "inblob holds the report data"
    );
    assert_eq!(evidence.kind, EvidenceKind::SevSnp);
    assert_eq!(&evidence.report[..7], b"REPORT:");
    assert_eq!(&evidence.report[7..], &data[..]);
    assert_eq!(evidence.aux, b"cert table");
    assert!(dir.exists(), "an entry the attester did not make stays");
}

#[test]
fn a_tdx_entry_without_auxblob_gives_an_empty_aux() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = entry(root.path(), "tdx_guest", None);
    let attester = TsmAttester::with_entry(root.path(), "test-entry").expect("open");
    let kernel = fake_kernel(dir, 1);
    let evidence = attester.attest(&[1; 64]).expect("attest");
    kernel.join().expect("kernel");
    assert_eq!(evidence.kind, EvidenceKind::Tdx);
    assert!(evidence.aux.is_empty());
}

#[test]
fn a_concurrent_writer_is_detected_by_the_generation() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = entry(root.path(), "sev_guest", None);
    let attester = TsmAttester::with_entry(root.path(), "test-entry").expect("open");
    let kernel = fake_kernel(dir, 2);
    let err = attester.attest(&[2; 64]).expect_err("refused");
    kernel.join().expect("kernel");
    assert!(
        matches!(err, AttestError::Failed(ref m) if m.contains("from 7 to 9")),
        "{err}"
    );
}

#[test]
fn no_configfs_means_unavailable() {
    let root = tempfile::tempdir().expect("tmp");
    let missing = root.path().join("sys/kernel/config/tsm/report");
    assert!(matches!(
        TsmAttester::open(&missing),
        Err(AttestError::Unavailable(_))
    ));
    assert!(matches!(
        TsmAttester::with_entry(&missing, "x"),
        Err(AttestError::Unavailable(_))
    ));
}

#[test]
fn an_unknown_provider_is_unavailable() {
    let root = tempfile::tempdir().expect("tmp");
    entry(root.path(), "arm_cca_guest", None);
    assert!(matches!(
        TsmAttester::with_entry(root.path(), "test-entry"),
        Err(AttestError::Unavailable(_))
    ));
}

#[test]
fn an_entry_the_attester_makes_is_removed_again() {
    // A plain directory: mkdir works, but no attribute files appear, so the probe fails. The
    // entry must not be left behind.
    let root = tempfile::tempdir().expect("tmp");
    let err = TsmAttester::open(root.path()).expect_err("no provider file");
    assert!(matches!(err, AttestError::Io { .. }), "{err}");
    let left: Vec<_> = std::fs::read_dir(root.path()).expect("ls").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
