//! `edgepool-agent init`: creates the state directory, the encrypted keystore and the
//! configuration, non-interactively. Idempotent: a second run keeps the key and the configuration
//! unless `--force` (which keeps the replaced keystore beside the new one, never deletes it).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use edgepool_protocol::primitives::Address;

use super::{write_out, OpsError};
use crate::cli::InitArgs;
use crate::identity;
use crate::tools::write_atomically;

/// What `init` did, printed with `--json`.
#[derive(Debug, serde::Serialize)]
struct InitReport {
    address: String,
    config: String,
    keystore: String,
    state_dir: String,
    created_key: bool,
    wrote_config: bool,
}

/// Runs `init`.
///
/// # Errors
/// [`OpsError::Config`] for invalid arguments, [`OpsError::Identity`] for an unreadable password
/// or a keystore that the password does not open, [`OpsError::Io`] for files.
pub fn init(args: &InitArgs, stdout: &mut dyn Write) -> Result<(), OpsError> {
    let text = config_text(args);
    // Validate exactly what will be written, with the loader `run` uses (no environment).
    let config = crate::config::from_str(&text, &args.config, Vec::new()).map_err(|e| {
        OpsError::Config(format!(
            "the arguments do not make a valid configuration: {e}"
        ))
    })?;
    let password = identity::password_from_file(&args.password_file)
        .map_err(|e| OpsError::Identity(e.to_string()))?;

    let state_dir = &config.agent.state_dir;
    std::fs::create_dir_all(state_dir)
        .and_then(|()| std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| {
            OpsError::Io(format!(
                "cannot create state directory {}: {e}",
                state_dir.display()
            ))
        })?;

    let keystore = config.keystore_path();
    let (signer, created_key) = if keystore.exists() && !args.force {
        let signer = identity::unlock(&keystore, &password).map_err(|e| {
            OpsError::Identity(format!(
                "{e} (the existing keystore is kept; use --force to replace it)"
            ))
        })?;
        (signer, false)
    } else {
        if keystore.exists() {
            let kept =
                keystore.with_extension(format!("replaced-{}.json", crate::daemon::now_ms()));
            std::fs::rename(&keystore, &kept).map_err(|e| {
                OpsError::Io(format!("cannot set aside {}: {e}", keystore.display()))
            })?;
        }
        let signer = identity::create(&keystore, &password)
            .map_err(|e| OpsError::Identity(e.to_string()))?;
        (signer, true)
    };

    let wrote_config = if args.config.exists() && !args.force {
        false
    } else {
        write_config(&args.config, &text, signer.address())?;
        true
    };

    let report = InitReport {
        address: signer.address().to_string(),
        config: args.config.display().to_string(),
        keystore: keystore.display().to_string(),
        state_dir: state_dir.display().to_string(),
        created_key,
        wrote_config,
    };
    if args.json {
        let line = serde_json::to_string(&report).map_err(|e| OpsError::Io(e.to_string()))?;
        write_out(stdout, &line)
    } else {
        write_out(
            stdout,
            &format!(
                "worker {}\nkeystore {} ({})\nconfig {} ({})\nstate {}",
                report.address,
                report.keystore,
                if created_key { "created" } else { "kept" },
                report.config,
                if wrote_config { "written" } else { "kept" },
                report.state_dir
            ),
        )
    }
}

fn write_config(path: &Path, text: &str, worker: Address) -> Result<(), OpsError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| OpsError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let text = format!("# worker {worker}\n{text}");
    write_atomically(path, |file| {
        file.write_all(text.as_bytes())?;
        Ok::<(), crate::tools::ToolError>(())
    })
    .map_err(|e| OpsError::Io(format!("cannot write {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640))
        .map_err(|e| OpsError::Io(format!("cannot set the mode of {}: {e}", path.display())))
}

/// The configuration `init` writes: the given values, the rest left to the documented defaults
/// (see deploy/agent.toml for every key).
fn config_text(args: &InitArgs) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let tags: Vec<String> = args.tags.iter().map(|t| quote(t.trim())).collect();
    let mut text = String::from(
        "# edgepool agent configuration, written by `edgepool-agent init`.\n\
         # Every key: deploy/agent.toml. Every key can be overridden by EDGEPOOL_<SECTION>_<KEY>.\n\n",
    );
    text.push_str(&format!("[broker]\nurl = {}\n\n", quote(&args.broker)));
    text.push_str(&format!(
        "[pool]\naddress = {}\nscheduler = {}\n\n",
        quote(&args.pool),
        quote(&args.scheduler)
    ));
    text.push_str(&format!(
        "[agent]\nstate_dir = {}\ntags = [{}]\n",
        quote(&args.state_dir.display().to_string()),
        tags.join(", ")
    ));
    if let Some(slots) = args.slots {
        text.push_str(&format!("slots = {slots}\n"));
    }
    text
}
