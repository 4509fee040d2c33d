//! What a worker offers: [`CapacityAdvertisement`], and the per-task [`TaskLimits`].

use serde::{Deserialize, Serialize};

use super::{check_count, check_text, ValidationError, MAX_GPUS};
use crate::primitives::Address;
use crate::tags::Tag;

/// What a worker offers, retained on its `capacity` topic so that a scheduler that starts later
/// still sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityAdvertisement {
    /// The worker's wallet (also the envelope's sender).
    pub worker: Address,
    /// The agent's version, e.g. `edgepool-agent 0.1.0`.
    pub agent_version: String,
    /// The CPU.
    pub cpu: CpuInfo,
    /// Total memory.
    pub ram_bytes: u64,
    /// Disk free for task data.
    pub disk_free_bytes: u64,
    /// The GPUs (at most [`MAX_GPUS`]).
    pub gpus: Vec<GpuInfo>,
    /// The trusted-execution technology this worker can attest with, if any.
    pub tee: Option<TeeKind>,
    /// The platform measurement the self-attestation at start reported (SNP `measurement`, TDX
    /// `MRTD`, SGX `MRENCLAVE`, software: sha256 of the device key); empty without `tee`. At most
    /// [`MAX_MEASUREMENT_BYTES`].
    pub tee_measurement: Vec<u8>,
    /// What the worker can do, as an iExec tag (`tee`, `gpu`, …).
    pub tags: Tag,
    /// How many tasks it runs at once.
    pub slots: u32,
    /// The largest per-task limits it accepts.
    pub limits: TaskLimits,
    /// How much fuel it burns per second of wall-clock time (for the scheduler's estimates).
    pub fuel_per_second: u64,
}

impl CapacityAdvertisement {
    /// Refuses over-long strings and too many GPUs.
    ///
    /// # Errors
    /// The first [`ValidationError`] found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_text("capacity.agent_version", &self.agent_version)?;
        check_text("capacity.cpu.model", &self.cpu.model)?;
        check_text("capacity.cpu.arch", &self.cpu.arch)?;
        check_count("capacity.gpus", self.gpus.len(), MAX_GPUS)?;
        check_count(
            "capacity.tee_measurement",
            self.tee_measurement.len(),
            MAX_MEASUREMENT_BYTES,
        )?;
        for gpu in &self.gpus {
            check_text("capacity.gpus.vendor", &gpu.vendor)?;
            check_text("capacity.gpus.model", &gpu.model)?;
        }
        Ok(())
    }
}

/// The longest platform measurement an advertisement may carry (SNP and TDX use 48 bytes).
pub const MAX_MEASUREMENT_BYTES: usize = 64;

/// A CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// The model name, as the OS reports it.
    pub model: String,
    /// Physical cores.
    pub cores: u32,
    /// Hardware threads.
    pub threads: u32,
    /// The architecture, e.g. `x86_64`, `aarch64`.
    pub arch: String,
}

/// A GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// The vendor, e.g. `nvidia`.
    pub vendor: String,
    /// The model name.
    pub model: String,
    /// Its memory, when known.
    pub memory_bytes: Option<u64>,
}

/// A trusted-execution technology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TeeKind {
    /// AMD SEV-SNP confidential VM.
    SevSnp,
    /// Intel TDX trust domain.
    Tdx,
    /// Intel SGX enclave.
    Sgx,
    /// The software attester: no hardware protection, for tests and the simulator only.
    Software,
}

impl TeeKind {
    /// A short stable name.
    pub fn as_str(&self) -> &'static str {
        match self {
            TeeKind::SevSnp => "sev-snp",
            TeeKind::Tdx => "tdx",
            TeeKind::Sgx => "sgx",
            TeeKind::Software => "software",
        }
    }
}

/// Per-task resource limits: what a worker accepts at most (in its advertisement) or what one task
/// may use (in an assignment). Hitting any of them is a typed failure of the task, never of the
/// agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskLimits {
    /// Instructions (wasmi fuel). Default 10,000,000,000.
    pub fuel: u64,
    /// Linear memory. Default 256 MiB.
    pub memory_bytes: u64,
    /// Wall-clock time of the app. Default 10 minutes.
    pub wall_clock_ms: u64,
    /// Total bytes written to `/iexec_out`. Default 64 MiB.
    pub output_bytes: u64,
    /// Files and directories created in `/iexec_out`. Default 1,000.
    pub output_files: u32,
    /// Bytes of dataset and input files together. Default 1 GiB.
    pub max_input_bytes: u64,
}

impl Default for TaskLimits {
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            memory_bytes: 256 * 1024 * 1024,
            wall_clock_ms: 10 * 60 * 1000,
            output_bytes: 64 * 1024 * 1024,
            output_files: 1_000,
            max_input_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl TaskLimits {
    /// The first limit of `self` above the same limit of `max`, as `(name, requested, max)`;
    /// `None` when every limit fits (what a worker checks before it accepts an assignment).
    pub fn first_exceeding(&self, max: &TaskLimits) -> Option<(&'static str, u64, u64)> {
        [
            ("fuel", self.fuel, max.fuel),
            ("memory_bytes", self.memory_bytes, max.memory_bytes),
            ("wall_clock_ms", self.wall_clock_ms, max.wall_clock_ms),
            ("output_bytes", self.output_bytes, max.output_bytes),
            (
                "output_files",
                u64::from(self.output_files),
                u64::from(max.output_files),
            ),
            ("max_input_bytes", self.max_input_bytes, max.max_input_bytes),
        ]
        .into_iter()
        .find(|(_, requested, allowed)| requested > allowed)
    }

    /// Whether every limit of `self` is at most the same limit of `max`.
    pub fn fits_within(&self, max: &TaskLimits) -> bool {
        self.first_exceeding(max).is_none()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::messages::samples;

    #[test]
    fn default_limits_are_the_documented_values() {
        let limits = TaskLimits::default();
        assert_eq!(limits.fuel, 10_000_000_000);
        assert_eq!(limits.memory_bytes, 268_435_456);
        assert_eq!(limits.wall_clock_ms, 600_000);
        assert_eq!(limits.output_bytes, 67_108_864);
        assert_eq!(limits.output_files, 1_000);
        assert_eq!(limits.max_input_bytes, 1_073_741_824);
    }

    #[test]
    fn limits_above_the_maximum_name_the_first_one_exceeded() {
        let max = TaskLimits::default();
        assert!(max.fits_within(&max));
        let more_memory = TaskLimits {
            memory_bytes: max.memory_bytes + 1,
            output_files: max.output_files + 1,
            ..max
        };
        assert_eq!(
            more_memory.first_exceeding(&max),
            Some(("memory_bytes", max.memory_bytes + 1, max.memory_bytes))
        );
        assert!(!more_memory.fits_within(&max));
    }

    #[test]
    fn more_than_64_gpus_are_refused() {
        let mut capacity = samples::capacity();
        let gpu = capacity.gpus[0].clone();
        capacity.gpus = vec![gpu; MAX_GPUS + 1];
        assert_eq!(
            capacity.validate(),
            Err(ValidationError::TooMany {
                field: "capacity.gpus",
                count: MAX_GPUS + 1,
                max: MAX_GPUS
            })
        );
    }

    #[test]
    fn an_over_long_gpu_model_is_refused() {
        let mut capacity = samples::capacity();
        capacity.gpus[0].model = "g".repeat(crate::messages::MAX_TEXT_BYTES + 1);
        assert!(matches!(
            capacity.validate(),
            Err(ValidationError::TooLong {
                field: "capacity.gpus.model",
                ..
            })
        ));
    }
}
