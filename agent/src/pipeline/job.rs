//! One task's work between acceptance and contribution: fetch the app, the dataset and the input
//! files, run the app in the sandbox, compute the result digest and keep the result archive.
//!
//! A job never writes the journal: it reports progress and its outcome to the daemon's event loop
//! over a channel, and the loop commits each step (and the message that reports it) durably. As
//! the iExec worker does, a failure before or during the computation still gives a deterministic
//! result (an `error.txt` naming the cause, and a `computed.json` pointing at it), so honest
//! replicas of a failing task agree on its digest.
//!
//! When the deal asks for result encryption (a TEE task: admission declines it otherwise), the
//! archive is encrypted for the beneficiary in memory, with the key the SMS released, before it
//! is written: `<state>/results/<task>.zip` then only ever holds the encrypted form, which is
//! what the upload step reads, after a restart too. Without that key nothing is kept and the
//! task is not contributed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use edgepool_attestation::Attester;
use edgepool_protocol::dataset::{decrypt, DatasetError, DatasetKey};
use edgepool_protocol::digest::{result_digest, DigestError};
use edgepool_protocol::messages::{Assignment, Contribution, SecretRequest, SecretResponse};
use edgepool_protocol::primitives::{Address, Digest, TaskId};
use edgepool_protocol::result_archive::{encrypt_result, zip_tree, BeneficiaryPublicKey};
use edgepool_protocol::status::{ReplicateStatus, ReplicateStatusCause};
use edgepool_protocol::tree::MemTree;
use tokio::sync::mpsc::UnboundedSender;
use zeroize::Zeroizing;

use crate::fetch::{self, Fetcher, Role};
use crate::sandbox::{self, DatasetInput, InputFile, RunSpec, TaskContext};
use crate::store::SharedStore;

/// What a job tells the event loop.
#[derive(Debug)]
pub enum JobEvent {
    /// The job reached a step (reported as a status update).
    Progress {
        /// The task.
        task_id: TaskId,
        /// The step.
        status: ReplicateStatus,
    },
    /// The job is over: the result to contribute.
    Done {
        /// The task.
        task_id: TaskId,
        /// What it produced.
        outcome: JobOutcome,
    },
    /// The result archive is in the result store.
    Uploaded {
        /// The task.
        task_id: TaskId,
        /// Where.
        result_link: String,
    },
    /// The upload failed.
    UploadFailed {
        /// The task.
        task_id: TaskId,
        /// Why.
        detail: String,
    },
    /// A TEE task asks the SMS for its secrets: the loop journals and publishes the request and
    /// hands the answer back on `reply`.
    SecretRequest {
        /// The task.
        task_id: TaskId,
        /// The attested request.
        request: Box<SecretRequest>,
        /// Where the SMS's answer goes.
        reply: tokio::sync::oneshot::Sender<SecretResponse>,
    },
}

/// What a contribution carries for the enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enclave {
    /// A standard task: the zero challenge and 32 zero bytes.
    Standard,
    /// A TEE task signed by its enclave key.
    Signed {
        /// The enclave challenge (the key's address).
        challenge: Address,
        /// The 65-byte signature of `keccak256(resultHash ‖ resultSeal)`.
        signature: Vec<u8>,
    },
    /// A TEE task that never obtained its enclave key: it cannot contribute.
    Missing,
}

/// A job's result: always a digest to contribute, possibly of a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// The result digest (of the app's output, or of the error file).
    pub digest: Digest,
    /// Fuel the app used (0 when it never ran).
    pub fuel_used: u64,
    /// The failed step and its cause, when the task failed.
    pub failure: Option<(ReplicateStatus, ReplicateStatusCause, String)>,
    /// The archive kept for the upload: `iexec_out.zip`, or its encryption for the beneficiary
    /// when the deal asks for it (then never the clear form).
    pub archive: KeptArchive,
    /// The enclave part of the contribution.
    pub enclave: Enclave,
}

/// Archives up to this size are kept in the journal, committed with the contribution, rather
/// than in a file: one fsync for both instead of two more (the file's and its directory's), on
/// the critical path of every task (BENCHMARKS.md, issue 8).
pub const INLINE_ARCHIVE_MAX: usize = 64 * 1024;

/// Where a task's result archive is kept until the upload (what the job kept, and what an
/// upload reads: the journal's copy or the file).
#[derive(Clone, PartialEq, Eq)]
pub enum KeptArchive {
    /// At most [`INLINE_ARCHIVE_MAX`] bytes: the daemon commits them to the journal with the
    /// contribution (`Tx::put_result_archive`); no file is written.
    Inline(Vec<u8>),
    /// Written atomically (fsynced, directory too) to this file of the results directory, or
    /// nothing kept there (no upload will find one).
    File(PathBuf),
}

impl std::fmt::Debug for KeptArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(bytes) => write!(f, "Inline({} bytes)", bytes.len()),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// What every job shares.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Downloads into the cache.
    pub fetcher: Arc<Fetcher>,
    /// The journal (the fetcher's cache index).
    pub store: SharedStore,
    /// Where result archives are kept until the task completes.
    pub results_dir: PathBuf,
    /// Where the job reports.
    pub events: UnboundedSender<JobEvent>,
    /// Our address (the result seal of a TEE contribution is signed in the job).
    pub worker: Address,
    /// The attester proven at start, if any.
    pub attester: Option<Arc<dyn Attester>>,
    /// How long a TEE task waits for the SMS.
    pub secret_timeout: Duration,
}

/// The archive of a task's result.
pub fn archive_path(results_dir: &Path, task_id: &TaskId) -> PathBuf {
    results_dir.join(format!("{task_id}.zip"))
}

/// Runs the job to its end and reports it. Never panics on task input; a failure of our own disk
/// while keeping the archive is reported as a failure with the storage cause.
pub async fn run(ctx: JobContext, assignment: Assignment) {
    let task_id = assignment.task_id;
    // What the SMS released to a TEE task; dropped (the enclave key zeroized) at the end.
    let mut released = Released::default();
    let mut outcome = match work(&ctx, &assignment, &mut released).await {
        Ok(outcome) => outcome,
        Err(failure) => failed_outcome(&ctx, &assignment, failure, &released),
    };
    let enclave = released.enclave;
    outcome.enclave = match (assignment.is_tee(), &enclave) {
        (false, _) => Enclave::Standard,
        (true, None) => Enclave::Missing,
        (true, Some(key)) => {
            let signed =
                Contribution::tee(ctx.worker, task_id, outcome.digest, key, outcome.fuel_used);
            Enclave::Signed {
                challenge: signed.enclave_challenge,
                signature: signed.enclave_signature,
            }
        }
    };
    drop(enclave);
    crate::failpoints::crash_point("job.after_compute");
    let _ = ctx.events.send(JobEvent::Done { task_id, outcome });
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A failed step: the status to report, its cause and a detail for the logs.
pub(crate) type StepFailure = (ReplicateStatus, ReplicateStatusCause, String, u64);

/// What a TEE job keeps from the SMS's answer, in memory only.
///
/// Invariant: `enclave` is set only after everything else the task needs from the SMS was
/// checked, so a task whose deal encrypts its result and that got no usable beneficiary key has
/// no enclave key, and is therefore never contributed (nor uploaded).
#[derive(Debug, Default)]
struct Released {
    /// The task's enclave key (zeroized on drop).
    enclave: Option<edgepool_protocol::signature::Signer>,
    /// The beneficiary's public key, when the deal encrypts its result.
    result_key: Option<BeneficiaryPublicKey>,
}

/// How a task's archive is kept.
#[derive(Debug, Clone, Copy)]
enum Keep<'a> {
    /// The deal does not encrypt: the clear `iexec_out.zip`.
    Clear,
    /// Encrypted for the beneficiary (iExec's `aes-key.rsa` + `iexec_out.zip.aes`).
    EncryptedFor(&'a BeneficiaryPublicKey),
    /// The deal encrypts and we have no key: nothing is kept (and the task has no enclave key,
    /// so it is not contributed).
    Nothing,
}

impl<'a> Keep<'a> {
    fn of(assignment: &Assignment, released: &'a Released) -> Self {
        match (assignment.deal.result_encryption, &released.result_key) {
            (false, _) => Keep::Clear,
            (true, Some(key)) => Keep::EncryptedFor(key),
            (true, None) => Keep::Nothing,
        }
    }
}

/// The beneficiary key of a deal that encrypts its result, from what the SMS released.
fn beneficiary_key(pem: Option<&str>) -> Result<BeneficiaryPublicKey, StepFailure> {
    let pem = pem.ok_or_else(|| {
        (
            ReplicateStatus::ComputeFailed,
            ReplicateStatusCause::EncryptionPublicKeyMissing,
            "the deal encrypts its result and the SMS released no beneficiary key".to_string(),
            0,
        )
    })?;
    BeneficiaryPublicKey::parse(pem).map_err(|e| {
        (
            ReplicateStatus::ComputeFailed,
            ReplicateStatusCause::MalformedEncryptionPublicKey,
            format!("the beneficiary key the SMS released is unusable: {e}"),
            0,
        )
    })
}

async fn work(
    ctx: &JobContext,
    assignment: &Assignment,
    released: &mut Released,
) -> Result<JobOutcome, StepFailure> {
    let task_id = assignment.task_id;
    let deal = &assignment.deal;
    let limits = assignment.limits;
    let progress = |status| {
        let _ = ctx.events.send(JobEvent::Progress { task_id, status });
    };

    // A TEE task's secret request is made first (it needs nothing downloaded): sent right after
    // COMPUTING, it shares that report's journal commit instead of taking one of its own. A
    // failure to make it is reported where it was before, at COMPUTING.
    let tee_request = if assignment.is_tee() {
        Some(super::tee::prepare(ctx, assignment).await)
    } else {
        None
    };
    progress(ReplicateStatus::AppDownloading);
    let deadline_ms = deal.contribution_deadline_ms();
    let app = before_deadline(
        deadline_ms,
        ReplicateStatus::AppDownloadFailed,
        "the app",
        async {
            fetch_waiting(
                ctx,
                &deal.app.url,
                Some(deal.app.checksum),
                Role::App,
                limits.max_input_bytes,
                deadline_ms,
            )
            .await
            .map_err(|e| fetch_failure(ReplicateStatus::AppDownloadFailed, Role::App, &e))
        },
    )
    .await?;
    let app_bytes = read(&app.path).map_err(|e| {
        (
            ReplicateStatus::AppDownloadFailed,
            ReplicateStatusCause::StorageUnavailable,
            e,
            0,
        )
    })?;
    progress(ReplicateStatus::AppDownloaded);

    progress(ReplicateStatus::DataDownloading);
    let dataset = match &deal.dataset {
        None => None,
        Some(reference) => {
            let fetched = before_deadline(
                deadline_ms,
                ReplicateStatus::DataDownloadFailed,
                "the dataset",
                async {
                    fetch_waiting(
                        ctx,
                        &reference.url,
                        Some(reference.checksum),
                        Role::Dataset,
                        limits.max_input_bytes,
                        deadline_ms,
                    )
                    .await
                    .map_err(|e| {
                        fetch_failure(ReplicateStatus::DataDownloadFailed, Role::Dataset, &e)
                    })
                },
            )
            .await?;
            // A standard task's dataset is given as it is (admission refused an encrypted
            // one); a TEE task's is decrypted below, in memory, with the key the SMS releases.
            let content = read(&fetched.path).map_err(|e| {
                (
                    ReplicateStatus::DataDownloadFailed,
                    ReplicateStatusCause::StorageUnavailable,
                    e,
                    0,
                )
            })?;
            Some(DatasetInput {
                address: reference.address,
                filename: reference.filename.clone(),
                content: Zeroizing::new(content),
            })
        }
    };
    let mut input_files = Vec::with_capacity(deal.input_files.len());
    for (i, url) in deal.input_files.iter().enumerate() {
        let role = Role::InputFile(i + 1);
        let fetched = before_deadline(
            deadline_ms,
            ReplicateStatus::DataDownloadFailed,
            "an input file",
            async {
                fetch_waiting(ctx, url, None, role, limits.max_input_bytes, deadline_ms)
                    .await
                    .map_err(|e| fetch_failure(ReplicateStatus::DataDownloadFailed, role, &e))
            },
        )
        .await?;
        let content = read(&fetched.path).map_err(|e| {
            (
                ReplicateStatus::DataDownloadFailed,
                ReplicateStatusCause::StorageUnavailable,
                e,
                0,
            )
        })?;
        input_files.push(InputFile {
            name: input_file_name(url, i + 1),
            content,
        });
    }
    progress(ReplicateStatus::DataDownloaded);

    crate::failpoints::crash_point("job.after_fetch");
    progress(ReplicateStatus::Computing);
    let mut dataset = dataset;
    if let Some(prepared) = tee_request {
        let secrets = super::tee::exchange(ctx, assignment, prepared?).await?;
        if deal.result_encryption {
            released.result_key = Some(beneficiary_key(
                secrets.released.beneficiary_key.as_deref(),
            )?);
        }
        if let Some(input) = dataset.as_mut() {
            let Some(key) = secrets.released.dataset_key else {
                return Err((
                    ReplicateStatus::ComputeFailed,
                    ReplicateStatusCause::GetDatasetSecretFailed,
                    "the SMS released no dataset key".into(),
                    0,
                ));
            };
            let key = DatasetKey::from_bytes(key);
            // The file is the cache's, which the fetcher verified against this very checksum
            // (`fetch` was given `reference.checksum`), as for a standard task: hashing it again
            // (decrypt_checked) would cost ~0.5 ms per MiB. So bad padding means a wrong key,
            // which is what decrypt_checked would conclude after its hash.
            let plain = decrypt(&key, &input.content).map_err(|e| {
                let e = match e {
                    DatasetError::BadPadding => DatasetError::WrongKey,
                    other => other,
                };
                (
                    ReplicateStatus::ComputeFailed,
                    ReplicateStatusCause::DatasetFileDecryptionFailed,
                    e.to_string(),
                    0,
                )
            })?;
            crate::wipe::wipe(&mut input.content);
            input.content = Zeroizing::new(plain);
        }
        released.enclave = Some(secrets.enclave);
    }
    let spec = RunSpec {
        app_name: "app".into(),
        args: deal.args.clone(),
        task: TaskContext {
            task_id,
            deal_id: deal.deal_id,
            task_index: assignment.task_index,
            bot_first: deal.bot_first,
            bot_size: deal.bot_size,
        },
        dataset,
        input_files,
        env: Vec::new(),
        limits,
        start_time_ms: deal.start_time_ms,
    };
    // Guests run on blocking threads, never on the runtime's workers.
    let mut spec = spec;
    let run = tokio::task::spawn_blocking(move || {
        let run = sandbox::run(&app_bytes, &spec);
        // The dataset (plaintext for a TEE task) is wiped by words, not byte by byte.
        if let Some(dataset) = spec.dataset.as_mut() {
            crate::wipe::wipe(&mut dataset.content);
        }
        run
    })
    .await
    .map_err(|e| {
        (
            ReplicateStatus::ComputeFailed,
            ReplicateStatusCause::AppComputeFailed,
            format!("the sandbox thread ended abnormally: {e}"),
            0,
        )
    })?;
    let (output, fuel_used) = match run {
        Ok(outcome) => (outcome.output, outcome.fuel_used),
        Err(e) => {
            return Err((
                ReplicateStatus::ComputeFailed,
                e.cause(),
                e.failure.to_string(),
                e.fuel_used,
            ))
        }
    };
    // The digest is over the clear output, also when the result is encrypted: iExec's TEE
    // post-compute computes it first (`build_result_digest_in_computed_file` over /iexec_out)
    // and only then encrypts and uploads (`encrypt_and_upload_result`), in
    // tee-worker-post-compute-rust `src/compute/app_runner.rs`. The ciphertext differs on every
    // run (fresh AES key and IV), so it could not be agreed on anyway; the beneficiary checks
    // the result by decrypting it and digesting the files.
    let digest = result_digest(&output, "").map_err(|e| {
        let cause = match e {
            DigestError::ComputedFileMissing
            | DigestError::ComputedFileInvalid(_)
            | DigestError::NoOutputPath
            | DigestError::OutputPathMissing(_)
            | DigestError::OutputPathEscapes(_) => ReplicateStatusCause::DeterminismHashNotFound,
            _ => ReplicateStatusCause::ResultDigestComputationFailed,
        };
        (
            ReplicateStatus::ComputeFailed,
            cause,
            e.to_string(),
            fuel_used,
        )
    })?;
    let archive = keep_archive_waiting(
        &ctx.results_dir,
        &task_id,
        &output,
        Keep::of(assignment, released),
        deadline_ms,
    )
    .await
    .map_err(|(cause, e)| (ReplicateStatus::ComputeFailed, cause, e, fuel_used))?;
    progress(ReplicateStatus::Computed);
    Ok(JobOutcome {
        digest,
        fuel_used,
        failure: None,
        archive,
        enclave: Enclave::Standard,
    })
}

/// Runs one download, but never past the task's contribution deadline. The fetcher's timeout
/// bounds a stall, not a whole download (a big item on a slow link is fine), so a server that
/// drips a byte now and then would otherwise hold a slot for ever (found by
/// `agent/tests/hostile`); past the deadline the result is worthless anyway.
async fn before_deadline<T>(
    deadline_ms: u64,
    status: ReplicateStatus,
    what: &str,
    download: impl std::future::Future<Output = Result<T, StepFailure>>,
) -> Result<T, StepFailure> {
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
    match tokio::time::timeout(left, download).await {
        Ok(result) => result,
        Err(_) => Err((
            status,
            ReplicateStatusCause::ContributionTimeout,
            format!("{what} was still downloading at the contribution deadline {deadline_ms}"),
            0,
        )),
    }
}

fn fetch_failure(status: ReplicateStatus, role: Role, e: &fetch::FetchError) -> StepFailure {
    (status, fetch::cause(role, e), e.to_string(), 0)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The name of an input file in `/iexec_in`: the last segment of its URL, as iExec does, or
/// `input-<i>` when there is none usable.
pub fn input_file_name(url: &str, i: usize) -> String {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    let usable = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if usable {
        name.to_string()
    } else {
        format!("input-{i}")
    }
}

/// The deterministic result of a failed task: `error.txt` with the cause's name only (the
/// details may differ between machines), and `computed.json` pointing at it.
pub fn error_tree(cause: ReplicateStatusCause) -> MemTree {
    let mut tree = MemTree::new();
    let _ = tree.insert_file("error.txt", format!("{}\n", cause.as_str()));
    let _ = tree.insert_file(
        "computed.json",
        br#"{"deterministic-output-path":"/iexec_out/error.txt"}"#.to_vec(),
    );
    tree
}

fn failed_outcome(
    ctx: &JobContext,
    assignment: &Assignment,
    failure: StepFailure,
    released: &Released,
) -> JobOutcome {
    let (status, cause, detail, fuel_used) = failure;
    let tree = error_tree(cause);
    let digest = result_digest(&tree, "").unwrap_or_default();
    // Encrypted like any result of the deal, when it asks for it.
    let keep = Keep::of(assignment, released);
    let archive = keep_archive(&ctx.results_dir, &assignment.task_id, &tree, keep)
        .unwrap_or_else(|_| KeptArchive::File(archive_path(&ctx.results_dir, &assignment.task_id)));
    JobOutcome {
        digest,
        fuel_used,
        failure: Some((status, cause, detail)),
        archive,
        enclave: Enclave::Standard,
    }
}

/// A download that failed on our own disk (the cache cannot be written: full, read-only) is
/// tried again every [`ARCHIVE_RETRY`] until shortly before the contribution deadline: our
/// disk's trouble is not the task's failure, and an error result would contradict honest
/// workers. Any other failure is returned at once. The caller bounds the whole wait by the
/// deadline itself ([`before_deadline`]).
async fn fetch_waiting(
    ctx: &JobContext,
    url: &str,
    expected: Option<Digest>,
    role: Role,
    max_bytes: u64,
    deadline_ms: u64,
) -> Result<fetch::Fetched, fetch::FetchError> {
    let mut waiting = false;
    loop {
        match ctx
            .fetcher
            .fetch(ctx.store.index(), url, expected, role, max_bytes)
            .await
        {
            Err(e) if e.is_local_storage() && before_retry_limit(deadline_ms) => {
                if !waiting {
                    tracing::warn!(%role, error = %e, "download cannot be kept: waiting for the disk");
                    waiting = true;
                }
                tokio::time::sleep(ARCHIVE_RETRY).await;
            }
            other => return other,
        }
    }
}

/// Whether there is still time to wait for our own disk before the contribution deadline.
fn before_retry_limit(deadline_ms: u64) -> bool {
    now_ms() < deadline_ms.saturating_sub(2 * ARCHIVE_RETRY.as_millis() as u64)
}

/// How often a result archive that our own disk refused is written again.
const ARCHIVE_RETRY: Duration = Duration::from_secs(1);

/// [`keep_archive`], waiting for our own disk: a result computed in memory is not lost to a
/// full or read-only state directory, nor turned into an error result that honest workers
/// would contradict. The archive is zipped (and encrypted) once; its write is tried again every
/// [`ARCHIVE_RETRY`] until shortly before the contribution deadline; only then is it a failure.
async fn keep_archive_waiting(
    results_dir: &Path,
    task_id: &TaskId,
    tree: &MemTree,
    keep: Keep<'_>,
    deadline_ms: u64,
) -> Result<KeptArchive, (ReplicateStatusCause, String)> {
    let Some(bytes) = archive_bytes(tree, keep)? else {
        return Ok(KeptArchive::File(drop_archive(results_dir, task_id)));
    };
    if bytes.len() <= INLINE_ARCHIVE_MAX {
        // The journal keeps it; a stale file of an earlier attempt must not be uploaded.
        drop_archive(results_dir, task_id);
        return Ok(KeptArchive::Inline(bytes));
    }
    let mut waiting = false;
    loop {
        match write_archive(results_dir, task_id, &bytes) {
            Ok(path) => {
                if waiting {
                    tracing::info!(%task_id, "result archive written: the disk took it");
                }
                return Ok(KeptArchive::File(path));
            }
            Err(e) => {
                if !before_retry_limit(deadline_ms) {
                    return Err(e);
                }
                if !waiting {
                    tracing::warn!(%task_id, error = %e.1, "the result archive cannot be written: waiting for the disk");
                    waiting = true;
                }
                tokio::time::sleep(ARCHIVE_RETRY).await;
            }
        }
    }
}

/// Zips the output, encrypts it for the beneficiary when `keep` says so (in memory: the clear
/// zip never reaches the disk), and keeps the result for the journal (small) or writes it
/// atomically to the results directory.
fn keep_archive(
    results_dir: &Path,
    task_id: &TaskId,
    tree: &MemTree,
    keep: Keep<'_>,
) -> Result<KeptArchive, (ReplicateStatusCause, String)> {
    match archive_bytes(tree, keep)? {
        None => Ok(KeptArchive::File(drop_archive(results_dir, task_id))),
        Some(bytes) if bytes.len() <= INLINE_ARCHIVE_MAX => {
            drop_archive(results_dir, task_id);
            Ok(KeptArchive::Inline(bytes))
        }
        Some(bytes) => write_archive(results_dir, task_id, &bytes).map(KeptArchive::File),
    }
}

/// The bytes to keep for the task: the zipped output, encrypted for the beneficiary when `keep`
/// says so; `None` when nothing is kept.
fn archive_bytes(
    tree: &MemTree,
    keep: Keep<'_>,
) -> Result<Option<Vec<u8>>, (ReplicateStatusCause, String)> {
    let zip_failed = |e: String| (ReplicateStatusCause::OutFolderZipFailed, e);
    Ok(Some(match keep {
        Keep::Nothing => return Ok(None),
        Keep::Clear => {
            zip_tree(tree, "").map_err(|e| zip_failed(format!("zipping the output: {e}")))?
        }
        Keep::EncryptedFor(key) => {
            let clear = Zeroizing::new(
                zip_tree(tree, "").map_err(|e| zip_failed(format!("zipping the output: {e}")))?,
            );
            encrypt_result(&clear, key, &mut rand::rngs::OsRng).map_err(|e| {
                (
                    ReplicateStatusCause::EncryptionFailed,
                    format!("encrypting the result for the beneficiary: {e}"),
                )
            })?
        }
    }))
}

/// Nothing is kept: a stale archive of an earlier attempt is not left for an upload either.
fn drop_archive(results_dir: &Path, task_id: &TaskId) -> PathBuf {
    let path = archive_path(results_dir, task_id);
    let _ = std::fs::remove_file(&path);
    path
}

/// Writes the archive's bytes atomically to the results directory.
fn write_archive(
    results_dir: &Path,
    task_id: &TaskId,
    bytes: &[u8],
) -> Result<PathBuf, (ReplicateStatusCause, String)> {
    let path = archive_path(results_dir, task_id);
    let zip_failed = |e: String| (ReplicateStatusCause::OutFolderZipFailed, e);
    std::fs::create_dir_all(results_dir)
        .map_err(|e| zip_failed(format!("{}: {e}", results_dir.display())))?;
    crate::tools::write_atomically(&path, |file| {
        use std::io::Write;
        file.write_all(bytes)
    })
    .map_err(|e| zip_failed(format!("{}: {e}", path.display())))?;
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn input_file_names_come_from_the_url_or_are_numbered() {
        assert_eq!(input_file_name("http://h/a/data.csv?x=1", 1), "data.csv");
        assert_eq!(input_file_name("http://h/a/", 2), "input-2");
        assert_eq!(input_file_name("http://h/a/..", 3), "input-3");
        assert_eq!(input_file_name("http://h/a/b%2F..", 4), "input-4");
        assert_eq!(input_file_name("/ipfs/Qm123", 5), "Qm123");
    }

    #[test]
    fn an_encrypted_archive_holds_no_clear_result_and_decrypts_to_the_clear_zip() {
        use edgepool_protocol::result_archive::{
            decrypt_result, BeneficiaryPrivateKey, ExtractLimits,
        };
        let private = BeneficiaryPrivateKey::generate(&mut rand::rngs::OsRng, 1024).unwrap();
        let public = private.public_key();
        // A small result is kept for the journal, a large one (incompressible, above
        // INLINE_ARCHIVE_MAX) in a file: neither holds the clear result.
        let mut large = b"CLEAR-RESULT-MARKER".to_vec();
        let mut rng = rand::rngs::OsRng;
        large.extend((0..INLINE_ARCHIVE_MAX + 1024).map(|_| rand::Rng::gen::<u8>(&mut rng)));
        for (content, inline) in [(b"CLEAR-RESULT-MARKER".to_vec(), true), (large, false)] {
            let dir = tempfile::tempdir().unwrap();
            let mut tree = MemTree::new();
            tree.insert_file("result.txt", content).unwrap();
            let task = TaskId::from([7; 32]);
            let kept = keep_archive(dir.path(), &task, &tree, Keep::EncryptedFor(&public)).unwrap();
            let files = std::fs::read_dir(dir.path()).unwrap().count();
            let stored = match kept {
                KeptArchive::Inline(bytes) => {
                    assert!(inline, "a large archive must be a file");
                    assert_eq!(files, 0, "no file for an archive kept in the journal");
                    bytes
                }
                KeptArchive::File(path) => {
                    assert!(!inline, "a small archive must be kept for the journal");
                    // Only the archive itself (no temporary clear file left behind).
                    assert_eq!(files, 1);
                    std::fs::read(&path).unwrap()
                }
            };
            assert!(!stored
                .windows(b"CLEAR-RESULT-MARKER".len())
                .any(|w| w == b"CLEAR-RESULT-MARKER"));
            let clear = decrypt_result(&stored, &private, &ExtractLimits::default()).unwrap();
            assert_eq!(clear, zip_tree(&tree, "").unwrap());
        }
    }

    #[test]
    fn without_a_beneficiary_key_nothing_is_kept_and_a_stale_archive_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let task = TaskId::from([8; 32]);
        let stale = archive_path(dir.path(), &task);
        let tree = error_tree(ReplicateStatusCause::AppComputeFailed);
        // A stale file of an earlier attempt goes when the new archive is kept for the journal.
        std::fs::write(&stale, b"stale").unwrap();
        let kept = keep_archive(dir.path(), &task, &tree, Keep::Clear).unwrap();
        assert_eq!(kept, KeptArchive::Inline(zip_tree(&tree, "").unwrap()));
        assert!(!stale.exists());
        // And when nothing is kept.
        std::fs::write(&stale, b"stale").unwrap();
        let again = keep_archive(dir.path(), &task, &tree, Keep::Nothing).unwrap();
        assert_eq!(again, KeptArchive::File(stale.clone()));
        assert!(!stale.exists());
    }

    #[test]
    fn a_missing_or_malformed_beneficiary_key_is_a_typed_failure() {
        let missing = beneficiary_key(None).unwrap_err();
        assert_eq!(missing.1, ReplicateStatusCause::EncryptionPublicKeyMissing);
        let malformed = beneficiary_key(Some("not a key")).unwrap_err();
        assert_eq!(
            malformed.1,
            ReplicateStatusCause::MalformedEncryptionPublicKey
        );
    }

    #[test]
    fn the_error_result_is_deterministic_and_names_only_the_cause() {
        let a = result_digest(&error_tree(ReplicateStatusCause::AppDownloadFailed), "").unwrap();
        let b = result_digest(&error_tree(ReplicateStatusCause::AppDownloadFailed), "").unwrap();
        let c = result_digest(&error_tree(ReplicateStatusCause::OutOfFuel), "").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
