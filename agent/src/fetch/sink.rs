//! [`Sink`]: a temporary file in the cache directory that hashes what it is given and refuses to
//! grow past a cap. It disappears when dropped, unless it is persisted.

use std::path::{Path, PathBuf};

use edgepool_protocol::hash::Sha256;
use edgepool_protocol::primitives::Digest;
use tempfile::TempPath;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::error::FetchError;

/// The prefix of every temporary file in the cache directory: files with it are never indexed,
/// and [`super::Fetcher::new`] sweeps those a crash left behind.
pub const PARTIAL_PREFIX: &str = ".partial-";

/// Buffer between the network chunks (often 8–16 KiB) and the file.
const WRITE_BUFFER: usize = 1 << 20;

/// A download in progress.
pub(crate) struct Sink {
    file: BufWriter<tokio::fs::File>,
    path: TempPath,
    hasher: Sha256,
    written: u64,
    limit: u64,
    /// Named in [`FetchError::TooLarge`].
    url: String,
}

/// A complete download: a synced temporary file, its size and sha256.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) path: TempPath,
    pub(crate) size: u64,
    pub(crate) sha256: Digest,
}

impl Sink {
    /// A new, empty temporary file in `dir`.
    pub(crate) fn create(dir: &Path, limit: u64, url: &str) -> Result<Sink, FetchError> {
        let named = tempfile::Builder::new()
            .prefix(PARTIAL_PREFIX)
            .tempfile_in(dir)
            .map_err(|e| cache_io(dir, &e))?;
        let (file, path) = named.into_parts();
        Ok(Sink {
            file: BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file)),
            path,
            hasher: Sha256::new(),
            written: 0,
            limit,
            url: url.to_owned(),
        })
    }

    /// Refuses up front an item announced larger than the cap.
    pub(crate) fn check_announced(&self, length: Option<u64>) -> Result<(), FetchError> {
        match length {
            Some(n) if n > self.limit => Err(self.too_large()),
            _ => Ok(()),
        }
    }

    /// Appends a chunk.
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        let after = self.written.saturating_add(chunk.len() as u64);
        if after > self.limit {
            return Err(self.too_large());
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| cache_io(&self.path, &e))?;
        self.written = after;
        Ok(())
    }

    /// Flushes and syncs the file, and gives its size and sha256.
    pub(crate) async fn finish(mut self) -> Result<Written, FetchError> {
        self.file
            .flush()
            .await
            .map_err(|e| cache_io(&self.path, &e))?;
        self.file
            .get_ref()
            .sync_all()
            .await
            .map_err(|e| cache_io(&self.path, &e))?;
        Ok(Written {
            sha256: Digest(self.hasher.finalize()),
            size: self.written,
            path: self.path,
        })
    }

    fn too_large(&self) -> FetchError {
        FetchError::TooLarge {
            url: self.url.clone(),
            limit: self.limit,
        }
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("path", &PathBuf::from(&*self.path))
            .field("written", &self.written)
            .field("limit", &self.limit)
            .finish()
    }
}

/// A [`FetchError::CacheIo`] about `path`.
pub(crate) fn cache_io(path: &Path, err: &std::io::Error) -> FetchError {
    FetchError::CacheIo {
        path: path.to_path_buf(),
        reason: err.to_string(),
    }
}
