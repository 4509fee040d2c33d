//! Numbered schema migrations, tracked in `PRAGMA user_version`.
//!
//! Migration `n` (1-based) moves the journal from version `n - 1` to `n`. Each runs in its own
//! transaction together with the `user_version` bump, so a crash mid-migration leaves the journal
//! at the previous version. Migrations are append-only: never edit one that has shipped.
//!
//! Values are stored so that the file reads well with the `sqlite3` CLI: ids and digests as `0x`
//! lower-case hex text, statuses and causes as their iExec names.

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::StoreError;

/// Version 1: tasks and their transitions, outbox, sequence numbers, meta, cache index.
const V1: &str = "
CREATE TABLE tasks (
    task_id           TEXT PRIMARY KEY NOT NULL,
    deal_id           TEXT NOT NULL,
    task_index        INTEGER NOT NULL CHECK (task_index >= 0),
    state             TEXT NOT NULL,
    cause             TEXT,
    assignment        BLOB NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL,
    result_digest     TEXT,
    result_hash       TEXT,
    result_seal       TEXT,
    enclave_signature BLOB,
    fuel_used         INTEGER,
    result_link       TEXT
) STRICT;
CREATE INDEX tasks_by_state ON tasks (state);

CREATE TABLE task_transitions (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    state   TEXT NOT NULL,
    cause   TEXT,
    at_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX task_transitions_by_task ON task_transitions (task_id, id);

CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    topic         TEXT NOT NULL,
    payload       BLOB NOT NULL,
    retain        INTEGER NOT NULL CHECK (retain IN (0, 1)),
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE own_sequence (
    id       INTEGER PRIMARY KEY CHECK (id = 0),
    last_seq INTEGER NOT NULL CHECK (last_seq >= 0)
) STRICT;
INSERT INTO own_sequence (id, last_seq) VALUES (0, 0);

CREATE TABLE peer_sequences (
    sender   TEXT PRIMARY KEY NOT NULL,
    last_seq INTEGER NOT NULL CHECK (last_seq >= 0)
) STRICT;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE cache (
    digest        TEXT PRIMARY KEY NOT NULL,
    size_bytes    INTEGER NOT NULL CHECK (size_bytes >= 0),
    path          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_used_ms  INTEGER NOT NULL,
    last_use      INTEGER NOT NULL
) STRICT;
CREATE INDEX cache_by_last_use ON cache (last_use);
";

/// Result archives small enough to keep in the journal, committed with the contribution (one
/// fsync for both, where a file costs two more: its own and its directory's).
const V2: &str = "
CREATE TABLE result_archives (
    task_id TEXT PRIMARY KEY NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    bytes   BLOB NOT NULL
) STRICT;
";

/// Every migration, in order: index `i` holds migration `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Reads `PRAGMA user_version`.
pub(crate) fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    let raw: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    u32::try_from(raw).map_err(|_| super::error::corrupt("user_version", raw))
}

/// Brings the journal up to [`SCHEMA_VERSION`].
///
/// # Errors
/// [`StoreError::NewerSchema`] for a journal written by a newer build (nothing is touched);
/// [`StoreError::Migration`] if a migration fails (the journal stays at the previous version).
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found = user_version(conn)?;
    refuse_newer(found)?;
    for version in (found + 1)..=SCHEMA_VERSION {
        apply(conn, version)?;
    }
    Ok(())
}

fn refuse_newer(found: u32) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

fn apply(conn: &mut Connection, version: u32) -> Result<(), StoreError> {
    let failed = |err: rusqlite::Error| match err.sqlite_error_code() {
        // A journal that cannot be written is disk trouble (`Unavailable`), not a failed
        // migration: the daemon waits it out.
        Some(
            ErrorCode::NotADatabase
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure,
        ) => StoreError::from(err),
        _ => StoreError::Migration {
            version,
            reason: err.to_string(),
        },
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed)?;
    // Another process may have migrated while we waited for the write lock.
    let current = user_version(&tx)?;
    refuse_newer(current)?;
    if current >= version {
        return Ok(());
    }
    let index = usize::try_from(version - 1).unwrap_or(usize::MAX);
    let sql = MIGRATIONS.get(index).ok_or(StoreError::Migration {
        version,
        reason: "no such migration".to_owned(),
    })?;
    tx.execute_batch(sql).map_err(failed)?;
    tx.pragma_update(None, "user_version", version)
        .map_err(failed)?;
    tx.commit().map_err(failed)
}
