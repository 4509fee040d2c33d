//! The content-addressed cache: verified files named `<cache_dir>/<hex sha256>`, indexed in the
//! journal ([`CacheIndex`]) and evicted least recently used first when their total passes the cap.
//!
//! Order of operations, so that a crash never leaves an indexed entry without its verified file:
//! download to a `.partial-*` temporary file, hash while streaming, sync, check the checksum,
//! rename to `<hex sha256>`, sync the directory, *then* index it. Eviction unindexes first, then
//! deletes. A crash can leave at worst a temporary or an unindexed file, which [`Cache::sweep`]
//! removes.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use edgepool_protocol::primitives::Digest;
use tempfile::TempPath;

use super::error::FetchError;
use super::sink::{cache_io, Written, PARTIAL_PREFIX};
use crate::store::{CacheEntry, Store, StoreError};

/// The journal's cache index, as the fetcher needs it. Every call is a short synchronous SQLite
/// statement. Implemented for `Mutex<Store>` (the lock is held for one statement); tests and
/// other owners of the journal can implement it over their own handle.
pub trait CacheIndex: Sync {
    /// Looks `digest` up and marks it used ([`Store::cache_get`]).
    ///
    /// # Errors
    /// A journal error.
    fn lookup(&self, digest: Digest, now_ms: u64) -> Result<Option<CacheEntry>, StoreError>;
    /// Indexes a verified file ([`Store::cache_put`]).
    ///
    /// # Errors
    /// A journal error.
    fn insert(&self, digest: Digest, size: u64, path: &Path, now_ms: u64)
        -> Result<(), StoreError>;
    /// Unindexes `digest` ([`Store::cache_remove`]).
    ///
    /// # Errors
    /// A journal error.
    fn forget(&self, digest: Digest) -> Result<bool, StoreError>;
    /// Unindexes least recently used entries down to `max_total_bytes` and returns them
    /// ([`Store::cache_evict_lru`]).
    ///
    /// # Errors
    /// A journal error.
    fn evict(&self, max_total_bytes: u64) -> Result<Vec<CacheEntry>, StoreError>;
    /// Every indexed entry ([`Store::cache_entries`]).
    ///
    /// # Errors
    /// A journal error.
    fn entries(&self) -> Result<Vec<CacheEntry>, StoreError>;
}

impl CacheIndex for Mutex<Store> {
    fn lookup(&self, digest: Digest, now_ms: u64) -> Result<Option<CacheEntry>, StoreError> {
        locked(self).cache_get(digest, now_ms)
    }

    fn insert(
        &self,
        digest: Digest,
        size: u64,
        path: &Path,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        locked(self).cache_put(digest, size, path, now_ms)
    }

    fn forget(&self, digest: Digest) -> Result<bool, StoreError> {
        locked(self).cache_remove(digest)
    }

    fn evict(&self, max_total_bytes: u64) -> Result<Vec<CacheEntry>, StoreError> {
        locked(self).cache_evict_lru(max_total_bytes)
    }

    fn entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        locked(self).cache_entries()
    }
}

/// A panic while the lock was held cannot have left SQLite half-written (every statement is
/// atomic), so a poisoned lock is still usable.
fn locked(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cache directory and its cap.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    max_bytes: u64,
}

/// Where a verified download ended up.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// Renamed into the cache and indexed.
    Cached(PathBuf),
    /// Larger than the whole cache: kept as a temporary file, deleted when dropped.
    TooBigToCache(TempPath),
}

impl Cache {
    /// Creates the directory (mode 0700) if needed.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Cache, FetchError> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(|e| cache_io(dir, &e))?;
        Ok(Cache {
            dir: dir.to_path_buf(),
            max_bytes,
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a digest is cached in.
    pub(crate) fn file_for(&self, digest: Digest) -> PathBuf {
        self.dir.join(hex::encode(digest.as_bytes()))
    }

    /// The cached entry of `digest`, if indexed and its file is still there with the indexed
    /// size; an entry whose file went missing or changed size is unindexed and forgotten.
    ///
    /// The content is not re-hashed: the directory belongs to the agent (mode 0700) and files
    /// only enter it verified.
    pub(crate) fn lookup<I: CacheIndex + ?Sized>(
        &self,
        index: &I,
        digest: Digest,
        now_ms: u64,
    ) -> Result<Option<CacheEntry>, FetchError> {
        let Some(entry) = index.lookup(digest, now_ms)? else {
            return Ok(None);
        };
        match std::fs::metadata(&entry.path) {
            Ok(meta) if meta.is_file() && meta.len() == entry.size_bytes => Ok(Some(entry)),
            _ => {
                tracing::warn!(%digest, path = %entry.path.display(), "cached file missing or changed: forgetting it");
                index.forget(digest)?;
                remove_quietly(&entry.path);
                Ok(None)
            }
        }
    }

    /// Moves a verified download into the cache, indexes it and evicts down to the cap.
    pub(crate) async fn admit<I: CacheIndex + ?Sized>(
        &self,
        index: &I,
        written: Written,
        now_ms: u64,
    ) -> Result<Admitted, FetchError> {
        if written.size > self.max_bytes {
            return Ok(Admitted::TooBigToCache(written.path));
        }
        let dest = self.file_for(written.sha256);
        written
            .path
            .persist(&dest)
            .map_err(|e| cache_io(&dest, &e.error))?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || sync_dir(&dir))
            .await
            .map_err(|e| FetchError::CacheIo {
                path: self.dir.clone(),
                reason: e.to_string(),
            })??;
        index.insert(written.sha256, written.size, &dest, now_ms)?;
        for evicted in index.evict(self.max_bytes)? {
            tracing::info!(digest = %evicted.digest, size = evicted.size_bytes, "evicted from the download cache");
            remove_quietly(&evicted.path);
        }
        Ok(Admitted::Cached(dest))
    }

    /// Removes what a crash can leave: temporary files, files nobody indexed, and index entries
    /// whose file is gone. Call it at start, before any fetch. Returns how many files were
    /// removed.
    ///
    /// # Errors
    /// [`FetchError::CacheIo`] if the directory cannot be listed, or a journal error.
    pub(crate) fn sweep<I: CacheIndex + ?Sized>(&self, index: &I) -> Result<usize, FetchError> {
        let mut indexed: HashSet<OsString> = HashSet::new();
        for entry in index.entries()? {
            if entry.path.is_file() {
                if let Some(name) = entry.path.file_name() {
                    indexed.insert(name.to_owned());
                }
            } else {
                index.forget(entry.digest)?;
            }
        }
        let mut removed = 0;
        let listing = std::fs::read_dir(&self.dir).map_err(|e| cache_io(&self.dir, &e))?;
        for item in listing {
            let item = item.map_err(|e| cache_io(&self.dir, &e))?;
            let name = item.file_name();
            let is_partial = name.to_string_lossy().starts_with(PARTIAL_PREFIX);
            if is_partial || !indexed.contains(&name) {
                remove_quietly(&item.path());
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), FetchError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| cache_io(dir, &e))
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a cache file");
        }
    }
}
