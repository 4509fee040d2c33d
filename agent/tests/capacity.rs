//! Capacity detection against committed fake system roots (`tests/data/roots/`) and the real
//! machine: every field of the result, the tags a worker may claim, and the advertisement.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use edgepool_agent::capacity::{
    self, available_memory_bytes, detect, CapacityError, CgroupLimits, DetectOptions, Detected,
    TeeDevice, TeeInterface,
};
use edgepool_agent::config::AttestationMode;
use edgepool_protocol::messages::{GpuInfo, TaskLimits, TeeKind, MAX_GPUS, MAX_TEXT_BYTES};
use edgepool_protocol::{Address, Tag};

const KIB: u64 = 1024;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/roots")
        .join(name)
}

fn options(root: &Path, state_dir: &Path, tags: &[&str]) -> DetectOptions {
    DetectOptions {
        system_root: root.to_path_buf(),
        state_dir: state_dir.to_path_buf(),
        operator_tags: tags.iter().map(|t| t.to_string()).collect(),
        attestation: AttestationMode::Auto,
    }
}

fn detect_fixture(name: &str, tags: &[&str]) -> Detected {
    let state = tempfile::tempdir().unwrap();
    detect(&options(&fixture(name), state.path(), tags)).unwrap()
}

#[test]
fn a_gpu_machine_advertises_its_nvidia_and_amd_gpus_and_the_gpu_tag() {
    let d = detect_fixture("gpu-machine", &[]);
    assert_eq!(d.cpu.model, "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz");
    assert_eq!(d.cpu.cores, 4);
    assert_eq!(d.cpu.threads, 8);
    assert_eq!(d.cpu.arch, std::env::consts::ARCH);
    assert_eq!(d.ram_bytes, 65_842_000 * KIB);
    assert!(d.disk_free_bytes > 0);
    assert_eq!(
        d.gpus,
        vec![
            GpuInfo {
                vendor: "nvidia".into(),
                model: "NVIDIA GeForce RTX 3090".into(),
                memory_bytes: None,
            },
            GpuInfo {
                vendor: "amd".into(),
                model: "pci 1002:73bf".into(),
                memory_bytes: Some(17_163_091_968),
            },
        ]
    );
    assert!(d.tee_devices.is_empty());
    assert_eq!(d.tee, None);
    assert_eq!(d.tags, Tag::GPU);
    assert_eq!(d.cgroup, None);
    // The host bridge is silently skipped (not a display); the BMC's VGA is named.
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].contains("0x1a03"), "{:?}", d.warnings);
}

#[test]
fn an_snp_guest_reports_its_devices_but_does_not_claim_tee() {
    let d = detect_fixture("snp-guest", &[]);
    let root = fixture("snp-guest");
    assert_eq!(d.cpu.model, "AMD EPYC 7763 64-Core Processor");
    assert_eq!((d.cpu.cores, d.cpu.threads), (4, 4));
    assert_eq!(d.ram_bytes, 16_384_000 * KIB);
    assert!(d.disk_free_bytes > 0);
    assert!(d.gpus.is_empty(), "the VM's bochs display is no GPU");
    assert_eq!(
        d.tee_devices,
        vec![
            TeeDevice {
                kind: TeeKind::SevSnp,
                path: root.join("sys/kernel/config/tsm/report/report0/provider"),
                via: TeeInterface::ConfigfsTsm,
            },
            TeeDevice {
                kind: TeeKind::SevSnp,
                path: root.join("dev/sev-guest"),
                via: TeeInterface::DeviceNode,
            },
        ]
    );
    assert_eq!(d.tee, None);
    assert!(!d.tags.is_tee());
    assert_eq!(d.tags, Tag::NONE);
    assert_eq!(
        d.cgroup,
        Some(CgroupLimits {
            version: 2,
            path: "/system.slice/edgepool-agent.service".into(),
            memory_max_bytes: None,
            cpu_max_cores: None,
        })
    );
}

#[test]
fn a_tdx_guest_reports_its_devices_but_does_not_claim_tee() {
    let d = detect_fixture("tdx-guest", &[]);
    let root = fixture("tdx-guest");
    assert_eq!(d.cpu.model, "Intel(R) Xeon(R) Platinum 8480+");
    assert_eq!((d.cpu.cores, d.cpu.threads), (2, 2));
    assert_eq!(d.ram_bytes, 8_192_000 * KIB);
    assert!(d.gpus.is_empty());
    assert_eq!(
        d.tee_devices,
        vec![
            TeeDevice {
                kind: TeeKind::Tdx,
                path: root.join("sys/kernel/config/tsm/report/tdreport/provider"),
                via: TeeInterface::ConfigfsTsm,
            },
            TeeDevice {
                kind: TeeKind::Tdx,
                path: root.join("dev/tdx_guest"),
                via: TeeInterface::DeviceNode,
            },
        ]
    );
    assert_eq!(d.tee, None);
    assert_eq!(d.tags, Tag::NONE);
    assert_eq!(d.cgroup, None);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn a_cgroup_limited_container_advertises_its_limits_not_the_host() {
    let d = detect_fixture("cgroup-limited", &[]);
    assert_eq!(d.cpu.model, "AMD EPYC 9654 96-Core Processor");
    // cpuinfo says 8 cores, 16 threads; cpu.max "150000 100000" rounds up to 2.
    assert_eq!((d.cpu.cores, d.cpu.threads), (2, 2));
    assert_eq!(d.ram_bytes, 536_870_912);
    assert!(d.gpus.is_empty());
    assert!(d.tee_devices.is_empty());
    assert_eq!(d.tags, Tag::NONE);
    assert_eq!(
        d.cgroup,
        Some(CgroupLimits {
            version: 2,
            path: "/docker/3f1c9e".into(),
            memory_max_bytes: Some(536_870_912),
            cpu_max_cores: Some(2),
        })
    );
}

#[test]
fn available_memory_is_reduced_to_the_cgroup_headroom() {
    // MemAvailable 30 GiB, but memory.max - memory.current = 512 MiB - 100 MiB.
    assert_eq!(
        available_memory_bytes(&fixture("cgroup-limited")),
        536_870_912 - 104_857_600
    );
    assert_eq!(
        available_memory_bytes(&fixture("gpu-machine")),
        60_000_000 * KIB
    );
    assert_eq!(available_memory_bytes(Path::new("/nonexistent/root")), 0);
}

#[test]
fn operator_tags_are_added_to_the_detected_ones() {
    let d = detect_fixture("snp-guest", &["gpu"]);
    assert_eq!(d.tags, Tag::GPU);
    let d = detect_fixture("gpu-machine", &["gpu", ""]);
    assert_eq!(d.tags, Tag::GPU);
}

#[test]
fn an_operator_cannot_force_a_tee_tag() {
    let state = tempfile::tempdir().unwrap();
    for tag in ["tee", "scone", "gramine", "tdx"] {
        let result = detect(&options(&fixture("snp-guest"), state.path(), &["gpu", tag]));
        match result {
            Err(CapacityError::ForcedTeeTag { tag: refused }) => assert_eq!(refused, tag),
            other => panic!("{tag}: expected ForcedTeeTag, found {other:?}"),
        }
    }
    let err = detect(&options(&fixture("snp-guest"), state.path(), &["tee"])).unwrap_err();
    assert!(err.to_string().contains("\"tee\""), "{err}");
}

#[test]
fn an_unknown_operator_tag_is_refused_by_name() {
    let state = tempfile::tempdir().unwrap();
    match detect(&options(&fixture("gpu-machine"), state.path(), &["fpga"])) {
        Err(CapacityError::UnknownTag { tag, .. }) => assert_eq!(tag, "fpga"),
        other => panic!("expected UnknownTag, found {other:?}"),
    }
}

#[test]
fn a_root_without_cpuinfo_is_a_typed_error() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    match detect(&options(root.path(), state.path(), &[])) {
        Err(CapacityError::Cpu { path, .. }) => assert_eq!(path, root.path().join("proc/cpuinfo")),
        other => panic!("expected a cpu error, found {other:?}"),
    }
}

#[test]
fn the_advertisement_carries_the_detection_and_validates() {
    let d = detect_fixture("gpu-machine", &[]);
    let worker: Address = "0x1000000000000000000000000000000000000001"
        .parse()
        .unwrap();
    let ad = d.advertisement(worker, 3, TaskLimits::default(), 123_456);
    ad.validate().unwrap();
    assert_eq!(ad.worker, worker);
    assert!(ad.agent_version.starts_with("edgepool-agent "));
    assert_eq!(ad.cpu, d.cpu);
    assert_eq!(ad.ram_bytes, d.ram_bytes);
    assert_eq!(ad.disk_free_bytes, d.disk_free_bytes);
    assert_eq!(ad.gpus, d.gpus);
    assert_eq!(ad.tee, None);
    assert_eq!(ad.tags, Tag::GPU);
    assert_eq!(ad.slots, 3);
    assert_eq!(ad.limits, TaskLimits::default());
    assert_eq!(ad.fuel_per_second, 123_456);
}

#[test]
fn an_oversized_detection_is_cut_so_the_advertisement_validates() {
    let mut d = detect_fixture("gpu-machine", &[]);
    d.cpu.model = "x".repeat(MAX_TEXT_BYTES + 10);
    d.gpus = vec![
        GpuInfo {
            vendor: "nvidia".into(),
            model: "ü".repeat(MAX_TEXT_BYTES),
            memory_bytes: None,
        };
        MAX_GPUS + 6
    ];
    let ad = d.advertisement(Address::default(), 1, TaskLimits::default(), 1);
    ad.validate().unwrap();
    assert_eq!(ad.gpus.len(), MAX_GPUS);
    assert_eq!(ad.cpu.model.len(), MAX_TEXT_BYTES);
}

#[test]
fn the_detection_serialises_to_json_for_the_capacity_command() {
    let d = detect_fixture("snp-guest", &[]);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["tee"], serde_json::Value::Null);
    assert_eq!(json["tee_devices"][0]["kind"], "SevSnp");
    assert_eq!(json["tee_devices"][0]["via"], "configfs-tsm");
    assert_eq!(json["tee_devices"][1]["via"], "device-node");
    assert_eq!(json["cgroup"]["version"], 2);
    assert_eq!(json["cpu"]["threads"], 4);
}

#[test]
fn detection_on_the_real_root_agrees_with_sysinfo() {
    let state = tempfile::tempdir().unwrap();
    let d = detect(&options(Path::new("/"), state.path(), &[])).unwrap();
    let system = sysinfo::System::new_all().unwrap();
    let mut threads = u32::try_from(system.cpus().len()).unwrap();
    let mut ram = system.total_memory();
    if let Some(limits) = &d.cgroup {
        threads = limits.cpu_max_cores.map_or(threads, |c| threads.min(c));
        ram = limits.memory_max_bytes.map_or(ram, |m| ram.min(m));
    }
    assert_eq!(d.cpu.threads, threads);
    assert_eq!(d.ram_bytes, ram);
    assert!(d.cpu.cores >= 1);
    assert!(!d.cpu.model.is_empty());
    assert_eq!(d.cpu.arch, sysinfo::System::cpu_arch());
    assert!(d.disk_free_bytes > 0);
    assert_eq!(d.tee, None);
    assert!(available_memory_bytes(Path::new("/")) > 0);
    eprintln!("{}", serde_json::to_string_pretty(&d).unwrap());
}

#[test]
fn the_sandbox_benchmark_measures_a_positive_rate() {
    let rate = capacity::fuel_per_second().unwrap();
    assert!(rate > 0);
}
