//! Uploading a result archive to the deal's result store (`result_storage_proxy`) on
//! PLEASE_UPLOAD: `PUT {proxy}/results/{task_id}` with the archive as body and a worker-signed
//! token, so the store accepts results only from the workers the scheduler chose.
//!
//! The token: `X-Edgepool-Worker: <address>` and `X-Edgepool-Signature: <EIP-191 signature of
//! keccak256(taskId ‖ sha256(archive))>`.

use edgepool_protocol::hash::{keccak256_concat, sha256};
use edgepool_protocol::primitives::TaskId;
use edgepool_protocol::signature::Signer;

use super::job::KeptArchive;

/// The header naming the uploading worker.
pub const WORKER_HEADER: &str = "X-Edgepool-Worker";
/// The header carrying the upload signature.
pub const SIGNATURE_HEADER: &str = "X-Edgepool-Signature";

/// Uploads `archive` and returns the result link.
///
/// # Errors
/// A message saying what failed (no store, unreadable archive, network, HTTP status).
pub async fn upload(
    client: &reqwest::Client,
    signer: &Signer,
    proxy: Option<&str>,
    task_id: &TaskId,
    archive: KeptArchive,
) -> Result<String, String> {
    let proxy = proxy
        .filter(|p| p.starts_with("http://") || p.starts_with("https://"))
        .ok_or("the deal names no http(s) result store (result_storage_proxy)")?;
    let bytes = match archive {
        KeptArchive::Inline(bytes) => bytes,
        KeptArchive::File(path) => {
            std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?
        }
    };
    let digest = sha256(&bytes);
    let token =
        signer.sign_personal(keccak256_concat(&[task_id.as_bytes(), digest.as_bytes()]).as_bytes());
    let url = format!("{}/results/{task_id}", proxy.trim_end_matches('/'));
    let response = client
        .put(&url)
        .header(WORKER_HEADER, signer.address().to_string())
        .header(SIGNATURE_HEADER, token.to_string())
        .body(bytes)
        .send()
        .await
        .map_err(|e| format!("uploading to the result store: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("the result store answered {}", response.status()));
    }
    Ok(url)
}
