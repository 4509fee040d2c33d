//! The pool's journal: what the pool must know to continue after a restart, in one SQLite file
//! (WAL, `synchronous=NORMAL`). The only module of the pool that knows SQL.
//!
//! What is kept: one row per task (its deal, limits, replicas with what the pool knows of them,
//! and the scheduler's run: phase, replica states, contributions), the last outbox sequence
//! number accepted from each worker, and the pool's own last outgoing sequence number. The
//! registry is not kept: retained presence and capacity rebuild it, and the load of each worker
//! is recounted from the tasks. The shell writes one [`JournalBatch`] per turn of its loop, in
//! one transaction, before it publishes what that turn produced and before it acknowledges the
//! publications that turn consumed.

use std::path::Path;

use edgepool_protocol::primitives::{Address, TaskId};
use rusqlite::{params, Connection, TransactionBehavior};

/// Numbered migrations; `PRAGMA user_version` holds how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE task (
        id BLOB PRIMARY KEY,
        position INTEGER NOT NULL,
        body BLOB NOT NULL
    ) STRICT;
    CREATE TABLE peer (
        worker BLOB PRIMARY KEY,
        seq INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE capacity (
        worker BLOB PRIMARY KEY,
        topic TEXT NOT NULL,
        envelope BLOB NOT NULL
    ) STRICT;"];

/// Why the journal failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite failed.
    #[error("pool journal: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored row does not decode.
    #[error("pool journal: task row {id} does not decode: {why}")]
    Corrupt {
        /// The row.
        id: String,
        /// The decoder's message.
        why: String,
    },
    /// The file was written by a newer version.
    #[error("pool journal: schema version {found} is newer than this build's {known}")]
    TooNew {
        /// The version found.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
}

/// What one turn of the pool changed.
#[derive(Debug, Default)]
pub struct JournalBatch {
    /// Tasks to (re)write: id, position in submission order, encoded body.
    pub tasks: Vec<(TaskId, usize, Vec<u8>)>,
    /// Workers whose accepted outbox sequence number grew.
    pub peers: Vec<(Address, u64)>,
    /// The pool's last outgoing sequence number, when it grew.
    pub seq: Option<u64>,
    /// Workers' latest signed capacity advertisements (topic, envelope): a broker does not
    /// always deliver retained messages again to a resumed session.
    pub capacities: Vec<(Address, String, Vec<u8>)>,
}

impl JournalBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.peers.is_empty()
            && self.seq.is_none()
            && self.capacities.is_empty()
    }
}

/// What a journal holds, as loaded at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Encoded task bodies, in submission order.
    pub tasks: Vec<Vec<u8>>,
    /// The last accepted sequence number of each worker.
    pub peers: Vec<(Address, u64)>,
    /// The pool's last outgoing sequence number (0 when none was written).
    pub seq: u64,
    /// The workers' latest capacity advertisements (topic, envelope).
    pub capacities: Vec<(String, Vec<u8>)>,
}

/// The open journal.
#[derive(Debug)]
pub struct PoolJournal {
    conn: Connection,
}

impl PoolJournal {
    /// Opens (or creates) the journal at `path`.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > known {
            return Err(JournalError::TooNew {
                found: version,
                known,
            });
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            tx.execute_batch(sql)?;
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(i + 1).unwrap_or(i64::MAX),
            )?;
        }
        tx.commit()?;
        Ok(Self { conn })
    }

    /// Writes `batch` in one transaction.
    ///
    /// # Errors
    /// [`JournalError::Sql`]; nothing is written then.
    pub fn write(&mut self, batch: &JournalBatch) -> Result<(), JournalError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut task = tx.prepare_cached(
                "INSERT INTO task (id, position, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            )?;
            for (id, position, body) in &batch.tasks {
                task.execute(params![
                    id.0 .0.as_slice(),
                    i64::try_from(*position).unwrap_or(i64::MAX),
                    body
                ])?;
            }
            let mut peer = tx.prepare_cached(
                "INSERT INTO peer (worker, seq) VALUES (?1, ?2)
                 ON CONFLICT (worker) DO UPDATE SET seq = max(seq, excluded.seq)",
            )?;
            for (worker, seq) in &batch.peers {
                peer.execute(params![worker.0.as_slice(), to_sql(*seq)])?;
            }
            let mut capacity = tx.prepare_cached(
                "INSERT INTO capacity (worker, topic, envelope) VALUES (?1, ?2, ?3)
                 ON CONFLICT (worker) DO UPDATE SET topic = excluded.topic,
                 envelope = excluded.envelope",
            )?;
            for (worker, topic, envelope) in &batch.capacities {
                capacity.execute(params![worker.0.as_slice(), topic, envelope])?;
            }
            if let Some(seq) = batch.seq {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('seq', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                    params![to_sql(seq)],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Everything the journal holds.
    ///
    /// # Errors
    /// [`JournalError`].
    pub fn load(&self) -> Result<Recovered, JournalError> {
        let mut out = Recovered::default();
        let mut stmt = self
            .conn
            .prepare("SELECT body FROM task ORDER BY position")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        for row in rows {
            out.tasks.push(row?);
        }
        let mut stmt = self.conn.prepare("SELECT worker, seq FROM peer")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (worker, seq) = row?;
            let bytes: [u8; 20] =
                worker
                    .as_slice()
                    .try_into()
                    .map_err(|_| JournalError::Corrupt {
                        id: "peer".into(),
                        why: format!("a worker address of {} bytes", worker.len()),
                    })?;
            out.peers
                .push((Address(bytes), u64::try_from(seq).unwrap_or(0)));
        }
        let mut stmt = self.conn.prepare("SELECT topic, envelope FROM capacity")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            out.capacities.push(row?);
        }
        out.seq = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'seq'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_or(0, |v| u64::try_from(v).unwrap_or(0));
        Ok(out)
    }
}

fn to_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use edgepool_protocol::primitives::Bytes32;

    #[test]
    fn a_written_batch_is_loaded_back_in_submission_order_with_sequences_only_growing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.sqlite");
        let mut journal = PoolJournal::open(&path).unwrap();
        let (a, b) = (TaskId(Bytes32([1; 32])), TaskId(Bytes32([2; 32])));
        journal
            .write(&JournalBatch {
                tasks: vec![(b, 1, vec![2]), (a, 0, vec![1])],
                peers: vec![(Address([7; 20]), 10)],
                seq: Some(500),
                capacities: vec![(Address([7; 20]), "t".into(), vec![9])],
            })
            .unwrap();
        journal
            .write(&JournalBatch {
                tasks: vec![(a, 0, vec![1, 1])],
                peers: vec![(Address([7; 20]), 4)],
                seq: Some(400),
                capacities: Vec::new(),
            })
            .unwrap();
        drop(journal);
        let loaded = PoolJournal::open(&path).unwrap().load().unwrap();
        assert_eq!(loaded.tasks, vec![vec![1, 1], vec![2]]);
        assert_eq!(loaded.peers, vec![(Address([7; 20]), 10)]);
        assert_eq!(loaded.seq, 500);
        assert_eq!(loaded.capacities, vec![("t".to_string(), vec![9])]);
    }
}
