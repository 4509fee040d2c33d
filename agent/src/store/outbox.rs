//! The outbox: every message to the scheduler is written here first, in the transaction of the
//! state change it reports, and deleted when the broker acknowledges it (QoS 1). Messages made
//! while offline are thus delivered after reconnecting, in order, exactly as signed.

use rusqlite::{params, Connection};

use super::error::{to_i64, to_u64};
use super::{Store, StoreError, Tx};

/// A message waiting for the broker's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its place in the outbox: ids grow with insertion order and are never reused.
    pub id: i64,
    /// The MQTT topic.
    pub topic: String,
    /// The payload, exactly as signed.
    pub payload: Vec<u8>,
    /// Whether to publish it retained.
    pub retain: bool,
    /// When it was enqueued (ms since the Unix epoch).
    pub created_at_ms: u64,
}

fn pending(conn: &Connection, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT id, topic, payload, retain, created_at_ms FROM outbox ORDER BY id LIMIT ?1",
    )?;
    let rows = stmt
        .query_map([limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, bool>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter()
        .map(|(id, topic, payload, retain, created_at_ms)| {
            Ok(OutboxEntry {
                id,
                topic,
                payload,
                retain,
                created_at_ms: to_u64("outbox.created_at_ms", created_at_ms)?,
            })
        })
        .collect()
}

impl Tx<'_> {
    /// Appends a message to the outbox and returns its id. It is published only after the
    /// transaction commits.
    ///
    /// # Errors
    /// [`StoreError::OutOfRange`] for a time beyond `i64::MAX`, or an SQLite error.
    pub fn enqueue(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
        now_ms: u64,
    ) -> Result<i64, StoreError> {
        self.inner
            .prepare_cached(
                "INSERT INTO outbox (topic, payload, retain, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![topic, payload, retain, to_i64("now_ms", now_ms)?])?;
        Ok(self.inner.last_insert_rowid())
    }
}

impl Store {
    /// [`Tx::enqueue`] in a transaction of its own, for a message that depends on no state change
    /// (a capacity advertisement, say).
    ///
    /// # Errors
    /// As [`Tx::enqueue`].
    pub fn enqueue(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
        now_ms: u64,
    ) -> Result<i64, StoreError> {
        self.transaction(|tx| tx.enqueue(topic, payload, retain, now_ms))
    }

    /// Up to `limit` messages still to publish, oldest first.
    ///
    /// # Errors
    /// An SQLite error.
    pub fn pending_outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        pending(&self.conn, limit)
    }

    /// Deletes a message the broker acknowledged. Returns `false` if it was already gone (a
    /// duplicate acknowledgement), which is harmless.
    ///
    /// The deletion is relaxed ([`Store::transaction_relaxed`]): it becomes durable with the next
    /// durable commit. Lost to a power cut, the message is published again after the restart,
    /// and the receiver refuses it as a replay (its sequence number does not grow).
    ///
    /// # Errors
    /// An SQLite error.
    pub fn ack_outbox(&self, id: i64) -> Result<bool, StoreError> {
        self.relaxed(|conn| {
            Ok(conn
                .prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                .execute([id])?
                == 1)
        })
    }

    /// How many messages wait in the outbox.
    ///
    /// # Errors
    /// An SQLite error.
    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))?;
        to_u64("outbox count", n)
    }
}
