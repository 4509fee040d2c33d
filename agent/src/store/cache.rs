//! The index of the content-addressed cache (apps and datasets by their sha256), evicted least
//! recently used first.
//!
//! The index is the truth: an entry is added after its file is complete and verified, and removed
//! before its file is deleted. A crash in between leaves at worst an unindexed file, which the cache
//! owner can sweep; never an indexed entry without its file.

use std::path::{Path, PathBuf};

use edgepool_protocol::primitives::Digest;
use rusqlite::{params, OptionalExtension, Row};

use super::error::{corrupt, to_i64, to_u64};
use super::{Store, StoreError};

/// One file of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The sha256 of the content.
    pub digest: Digest,
    /// Its size.
    pub size_bytes: u64,
    /// Where the file is.
    pub path: PathBuf,
    /// When it was added (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// When it was last added or looked up.
    pub last_used_ms: u64,
}

const CACHE_COLUMNS: &str = "digest, size_bytes, path, created_at_ms, last_used_ms";

type RawEntry = (String, i64, String, i64, i64);

fn raw_entry(row: &Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

fn parse_entry((digest, size, path, created, used): RawEntry) -> Result<CacheEntry, StoreError> {
    Ok(CacheEntry {
        digest: digest.parse().map_err(|e| corrupt("cache.digest", e))?,
        size_bytes: to_u64("cache.size_bytes", size)?,
        path: PathBuf::from(path),
        created_at_ms: to_u64("cache.created_at_ms", created)?,
        last_used_ms: to_u64("cache.last_used_ms", used)?,
    })
}

/// Recency is a counter rather than the clock, so that two uses in the same millisecond (or a
/// clock stepping back) still order correctly.
const NEXT_USE: &str = "(SELECT COALESCE(MAX(last_use), 0) + 1 FROM cache)";

impl Store {
    /// Indexes a complete, verified file (or refreshes an existing entry); counts as a use.
    ///
    /// # Errors
    /// [`StoreError::NonUtf8Path`], [`StoreError::OutOfRange`], or an SQLite error.
    pub fn cache_put(
        &self,
        digest: Digest,
        size_bytes: u64,
        path: &Path,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let path_text = path
            .to_str()
            .ok_or_else(|| StoreError::NonUtf8Path(path.to_path_buf()))?;
        let now = to_i64("now_ms", now_ms)?;
        self.conn.execute(
            &format!(
                "INSERT INTO cache (digest, size_bytes, path, created_at_ms, last_used_ms, \
                 last_use) VALUES (?1, ?2, ?3, ?4, ?4, {NEXT_USE}) \
                 ON CONFLICT (digest) DO UPDATE SET size_bytes = excluded.size_bytes, \
                 path = excluded.path, last_used_ms = excluded.last_used_ms, \
                 last_use = excluded.last_use"
            ),
            params![
                digest.to_string(),
                to_i64("size_bytes", size_bytes)?,
                path_text,
                now
            ],
        )?;
        Ok(())
    }

    /// Looks a digest up and marks it used now.
    ///
    /// The use is recorded relaxed ([`Store::transaction_relaxed`]): only the LRU order depends
    /// on it, and a power cut that loses it leaves the entry as it was.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the row does not parse.
    pub fn cache_get(&self, digest: Digest, now_ms: u64) -> Result<Option<CacheEntry>, StoreError> {
        let now = to_i64("now_ms", now_ms)?;
        let raw = self.relaxed(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "UPDATE cache SET last_used_ms = ?2, last_use = {NEXT_USE} \
                     WHERE digest = ?1 RETURNING {CACHE_COLUMNS}"
                ))?
                .query_row(params![digest.to_string(), now], raw_entry)
                .optional()?)
        })?;
        raw.map(parse_entry).transpose()
    }

    /// Removes an entry (its file went missing or failed verification). Returns whether it was
    /// indexed.
    ///
    /// # Errors
    /// An SQLite error.
    pub fn cache_remove(&self, digest: Digest) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM cache WHERE digest = ?1", [digest.to_string()])?
            == 1)
    }

    /// The sum of the sizes of every indexed file.
    ///
    /// # Errors
    /// An SQLite error.
    pub fn cache_total_bytes(&self) -> Result<u64, StoreError> {
        let total: i64 = self.conn.query_row(
            "SELECT COALESCE(SUM(size_bytes), 0) FROM cache",
            [],
            |row| row.get(0),
        )?;
        to_u64("cache total", total)
    }

    /// Every indexed file, least recently used first.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if a row does not parse.
    pub fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CACHE_COLUMNS} FROM cache ORDER BY last_use"
        ))?;
        let raws = stmt
            .query_map([], raw_entry)?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter().map(parse_entry).collect()
    }

    /// Unindexes least recently used entries until the total is at most `max_total_bytes`, and
    /// returns them, least recently used first: the caller deletes their files.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if a row does not parse (then nothing is removed).
    pub fn cache_evict_lru(&self, max_total_bytes: u64) -> Result<Vec<CacheEntry>, StoreError> {
        // `&self` cannot have a `Tx` open at the same time (that needs `&mut self`), so an
        // unchecked transaction cannot nest.
        let tx = self.conn.unchecked_transaction()?;
        let mut total = self.cache_total_bytes()?;
        let mut evicted = Vec::new();
        if total > max_total_bytes {
            let mut stmt = tx.prepare(&format!(
                "SELECT {CACHE_COLUMNS} FROM cache ORDER BY last_use"
            ))?;
            let mut rows = stmt.query([])?;
            while total > max_total_bytes {
                let Some(row) = rows.next()? else { break };
                let entry = parse_entry(raw_entry(row)?)?;
                total = total.saturating_sub(entry.size_bytes);
                evicted.push(entry);
            }
            drop(rows);
            drop(stmt);
            for entry in &evicted {
                tx.execute(
                    "DELETE FROM cache WHERE digest = ?1",
                    [entry.digest.to_string()],
                )?;
            }
        }
        tx.commit()?;
        Ok(evicted)
    }
}
