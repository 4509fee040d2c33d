//! The journal cannot be written: the state directory is full to the last byte, read-only or
//! failing. The daemon does not stop (it would lose the running tasks and systemd would restart
//! it into the same trouble); it stops taking work and waits for the journal to come back.
//!
//! While the journal cannot be written:
//! - every assignment is declined (`INSUFFICIENT_RESOURCES`, [`Refusal::JournalUnwritable`]
//!   with the reason) and the heartbeat says `accepting = false`, `free_slots = 0`; both are
//!   sent without a journal row, with a number from [`Store::unjournaled_seq`], and only once
//!   every outbox row has been published on the connection (so no journaled message can arrive
//!   after them with a lower number);
//! - whatever must be journaled (a job's progress or result, a scheduler notification, the
//!   deletion of an acknowledged outbox row) waits in order in [`Deferred`]; an inbox message
//!   waiting there is acknowledged only once acted on and journaled;
//! - every [`RETRY_EVERY`] the waiting work is tried again, in order; when none is left and a
//!   probe write succeeds, the agent accepts tasks again.
//!
//! [`Refusal::JournalUnwritable`]: crate::pipeline::Refusal::JournalUnwritable
//! [`Store::unjournaled_seq`]: crate::store::Store::unjournaled_seq

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::messages::Message;
use edgepool_protocol::primitives::Address;
use rumqttc::{AsyncClient, QoS};

use super::{now_ms, Daemon, DaemonError};
use crate::link::Tracked;
use crate::pipeline::JobEvent;
use crate::store::{Store, StoreError, Tx};

/// How often work waiting for the journal is tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How many sequence numbers the daemon skips at each start: the numbers a run handed out
/// without journaling them are never reused, as long as a run sends fewer than this many
/// unjournaled messages (a heartbeat every second for twelve days).
pub const UNJOURNALED_SEQ_SPAN: u64 = 1 << 20;

/// Why the journal cannot be written, since when.
#[derive(Debug, Clone)]
pub struct Trouble {
    /// What SQLite or the file system said.
    pub reason: String,
    /// When it started.
    pub since: Instant,
}

/// Work that must be journaled, waiting for the journal.
#[derive(Debug)]
pub enum Deferred {
    /// A job's progress or outcome.
    Job(JobEvent),
    /// An inbox message opened and accepted, not yet acted on (nor acknowledged).
    Inbox {
        /// The message (boxed: it is the large variant).
        message: Box<Message>,
        /// Its sender and sequence number (committed once acted on).
        sender: Address,
        seq: u64,
        /// The publish to acknowledge.
        publish: rumqttc::Publish,
        /// The connection it came on (a PUBACK on a later one would name another message).
        connection: u64,
    },
    /// An outbox row the broker acknowledged, to delete.
    Ack(i64),
}

/// The queue of [`Deferred`] work and the messages to send without a journal row.
#[derive(Debug, Default)]
pub struct Waiting {
    /// Work in arrival order.
    pub deferred: VecDeque<Deferred>,
    /// Declines and at most one heartbeat, sealed when sent.
    pub unjournaled: Vec<Message>,
}

/// Opens the journal at start. A journal that cannot be written (full or read-only state
/// directory) is not a reason to stay down: it is opened as it can be (read-only if need be),
/// the run's start is held in memory ([`Store::hold_run`]) and the daemon starts in trouble,
/// with the reason. Returns the journal and that reason.
///
/// # Errors
/// [`DaemonError::StateDirUnusable`] when the journal can be neither written nor read (a first
/// start there: there is no journal yet); any other journal error.
pub(super) fn open_journal(
    state_dir: &Path,
    now_ms: u64,
) -> Result<(Store, Option<String>), DaemonError> {
    match Store::open(state_dir) {
        Ok(mut store) => match store.start_run(UNJOURNALED_SEQ_SPAN, now_ms) {
            Ok(()) => Ok((store, None)),
            Err(StoreError::Unavailable(reason)) => {
                store.hold_run(UNJOURNALED_SEQ_SPAN, now_ms)?;
                Ok((store, Some(reason)))
            }
            Err(e) => Err(e.into()),
        },
        Err(e) => {
            let trouble = match &e {
                StoreError::Unavailable(reason) => Some(reason.clone()),
                _ => crate::capacity::state_dir_unwritable(state_dir),
            };
            let Some(reason) = trouble else {
                return Err(e.into());
            };
            match Store::open_read_only(state_dir) {
                Ok(mut store) => {
                    store.hold_run(UNJOURNALED_SEQ_SPAN, now_ms)?;
                    Ok((store, Some(reason)))
                }
                Err(read) => Err(DaemonError::StateDirUnusable {
                    state_dir: state_dir.to_path_buf(),
                    reason: explain(state_dir, reason),
                    read: read.to_string(),
                }),
            }
        }
    }
}

/// SQLite's reason, with what the state directory says when that is clearer (SQLite reports a
/// `-shm` it cannot extend on a full disk as "disk I/O error").
fn explain(state_dir: &Path, reason: String) -> String {
    if reason.contains(&state_dir.display().to_string()) {
        return reason;
    }
    if let Some(unwritable) = crate::capacity::state_dir_unwritable(state_dir)
        .or_else(|| crate::capacity::state_dir_write_probe(state_dir))
    {
        return format!("{reason}: {unwritable}");
    }
    match crate::capacity::disk_free_bytes(state_dir) {
        Ok(0) => format!("{reason}: {} is full (0 bytes free)", state_dir.display()),
        _ => reason,
    }
}

impl Daemon {
    /// Runs `f` in one journal transaction. `Ok(false)` when the journal cannot be written
    /// (nothing was committed and the daemon now knows it is in trouble).
    ///
    /// # Errors
    /// Any other journal error.
    pub(super) fn try_commit(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<(), StoreError>,
    ) -> Result<bool, DaemonError> {
        let result = self.store.lock().transaction(f);
        self.committed(result)
    }

    /// [`Daemon::try_commit`] with a relaxed commit (`Store::transaction_relaxed`: durable
    /// with the next durable one), for what may be lost to a power cut.
    ///
    /// # Errors
    /// Any other journal error.
    pub(super) fn try_commit_relaxed(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<(), StoreError>,
    ) -> Result<bool, DaemonError> {
        let result = self.store.lock().transaction_relaxed(f);
        self.committed(result)
    }

    /// Whether a commit went through; a journal that cannot be written is trouble, not an
    /// error.
    fn committed(&mut self, result: Result<(), StoreError>) -> Result<bool, DaemonError> {
        match result {
            Ok(()) => Ok(true),
            Err(StoreError::Unavailable(reason)) => {
                self.journal_failed(reason);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an acknowledged outbox row; `Ok(false)` when the journal cannot be written.
    ///
    /// # Errors
    /// Any other journal error.
    pub(super) fn try_ack_outbox(&mut self, id: i64) -> Result<bool, DaemonError> {
        let result = self.store.lock().ack_outbox(id);
        match result {
            Ok(_) => Ok(true),
            Err(StoreError::Unavailable(reason)) => {
                self.journal_failed(reason);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Turns a journal that cannot be written into trouble instead of an error, for work that
    /// may be dropped (a capacity refresh: it is done again later).
    pub(super) fn tolerate(&mut self, result: Result<(), DaemonError>) -> Result<(), DaemonError> {
        match result {
            Err(DaemonError::Store(StoreError::Unavailable(reason))) => {
                self.journal_failed(reason);
                Ok(())
            }
            other => other,
        }
    }

    /// Why the journal cannot be written now, if it cannot: the known trouble, or a read-only
    /// or unwritable state directory seen before any write failed.
    pub(super) fn journal_unwritable(&self) -> Option<String> {
        if let Some(trouble) = &self.trouble {
            return Some(trouble.reason.clone());
        }
        crate::capacity::state_dir_unwritable(&self.config.agent.state_dir)
    }

    /// Enters the trouble as soon as the state directory is seen read-only or unwritable,
    /// before a write fails (the journal's open files may still take writes that new files,
    /// result archives and downloads, would not).
    pub(super) fn check_state_dir(&mut self) {
        if self.trouble.is_none() {
            if let Some(reason) =
                crate::capacity::state_dir_unwritable(&self.config.agent.state_dir)
            {
                self.journal_failed(reason);
            }
        }
    }

    /// Records that the journal cannot be written (logged once, when the trouble starts).
    pub(super) fn journal_failed(&mut self, reason: String) {
        let reason = explain(&self.config.agent.state_dir, reason);
        if let Some(trouble) = &mut self.trouble {
            trouble.reason = reason;
            return;
        }
        tracing::error!(
            state_dir = %self.config.agent.state_dir.display(),
            error = %reason,
            "the journal cannot be written: not accepting tasks until it can (running tasks wait)"
        );
        self.trouble = Some(Trouble {
            reason,
            since: Instant::now(),
        });
        self.queue_unjournaled(self.heartbeat());
        self.update_status();
    }

    /// Queues a message to send without a journal row (a newer heartbeat replaces an older).
    pub(super) fn queue_unjournaled(&mut self, message: Message) {
        if matches!(message, Message::Heartbeat(_)) {
            self.waiting
                .unjournaled
                .retain(|m| !matches!(m, Message::Heartbeat(_)));
        }
        self.waiting.unjournaled.push(message);
    }

    /// Sends the unjournaled messages once every outbox row has been published on this
    /// connection: a journaled message must never arrive after one with a higher number.
    pub(super) fn flush_unjournaled(&mut self, client: &AsyncClient) -> Result<(), DaemonError> {
        if self.waiting.unjournaled.is_empty() || !self.connected {
            return Ok(());
        }
        const LOOK_AHEAD: usize = 4096;
        let pending = self.store.lock().pending_outbox(LOOK_AHEAD)?;
        if pending.len() == LOOK_AHEAD || pending.iter().any(|e| self.tracker.needs_sending(e.id)) {
            return Ok(());
        }
        let topic = self.topics.outbox.clone();
        for message in std::mem::take(&mut self.waiting.unjournaled) {
            let seq = self.store.lock().unjournaled_seq()?;
            let bytes =
                Envelope::seal(&self.signer, &topic, seq, now_ms(), &message).map_err(|e| {
                    DaemonError::Seal {
                        kind: message.kind().as_str(),
                        reason: e.to_string(),
                    }
                })?;
            if client
                .try_publish(&topic, QoS::AtLeastOnce, false, bytes)
                .is_ok()
            {
                self.tracker.requested(Tracked::Unjournaled);
                tracing::info!(
                    kind = message.kind().as_str(),
                    seq,
                    "sent without a journal row"
                );
            }
        }
        Ok(())
    }

    /// Tries the waiting work again, in order; when none is left and the journal takes a
    /// probe write, accepts tasks again.
    pub(super) fn retry_journal(&mut self, client: &AsyncClient) -> Result<(), DaemonError> {
        if self.start_held && !self.resume_run()? {
            return Ok(());
        }
        while let Some(item) = self.waiting.deferred.pop_front() {
            match item {
                Deferred::Job(event) => {
                    if let Some(event) = self.on_job_event(event)? {
                        self.waiting.deferred.push_front(Deferred::Job(event));
                        return Ok(());
                    }
                }
                Deferred::Inbox {
                    message,
                    sender,
                    seq,
                    publish,
                    connection,
                } => {
                    let done = self.act_on(&message, &publish.payload)?
                        && self.try_commit_relaxed(|tx| tx.accept_peer_seq(sender, seq))?;
                    if !done {
                        // Acting again is harmless: every handler is idempotent.
                        self.waiting.deferred.push_front(Deferred::Inbox {
                            message,
                            sender,
                            seq,
                            publish,
                            connection,
                        });
                        return Ok(());
                    }
                    if connection == self.counters.connections && self.connected {
                        let _ = client.try_ack(&publish);
                    }
                }
                Deferred::Ack(id) => {
                    if !self.try_ack_outbox(id)? {
                        self.waiting.deferred.push_front(Deferred::Ack(id));
                        return Ok(());
                    }
                }
            }
        }
        if let Some(reason) = crate::capacity::state_dir_unwritable(&self.config.agent.state_dir) {
            self.journal_failed(reason);
            return Ok(());
        }
        let probe = self.store.lock().probe_write(now_ms());
        match probe {
            Ok(()) => {
                let lasted = self
                    .trouble
                    .take()
                    .map(|t| t.since.elapsed().as_millis() as u64)
                    .unwrap_or(0);
                tracing::info!(
                    unwritable_ms = lasted,
                    "the journal can be written again: accepting tasks"
                );
                self.waiting
                    .unjournaled
                    .retain(|m| !matches!(m, Message::Heartbeat(_)));
                self.enqueue_heartbeat()?;
                self.update_status();
                // An advertisement sealed without a journal row is sealed again, journaled.
                let resealed = self.reseal_and_publish(client);
                self.tolerate(resealed)?;
                self.flush(client)
            }
            Err(StoreError::Unavailable(reason)) => {
                self.journal_failed(reason);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// For a daemon that started in trouble: opens the journal again for writing and journals
    /// this run's start (`Store::resume_run`). `Ok(false)` while it still cannot.
    ///
    /// # Errors
    /// A journal error other than one of the disk.
    fn resume_run(&mut self) -> Result<bool, DaemonError> {
        if let Some(reason) = crate::capacity::state_dir_unwritable(&self.config.agent.state_dir) {
            self.journal_failed(reason);
            return Ok(false);
        }
        let resumed = self.store.lock().resume_run(now_ms());
        match resumed {
            Ok(()) => {
                self.start_held = false;
                tracing::info!(
                    "the journal is open for writing again: this run's start is journaled"
                );
                Ok(true)
            }
            Err(StoreError::Unavailable(reason) | StoreError::Open { reason, .. }) => {
                tracing::debug!(error = %reason, "the journal cannot be opened for writing yet");
                self.journal_failed(reason);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
