//! `capacity`, `status` and `tasks`: what the machine offers and what the journal holds. The
//! journal is opened read-only, so these work while the agent runs.

use std::io::Write;
use std::path::Path;

use super::{write_out, OpsError};
use crate::capacity::{self, DetectOptions};
use crate::config::Config;
use crate::store::Store;

/// The configuration if the file exists; else the defaults (for `capacity` on a machine not set
/// up yet).
fn config_or_defaults(path: &Path) -> Result<Option<Config>, OpsError> {
    if path.exists() {
        super::load_config(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Prints the detected capacity and the sandbox benchmark.
///
/// # Errors
/// [`OpsError::Config`] for a bad configuration, [`OpsError::Io`] when detection fails.
pub fn capacity(config_path: &Path, json: bool, stdout: &mut dyn Write) -> Result<(), OpsError> {
    let config = config_or_defaults(config_path)?;
    let defaults = crate::config::AgentSection::default();
    let agent = config.as_ref().map(|c| &c.agent).unwrap_or(&defaults);
    let state_dir = if agent.state_dir.exists() {
        agent.state_dir.clone()
    } else {
        "/".into()
    };
    let detected = capacity::detect(&DetectOptions {
        system_root: agent.system_root.clone(),
        state_dir,
        operator_tags: agent.tags.clone(),
        attestation: agent.attestation,
    })
    .map_err(|e| OpsError::Io(format!("capacity detection: {e}")))?;
    let fuel_per_second =
        capacity::fuel_per_second().map_err(|e| OpsError::Io(format!("sandbox benchmark: {e}")))?;
    if json {
        let mut value = serde_json::to_value(&detected).map_err(|e| OpsError::Io(e.to_string()))?;
        if let Some(map) = value.as_object_mut() {
            map.insert("fuel_per_second".into(), fuel_per_second.into());
            map.insert(
                "tag_names".into(),
                detected
                    .tags
                    .names()
                    .map(|n| n.join(","))
                    .unwrap_or_default()
                    .into(),
            );
        }
        write_out(stdout, &value.to_string())
    } else {
        let gpus: Vec<String> = detected
            .gpus
            .iter()
            .map(|g| format!("{} {}", g.vendor, g.model))
            .collect();
        let tee: Vec<String> = detected
            .tee_devices
            .iter()
            .map(|d| format!("{} at {}", d.kind.as_str(), d.path.display()))
            .collect();
        write_out(
            stdout,
            &format!(
                "cpu      {} ({} cores, {} threads, {})\nram      {} MiB\ndisk     {} MiB free\ngpus     {}\ntee      {}\ntags     {}\nsandbox  {} fuel/s",
                detected.cpu.model,
                detected.cpu.cores,
                detected.cpu.threads,
                detected.cpu.arch,
                detected.ram_bytes / (1024 * 1024),
                detected.disk_free_bytes / (1024 * 1024),
                if gpus.is_empty() { "none".into() } else { gpus.join(", ") },
                if tee.is_empty() { "none".into() } else { tee.join(", ") },
                detected.tags.names().map(|n| n.join(",")).unwrap_or_default(),
                fuel_per_second
            ),
        )
    }
}

fn open_store(config_path: &Path) -> Result<Store, OpsError> {
    let config = super::load_config(config_path)?;
    Store::open_read_only(&config.agent.state_dir).map_err(|e| OpsError::Io(e.to_string()))
}

/// Prints the journal's summary.
///
/// # Errors
/// [`OpsError`] for a bad configuration or an unreadable journal.
pub fn status(config_path: &Path, json: bool, stdout: &mut dyn Write) -> Result<(), OpsError> {
    let store = open_store(config_path)?;
    let io = |e: crate::store::StoreError| OpsError::Io(e.to_string());
    let outbox = store.outbox_len().map_err(io)?;
    let counts = store.counts_by_state().map_err(io)?;
    let version = store.schema_version().map_err(io)?;
    let config = super::load_config(config_path)?;
    let link = store
        .meta_get(crate::daemon::LINK_META)
        .map_err(io)?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|| "not started yet".into());
    let disk = capacity::state_dir_health(&config.agent.state_dir, config.agent.min_free_disk_mb);
    let refused = crate::daemon::refusals::RefusalCounts::load(&store).map_err(io)?;
    if json {
        let tasks: serde_json::Map<String, serde_json::Value> = counts
            .iter()
            .map(|(state, n)| (state.to_string(), (*n).into()))
            .collect();
        let value = serde_json::json!({
            "journal": store.path().display().to_string(),
            "schema_version": version,
            "outbox_pending": outbox,
            "tasks": tasks,
            "broker": link,
            "disk": {
                "ok": disk.is_ok(),
                "detail": disk.as_ref().unwrap_or_else(|e| e).clone(),
            },
            "inbox_refused": refused.to_json(),
            "inbox_refused_total": refused.total(),
        });
        write_out(stdout, &value.to_string())
    } else {
        let tasks: Vec<String> = counts.iter().map(|(s, n)| format!("{s}={n}")).collect();
        write_out(
            stdout,
            &format!(
                "journal  {} (schema {version})\nbroker   {link}\noutbox   {outbox} pending\ndisk     {}\ntasks    {}\nrefused  {}",
                store.path().display(),
                match &disk {
                    Ok(detail) => format!("ok, {detail}"),
                    Err(why) => format!("NOT ACCEPTING TASKS: {why}"),
                },
                if tasks.is_empty() {
                    "none".into()
                } else {
                    tasks.join(" ")
                },
                refused_line(&refused)
            ),
        )
    }
}

/// `total (reason=n …)` or `none`.
fn refused_line(refused: &crate::daemon::refusals::RefusalCounts) -> String {
    if refused.total() == 0 {
        return "none".into();
    }
    let reasons: Vec<String> = refused
        .to_json()
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    format!("{} inbox messages ({})", refused.total(), reasons.join(" "))
}

/// Prints the tasks of the journal.
///
/// # Errors
/// [`OpsError`] for a bad configuration or an unreadable journal.
pub fn tasks(config_path: &Path, json: bool, stdout: &mut dyn Write) -> Result<(), OpsError> {
    let store = open_store(config_path)?;
    let mut tasks = store
        .tasks(crate::store::TaskFilter::All)
        .map_err(|e| OpsError::Io(e.to_string()))?;
    tasks.reverse();
    if json {
        let rows: Vec<serde_json::Value> = tasks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "task_id": t.task_id.to_string(),
                    "state": t.state.to_string(),
                    "cause": t.cause.map(|c| c.to_string()),
                    "created_at_ms": t.created_at_ms,
                    "updated_at_ms": t.updated_at_ms,
                })
            })
            .collect();
        write_out(stdout, &serde_json::Value::Array(rows).to_string())
    } else if tasks.is_empty() {
        write_out(stdout, "no tasks")
    } else {
        for t in &tasks {
            write_out(
                stdout,
                &format!("{} {} updated {}", t.task_id, t.state, t.updated_at_ms),
            )?;
        }
        Ok(())
    }
}
