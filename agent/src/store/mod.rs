//! The journal: one SQLite file in the state directory (`<state_dir>/journal.sqlite`). Only this
//! module knows SQL.
//!
//! The journal holds what must survive a crash or a power cut: every task with its state,
//! assignment and outputs, the outbox of messages not yet acknowledged by the broker, the sequence
//! numbers (ours and those of every peer), a small key-value table and the index of the
//! content-addressed cache.
//!
//! # Durability
//!
//! The file runs in WAL mode with `synchronous=FULL`: when [`Store::transaction`] returns `Ok`, the
//! transaction is on disk. A message whose meaning depends on a state change is enqueued in the
//! outbox *in the same transaction* as that change, and only published from the outbox, so the
//! scheduler never hears about a state the journal could forget:
//!
//! ```no_run
//! # use edgepool_agent::store::{Store, StoreError};
//! # use edgepool_protocol::primitives::TaskId;
//! # use edgepool_protocol::status::ReplicateStatus;
//! # fn sign(seq: u64) -> Vec<u8> { seq.to_be_bytes().to_vec() }
//! # fn main() -> Result<(), StoreError> {
//! let mut store = Store::open("/var/lib/edgepool".as_ref())?;
//! let task = TaskId::from([7u8; 32]);
//! let now_ms = 1_700_000_000_000;
//! store.transaction(|tx| {
//!     tx.set_task_state(task, ReplicateStatus::Computing, None, now_ms)?;
//!     let seq = tx.next_own_seq()?;
//!     let payload = sign(seq); // the sequence number is part of what is signed
//!     tx.enqueue("edgepool/v1/status", &payload, false, now_ms)?;
//!     Ok(())
//! })?;
//! // Now publish `store.pending_outbox(..)` and `ack_outbox(id)` on the broker's PUBACK.
//! # Ok(()) }
//! ```
//!
//! # Blocking
//!
//! Every call is synchronous and blocks for a short while: reads take microseconds, a durable
//! commit waits for `fsync` (about a millisecond on an SSD, much longer on an SD card). The daemon
//! keeps the [`Store`] behind a mutex and calls it from its event loop or `spawn_blocking`.
//!
//! # Layout
//!
//! - `mod.rs`: [`Store`], [`Tx`], opening and pragmas.
//! - `migrations.rs`: the numbered schema migrations (`PRAGMA user_version`).
//! - `tasks.rs`: tasks, their transitions and outputs.
//! - `outbox.rs`: messages waiting for the broker's acknowledgement.
//! - `sequences.rs`: our sequence number, the peers' last accepted ones, and the meta table.
//! - `cache.rs`: the index of the content-addressed cache (LRU).

mod cache;
mod error;
mod migrations;
mod outbox;
mod sequences;
mod shared;
mod tasks;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use cache::CacheEntry;
pub use error::StoreError;
pub use migrations::SCHEMA_VERSION;
pub use outbox::OutboxEntry;
pub use shared::SharedStore;
pub use tasks::{NewTask, TaskFilter, TaskOutputs, TaskRecord, Transition};

/// The two `synchronous` levels the writer uses: `FULL` always, `NORMAL` for the duration of a
/// [`Store::transaction_relaxed`].
#[derive(Debug, Clone, Copy)]
enum Synchronous {
    Normal,
    Full,
}

/// The journal's file name inside the state directory.
pub const JOURNAL_FILE: &str = "journal.sqlite";

/// How long a call waits for another connection's lock before giving up with
/// [`StoreError::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The journal: an open connection to `<state_dir>/journal.sqlite`.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The highest sequence number handed out by [`Store::unjournaled_seq`] (0 if none): the
    /// journal's own numbers continue above it.
    seq_floor: u64,
}

/// One open write transaction, handed to the closure of [`Store::transaction`]. Everything done
/// through it commits together, durably, or not at all.
#[derive(Debug)]
pub struct Tx<'c> {
    inner: rusqlite::Transaction<'c>,
    /// [`Store`]'s `seq_floor` when the transaction began.
    seq_floor: u64,
}

impl Store {
    /// Opens the journal of `state_dir` for reading and writing, creating the directory (mode
    /// 0700) and the file if needed, and migrating the schema to [`SCHEMA_VERSION`].
    ///
    /// # Errors
    /// [`StoreError::Open`] if the directory or file cannot be created or opened,
    /// [`StoreError::NotADatabase`] if the file is not SQLite, [`StoreError::NewerSchema`] if a
    /// newer agent wrote it, [`StoreError::Migration`] if a migration fails.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        create_state_dir(state_dir)?;
        let path = state_dir.join(JOURNAL_FILE);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(|e| StoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut store = Store {
            conn,
            path,
            seq_floor: 0,
        };
        store.configure_writer().map_err(|e| store.on_path(e))?;
        migrations::migrate(&mut store.conn).map_err(|e| store.on_path(e))?;
        Ok(store)
    }

    /// Opens an existing journal read-only, for the `status` and `tasks` commands while the daemon
    /// runs (WAL lets readers and the writer work at the same time). Writes through this handle
    /// fail with [`StoreError::Unavailable`].
    ///
    /// On a read-only or full file system SQLite may be unable to create the journal's `-shm`
    /// file (there is none after a clean stop); a journal whose `-wal` holds nothing is then
    /// read as immutable (the main file alone, no locks), which is exact as long as nothing
    /// writes it, as on such a file system nothing can.
    ///
    /// # Errors
    /// [`StoreError::NoJournal`] if there is no journal yet, [`StoreError::NotADatabase`],
    /// [`StoreError::NewerSchema`], or [`StoreError::OlderSchema`] (a read-only handle cannot
    /// migrate).
    pub fn open_read_only(state_dir: &Path) -> Result<Store, StoreError> {
        let path = state_dir.join(JOURNAL_FILE);
        if !path.is_file() {
            return Err(StoreError::NoJournal { path });
        }
        match Store::open_reader(&path, false) {
            // A WAL journal needs its `-shm` file, which a read-only or full file system may
            // not let SQLite create (after a clean stop there is none). With no WAL content
            // to read, the main file is the whole journal: read it as immutable.
            Err(StoreError::Unavailable(_)) if !has_wal_content(&path) => {
                Store::open_reader(&path, true)
            }
            other => other,
        }
    }

    /// A read-only connection to `path`; `immutable` reads the main file alone, without locks,
    /// the `-wal` or the `-shm` (only when no process writes it and no WAL content is left).
    fn open_reader(path: &Path, immutable: bool) -> Result<Store, StoreError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if immutable {
            flags |= OpenFlags::SQLITE_OPEN_URI;
            Connection::open_with_flags(immutable_uri(path), flags)
        } else {
            Connection::open_with_flags(path, flags)
        }
        .map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            seq_floor: 0,
        };
        store.configure_reader().map_err(|e| store.on_path(e))?;
        let found = store.schema_version().map_err(|e| store.on_path(e))?;
        if found == 0 {
            return Err(StoreError::NoJournal { path: store.path });
        }
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found < SCHEMA_VERSION {
            return Err(StoreError::OlderSchema {
                found,
                expected: SCHEMA_VERSION,
            });
        }
        Ok(store)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the file (`PRAGMA user_version`).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] and friends if the pragma cannot be read.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        migrations::user_version(&self.conn)
    }

    /// The journal mode SQLite reports (`"wal"` for every journal this module opens).
    ///
    /// # Errors
    /// If the pragma cannot be read.
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))?)
    }

    /// Runs `f` in one write transaction and commits it durably if `f` returns `Ok`. If `f`
    /// returns an error (or panics), everything it did is rolled back: no state change, no outbox
    /// row, no sequence number consumed.
    ///
    /// The transaction takes the write lock up front (`BEGIN IMMEDIATE`), so it never fails half
    /// way for lock contention with another writer.
    ///
    /// # Errors
    /// The error of `f`, or the error of `BEGIN` or `COMMIT`.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction_with_error(f)
    }

    /// [`Store::transaction`] for a closure with its own error type (for example one that signs
    /// the message it enqueues, and can fail to sign).
    ///
    /// # Errors
    /// The error of `f`, or the error of `BEGIN` or `COMMIT` converted into `E`.
    pub fn transaction_with_error<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let seq_floor = self.seq_floor;
        let inner = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let mut tx = Tx { inner, seq_floor };
        let value = f(&mut tx)?;
        tx.inner.commit().map_err(StoreError::from)?;
        Ok(value)
    }

    /// [`Store::transaction`] for a change that need not survive a power cut on its own: it is
    /// committed with `synchronous=NORMAL`, so the call does not wait for `fsync`.
    ///
    /// What that means, in WAL mode: the commit is in the WAL file when this returns, so a crash
    /// of the process (`kill -9`, abort) never loses it; a power cut may, until the next durable
    /// commit or checkpoint, which syncs the whole WAL and with it every relaxed commit before it
    /// (the WAL is appended in commit order, so the journal never holds a later commit without an
    /// earlier one). Use it only for changes whose loss leaves the journal as it was just before
    /// them *and* that state is safe to restart from: an outbox row the broker acknowledged (lost:
    /// published again, refused by the receiver as a replay), a cache use (LRU order only), a
    /// peer's sequence number after its message was acted on (lost: the message is handled again,
    /// and every handler is idempotent). Never for a state change that a published message
    /// reports, nor for our own sequence numbers.
    ///
    /// # Errors
    /// As [`Store::transaction`], or an error setting `synchronous` back to `FULL` (then the
    /// connection must not be used for durable work: callers stop on it).
    pub fn transaction_relaxed<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.set_synchronous(Synchronous::Normal)?;
        let result = self.transaction_with_error(f);
        self.set_synchronous(Synchronous::Full)?;
        result
    }

    /// Runs one autocommit statement relaxed (see [`Store::transaction_relaxed`]).
    fn relaxed<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.set_synchronous(Synchronous::Normal)?;
        let result = f(&self.conn);
        self.set_synchronous(Synchronous::Full)?;
        result
    }

    fn set_synchronous(&self, level: Synchronous) -> Result<(), StoreError> {
        let sql = match level {
            Synchronous::Normal => "PRAGMA synchronous = NORMAL",
            Synchronous::Full => "PRAGMA synchronous = FULL",
        };
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    fn configure_writer(&self) -> Result<(), StoreError> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            self.conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path: self.path.clone(),
                reason: format!("expected journal_mode wal, found {mode}"),
            });
        }
        // FULL: in WAL mode, every commit syncs the WAL, so a committed transaction survives a
        // power cut (NORMAL could lose the last commits).
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        self.conn.pragma_update(None, "foreign_keys", true)?;
        Ok(())
    }

    fn configure_reader(&self) -> Result<(), StoreError> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        self.conn.pragma_update(None, "query_only", true)?;
        Ok(())
    }

    /// Names the journal file in errors about the file itself.
    fn on_path(&self, err: StoreError) -> StoreError {
        match err {
            StoreError::NotADatabase { .. } => StoreError::NotADatabase {
                path: self.path.clone(),
            },
            StoreError::Corrupt { what, reason } if what == error::FILE => StoreError::Corrupt {
                what: self.path.display().to_string(),
                reason,
            },
            other => other,
        }
    }
}

/// Whether the journal's `-wal` file holds commits not yet in the main file (it exists and is
/// not empty).
fn has_wal_content(journal: &Path) -> bool {
    let mut wal = journal.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).is_ok_and(|m| m.len() > 0)
}

/// `file:<path>?immutable=1`, with the characters a URI path may not hold escaped.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

fn create_state_dir(state_dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(state_dir).map_err(|e| StoreError::Open {
        path: state_dir.to_path_buf(),
        reason: e.to_string(),
    })
}
