//! The task side of the event loop: assignments (admit or decline), job progress and outcomes,
//! and the scheduler's notifications (reveal, upload, complete, abort). Every step is a journal
//! transition committed in the same transaction as the message that reports it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::messages::{
    Accept, Assignment, Contribution, Decline, Message, Notification, ResultUploaded, Reveal,
    SecretResponse, StatusUpdate,
};
use edgepool_protocol::primitives::TaskId;
use edgepool_protocol::status::{NotificationType, ReplicateStatus, ReplicateStatusCause};
use tokio::sync::mpsc::UnboundedSender;

use super::{now_ms, Daemon, DaemonError};
use crate::failpoints::{crash_point, crash_point_at};
use crate::pipeline::{self, job, Enclave, JobContext, JobEvent, JobOutcome, Resources};

impl Daemon {
    /// The fetcher and HTTP client, built the first time a task needs them.
    pub(super) fn tools(&mut self) -> Result<&RunnerTools, DaemonError> {
        if self.runner.tools.is_none() {
            let state_dir = &self.config.agent.state_dir;
            // file:// URLs may only name files under <state_dir>/files: a task must not be able
            // to read the agent's own keystore or journal.
            let fetcher =
                crate::fetch::Fetcher::new(&self.config.fetch, &state_dir.join("cache"), None)
                    .map_err(|e| DaemonError::Capacity(format!("fetcher: {e}")))?
                    .with_file_root(state_dir.join("files"));
            let swept = match fetcher.sweep(self.store.index()) {
                Ok(swept) => swept,
                // The sweep only tidies; a state directory that cannot be written is waited
                // out, not a reason to stop.
                Err(e) if self.trouble.is_some() => {
                    tracing::warn!(error = %e, "cache not swept: the state directory cannot be written");
                    0
                }
                Err(e) => return Err(DaemonError::Capacity(format!("cache sweep: {e}"))),
            };
            if swept > 0 {
                tracing::info!(removed = swept, "cache swept");
            }
            let http = crate::fetch::build_client(
                None,
                std::time::Duration::from_secs(self.config.fetch.timeout_secs),
            )
            .map_err(|e| DaemonError::Capacity(format!("http client: {e}")))?;
            let jobs = JobContext {
                fetcher: Arc::new(fetcher),
                store: self.store.clone(),
                results_dir: self.runner.results_dir.clone(),
                events: self.runner.events.clone(),
                worker: self.signer.address(),
                attester: self.runner.attester.clone(),
                secret_timeout: std::time::Duration::from_secs(
                    self.config.agent.secret_timeout_secs,
                ),
            };
            self.runner.tools = Some(RunnerTools { jobs, http });
        }
        match &self.runner.tools {
            Some(tools) => Ok(tools),
            None => unreachable!("built above"),
        }
    }
}
use crate::store::{NewTask, StoreError, TaskOutputs, TaskRecord, Tx};

/// What the task side of the daemon holds.
#[derive(Debug)]
pub struct TaskRunner {
    /// Tasks whose job is running.
    pub running: HashSet<TaskId>,
    /// Where jobs and uploads report back.
    pub events: UnboundedSender<JobEvent>,
    /// Where result archives are kept.
    pub results_dir: std::path::PathBuf,
    /// The fetcher and the HTTP client, built on first use: loading the system's CA roots takes
    /// tens of milliseconds that READY should not wait for.
    pub tools: Option<RunnerTools>,
    /// The attester proven at start (TEE tasks), if any.
    pub attester: Option<Arc<dyn edgepool_attestation::Attester>>,
    /// TEE jobs waiting for the SMS's answer, by task, with their request's ephemeral key.
    pub secret_waiters: HashMap<TaskId, SecretWaiter>,
}

/// A TEE job waiting for the answer to its secret request.
#[derive(Debug)]
pub struct SecretWaiter {
    /// The request's ephemeral public key: only the answer to this request opens.
    pub ephemeral_public_key: [u8; 32],
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<SecretResponse>,
}

/// The parts of the task side that are costly to build.
#[derive(Debug)]
pub struct RunnerTools {
    /// Shared with every job.
    pub jobs: JobContext,
    /// For uploads to the result store.
    pub http: reqwest::Client,
}

/// Seals `message` with our next sequence number and adds it to the outbox, inside `tx`.
pub(super) fn enqueue_in(
    tx: &mut Tx<'_>,
    signer: &edgepool_protocol::signature::Signer,
    topic: &str,
    message: &Message,
    now: u64,
) -> Result<(), StoreError> {
    let seq = tx.next_own_seq()?;
    let bytes =
        Envelope::seal(signer, topic, seq, now, message).map_err(|e| StoreError::Corrupt {
            what: "outgoing message".into(),
            reason: e.to_string(),
        })?;
    tx.enqueue(topic, &bytes, false, now)?;
    Ok(())
}

/// Moves a task to `status` and reports it with a `StatusUpdate`, inside `tx`.
fn report_state(
    tx: &mut Tx<'_>,
    signer: &edgepool_protocol::signature::Signer,
    topic: &str,
    task_id: TaskId,
    status: ReplicateStatus,
    cause: Option<ReplicateStatusCause>,
    now: u64,
) -> Result<(), StoreError> {
    tx.set_task_state(task_id, status, cause, now)?;
    enqueue_in(
        tx,
        signer,
        topic,
        &status_update(task_id, status, cause, now),
        now,
    )
}

/// [`report_state`] for each progress step, in order, inside `tx`.
fn report_steps(
    tx: &mut Tx<'_>,
    signer: &edgepool_protocol::signature::Signer,
    topic: &str,
    steps: &[(TaskId, ReplicateStatus)],
    now: u64,
) -> Result<(), StoreError> {
    for (task_id, status) in steps {
        report_state(tx, signer, topic, *task_id, *status, None, now)?;
    }
    Ok(())
}

fn status_update(
    task_id: TaskId,
    status: ReplicateStatus,
    cause: Option<ReplicateStatusCause>,
    at_ms: u64,
) -> Message {
    Message::StatusUpdate(StatusUpdate {
        task_id,
        status,
        cause,
        detail: None,
        at_ms,
    })
}

/// The progress steps of `Progress` events (other events are skipped).
fn steps_of(events: &[JobEvent]) -> Vec<(TaskId, ReplicateStatus)> {
    events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Progress { task_id, status } => Some((*task_id, *status)),
            _ => None,
        })
        .collect()
}

/// The crash points of progress steps just committed.
fn after_steps(steps: &[(TaskId, ReplicateStatus)]) {
    for (_, status) in steps {
        crash_point_at("status.after_commit", *status);
    }
}

impl Daemon {
    fn resources(&self) -> Resources {
        let slots = self.config.agent.slots;
        let running = u32::try_from(self.runner.running.len()).unwrap_or(u32::MAX);
        let reserve = self
            .config
            .agent
            .min_free_disk_mb
            .saturating_mul(1024 * 1024);
        // Measured now (one statvfs), not the advertisement's minute-old figure: a disk that
        // just filled up must stop admissions at once.
        let free_disk = crate::capacity::disk_free_bytes(&self.config.agent.state_dir)
            .unwrap_or_else(|_| self.advertiser.disk_free_bytes());
        Resources {
            scheduler: self.config.pool.scheduler,
            worker: self.worker(),
            now_ms: now_ms(),
            free_slots: slots.saturating_sub(running),
            free_memory_bytes: crate::capacity::available_memory_bytes(
                &self.config.agent.system_root,
            ),
            free_disk_bytes: free_disk.saturating_sub(reserve),
            tags: self.advertiser.advertisement().tags,
            max_limits: self.config.limits.to_task_limits(),
            draining: self.draining,
            disk_low: (free_disk < reserve).then_some((free_disk, reserve)),
            journal_unwritable: self.journal_unwritable(),
        }
    }

    /// An assignment from the scheduler: admitted (journal row + `Accept`, then the job starts)
    /// or declined with its cause. A redelivered assignment changes nothing.
    pub(super) fn on_assignment(
        &mut self,
        assignment: Assignment,
        payload: &[u8],
    ) -> Result<(), DaemonError> {
        let task_id = assignment.task_id;
        let journaled = self.store.lock().task(task_id)?;
        if let Some(record) = journaled {
            return self.on_repeated_assignment(&record);
        }
        self.check_state_dir();
        let topic = self.topics.outbox.clone();
        let signer = self.signer.clone();
        let now = now_ms();
        if let Err(refusal) = pipeline::admit(&assignment, &self.resources()) {
            return self.decline(task_id, &refusal);
        }
        let accepted = self.try_commit(|tx| {
            tx.insert_task(&NewTask {
                task_id,
                deal_id: assignment.deal.deal_id,
                task_index: assignment.task_index,
                assignment: payload,
                state: ReplicateStatus::Started,
                received_at_ms: now,
            })?;
            enqueue_in(
                tx,
                &signer,
                &topic,
                &Message::Accept(Accept { task_id }),
                now,
            )
        })?;
        if !accepted {
            let reason = self.journal_unwritable().unwrap_or_default();
            return self.decline(task_id, &pipeline::Refusal::JournalUnwritable(reason));
        }
        crash_point("accept.after_commit");
        tracing::info!(%task_id, "assignment accepted");
        self.start_job(assignment)
    }

    /// The assignment of a task already journaled: the pool sends it again when it never saw
    /// our answer (e.g. a broker that acknowledged our ACCEPT or contribution died before
    /// delivering it). A contributed task sends the same contribution again, rebuilt from the
    /// journal (a task never yields two different ones); a task still running sends its ACCEPT
    /// again; anything else is left as it is. The pool takes a repeated message as a no-op.
    fn on_repeated_assignment(&mut self, record: &TaskRecord) -> Result<(), DaemonError> {
        let task_id = record.task_id;
        let message = match self.stored_contribution(record) {
            Some(contribution) => Message::Contribution(contribution),
            None if self.runner.running.contains(&task_id) => Message::Accept(Accept { task_id }),
            None => {
                tracing::debug!(%task_id, state = %record.state, "assignment already journaled: ignored");
                return Ok(());
            }
        };
        let topic = self.topics.outbox.clone();
        let signer = self.signer.clone();
        let now = now_ms();
        let kind = message.kind();
        if self.trouble.is_some()
            || !self.try_commit(|tx| enqueue_in(tx, &signer, &topic, &message, now))?
        {
            self.queue_unjournaled(message);
        }
        tracing::info!(%task_id, state = %record.state, %kind, "assignment repeated: answer sent again");
        Ok(())
    }

    /// The contribution a journaled task already made, rebuilt from its outputs and its stored
    /// assignment's enclave challenge; `None` when it has not contributed.
    fn stored_contribution(&self, record: &TaskRecord) -> Option<Contribution> {
        let outputs = &record.outputs;
        let (Some(digest), Some(hash), Some(seal), Some(fuel)) = (
            outputs.result_digest,
            outputs.result_hash,
            outputs.result_seal,
            outputs.fuel_used,
        ) else {
            return None;
        };
        let mut contribution = Contribution::standard(self.worker(), record.task_id, digest, fuel);
        if (contribution.result_hash, contribution.result_seal) != (hash, seal) {
            tracing::warn!(task_id = %record.task_id, "journaled contribution does not match its digest: not sent again");
            return None;
        }
        if let Some(signature) = &outputs.enclave_signature {
            if *signature != contribution.enclave_signature {
                let Ok(Message::Assignment(assignment)) =
                    Envelope::decode_trusted(&record.assignment)
                else {
                    return None;
                };
                contribution.enclave_challenge = assignment.authorization.enclave_challenge;
                contribution.enclave_signature = signature.clone();
            }
        }
        Some(contribution)
    }

    /// Declines an assignment; while the journal cannot be written, without a journal row.
    fn decline(&mut self, task_id: TaskId, refusal: &pipeline::Refusal) -> Result<(), DaemonError> {
        tracing::warn!(%task_id, cause = %refusal.cause(), reason = %refusal, "assignment declined");
        let decline = Message::Decline(Decline {
            task_id,
            cause: refusal.cause(),
            detail: refusal.to_string().chars().take(400).collect(),
        });
        let topic = self.topics.outbox.clone();
        let signer = self.signer.clone();
        let now = now_ms();
        if self.trouble.is_some()
            || !self.try_commit(|tx| enqueue_in(tx, &signer, &topic, &decline, now))?
        {
            self.queue_unjournaled(decline);
        }
        Ok(())
    }

    pub(super) fn start_job(&mut self, assignment: Assignment) -> Result<(), DaemonError> {
        let jobs = self.tools()?.jobs.clone();
        self.runner.running.insert(assignment.task_id);
        tokio::spawn(job::run(jobs, assignment));
        self.update_status();
        Ok(())
    }

    /// Job events that were waiting together, in order. Consecutive progress reports share one
    /// durable commit, and the ones just before another event share that event's: the journal
    /// holds each state change with the message that reports it, as one at a time would, for
    /// one `fsync` instead of several (a cached task sends five reports at once).
    ///
    /// When the journal cannot be written (already, or this batch's commit fails), the events
    /// not committed wait in `waiting.deferred`, in order, behind whatever already waits there.
    pub(super) fn on_job_events(&mut self, events: Vec<JobEvent>) -> Result<(), DaemonError> {
        let mut events = events.into_iter();
        // Progress reports not committed yet: they go with the next commit.
        let mut progress: Vec<JobEvent> = Vec::new();
        while let Some(event) = events.next() {
            if self.trouble.is_some() || !self.waiting.deferred.is_empty() {
                self.defer_jobs(progress.into_iter().chain([event]).chain(events));
                return Ok(());
            }
            if matches!(event, JobEvent::Progress { .. }) {
                progress.push(event);
                continue;
            }
            let earlier = steps_of(&progress);
            if let Some(event) = self.handle_job_event(&earlier, event)? {
                self.defer_jobs(progress.into_iter().chain([event]).chain(events));
                return Ok(());
            }
            progress.clear();
        }
        if let Some(last) = progress.pop() {
            let earlier = steps_of(&progress);
            if let Some(last) = self.handle_job_event(&earlier, last)? {
                self.defer_jobs(progress.into_iter().chain([last]));
            }
        }
        Ok(())
    }

    /// Queues job events for the journal, in order.
    fn defer_jobs(&mut self, events: impl IntoIterator<Item = JobEvent>) {
        self.waiting
            .deferred
            .extend(events.into_iter().map(super::storage::Deferred::Job));
    }

    /// A job's progress or outcome, or an upload's result. Returns the event back when the
    /// journal cannot be written (nothing was done; it is tried again later, in order).
    pub(super) fn on_job_event(
        &mut self,
        event: JobEvent,
    ) -> Result<Option<JobEvent>, DaemonError> {
        self.handle_job_event(&[], event)
    }

    /// [`Daemon::on_job_event`], committing the progress reports `earlier` (which came just
    /// before it) in the same transaction. Returns the event back when the journal cannot be
    /// written: then nothing was committed, not even `earlier`.
    fn handle_job_event(
        &mut self,
        earlier: &[(TaskId, ReplicateStatus)],
        event: JobEvent,
    ) -> Result<Option<JobEvent>, DaemonError> {
        let topic = self.topics.outbox.clone();
        let signer = self.signer.clone();
        let now = now_ms();
        match &event {
            &JobEvent::Progress { task_id, status } => {
                if !self.try_commit(|tx| {
                    report_steps(tx, &signer, &topic, earlier, now)?;
                    report_state(tx, &signer, &topic, task_id, status, None, now)
                })? {
                    return Ok(Some(event));
                }
                after_steps(earlier);
                crash_point_at("status.after_commit", status);
            }
            JobEvent::Done { task_id, outcome } => {
                let task_id = *task_id;
                if !self.contribute(earlier, task_id, outcome)? {
                    return Ok(Some(event));
                }
                self.runner.running.remove(&task_id);
                self.update_status();
            }
            JobEvent::Uploaded {
                task_id,
                result_link,
            } => {
                let task_id = *task_id;
                let message = Message::ResultUploaded(ResultUploaded {
                    task_id,
                    result_link: result_link.clone(),
                });
                if !self.try_commit(|tx| {
                    report_steps(tx, &signer, &topic, earlier, now)?;
                    tx.set_task_outputs(
                        task_id,
                        &TaskOutputs {
                            result_link: Some(result_link.clone()),
                            ..TaskOutputs::default()
                        },
                        now,
                    )?;
                    tx.set_task_state(task_id, ReplicateStatus::ResultUploaded, None, now)?;
                    enqueue_in(tx, &signer, &topic, &message, now)
                })? {
                    return Ok(Some(event));
                }
                after_steps(earlier);
                crash_point("uploaded.after_commit");
                tracing::info!(%task_id, %result_link, "result uploaded");
            }
            JobEvent::SecretRequest { request, .. } => {
                // The request carries evidence and a public key, no secret: it is journaled
                // like every other message. Only the answer's waiter lives in memory.
                let message = Message::SecretRequest((**request).clone());
                if !self.try_commit(|tx| {
                    report_steps(tx, &signer, &topic, earlier, now)?;
                    enqueue_in(tx, &signer, &topic, &message, now)
                })? {
                    return Ok(Some(event));
                }
                after_steps(earlier);
                if let JobEvent::SecretRequest {
                    task_id,
                    request,
                    reply,
                } = event
                {
                    self.runner.secret_waiters.insert(
                        task_id,
                        SecretWaiter {
                            ephemeral_public_key: request.ephemeral_public_key,
                            reply,
                        },
                    );
                    tracing::info!(%task_id, "secret request sent");
                }
            }
            JobEvent::UploadFailed { task_id, detail } => {
                let task_id = *task_id;
                tracing::warn!(%task_id, %detail, "result upload failed");
                let cause = Some(ReplicateStatusCause::ResultLinkMissing);
                if !self.try_commit(|tx| {
                    report_steps(tx, &signer, &topic, earlier, now)?;
                    report_state(
                        tx,
                        &signer,
                        &topic,
                        task_id,
                        ReplicateStatus::ResultUploadFailed,
                        cause,
                        now,
                    )
                })? {
                    return Ok(Some(event));
                }
                after_steps(earlier);
            }
        }
        Ok(None)
    }

    /// Journals and reports a failure that ends the task without a contribution, with the
    /// progress reports `earlier` that came just before the outcome; `Ok(false)` when the
    /// journal cannot be written (nothing committed).
    fn fail_without_contribution(
        &mut self,
        earlier: &[(TaskId, ReplicateStatus)],
        task_id: TaskId,
        status: ReplicateStatus,
        cause: ReplicateStatusCause,
        detail: &str,
        log: &'static str,
    ) -> Result<bool, DaemonError> {
        let topic = self.topics.outbox.clone();
        let signer = self.signer.clone();
        let now = now_ms();
        let update = Message::StatusUpdate(StatusUpdate {
            task_id,
            status,
            cause: Some(cause),
            detail: Some(detail.chars().take(400).collect()),
            at_ms: now,
        });
        if !self.try_commit(|tx| {
            report_steps(tx, &signer, &topic, earlier, now)?;
            tx.set_task_state(task_id, status, Some(cause), now)?;
            enqueue_in(tx, &signer, &topic, &update, now)
        })? {
            return Ok(false);
        }
        after_steps(earlier);
        tracing::warn!(%task_id, %status, %cause, %detail, "{log}");
        Ok(true)
    }

    /// Commits the outputs, the final compute state and the contribution together, with the
    /// progress reports `earlier` that came just before the outcome; `Ok(false)` when the
    /// journal cannot be written (nothing committed).
    fn contribute(
        &mut self,
        earlier: &[(TaskId, ReplicateStatus)],
        task_id: TaskId,
        outcome: &JobOutcome,
    ) -> Result<bool, DaemonError> {
        let topic = self.topics.outbox.clone();
        let signer = self.signer.clone();
        let worker = self.worker();
        let now = now_ms();
        let mut contribution =
            Contribution::standard(worker, task_id, outcome.digest, outcome.fuel_used);
        match &outcome.enclave {
            Enclave::Standard => {}
            Enclave::Signed {
                challenge,
                signature,
            } => {
                contribution.enclave_challenge = *challenge;
                contribution.enclave_signature = signature.clone();
            }
            Enclave::Missing => {
                // No enclave key, no contribution the chain would accept: report why and stop.
                let (status, cause, detail) = outcome.failure.clone().unwrap_or((
                    ReplicateStatus::ComputeFailed,
                    ReplicateStatusCause::EnclaveSignatureNotFound,
                    "no enclave key".into(),
                ));
                return self.fail_without_contribution(
                    earlier,
                    task_id,
                    status,
                    cause,
                    &detail,
                    "TEE task failed before its secrets: not contributed",
                );
            }
        }
        if let Some((status, cause @ ReplicateStatusCause::ContributionTimeout, detail)) =
            &outcome.failure
        {
            // Past the contribution deadline the scheduler and the chain refuse any contribution.
            return self.fail_without_contribution(
                earlier,
                task_id,
                *status,
                *cause,
                detail,
                "task reached its contribution deadline: not contributed",
            );
        }
        let committed = self.try_commit(|tx| {
            report_steps(tx, &signer, &topic, earlier, now)?;
            if let Some((status, cause, _)) = &outcome.failure {
                report_state(tx, &signer, &topic, task_id, *status, Some(*cause), now)?;
            }
            tx.set_task_outputs(
                task_id,
                &TaskOutputs {
                    result_digest: Some(contribution.result_digest),
                    result_hash: Some(contribution.result_hash),
                    result_seal: Some(contribution.result_seal),
                    enclave_signature: Some(contribution.enclave_signature.clone()),
                    fuel_used: Some(contribution.fuel_used),
                    ..TaskOutputs::default()
                },
                now,
            )?;
            tx.set_task_state(task_id, ReplicateStatus::Contributed, None, now)?;
            // A small archive is made durable by this very commit (no file, no extra fsync).
            if let job::KeptArchive::Inline(bytes) = &outcome.archive {
                tx.put_result_archive(task_id, bytes)?;
            }
            enqueue_in(
                tx,
                &signer,
                &topic,
                &Message::Contribution(contribution.clone()),
                now,
            )
        })?;
        if !committed {
            return Ok(false);
        }
        after_steps(earlier);
        crash_point("contribution.after_commit");
        match &outcome.failure {
            None => {
                tracing::info!(%task_id, digest = %outcome.digest, fuel_used = outcome.fuel_used, "contributed")
            }
            Some((status, cause, detail)) => tracing::warn!(
                %task_id, %status, %cause, %detail, digest = %outcome.digest, "task failed: contributed its error result"
            ),
        }
        Ok(true)
    }

    /// The SMS's answer to one of our secret requests: handed to the waiting job. An answer
    /// nobody waits for (a duplicate, the job gave up, or the answer to a request sent before a
    /// restart, whose private key is gone) is dropped.
    pub(super) fn on_secret_response(&mut self, response: SecretResponse) {
        let task_id = response.task_id;
        let matches = self
            .runner
            .secret_waiters
            .get(&task_id)
            .is_some_and(|w| w.ephemeral_public_key == response.ephemeral_public_key);
        if !matches {
            tracing::info!(%task_id, "secret response for no pending request (stale or duplicate): dropped");
            return;
        }
        if let Some(waiter) = self.runner.secret_waiters.remove(&task_id) {
            if waiter.reply.send(response).is_err() {
                tracing::debug!(%task_id, "secret response after the job gave up: dropped");
            }
        }
    }

    /// Uploads the task's result archive in the background; the outcome comes back as a
    /// [`JobEvent`]. Called on PLEASE_UPLOAD and, at start, for a task left `RESULT_UPLOADING`.
    pub(super) fn start_upload(&mut self, record: &TaskRecord) -> Result<(), DaemonError> {
        let task_id = record.task_id;
        // The journal's copy was opened (signature recovered, checked) when it arrived: only
        // decoded here, which spares a secp256k1 recovery per upload.
        let assignment = match Envelope::decode_trusted(&record.assignment) {
            Ok(Message::Assignment(a)) => Some(a),
            _ => None,
        };
        let Some(assignment) = assignment else {
            return Err(DaemonError::Store(StoreError::Corrupt {
                what: format!("assignment of {task_id}"),
                reason: "the stored envelope does not decode to an assignment".into(),
            }));
        };
        let client = self.tools()?.http.clone();
        let events = self.runner.events.clone();
        // A small archive was committed with the contribution; a larger one is a file.
        let archive = match self.store.lock().result_archive(task_id)? {
            Some(bytes) => job::KeptArchive::Inline(bytes),
            None => job::KeptArchive::File(job::archive_path(&self.runner.results_dir, &task_id)),
        };
        let signer = Arc::new(self.signer.clone());
        tokio::spawn(async move {
            let proxy = assignment.deal.result_storage_proxy.as_deref();
            let event =
                match pipeline::upload::upload(&client, &signer, proxy, &task_id, archive).await {
                    Ok(result_link) => {
                        crash_point("upload.after_put");
                        JobEvent::Uploaded {
                            task_id,
                            result_link,
                        }
                    }
                    Err(detail) => JobEvent::UploadFailed { task_id, detail },
                };
            let _ = events.send(event);
        });
        Ok(())
    }

    /// A notification from the scheduler about one of our tasks; `Ok(false)` when it must wait
    /// for the journal (nothing was done).
    pub(super) fn on_notification(
        &mut self,
        notification: &Notification,
    ) -> Result<bool, DaemonError> {
        let task_id = notification.task_id;
        let Some(record) = self.store.lock().task(task_id)? else {
            tracing::warn!(%task_id, kind = %notification.kind, "notification for an unknown task: ignored");
            return Ok(true);
        };
        let topic = self.topics.outbox.clone();
        let signer = self.signer.clone();
        let now = now_ms();
        match notification.kind {
            NotificationType::PleaseReveal => {
                let Some(digest) = record.outputs.result_digest else {
                    return Ok(true);
                };
                if record.state == ReplicateStatus::Revealed {
                    // Asked again: our reveal was lost on the way (e.g. a broker that acknowledged
                    // it died before delivering it). The same reveal goes again; the scheduler
                    // takes a repeated one as a no-op.
                    let reveal = Message::Reveal(Reveal {
                        task_id,
                        result_digest: digest,
                    });
                    if !self.try_commit(|tx| enqueue_in(tx, &signer, &topic, &reveal, now))? {
                        return Ok(false);
                    }
                    tracing::info!(%task_id, "reveal asked again: sent again");
                    return Ok(true);
                }
                if record.state != ReplicateStatus::Contributed {
                    tracing::debug!(%task_id, state = %record.state, "reveal asked again: ignored");
                    return Ok(true);
                }
                if notification.deadline_ms.is_some_and(|d| now > d) {
                    let cause = Some(ReplicateStatusCause::RevealTimeout);
                    return self.try_commit(|tx| {
                        report_state(
                            tx,
                            &signer,
                            &topic,
                            task_id,
                            ReplicateStatus::RevealFailed,
                            cause,
                            now,
                        )
                    });
                }
                let reveal = Message::Reveal(Reveal {
                    task_id,
                    result_digest: digest,
                });
                if !self.try_commit(|tx| {
                    tx.set_task_state(task_id, ReplicateStatus::Revealed, None, now)?;
                    enqueue_in(tx, &signer, &topic, &reveal, now)
                })? {
                    return Ok(false);
                }
                crash_point("reveal.after_commit");
                tracing::info!(%task_id, "revealed");
            }
            NotificationType::PleaseUpload => {
                if let (ReplicateStatus::ResultUploaded, Some(result_link)) =
                    (record.state, record.outputs.result_link.as_ref())
                {
                    // Asked again after our upload: the RESULT_UPLOADED was lost on the way. The
                    // same link goes again (the stored archive may already be gone); the
                    // scheduler takes a repeated one as a no-op.
                    let message = Message::ResultUploaded(ResultUploaded {
                        task_id,
                        result_link: result_link.clone(),
                    });
                    if !self.try_commit(|tx| enqueue_in(tx, &signer, &topic, &message, now))? {
                        return Ok(false);
                    }
                    tracing::info!(%task_id, "upload asked again: result link sent again");
                    return Ok(true);
                }
                if !matches!(
                    record.state,
                    ReplicateStatus::Revealed | ReplicateStatus::ResultUploadFailed
                ) {
                    return Ok(true);
                }
                if !self.try_commit(|tx| {
                    report_state(
                        tx,
                        &signer,
                        &topic,
                        task_id,
                        ReplicateStatus::ResultUploading,
                        None,
                        now,
                    )
                })? {
                    return Ok(false);
                }
                self.start_upload(&record)?;
            }
            NotificationType::PleaseComplete
            | NotificationType::PleaseAbort
            | NotificationType::PleaseAbortConsensusReached
            | NotificationType::PleaseAbortContributionTimeout => {
                let (status, cause) = match notification.kind {
                    NotificationType::PleaseComplete => (ReplicateStatus::Completed, None),
                    NotificationType::PleaseAbortConsensusReached => (
                        ReplicateStatus::Aborted,
                        Some(ReplicateStatusCause::ConsensusReached),
                    ),
                    NotificationType::PleaseAbortContributionTimeout => (
                        ReplicateStatus::Aborted,
                        Some(ReplicateStatusCause::ContributionTimeout),
                    ),
                    _ => (ReplicateStatus::Aborted, None),
                };
                if matches!(
                    record.state,
                    ReplicateStatus::Completed | ReplicateStatus::Aborted
                ) {
                    return Ok(true);
                }
                if !self.try_commit(|tx| {
                    report_state(tx, &signer, &topic, task_id, status, cause, now)?;
                    tx.drop_result_archive(task_id)
                })? {
                    return Ok(false);
                }
                crash_point_at("complete.after_commit", status);
                // The task's material is dropped; its journal row stays.
                let _ = std::fs::remove_file(job::archive_path(&self.runner.results_dir, &task_id));
                tracing::info!(%task_id, %status, "task ended");
            }
            other => tracing::debug!(%task_id, kind = %other, "notification not acted on"),
        }
        Ok(true)
    }
}
