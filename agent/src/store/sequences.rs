//! Sequence numbers: ours (strictly increasing across restarts, first one 1) and, for every peer,
//! the last one accepted (so replays stay refused across restarts). Also the small `meta`
//! key-value table.

use edgepool_protocol::primitives::Address;
use rusqlite::{params, OptionalExtension};

use super::error::{corrupt, to_i64, to_u64};
use super::{Store, StoreError, Tx};

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

    /// A sequence number for a message that cannot be journaled (the journal cannot be
    /// written): above every number used so far, and below every number the journal hands out
    /// later. It is kept only in memory; [`Store::skip_own_seqs`] at the next start keeps it
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
