//! TEE devices: configfs-tsm report providers and the guest device nodes.
//!
//! Detection only looks at what exists; it never creates a configfs-tsm report entry (creating
//! one is what the attester does, and it needs write access the doctor should not assume). A
//! device found here is not a claim: `tee` is advertised only once an attester works.

use std::fs;
use std::path::{Path, PathBuf};

use edgepool_protocol::messages::TeeKind;
use serde::Serialize;

/// How a TEE was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeeInterface {
    /// The `provider` file of an existing entry under `sys/kernel/config/tsm/report`.
    ConfigfsTsm,
    /// A guest device node (`/dev/sev-guest`, `/dev/tdx_guest`, `/dev/sgx_enclave`).
    DeviceNode,
}

/// A TEE interface found on the machine (not yet a claim: see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeeDevice {
    /// The technology.
    pub kind: TeeKind,
    /// The file that revealed it (the `provider` file, or the device node), under the system root.
    pub path: PathBuf,
    /// How it was found.
    pub via: TeeInterface,
}

/// The device nodes looked for, relative to the system root.
pub const DEVICE_NODES: [(&str, TeeKind); 3] = [
    ("dev/sev-guest", TeeKind::SevSnp),
    ("dev/tdx_guest", TeeKind::Tdx),
    ("dev/sgx_enclave", TeeKind::Sgx),
];

/// The configfs-tsm provider names the agent knows (`arm_cca_guest` and others are reported as
/// warnings).
pub fn provider_kind(provider: &str) -> Option<TeeKind> {
    match provider.trim() {
        "sev_guest" => Some(TeeKind::SevSnp),
        "tdx_guest" => Some(TeeKind::Tdx),
        _ => None,
    }
}

/// Finds the TEE interfaces under `root`; unknown providers and unreadable files are described in
/// `warnings`.
pub fn detect_tee_devices(root: &Path, warnings: &mut Vec<String>) -> Vec<TeeDevice> {
    let mut found = Vec::new();
    let reports = root.join("sys/kernel/config/tsm/report");
    if let Ok(entries) = fs::read_dir(&reports) {
        let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        if entries.is_empty() {
            warnings.push(format!(
                "{} exists without a report entry: its provider is known only once the attester creates one",
                reports.display()
            ));
        }
        for entry in entries {
            let path = entry.join("provider");
            match fs::read_to_string(&path) {
                Ok(provider) => match provider_kind(&provider) {
                    Some(kind) if !found.iter().any(|d: &TeeDevice| d.kind == kind) => {
                        found.push(TeeDevice {
                            kind,
                            path,
                            via: TeeInterface::ConfigfsTsm,
                        });
                    }
                    Some(_) => {}
                    None => warnings.push(format!(
                        "ignored configfs-tsm provider {:?} in {}: expected sev_guest or tdx_guest",
                        provider.trim(),
                        path.display()
                    )),
                },
                Err(e) => warnings.push(format!("ignored {}: {e}", path.display())),
            }
        }
    }
    for (node, kind) in DEVICE_NODES {
        let path = root.join(node);
        // `exists` follows symlinks and needs no read access (device nodes are often root-only).
        if path.exists() {
            found.push(TeeDevice {
                kind,
                path,
                via: TeeInterface::DeviceNode,
            });
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_providers_map_to_their_tee_kind() {
        assert_eq!(provider_kind("sev_guest\n"), Some(TeeKind::SevSnp));
        assert_eq!(provider_kind("tdx_guest"), Some(TeeKind::Tdx));
        assert_eq!(provider_kind("arm_cca_guest"), None);
    }

    #[test]
    fn an_unknown_provider_is_ignored_with_a_reason() {
        let root = tempfile::tempdir().unwrap();
        let entry = root.path().join("sys/kernel/config/tsm/report/r0");
        fs::create_dir_all(&entry).unwrap();
        fs::write(entry.join("provider"), "arm_cca_guest\n").unwrap();
        let mut warnings = Vec::new();
        assert!(detect_tee_devices(root.path(), &mut warnings).is_empty());
        assert!(warnings[0].contains("arm_cca_guest"), "{warnings:?}");
    }

    #[test]
    fn an_empty_report_directory_is_reported_and_nothing_is_created() {
        let root = tempfile::tempdir().unwrap();
        let reports = root.path().join("sys/kernel/config/tsm/report");
        fs::create_dir_all(&reports).unwrap();
        let mut warnings = Vec::new();
        assert!(detect_tee_devices(root.path(), &mut warnings).is_empty());
        assert_eq!(warnings.len(), 1);
        assert_eq!(fs::read_dir(&reports).unwrap().count(), 0);
    }
}
