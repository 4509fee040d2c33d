//! The TEE steps of a job: attest, request the task's secrets from the SMS (through the
//! scheduler), unseal them in memory, and sign the contribution with the enclave key.
//!
//! The secrets (dataset key, enclave key, beneficiary key) live only in this job's memory: they
//! are zeroized when dropped and never reach the journal, a file or a log line. A task that is
//! resumed after a crash simply asks again: the SMS answers a new ephemeral key as long as the
//! task is active.

use std::time::Duration;

use edgepool_protocol::messages::{Assignment, SecretRequest, SecretResponse};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::sms::{ephemeral_key, unseal, RefusalCode, ReleasedSecrets, SealError};
use edgepool_protocol::status::{ReplicateStatus, ReplicateStatusCause};
use tokio::sync::oneshot;

use super::job::{JobContext, JobEvent, StepFailure};

fn failure(cause: ReplicateStatusCause, detail: String) -> StepFailure {
    (ReplicateStatus::ComputeFailed, cause, detail, 0)
}

/// The secrets of a TEE task and its enclave key, in memory only.
#[derive(Debug)]
pub struct TeeSecrets {
    /// What the SMS released (zeroized on drop).
    pub released: ReleasedSecrets,
    /// The enclave key (its address is the task's enclave challenge).
    pub enclave: Signer,
}

/// How long to wait for the SMS: the configured bound, never past the contribution deadline.
fn wait_bound(ctx: &JobContext, assignment: &Assignment, now_ms: u64) -> Duration {
    let to_deadline = assignment
        .deal
        .contribution_deadline_ms()
        .saturating_sub(now_ms);
    ctx.secret_timeout.min(Duration::from_millis(to_deadline))
}

/// A secret request ready to send: evidence made, its ephemeral private key in memory only.
pub struct PreparedRequest {
    request: SecretRequest,
    private: ring::agreement::EphemeralPrivateKey,
}

impl std::fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRequest")
            .field("task_id", &self.request.task_id)
            .finish_non_exhaustive()
    }
}

/// Makes the task's secret request: an ephemeral key and the attester's evidence over it. Needs
/// nothing the task downloads, so a job makes it first: the request then goes out with the
/// progress reports before it, in one journal commit.
///
/// # Errors
/// A [`StepFailure`] with the cause the agent reports: `TEE_NOT_SUPPORTED` without an attester,
/// `EDGEPOOL_ATTESTATION_FAILED` when the attester fails, the refusal's cause
/// ([`RefusalCode::cause`]) when the SMS refuses, `TEE_SESSION_GENERATION_…GET_DATASET_SECRET_FAILED`
/// on a timeout or an answer that does not open.
pub async fn prepare(
    ctx: &JobContext,
    assignment: &Assignment,
) -> Result<PreparedRequest, StepFailure> {
    let task_id = assignment.task_id;
    let attester = ctx.attester.clone().ok_or_else(|| {
        failure(
            ReplicateStatusCause::TeeNotSupported,
            "no working attester".into(),
        )
    })?;
    let rng = ring::rand::SystemRandom::new();
    let (private, public) = ephemeral_key(&rng).map_err(|e| {
        failure(
            ReplicateStatusCause::AttestationFailed,
            format!("ephemeral key: {e}"),
        )
    })?;
    let challenge = assignment.authorization.enclave_challenge;
    let mut request = SecretRequest {
        task_id,
        authorization: assignment.authorization,
        enclave_challenge: challenge,
        ephemeral_public_key: public,
        app_checksum: assignment.deal.app.checksum,
        evidence: edgepool_protocol::messages::Evidence {
            kind: attester.kind(),
            report: Vec::new(),
            aux: Vec::new(),
        },
    };
    let report_data = request.report_data();
    // configfs-tsm is file I/O: keep it off the runtime's workers.
    let evidence = tokio::task::spawn_blocking(move || attester.attest(&report_data))
        .await
        .map_err(|e| {
            failure(
                ReplicateStatusCause::AttestationFailed,
                format!("attester thread: {e}"),
            )
        })?
        .map_err(|e| failure(ReplicateStatusCause::AttestationFailed, e.to_string()))?;
    request.evidence = evidence;
    Ok(PreparedRequest { request, private })
}

/// Sends a [`prepare`]d request through the event loop and waits (bounded) for the SMS's
/// answer; opens it.
///
/// # Errors
/// The refusal's cause ([`RefusalCode::cause`]) when the SMS refuses,
/// `GET_DATASET_SECRET_FAILED` on a timeout or an answer that does not open.
pub async fn exchange(
    ctx: &JobContext,
    assignment: &Assignment,
    prepared: PreparedRequest,
) -> Result<TeeSecrets, StepFailure> {
    let PreparedRequest { request, private } = prepared;
    let task_id = assignment.task_id;
    let challenge = assignment.authorization.enclave_challenge;
    let (reply, answer) = oneshot::channel::<SecretResponse>();
    let bound = wait_bound(ctx, assignment, super::job::now_ms());
    ctx.events
        .send(JobEvent::SecretRequest {
            task_id,
            request: Box::new(request),
            reply,
        })
        .map_err(|_| {
            failure(
                ReplicateStatusCause::GetDatasetSecretFailed,
                "the event loop is gone".into(),
            )
        })?;
    let response = match tokio::time::timeout(bound, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => {
            return Err(failure(
                ReplicateStatusCause::GetDatasetSecretFailed,
                "the secret request was dropped".into(),
            ))
        }
        Err(_) => {
            return Err(failure(
                ReplicateStatusCause::GetDatasetSecretFailed,
                format!("no answer from the SMS within {} ms", bound.as_millis()),
            ))
        }
    };
    let released =
        unseal(private, &response.result, &task_id, &challenge).map_err(|e| match e {
            SealError::Refused(reason) => {
                let cause = RefusalCode::of_reason(&reason)
                    .map(RefusalCode::cause)
                    .unwrap_or(ReplicateStatusCause::GetDatasetSecretFailed);
                failure(cause, format!("the SMS refused: {reason}"))
            }
            other => failure(
                ReplicateStatusCause::GetDatasetSecretFailed,
                other.to_string(),
            ),
        })?;
    let enclave = Signer::from_bytes(&released.enclave_key).map_err(|e| {
        failure(
            ReplicateStatusCause::GetDatasetSecretFailed,
            format!("the enclave key is invalid: {e}"),
        )
    })?;
    if enclave.address() != challenge {
        return Err(failure(
            ReplicateStatusCause::GetDatasetSecretFailed,
            format!(
                "the enclave key is for {}, the task's challenge is {challenge}",
                enclave.address()
            ),
        ));
    }
    Ok(TeeSecrets { released, enclave })
}
