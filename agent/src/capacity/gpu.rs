//! GPUs: sysinfo's list (real root only), a PCI scan of `sys/bus/pci/devices` and NVIDIA's
//! `proc/driver/nvidia/gpus/*/information`, merged by PCI address.
//!
//! Only display controllers (class `0x03xxxx`) from NVIDIA, AMD and Intel count: a server's BMC
//! VGA (ASPEED) or a virtual display (virtio, bochs) is a display controller but no GPU worth a
//! `gpu` tag.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use edgepool_protocol::messages::GpuInfo;

use super::ParseError;

/// The PCI vendors whose display controllers count as GPUs, with their short names.
pub const GPU_VENDORS: [(u16, &str); 3] = [(0x10de, "nvidia"), (0x1002, "amd"), (0x8086, "intel")];

/// The short name of a GPU vendor id, if it is one of [`GPU_VENDORS`].
pub fn vendor_name(vendor_id: u16) -> Option<&'static str> {
    GPU_VENDORS
        .iter()
        .find(|(id, _)| *id == vendor_id)
        .map(|(_, name)| *name)
}

/// Parses a sysfs hex attribute such as `0x10de` or `0x030000`.
///
/// # Errors
/// [`ParseError::Malformed`] when it is not `0x` followed by hex digits fitting 32 bits.
pub fn parse_sysfs_hex(file: &'static str, text: &str) -> Result<u32, ParseError> {
    let trimmed = text.trim();
    trimmed
        .strip_prefix("0x")
        .and_then(|digits| u32::from_str_radix(digits, 16).ok())
        .ok_or_else(|| ParseError::Malformed {
            file,
            expected: "0x followed by hex digits",
            found: trimmed.to_string(),
        })
}

/// Whether a PCI class code is a display controller (`0x03xxxx`: VGA, XGA, 3D, other).
pub fn is_display_class(class: u32) -> bool {
    class >> 16 == 0x03
}

/// What NVIDIA's `information` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvidiaInformation {
    /// `Model:`.
    pub model: String,
    /// `Bus Location:` (lower case), when present.
    pub bus_location: Option<String>,
}

/// Parses `proc/driver/nvidia/gpus/<bus>/information`.
///
/// # Errors
/// [`ParseError::Missing`] without a non-empty `Model:` line.
pub fn parse_nvidia_information(text: &str) -> Result<NvidiaInformation, ParseError> {
    let mut model = None;
    let mut bus_location = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Model" if !value.is_empty() => model = Some(value.to_string()),
            "Bus Location" if !value.is_empty() => bus_location = Some(value.to_lowercase()),
            _ => {}
        }
    }
    let model = model.ok_or(ParseError::Missing {
        file: "nvidia information",
        field: "Model",
    })?;
    Ok(NvidiaInformation {
        model,
        bus_location,
    })
}

/// A GPU being assembled from several sources.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    vendor: &'static str,
    /// `pci 10de:2204` until a better name is found.
    model: String,
    named: bool,
    memory_bytes: Option<u64>,
}

/// Detects the GPUs under `root`; with `use_sysinfo` (the real root) sysinfo's list is merged in.
/// Unreadable or malformed files are skipped and described in `warnings`.
pub fn detect_gpus(root: &Path, use_sysinfo: bool, warnings: &mut Vec<String>) -> Vec<GpuInfo> {
    let mut found = scan_pci(root, warnings);
    for (address, info) in scan_nvidia(root, warnings) {
        match found.get_mut(&address) {
            Some(gpu) => {
                gpu.model = info.model;
                gpu.named = true;
            }
            None => {
                found.insert(
                    address,
                    Candidate {
                        vendor: "nvidia",
                        model: info.model,
                        named: true,
                        memory_bytes: None,
                    },
                );
            }
        }
    }
    if use_sysinfo {
        merge_sysinfo(&mut found, warnings);
    }
    found
        .into_values()
        .map(|gpu| GpuInfo {
            vendor: gpu.vendor.to_string(),
            model: gpu.model,
            memory_bytes: gpu.memory_bytes,
        })
        .collect()
}

/// Display controllers of [`GPU_VENDORS`] under `root/sys/bus/pci/devices`, by PCI address.
fn scan_pci(root: &Path, warnings: &mut Vec<String>) -> BTreeMap<String, Candidate> {
    let mut found = BTreeMap::new();
    let Ok(entries) = fs::read_dir(root.join("sys/bus/pci/devices")) else {
        return found;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let address = entry.file_name().to_string_lossy().to_lowercase();
        let read = |file: &'static str| -> Result<u32, String> {
            let text = fs::read_to_string(dir.join(file))
                .map_err(|e| format!("{}: {e}", dir.join(file).display()))?;
            parse_sysfs_hex(file, &text).map_err(|e| format!("{}: {e}", dir.display()))
        };
        let class = match read("class") {
            Ok(class) => class,
            Err(reason) => {
                warnings.push(format!("ignored PCI device: {reason}"));
                continue;
            }
        };
        if !is_display_class(class) {
            continue;
        }
        let (vendor_id, device_id) = match (read("vendor"), read("device")) {
            (Ok(v), Ok(d)) => (v, d),
            (Err(reason), _) | (_, Err(reason)) => {
                warnings.push(format!("ignored PCI display device: {reason}"));
                continue;
            }
        };
        let Some(vendor) = u16::try_from(vendor_id).ok().and_then(vendor_name) else {
            warnings.push(format!(
                "ignored PCI display device {address}: vendor {vendor_id:#06x} is not nvidia, amd or intel"
            ));
            continue;
        };
        // amdgpu exposes the VRAM size; NVIDIA's only comes through NVML (sysinfo).
        let memory_bytes = fs::read_to_string(dir.join("mem_info_vram_total"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|bytes| *bytes > 0);
        found.insert(
            address,
            Candidate {
                vendor,
                model: format!("pci {vendor_id:04x}:{device_id:04x}"),
                named: false,
                memory_bytes,
            },
        );
    }
    found
}

/// NVIDIA's per-GPU information files, by PCI address (the `Bus Location:` line, else the
/// directory name).
fn scan_nvidia(root: &Path, warnings: &mut Vec<String>) -> Vec<(String, NvidiaInformation)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(root.join("proc/driver/nvidia/gpus")) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path().join("information");
        let parsed = fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_nvidia_information(&text).map_err(|e| e.to_string()));
        match parsed {
            Ok(info) => {
                let address = info
                    .bus_location
                    .clone()
                    .unwrap_or_else(|| entry.file_name().to_string_lossy().to_lowercase());
                found.push((address, info));
            }
            Err(reason) => warnings.push(format!("ignored {}: {reason}", path.display())),
        }
    }
    found
}

/// Merges sysinfo's GPUs (DRM nodes, NVML) into `found`: better names and memory sizes for known
/// addresses, new entries for GPUs of [`GPU_VENDORS`] the PCI scan missed.
fn merge_sysinfo(found: &mut BTreeMap<String, Candidate>, warnings: &mut Vec<String>) {
    let gpus = match sysinfo::Gpus::new_with_refreshed_list() {
        Ok(gpus) => gpus,
        Err(e) => {
            warnings.push(format!("sysinfo gpu list unavailable: {e}"));
            return;
        }
    };
    for gpu in &gpus {
        let address = gpu.pci().to_string().to_lowercase();
        let model = gpu.model().filter(|m| !m.trim().is_empty());
        let memory = gpu.total_memory().filter(|bytes| *bytes > 0);
        if let Some(known) = found.get_mut(&address) {
            if let (false, Some(model)) = (known.named, model) {
                known.model = model.trim().to_string();
                known.named = true;
            }
            known.memory_bytes = known.memory_bytes.or(memory);
            continue;
        }
        let vendor_text = gpu.vendor().unwrap_or_default().to_lowercase();
        let vendor = if vendor_text.contains("nvidia") {
            "nvidia"
        } else if vendor_text.contains("advanced micro devices") || vendor_text.contains("amd") {
            "amd"
        } else if vendor_text.contains("intel") {
            "intel"
        } else {
            warnings.push(format!(
                "ignored gpu {address}: vendor {vendor_text:?} is not nvidia, amd or intel"
            ));
            continue;
        };
        found.insert(
            address,
            Candidate {
                vendor,
                model: model.unwrap_or("unknown").trim().to_string(),
                named: model.is_some(),
                memory_bytes: memory,
            },
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_hex_attributes_parse_with_or_without_a_newline() {
        assert_eq!(parse_sysfs_hex("class", "0x030000\n").unwrap(), 0x030000);
        assert_eq!(parse_sysfs_hex("vendor", "0x10de").unwrap(), 0x10de);
    }

    #[test]
    fn malformed_sysfs_hex_is_a_typed_error() {
        for text in ["", "10de", "0x", "0xzz", "0x1234567890"] {
            assert!(
                matches!(
                    parse_sysfs_hex("vendor", text),
                    Err(ParseError::Malformed { file: "vendor", .. })
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn only_class_0x03_is_a_display_controller() {
        assert!(is_display_class(0x030000));
        assert!(is_display_class(0x030200));
        assert!(!is_display_class(0x020000));
        assert!(!is_display_class(0x0c0330));
    }

    #[test]
    fn nvidia_information_gives_model_and_bus_location() {
        let text = "Model: \t\t NVIDIA A100-SXM4-40GB\nIRQ:   \t\t 42\n\
            Bus Location: \t 0000:3B:00.0\nDevice Minor: \t 0\n";
        let info = parse_nvidia_information(text).unwrap();
        assert_eq!(info.model, "NVIDIA A100-SXM4-40GB");
        assert_eq!(info.bus_location.as_deref(), Some("0000:3b:00.0"));
    }

    #[test]
    fn nvidia_information_without_a_model_is_a_typed_error() {
        assert_eq!(
            parse_nvidia_information("IRQ: 42\nModel:   \n"),
            Err(ParseError::Missing {
                file: "nvidia information",
                field: "Model"
            })
        );
    }

    #[test]
    fn a_display_device_of_another_vendor_is_ignored_with_a_reason() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("sys/bus/pci/devices/0000:02:00.0");
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("class"), "0x030000\n").unwrap();
        fs::write(dev.join("vendor"), "0x1a03\n").unwrap();
        fs::write(dev.join("device"), "0x2000\n").unwrap();
        let mut warnings = Vec::new();
        assert!(detect_gpus(root.path(), false, &mut warnings).is_empty());
        assert!(warnings[0].contains("0x1a03"), "{warnings:?}");
    }

    #[test]
    fn a_pci_device_with_a_malformed_class_is_ignored_with_a_reason() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("sys/bus/pci/devices/0000:02:00.0");
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("class"), "display\n").unwrap();
        let mut warnings = Vec::new();
        assert!(detect_gpus(root.path(), false, &mut warnings).is_empty());
        assert!(warnings[0].contains("class"), "{warnings:?}");
    }
}
