//! `edgepool-agent doctor`: checks what the agent needs, one line per check, and exits non-zero
//! when any fails. It never changes the agent's state: the journal is opened read-only, the
//! broker test uses its own client id and no last will, and the disk check's write probe is an
//! empty file created and removed at once (`capacity::state_dir_write_probe`).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet};

use super::{process_env, write_out, OpsError};
use crate::capacity::{self, DetectOptions};
use crate::config::{AttestationMode, Config};
use crate::identity;
use crate::link;
use crate::store::Store;

/// How long the broker check waits for the CONNACK.
const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// One check's outcome.
#[derive(Debug, serde::Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

impl Check {
    fn new(name: &'static str, result: Result<String, String>) -> Self {
        match result {
            Ok(detail) => Check {
                name,
                ok: true,
                detail,
            },
            Err(detail) => Check {
                name,
                ok: false,
                detail,
            },
        }
    }
}

/// Runs every check and prints them.
///
/// # Errors
/// [`OpsError::ChecksFailed`] when any check failed (after printing all of them).
pub fn doctor(config_path: &Path, json: bool, stdout: &mut dyn Write) -> Result<(), OpsError> {
    let checks = run_checks(config_path);
    let failed = checks.iter().filter(|c| !c.ok).count();
    if json {
        let value = serde_json::json!({ "ok": failed == 0, "checks": checks });
        write_out(stdout, &value.to_string())?;
    } else {
        for check in &checks {
            let mark = if check.ok { "ok  " } else { "FAIL" };
            write_out(
                stdout,
                &format!("{mark} {:<9} {}", check.name, check.detail),
            )?;
        }
    }
    if failed > 0 {
        Err(OpsError::ChecksFailed(failed))
    } else {
        Ok(())
    }
}

fn run_checks(config_path: &Path) -> Vec<Check> {
    let config = match crate::config::load(config_path, crate::config::process_environment(), false)
    {
        Ok(config) => config,
        Err(e) => return vec![Check::new("config", Err(e.to_string()))],
    };
    let mut checks = vec![Check::new("config", Ok(config_path.display().to_string()))];
    let worker = check_keystore(&config);
    let worker_address = worker.as_ref().ok().copied();
    checks.push(Check::new(
        "keystore",
        worker.map(|a| format!("worker {a}")),
    ));
    checks.push(Check::new("journal", check_journal(&config)));
    let detected = capacity::detect(&DetectOptions {
        system_root: config.agent.system_root.clone(),
        state_dir: config.agent.state_dir.clone(),
        operator_tags: config.agent.tags.clone(),
        attestation: config.agent.attestation,
    });
    match &detected {
        Ok(d) => {
            // Measured now on the state directory itself (read-only, free space), as the
            // daemon does before each admission.
            checks.push(Check::new(
                "disk",
                capacity::state_dir_health(&config.agent.state_dir, config.agent.min_free_disk_mb),
            ));
            checks.push(Check::new("tee", check_tee(&config, d)));
        }
        Err(e) => checks.push(Check::new("capacity", Err(e.to_string()))),
    }
    checks.push(Check::new(
        "broker",
        match worker_address {
            Some(worker) => check_broker(&config, worker),
            None => check_broker(&config, edgepool_protocol::primitives::Address::ZERO),
        },
    ));
    checks
}

fn check_keystore(config: &Config) -> Result<edgepool_protocol::primitives::Address, String> {
    let (password, source) =
        identity::find_password(&config.identity, &process_env).map_err(|e| e.to_string())?;
    let signer = identity::unlock(&config.keystore_path(), &password).map_err(|e| e.to_string())?;
    tracing::debug!(source = %source, "keystore opened");
    Ok(signer.address())
}

fn check_journal(config: &Config) -> Result<String, String> {
    let path = config.agent.state_dir.join("journal.sqlite");
    if !path.exists() {
        return Ok(format!(
            "{} not created yet (the first run creates it)",
            path.display()
        ));
    }
    let store = Store::open_read_only(&config.agent.state_dir).map_err(|e| e.to_string())?;
    let version = store.schema_version().map_err(|e| e.to_string())?;
    let outbox = store.outbox_len().map_err(|e| e.to_string())?;
    Ok(format!(
        "{} schema {version}, {outbox} message(s) waiting in the outbox",
        path.display()
    ))
}

fn check_tee(config: &Config, detected: &capacity::Detected) -> Result<String, String> {
    let devices: Vec<String> = detected
        .tee_devices
        .iter()
        .map(|d| format!("{} at {}", d.kind.as_str(), d.path.display()))
        .collect();
    let wanted = match config.agent.attestation {
        AttestationMode::Snp => Some(edgepool_protocol::messages::TeeKind::SevSnp),
        AttestationMode::Tdx => Some(edgepool_protocol::messages::TeeKind::Tdx),
        _ => None,
    };
    if let Some(kind) = wanted {
        if !detected.tee_devices.iter().any(|d| d.kind == kind) {
            return Err(format!(
                "agent.attestation = {:?} but no {} device was found{}",
                config.agent.attestation,
                kind.as_str(),
                if devices.is_empty() {
                    String::new()
                } else {
                    format!(" (found: {})", devices.join(", "))
                }
            ));
        }
    }
    if devices.is_empty() {
        Ok("no TEE device; TEE tasks are not offered".into())
    } else {
        Ok(format!(
            "{}; `tee` is not claimed until the attestation self-test exists",
            devices.join(", ")
        ))
    }
}

fn check_broker(
    config: &Config,
    worker: edgepool_protocol::primitives::Address,
) -> Result<String, String> {
    let options = link::probe_options(config, worker).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let (client, mut eventloop) = AsyncClient::new(options, 4);
        eventloop.set_network_options(link::network_options());
        let outcome = tokio::time::timeout(BROKER_TIMEOUT, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(match link::classify(&e) {
                            link::Failure::Fatal(m) | link::Failure::Retry(m) => m,
                        })
                    }
                }
            }
        })
        .await;
        let _ = client.try_disconnect();
        match outcome {
            Ok(Ok(())) => Ok(format!("{} accepted the connection", config.broker.url)),
            Ok(Err(m)) => Err(format!("{}: {m}", config.broker.url)),
            Err(_) => Err(format!(
                "{}: no answer within {}s",
                config.broker.url,
                BROKER_TIMEOUT.as_secs()
            )),
        }
    })
}
