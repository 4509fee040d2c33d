//! Sequence numbers: ours (strictly increasing across restarts, first one 1) and, for every peer,
//! the last one accepted (so replays stay refused across restarts). Also the small `meta`
//! key-value table.

use edgepool_protocol::primitives::Address;
use rusqlite::{params, OptionalExtension};

use super::error::{corrupt, to_i64, to_u64};
use super::{Store, StoreError, Tx};

/// The meta key holding when the last run that could write the journal started (ms, big
/// endian).
pub const RUN_STARTED: &str = "run_started_ms";

impl Tx<'_> {
    /// Allocates our next sequence number. It is consumed only if the transaction commits, so a
    /// number is never used for two messages, and numbers only grow.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the journaled number is negative, or an SQLite error.
    /// The number is above every number [`Store::unjournaled_seq`] handed out.
    pub fn next_own_seq(&mut self) -> Result<u64, StoreError> {
        let seq: i64 = self
            .inner
            .prepare_cached(
                "UPDATE own_sequence SET last_seq = MAX(last_seq, ?1) + 1 WHERE id = 0 \
                 RETURNING last_seq",
            )?
            .query_row([to_i64("sequence number", self.seq_floor)?], |row| {
                row.get(0)
            })?;
        to_u64("own_sequence.last_seq", seq)
    }

    /// Records `seq` as accepted from `sender`; the journal keeps the highest number seen.
    ///
    /// # Errors
    /// [`StoreError::OutOfRange`] for a number beyond `i64::MAX`, or an SQLite error.
    pub fn accept_peer_seq(&mut self, sender: Address, seq: u64) -> Result<(), StoreError> {
        self.inner
            .prepare_cached(
                "INSERT INTO peer_sequences (sender, last_seq) VALUES (?1, ?2) \
                 ON CONFLICT (sender) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
            )?
            .execute(params![
                sender.to_lower_hex(),
                to_i64("sequence number", seq)?
            ])?;
        Ok(())
    }

    /// Sets a meta value (see [`Store::meta_set`]).
    ///
    /// # Errors
    /// An SQLite error.
    pub fn meta_set(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        meta_set(&self.inner, key, value)
    }
}

fn meta_set(conn: &rusqlite::Connection, key: &str, value: &[u8]) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

impl Store {
    /// [`Tx::accept_peer_seq`] in a transaction of its own.
    ///
    /// # Errors
    /// As [`Tx::accept_peer_seq`].
    pub fn accept_peer_seq(&mut self, sender: Address, seq: u64) -> Result<(), StoreError> {
        self.transaction(|tx| tx.accept_peer_seq(sender, seq))
    }

    /// Moves our sequence number `span` ahead, durably. The daemon does this at every start so
    /// that the numbers [`Store::unjournaled_seq`] handed out in the previous run (never
    /// journaled) are never used again, as long as a run hands out fewer than `span` of them.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the journal cannot be written, or an SQLite error.
    pub fn skip_own_seqs(&mut self, span: u64) -> Result<(), StoreError> {
        let span = to_i64("sequence span", span)?;
        self.transaction(|tx| {
            tx.inner.execute(
                "UPDATE own_sequence SET last_seq = last_seq + ?1 WHERE id = 0",
                [span],
            )?;
            Ok(())
        })
    }

    /// Starts a run of the daemon: moves our sequence number past every number an earlier run
    /// may have used without journaling it, durably, and notes when (meta [`RUN_STARTED`]).
    ///
    /// The skip is `span` plus the milliseconds since the last run that could write this (0
    /// when unknown): a run that started while the journal could not be written
    /// ([`Store::hold_run`]) could not note its start, and its numbers began at most that far
    /// above. So no number is reused as long as a run sends fewer than `span` unjournaled
    /// messages, and a run that cannot write sends fewer than one per millisecond between its
    /// start and the next one's (a heartbeat a second, and declines), with a wall clock that
    /// does not go back between runs.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the journal cannot be written, or an SQLite error.
    pub fn start_run(&mut self, span: u64, now_ms: u64) -> Result<(), StoreError> {
        let skip = span.saturating_add(self.since_last_run_ms(now_ms)?);
        let skip = to_i64("sequence span", skip)?;
        self.transaction(|tx| {
            tx.inner.execute(
                "UPDATE own_sequence SET last_seq = last_seq + ?1 WHERE id = 0",
                [skip],
            )?;
            tx.meta_set(RUN_STARTED, &now_ms.to_be_bytes())
        })
    }

    /// Starts a run that cannot write the journal: the skip of [`Store::start_run`] is kept in
    /// memory only, so [`Store::unjournaled_seq`] hands out numbers above it. Once the journal
    /// can be written, [`Store::resume_run`] commits it.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if a journaled number does not read, or an SQLite error.
    pub fn hold_run(&mut self, span: u64, now_ms: u64) -> Result<(), StoreError> {
        let skip = span.saturating_add(self.since_last_run_ms(now_ms)?);
        self.seq_floor = self.last_own_seq()?.saturating_add(skip);
        Ok(())
    }

    /// Ends a [`Store::hold_run`]: opens the journal again for writing (the connection held may
    /// be read-only) and commits our sequence number above every number handed out since, with
    /// this run's start. On success `self` is the new connection.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] while the journal still cannot be written; any error of
    /// [`Store::open`].
    pub fn resume_run(&mut self, now_ms: u64) -> Result<(), StoreError> {
        let state_dir = self
            .path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        // SQLite shares one `-shm` mapping among the connections of a process to a file: the
        // one held, opened while the file system was read-only, would keep a new connection
        // read-only too. It is closed first, and opened again for reading if this fails.
        let placeholder = rusqlite::Connection::open_in_memory()?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        let floor = self.seq_floor;
        let resumed = Store::open(&state_dir).and_then(|mut fresh| {
            fresh.seq_floor = floor;
            let floor = to_i64("sequence number", floor)?;
            fresh.transaction(|tx| {
                tx.inner.execute(
                    "UPDATE own_sequence SET last_seq = MAX(last_seq, ?1) WHERE id = 0",
                    [floor],
                )?;
                tx.meta_set(RUN_STARTED, &now_ms.to_be_bytes())
            })?;
            Ok(fresh)
        });
        match resumed {
            Ok(fresh) => {
                *self = fresh;
                Ok(())
            }
            Err(e) => {
                let reader =
                    Store::open_read_only(&state_dir).or_else(|_| Store::open(&state_dir))?;
                self.conn = reader.conn;
                Err(e)
            }
        }
    }

    /// Milliseconds from the last noted run start to `now_ms` (0 if none, or in the future).
    fn since_last_run_ms(&self, now_ms: u64) -> Result<u64, StoreError> {
        let Some(bytes) = self.meta_get(RUN_STARTED)? else {
            return Ok(0);
        };
        let started = <[u8; 8]>::try_from(bytes.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| corrupt("meta.run_started_ms", "expected 8 bytes"))?;
        Ok(now_ms.saturating_sub(started))
    }

    /// A sequence number for a message that cannot be journaled (the journal cannot be
    /// written): above every number used so far, and below every number the journal hands out
    /// later. It is kept only in memory; [`Store::start_run`] at the next start keeps it
    /// from being reused. Only for messages whose loss is harmless (a decline, a heartbeat).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the journaled number is negative, or an SQLite error.
    pub fn unjournaled_seq(&mut self) -> Result<u64, StoreError> {
        let next = self.last_own_seq()?.max(self.seq_floor) + 1;
        self.seq_floor = next;
        Ok(next)
    }

    /// Writes a small meta value in a transaction of its own: whether the journal can be
    /// written right now.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it cannot.
    pub fn probe_write(&mut self, now_ms: u64) -> Result<(), StoreError> {
        self.transaction(|tx| tx.meta_set("write_probe", &now_ms.to_be_bytes()))
    }

    /// The last sequence number we allocated (0 before the first).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if it is negative.
    pub fn last_own_seq(&self) -> Result<u64, StoreError> {
        let seq: i64 = self.conn.query_row(
            "SELECT last_seq FROM own_sequence WHERE id = 0",
            [],
            |row| row.get(0),
        )?;
        to_u64("own_sequence.last_seq", seq)
    }

    /// Every peer with the last sequence number accepted from it, sorted by address: what
    /// `SequenceTracker::restore` takes.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if a row does not parse.
    pub fn peer_sequences(&self) -> Result<Vec<(Address, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT sender, last_seq FROM peer_sequences ORDER BY sender")?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(sender, seq)| {
                let address = sender
                    .parse::<Address>()
                    .map_err(|e| corrupt("peer_sequences.sender", e))?;
                Ok((address, to_u64("peer_sequences.last_seq", seq)?))
            })
            .collect()
    }

    /// A small value stored under `key` (for example the hash of the last capacity advertisement,
    /// or when the agent started).
    ///
    /// # Errors
    /// An SQLite error.
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// Stores `value` under `key`, replacing any previous value, durably.
    ///
    /// # Errors
    /// An SQLite error.
    pub fn meta_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        meta_set(&self.conn, key, value)
    }
}
