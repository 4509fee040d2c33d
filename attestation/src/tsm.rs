//! The configfs-tsm attester (`/sys/kernel/config/tsm/report`, Linux 6.7 and later).
//!
//! The kernel's protocol (Documentation/ABI/testing/configfs-tsm): `mkdir` a report entry under
//! the root, write the 64 bytes of report data to `inblob`, read the report from `outblob` (the
//! kernel asks the TEE when `outblob` is read) and, on SEV-SNP, the certificate table from
//! `auxblob`; `provider` names the TEE driver (`sev_guest`, `tdx_guest`). `generation` counts the
//! writes to the entry: if it moved by more than our one write between before and after, another
//! process wrote to the same entry and the report may not carry our data. `rmdir` the entry after.
//!
//! Each call makes its own entry (`edgepool-<pid>-<n>`), so concurrent callers in this process
//! never share one. [`TsmAttester::with_entry`] uses an existing entry instead and leaves it in
//! place: that is how the tests drive a fake tree (a directory cannot make `outblob` answer a
//! write to `inblob`; the tests put a FIFO there and a "kernel" thread that answers it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{AttestError, Attester, Evidence, EvidenceKind};

/// Where the kernel mounts configfs-tsm reports.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// Largest `outblob`/`auxblob` read (a TDX quote with its certification data is ~8 KiB, an SNP
/// certificate table ~5 KiB).
const MAX_BLOB: u64 = 1 << 20;

static NEXT_ENTRY: AtomicU64 = AtomicU64::new(0);

/// Produces SEV-SNP reports or TDX quotes through configfs-tsm.
#[derive(Debug, Clone)]
pub struct TsmAttester {
    root: PathBuf,
    entry: Option<String>,
    kind: EvidenceKind,
}

impl TsmAttester {
    /// Opens configfs-tsm at `root` (usually [`DEFAULT_ROOT`]) and learns the TEE from a probe
    /// entry's `provider`.
    ///
    /// # Errors
    /// [`AttestError::Unavailable`] when `root` does not exist or the provider is unknown;
    /// [`AttestError::Io`] when the probe entry cannot be made or read.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, AttestError> {
        let root = root.into();
        check_root(&root)?;
        let entry = Entry::create(&root)?;
        let kind = provider_kind(&entry.path)?;
        Ok(TsmAttester {
            root,
            entry: None,
            kind,
        })
    }

    /// Uses the existing entry `root/name` for every report, without creating or removing it.
    ///
    /// # Errors
    /// As [`TsmAttester::open`].
    pub fn with_entry(root: impl Into<PathBuf>, name: &str) -> Result<Self, AttestError> {
        let root = root.into();
        check_root(&root)?;
        let kind = provider_kind(&root.join(name))?;
        Ok(TsmAttester {
            root,
            entry: Some(name.to_owned()),
            kind,
        })
    }

    /// The configfs-tsm root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Attester for TsmAttester {
    fn kind(&self) -> EvidenceKind {
        self.kind
    }

    fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        let owned;
        let dir = match &self.entry {
            Some(name) => self.root.join(name),
            None => {
                owned = Entry::create(&self.root)?;
                owned.path.clone()
            }
        };
        let before = read_generation(&dir)?;
        write_file(&dir.join("inblob"), report_data)?;
        let report = read_blob(&dir.join("outblob"))?
            .ok_or_else(|| AttestError::Failed(format!("{} has no outblob", dir.display())))?;
        let aux = read_blob(&dir.join("auxblob"))?.unwrap_or_default();
        let kind = provider_kind(&dir)?;
        let after = read_generation(&dir)?;
        if after.wrapping_sub(before) > 1 {
            return Err(AttestError::Failed(format!(
                "generation went from {before} to {after}: another writer used {}",
                dir.display()
            )));
        }
        if report.is_empty() {
            return Err(AttestError::Failed(
                "the kernel returned an empty outblob".into(),
            ));
        }
        Ok(Evidence { kind, report, aux })
    }
}

/// A report entry this process made; removed on drop.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
}

impl Entry {
    fn create(root: &Path) -> Result<Self, AttestError> {
        let n = NEXT_ENTRY.fetch_add(1, Ordering::Relaxed);
        let path = root.join(format!("edgepool-{}-{n}", std::process::id()));
        std::fs::create_dir(&path).map_err(|source| AttestError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Entry { path })
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // configfs removes the attribute files with the directory; nothing to do if it fails.
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn check_root(root: &Path) -> Result<(), AttestError> {
    if root.is_dir() {
        Ok(())
    } else {
        Err(AttestError::Unavailable(format!(
            "no configfs-tsm at {} (needs Linux 6.7+ in an SEV-SNP or TDX guest)",
            root.display()
        )))
    }
}

fn provider_kind(dir: &Path) -> Result<EvidenceKind, AttestError> {
    let path = dir.join("provider");
    let text = std::fs::read_to_string(&path).map_err(|source| AttestError::Io {
        path: path.clone(),
        source,
    })?;
    match text.trim() {
        "sev_guest" => Ok(EvidenceKind::SevSnp),
        "tdx_guest" => Ok(EvidenceKind::Tdx),
        other => Err(AttestError::Unavailable(format!(
            "configfs-tsm provider {other:?} is not supported (expected sev_guest or tdx_guest)"
        ))),
    }
}

fn read_generation(dir: &Path) -> Result<u64, AttestError> {
    let path = dir.join("generation");
    let text = std::fs::read_to_string(&path).map_err(|source| AttestError::Io {
        path: path.clone(),
        source,
    })?;
    text.trim().parse().map_err(|_| {
        AttestError::Failed(format!(
            "{} holds {:?}, expected a number",
            path.display(),
            text.trim()
        ))
    })
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), AttestError> {
    let io = |source| AttestError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io)?;
    file.write_all(data).map_err(io)
}

/// The blob, or `None` if the file does not exist (no `auxblob` on TDX).
fn read_blob(path: &Path) -> Result<Option<Vec<u8>>, AttestError> {
    let io = |source| AttestError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut data = Vec::new();
    file.take(MAX_BLOB + 1).read_to_end(&mut data).map_err(io)?;
    if data.len() as u64 > MAX_BLOB {
        return Err(AttestError::Failed(format!(
            "{} is larger than {MAX_BLOB} bytes",
            path.display()
        )));
    }
    Ok(Some(data))
}
