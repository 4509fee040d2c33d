//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) and crash reproducers
//! (`fuzz/artifacts/<target>/*`) through the entry functions the fuzz targets call, so that a
//! regression of a fixed crash, or a new panic on an input the fuzzer once kept, fails CI without
//! a nightly toolchain.
//!
//! Also checks that the seeds reach deep: a sealed sample opens, the committed TDX evidence
//! verifies, so the targets do not stop at the first check for a trivial reason.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use edgepool_attestation::EvidenceKind;
use edgepool_protocol::envelope::Envelope;
use edgepool_tests::fuzz_entry::{self, split2, TARGETS};
use edgepool_tests::fuzz_seeds::seeds;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_committed_corpus_entry_and_crash_reproducer_runs_without_panicking() {
    let mut total = 0;
    for (target, entry) in TARGETS {
        let mut count = 0;
        for sub in ["corpus", "artifacts"] {
            for path in files(&fuzz_dir().join(sub).join(target)) {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| entry(&data));
                assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
                count += 1;
            }
        }
        // Every target has a committed corpus: an empty folder means the corpus was lost.
        assert!(
            count > 0,
            "{target}: no corpus committed under fuzz/corpus/{target}"
        );
        total += count;
    }
    eprintln!("replayed {total} inputs over {} targets", TARGETS.len());
}

#[test]
fn every_generated_seed_runs_without_panicking() {
    let seeds = seeds();
    for (target, _) in TARGETS {
        // snp_verify's seeds are committed files (the SEV-SNP vectors are not in this tree).
        if *target != "snp_verify" {
            assert!(
                seeds.iter().any(|s| s.target == *target),
                "{target}: no seed"
            );
        }
    }
    for seed in seeds {
        let entry = TARGETS
            .iter()
            .find(|(t, _)| *t == seed.target)
            .map(|(_, e)| e)
            .unwrap();
        entry(&seed.bytes);
    }
}

#[test]
fn the_seeds_are_valid_inputs_so_the_targets_reach_past_the_first_check() {
    for seed in seeds() {
        match seed.target {
            "envelope" if seed.bytes[0] == 0 => {
                Envelope::open(&seed.bytes[1..], fuzz_entry::TOPIC).unwrap();
            }
            "dcap_verify" if seed.bytes[0] < 2 => {
                let (kind, quote, collateral) = if seed.bytes[0] == 0 {
                    (
                        EvidenceKind::Tdx,
                        fuzz_entry::TDX_QUOTE,
                        fuzz_entry::TDX_COLLATERAL,
                    )
                } else {
                    (
                        EvidenceKind::Sgx,
                        fuzz_entry::SGX_QUOTE,
                        fuzz_entry::SGX_COLLATERAL,
                    )
                };
                let patched = fuzz_entry::patch(quote, &seed.bytes[1..]);
                assert_eq!(patched, quote);
                edgepool_attestation::dcap::verify(
                    kind,
                    &patched,
                    collateral,
                    fuzz_entry::ATTESTATION_NOW,
                )
                .unwrap();
            }
            "computed_json" => {
                edgepool_protocol::digest::ComputedFile::parse(&seed.bytes).unwrap();
            }
            _ => {}
        }
    }
}

#[test]
fn a_patch_cuts_flips_and_appends() {
    let base = b"abcdef";
    assert_eq!(fuzz_entry::patch(base, &fuzz_entry::UNPATCHED), base);
    assert_eq!(fuzz_entry::patch(base, &[]), base);
    assert_eq!(fuzz_entry::patch(base, &[3, 0]), b"abc");
    // Keep 4, flip byte 1 (and byte 7 % 4 = 3) by 0x20, append "!".
    assert_eq!(
        fuzz_entry::patch(base, &[4, 0, 2, 1, 0, 0x20, 7, 0, 0x20, b'!']),
        b"aBcD!"
    );
    assert_eq!(fuzz_entry::patch(b"", &[0, 0, 1, 0, 0, 1]), b"");
}

#[test]
fn split2_reads_back_what_join2_wrote() {
    let joined = fuzz_entry::join2(b"report", b"aux bytes");
    assert_eq!(split2(&joined), (&b"report"[..], &b"aux bytes"[..]));
    assert_eq!(split2(&[5, 0, 1, 2]), (&[1u8, 2][..], &[][..]));
    assert_eq!(split2(&[1]), (&[][..], &[][..]));
}

/// Writes the generated seeds to `fuzz/corpus/<target>/seed-<name>`:
/// `cargo test -p edgepool-tests --test fuzz_corpus -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes into the source tree; run by hand when the seeds change"]
fn write_fuzz_seeds() {
    for seed in seeds() {
        let dir = fuzz_dir().join("corpus").join(seed.target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{}", seed.name)), &seed.bytes).unwrap();
    }
}
