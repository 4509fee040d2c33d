//! `tag encode|decode` and `poco task-id|hashes`.

use edgepool_protocol::poco::{self, ContributionHashes};
use edgepool_protocol::{Address, DealId, Digest, Tag, TaskId};

use super::{refused, ToolError};

/// Names to a bytes32 tag.
pub fn tag_encode(names: &str) -> Result<Option<String>, ToolError> {
    let tag = Tag::encode_list(names).map_err(refused("encoding tag"))?;
    Ok(Some(tag.to_string()))
}

/// A bytes32 tag to names, comma-separated in bit order.
pub fn tag_decode(tag: &str) -> Result<Option<String>, ToolError> {
    let names = Tag::decode_hex(tag.trim()).map_err(refused("decoding tag"))?;
    Ok(Some(names.join(",")))
}

/// The task id of a deal's task.
pub fn task_id(deal_id: &str, index: u64) -> Result<Option<String>, ToolError> {
    let deal: DealId = deal_id.trim().parse().map_err(refused("deal id"))?;
    Ok(Some(poco::task_id(&deal, index).to_string()))
}

/// `{"result_hash": …, "result_seal": …}` of a contribution.
pub fn hashes(task_id: &str, digest: &str, worker: &str) -> Result<Option<String>, ToolError> {
    let task: TaskId = task_id.trim().parse().map_err(refused("task id"))?;
    let digest: Digest = digest.trim().parse().map_err(refused("digest"))?;
    let worker: Address = worker.trim().parse().map_err(refused("worker address"))?;
    let hashes = ContributionHashes::new(&worker, &task, &digest);
    Ok(Some(
        serde_json::json!({
            "result_hash": hashes.result_hash.to_string(),
            "result_seal": hashes.result_seal.to_string(),
        })
        .to_string(),
    ))
}
