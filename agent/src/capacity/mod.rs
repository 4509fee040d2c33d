//! Capacity detection: CPU, memory, disk, cgroup limits, GPUs and TEE devices, the tags the
//! worker may claim, and the start-up sandbox benchmark.
//!
//! Everything is read under a configurable system root (`agent.system_root`, default `/`) so that
//! tests run against fake trees. With the real root, sysinfo supplies the CPU, the memory and the
//! GPU list first and the kernel files fill in; with any other root the files under it are the
//! only source (sysinfo cannot be pointed elsewhere). Free disk always comes from sysinfo's disk
//! list, for the real `state_dir`.
//!
//! # Layout
//!
//! - [`cpu_mem`]: `proc/cpuinfo` and `proc/meminfo`.
//! - [`cgroup`]: `proc/self/cgroup` and the cgroup v2 (or v1) limit files.
//! - [`gpu`]: sysinfo's GPUs, the PCI scan and NVIDIA's information files.
//! - [`tee`]: configfs-tsm providers and guest device nodes.
//! - [`bench`]: fuel per second of a fixed wasm module.
//!
//! **Invariant:** `tee` is never claimed here. A TEE device is reported in
//! [`Detected::tee_devices`] but [`Detected::tee`] stays `None` until the attestation self-test
//! proves an attester works; an operator cannot force `tee` or a framework tag either.

pub mod bench;
pub mod cgroup;
pub mod cpu_mem;
pub mod gpu;
pub mod tee;

use std::fs;
use std::path::{Path, PathBuf};

use edgepool_protocol::messages::{
    CapacityAdvertisement, CpuInfo, GpuInfo, TaskLimits, TeeKind, MAX_GPUS, MAX_TEXT_BYTES,
};
use edgepool_protocol::tags::TagError;
use edgepool_protocol::{Address, Tag};
use serde::Serialize;

use crate::config::AttestationMode;

pub use bench::{fuel_per_second, BenchError};
pub use cgroup::CgroupLimits;
pub use tee::{TeeDevice, TeeInterface};

/// The tags only a working attester may claim.
pub const TEE_TAGS: [&str; 4] = ["tee", "scone", "gramine", "tdx"];

/// Why a kernel file could not be understood (the detection then skips it, or fails when it was
/// the only source of something the advertisement needs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A value of the wrong shape.
    #[error("{file}: expected {expected}, found {found:?}")]
    Malformed {
        /// The file, e.g. `cpu.max`.
        file: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
        /// What was there.
        found: String,
    },
    /// A required field is absent.
    #[error("{file}: expected {field}, found none")]
    Missing {
        /// The file, e.g. `meminfo`.
        file: &'static str,
        /// The field, e.g. `MemTotal`.
        field: &'static str,
    },
}

/// Why detection failed.
#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// An operator tag that only a working attester may claim.
    #[error("operator tag {tag:?} refused: expected non-TEE tags (gpu), found a TEE tag, which is claimed only when an attester works")]
    ForcedTeeTag {
        /// The tag.
        tag: String,
    },
    /// An operator tag outside the iExec tag map.
    #[error("operator tag {tag:?} refused: {source}")]
    UnknownTag {
        /// The tag.
        tag: String,
        /// The protocol's reason.
        source: TagError,
    },
    /// No source gave the CPU (sysinfo failed or the root is fake, and `proc/cpuinfo` is
    /// missing or malformed).
    #[error("cpu not detected: expected a readable {path}, found: {reason}")]
    Cpu {
        /// `proc/cpuinfo` under the root.
        path: PathBuf,
        /// The read or parse error.
        reason: String,
    },
    /// No source gave the total memory.
    #[error("memory not detected: expected a readable {path}, found: {reason}")]
    Memory {
        /// `proc/meminfo` under the root.
        path: PathBuf,
        /// The read or parse error.
        reason: String,
    },
    /// sysinfo lists no disk whose mount point holds the state directory.
    #[error("free disk not detected: expected a mounted disk holding {state_dir}, found {reason}")]
    Disk {
        /// The state directory.
        state_dir: PathBuf,
        /// What sysinfo reported.
        reason: String,
    },
    /// The sandbox benchmark failed.
    #[error(transparent)]
    Bench(#[from] BenchError),
}

/// What [`detect`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectOptions {
    /// Where `proc`, `sys` and `dev` are (`agent.system_root`; `/` on a real machine).
    pub system_root: PathBuf,
    /// The agent's state directory (a real path: its disk's free space is reported).
    pub state_dir: PathBuf,
    /// `agent.tags`.
    pub operator_tags: Vec<String>,
    /// `agent.attestation` (kept for the attestation self-test; today `tee` is never claimed).
    pub attestation: AttestationMode,
}

/// What the machine offers, as detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detected {
    /// The CPU, with cores and threads reduced to the cgroup CPU limit.
    pub cpu: CpuInfo,
    /// Total memory, reduced to the cgroup memory limit.
    pub ram_bytes: u64,
    /// Free space of the disk holding the state directory.
    pub disk_free_bytes: u64,
    /// GPUs of NVIDIA, AMD and Intel, ordered by PCI address.
    pub gpus: Vec<GpuInfo>,
    /// TEE interfaces found (not claims).
    pub tee_devices: Vec<TeeDevice>,
    /// The TEE this worker can attest with: always `None` until the attestation self-test exists.
    pub tee: Option<TeeKind>,
    /// Detected tags (`gpu`) plus the operator's.
    pub tags: Tag,
    /// The agent's cgroup and its limits, when one was found.
    pub cgroup: Option<CgroupLimits>,
    /// Files skipped, with the reason (for `doctor`).
    pub warnings: Vec<String>,
}

/// Detects the machine's capacity and the tags it may claim.
///
/// # Errors
/// [`CapacityError::ForcedTeeTag`] / [`CapacityError::UnknownTag`] for a refused operator tag
/// (checked first); [`CapacityError::Cpu`], [`CapacityError::Memory`] or [`CapacityError::Disk`]
/// when no source gives them. Other unreadable or malformed files are skipped and listed in
/// [`Detected::warnings`].
pub fn detect(opts: &DetectOptions) -> Result<Detected, CapacityError> {
    let operator = operator_tags(&opts.operator_tags)?;
    let root = opts.system_root.as_path();
    let real = is_real_root(root);
    let mut warnings = Vec::new();

    let cgroup = cgroup::read_cgroup_limits(root, &mut warnings);
    let mut cpu = detect_cpu(root, real)?;
    let mut ram_bytes = detect_ram(root, real)?;
    if let Some(limits) = &cgroup {
        if let Some(cores) = limits.cpu_max_cores {
            cpu.threads = cpu.threads.min(cores);
            cpu.cores = cpu.cores.min(cores);
        }
        if let Some(bytes) = limits.memory_max_bytes {
            ram_bytes = ram_bytes.min(bytes);
        }
    }
    let disk_free_bytes = disk_free_bytes(&opts.state_dir)?;
    let gpus = gpu::detect_gpus(root, real, &mut warnings);
    let tee_devices = tee::detect_tee_devices(root, &mut warnings);
    let detected_tags = if gpus.is_empty() { Tag::NONE } else { Tag::GPU };
    for warning in &warnings {
        tracing::debug!(%warning, "capacity detection skipped a file");
    }
    Ok(Detected {
        cpu,
        ram_bytes,
        disk_free_bytes,
        gpus,
        tee_devices,
        // The attestation issue adds the self-test that may set this (and the tee tags).
        tee: None,
        tags: detected_tags.union(operator),
        cgroup,
        warnings,
    })
}

/// Memory available now, for heartbeats: `MemAvailable` of `proc/meminfo` under `system_root`,
/// reduced to what the agent's cgroup may still take (`memory.max - memory.current`). `0` when
/// `proc/meminfo` cannot be read.
pub fn available_memory_bytes(system_root: &Path) -> u64 {
    let available = fs::read_to_string(system_root.join("proc/meminfo"))
        .ok()
        .and_then(|text| cpu_mem::parse_meminfo(&text).ok())
        .map_or(0, |info| info.available_bytes);
    match cgroup::cgroup_memory_headroom(system_root) {
        Some(headroom) => available.min(headroom),
        None => available,
    }
}

impl Detected {
    /// The advertisement for `worker`, with texts cut to the protocol's limits and at most
    /// [`MAX_GPUS`] GPUs, so that it always passes `validate()`.
    pub fn advertisement(
        &self,
        worker: Address,
        slots: u32,
        limits: TaskLimits,
        fuel_per_second: u64,
    ) -> CapacityAdvertisement {
        CapacityAdvertisement {
            worker,
            agent_version: truncate(&format!("edgepool-agent {}", env!("CARGO_PKG_VERSION"))),
            cpu: CpuInfo {
                model: truncate(&self.cpu.model),
                cores: self.cpu.cores,
                threads: self.cpu.threads,
                arch: truncate(&self.cpu.arch),
            },
            ram_bytes: self.ram_bytes,
            disk_free_bytes: self.disk_free_bytes,
            gpus: self
                .gpus
                .iter()
                .take(MAX_GPUS)
                .map(|g| GpuInfo {
                    vendor: truncate(&g.vendor),
                    model: truncate(&g.model),
                    memory_bytes: g.memory_bytes,
                })
                .collect(),
            tee: self.tee,
            tee_measurement: Vec::new(),
            tags: self.tags,
            slots,
            limits,
            fuel_per_second,
        }
    }
}

/// The operator's tags as a bitmap, refusing TEE tags and unknown names.
///
/// # Errors
/// [`CapacityError::ForcedTeeTag`] or [`CapacityError::UnknownTag`], naming the first bad tag.
pub fn operator_tags(names: &[String]) -> Result<Tag, CapacityError> {
    let mut tags = Tag::NONE;
    for name in names {
        let name = name.trim();
        if TEE_TAGS.contains(&name) {
            return Err(CapacityError::ForcedTeeTag {
                tag: name.to_string(),
            });
        }
        let tag = Tag::encode(&[name]).map_err(|source| CapacityError::UnknownTag {
            tag: name.to_string(),
            source,
        })?;
        tags = tags.union(tag);
    }
    Ok(tags)
}

fn is_real_root(root: &Path) -> bool {
    root == Path::new("/") || root.canonicalize().is_ok_and(|p| p == Path::new("/"))
}

/// Cuts `text` to at most [`MAX_TEXT_BYTES`] bytes at a character boundary.
fn truncate(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_string();
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn detect_cpu(root: &Path, real: bool) -> Result<CpuInfo, CapacityError> {
    let path = root.join("proc/cpuinfo");
    let file = fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| cpu_mem::parse_cpuinfo(&text).map_err(|e| e.to_string()));
    let sys = real.then(sysinfo_cpu).flatten();
    let (file, sys) = match (file, sys) {
        (Err(reason), None) => return Err(CapacityError::Cpu { path, reason }),
        (file, sys) => (file.ok(), sys),
    };
    let threads = sys
        .as_ref()
        .map(|s| s.threads)
        .filter(|t| *t > 0)
        .or(file.as_ref().map(|f| f.threads))
        .unwrap_or(1);
    let cores = sys
        .as_ref()
        .and_then(|s| s.cores)
        .or(file.as_ref().and_then(|f| f.cores))
        .unwrap_or(threads);
    let model = sys
        .as_ref()
        .map(|s| s.model.trim().to_string())
        .filter(|m| !m.is_empty())
        .or(file.and_then(|f| f.model))
        .unwrap_or_else(|| "unknown".to_string());
    let arch = if real {
        sysinfo::System::cpu_arch()
    } else {
        // A fake tree has no uname; the build target is the best guess.
        std::env::consts::ARCH.to_string()
    };
    Ok(CpuInfo {
        model,
        cores,
        threads,
        arch,
    })
}

struct SysinfoCpu {
    model: String,
    cores: Option<u32>,
    threads: u32,
}

fn sysinfo_cpu() -> Option<SysinfoCpu> {
    let refresh = sysinfo::RefreshKind::nothing().with_cpu(sysinfo::CpuRefreshKind::nothing());
    let system = sysinfo::System::new_with_specifics(refresh).ok()?;
    let cpus = system.cpus();
    Some(SysinfoCpu {
        model: cpus
            .first()
            .map(|c| c.brand().to_string())
            .unwrap_or_default(),
        cores: sysinfo::System::physical_core_count()
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0),
        threads: u32::try_from(cpus.len()).unwrap_or(u32::MAX),
    })
}

fn detect_ram(root: &Path, real: bool) -> Result<u64, CapacityError> {
    if real {
        let refresh = sysinfo::RefreshKind::nothing()
            .with_memory(sysinfo::MemoryRefreshKind::nothing().with_ram());
        if let Ok(system) = sysinfo::System::new_with_specifics(refresh) {
            if system.total_memory() > 0 {
                return Ok(system.total_memory());
            }
        }
    }
    let path = root.join("proc/meminfo");
    fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| cpu_mem::parse_meminfo(&text).map_err(|e| e.to_string()))
        .map(|info| info.total_bytes)
        .map_err(|reason| CapacityError::Memory { path, reason })
}

/// Free space of the disk whose mount point is the longest prefix of `state_dir` (resolved
/// through its nearest existing ancestor, so a state directory not created yet works).
///
/// # Errors
/// [`CapacityError::Disk`] when no mounted disk holds the directory.
pub fn disk_free_bytes(state_dir: &Path) -> Result<u64, CapacityError> {
    let resolved = resolve_existing(state_dir);
    // statvfs of the directory itself first: exact for any filesystem, including the tmpfs and
    // bind mounts that sysinfo's disk list leaves out (it would answer for the parent's disk).
    let existing = resolved.ancestors().find(|a| a.exists());
    if let Some(stat) = existing.and_then(|dir| rustix::fs::statvfs(dir).ok()) {
        return Ok(stat.f_bavail.saturating_mul(stat.f_frsize));
    }
    let refresh = sysinfo::DiskRefreshKind::nothing().with_storage();
    let disks = sysinfo::Disks::new_with_refreshed_list_specifics(refresh).map_err(|e| {
        CapacityError::Disk {
            state_dir: state_dir.to_path_buf(),
            reason: format!("no disk list ({e})"),
        }
    })?;
    disks
        .iter()
        .filter(|d| resolved.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().components().count())
        .map(|d| d.available_space())
        .ok_or_else(|| CapacityError::Disk {
            state_dir: state_dir.to_path_buf(),
            reason: format!("none among {} disks", disks.len()),
        })
}

/// Why the state directory cannot be written, if it cannot: a read-only file system
/// (`statvfs`), or no write permission for this process (`access(W_OK)`; root passes it
/// whatever the mode). `None` when it can, or when it does not exist yet.
pub fn state_dir_unwritable(state_dir: &Path) -> Option<String> {
    let stat = rustix::fs::statvfs(state_dir).ok()?;
    if stat.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Some(format!(
            "{} is on a read-only file system",
            state_dir.display()
        ));
    }
    match rustix::fs::access(state_dir, rustix::fs::Access::WRITE_OK) {
        Err(e) if e == rustix::io::Errno::ACCESS || e == rustix::io::Errno::ROFS => {
            Some(format!("{} is not writable: {e}", state_dir.display()))
        }
        _ => None,
    }
}

/// Why a file cannot be created in the state directory, if it cannot: what `statvfs` and
/// `access` do not show, such as an ext4 the kernel forced read-only after an error
/// (`emergency_ro`: the mount still says `rw`). Creates and removes an empty probe file, so it
/// is for occasional use (`doctor`, `status`, explaining a failed write), not a periodic check.
pub fn state_dir_write_probe(state_dir: &Path) -> Option<String> {
    let probe = state_dir.join(".edgepool-write-probe");
    match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
    {
        Ok(file) => {
            drop(file);
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => match rustix::io::Errno::from_io_error(&e) {
            Some(rustix::io::Errno::ROFS | rustix::io::Errno::ACCESS | rustix::io::Errno::IO) => {
                Some(format!("{} cannot be written: {e}", state_dir.display()))
            }
            _ => None,
        },
    }
}

/// Whether the agent can take tasks as far as its state directory goes, said for `doctor` and
/// `status`: `Err` when the directory cannot be written or its free space is below the
/// reserve of `min_free_disk_mb` (the agent then declines every assignment), with why.
///
/// # Errors
/// The reason, naming the directory and the configuration key.
pub fn state_dir_health(state_dir: &Path, min_free_disk_mb: u64) -> Result<String, String> {
    if let Some(reason) =
        state_dir_unwritable(state_dir).or_else(|| state_dir_write_probe(state_dir))
    {
        return Err(format!(
            "{reason}: the journal cannot be written, no new task is accepted"
        ));
    }
    let free = disk_free_bytes(state_dir).map_err(|e| e.to_string())?;
    let free_mb = free / (1024 * 1024);
    let reserve = min_free_disk_mb.saturating_mul(1024 * 1024);
    if free < reserve {
        return Err(format!(
            "{free_mb} MiB ({free} bytes) free in {}, expected at least agent.min_free_disk_mb = {min_free_disk_mb}: no new task is accepted",
            state_dir.display()
        ));
    }
    Ok(format!("{free_mb} MiB free in {}", state_dir.display()))
}

/// `path` with its nearest existing ancestor resolved (symlinks followed), the rest appended.
fn resolve_existing(path: &Path) -> PathBuf {
    for ancestor in path.ancestors() {
        if let Ok(real) = ancestor.canonicalize() {
            let rest = path.strip_prefix(ancestor).unwrap_or(Path::new(""));
            return real.join(rest);
        }
    }
    path.to_path_buf()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters_within_the_limit() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_TEXT_BYTES);
        assert_eq!(cut.len(), MAX_TEXT_BYTES);
        assert_eq!(truncate("short"), "short");
        let odd = format!("a{}", "é".repeat(MAX_TEXT_BYTES / 2));
        assert_eq!(truncate(&odd).len(), MAX_TEXT_BYTES - 1);
    }

    #[test]
    fn every_tee_tag_is_refused_as_an_operator_tag() {
        for tag in TEE_TAGS {
            match operator_tags(&[tag.to_string()]) {
                Err(CapacityError::ForcedTeeTag { tag: refused }) => assert_eq!(refused, tag),
                other => panic!("{tag}: {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_operator_tags_are_refused_by_name() {
        match operator_tags(&["gpu".into(), "fpga".into()]) {
            Err(CapacityError::UnknownTag { tag, .. }) => assert_eq!(tag, "fpga"),
            other => panic!("{other:?}"),
        }
        assert_eq!(operator_tags(&["gpu".into()]).unwrap(), Tag::GPU);
        assert_eq!(operator_tags(&[]).unwrap(), Tag::NONE);
    }

    #[test]
    fn a_state_dir_not_created_yet_still_finds_its_disk() {
        let dir = tempfile::tempdir().unwrap();
        let free = disk_free_bytes(&dir.path().join("not/yet/there")).unwrap();
        assert!(free > 0);
    }
}
