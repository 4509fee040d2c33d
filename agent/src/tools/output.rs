//! Writing an output file so that it appears whole or not at all.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `path` through `fill`: the data goes to a temporary file beside it, which is synced and
/// renamed over `path` only when `fill` succeeds. On failure the temporary file is removed and
/// `path` is left as it was, so a half-decrypted dataset never appears under its final name.
///
/// # Errors
/// `fill`'s error, or an I/O error creating, syncing or renaming the file (as `E` via `From`).
pub fn write_atomically<T, E>(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<io::Error>,
{
    let temp = temp_path(path);
    let result = (|| {
        let file = File::create(&temp)?;
        let mut writer = BufWriter::with_capacity(64 * 1024, file);
        let value = fill(&mut writer)?;
        writer.flush()?;
        let file = writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // The rename is durable only once the directory's entry is: without this, a power cut
        // after a contribution could leave the journal saying "contributed" and no archive.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(value)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".partial-{}", std::process::id()));
    path.with_file_name(name)
}
