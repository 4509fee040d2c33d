//! What verified evidence claims.

use serde::{Deserialize, Serialize};

/// The kind of trusted execution environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeeKind {
    /// AMD SEV-SNP.
    SevSnp,
    /// Intel TDX.
    Tdx,
    /// Intel SGX.
    Sgx,
    /// The software attester: no hardware protection at all.
    Software,
}

impl TeeKind {
    /// The name used in configs, policies and the CLI: `sev-snp`, `tdx`, `sgx`, `software`.
    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::SevSnp => "sev-snp",
            TeeKind::Tdx => "tdx",
            TeeKind::Sgx => "sgx",
            TeeKind::Software => "software",
        }
    }
}

/// The trusted computing base a piece of evidence reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Tcb {
    /// SEV-SNP `reported_tcb` security version numbers.
    Snp {
        /// Boot loader SVN.
        bootloader: u8,
        /// TEE (PSP OS) SVN.
        tee: u8,
        /// SNP firmware SVN.
        snp: u8,
        /// Microcode SVN.
        microcode: u8,
    },
    /// The DCAP TCB evaluation against the collateral.
    Dcap {
        /// The TCB level status.
        status: TcbStatus,
        /// Intel security advisories that apply (e.g. `INTEL-SA-00289`).
        advisories: Vec<String>,
    },
    /// Software evidence has no TCB.
    None,
}

/// Intel's TCB level statuses (the TCB info's `tcbStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TcbStatus {
    /// Up to date.
    UpToDate,
    /// Software hardening needed.
    SWHardeningNeeded,
    /// Configuration needed.
    ConfigurationNeeded,
    /// Configuration and software hardening needed.
    ConfigurationAndSWHardeningNeeded,
    /// Out of date.
    OutOfDate,
    /// Out of date, configuration needed.
    OutOfDateConfigurationNeeded,
    /// Revoked.
    Revoked,
    /// TD 1.5 only: launched with an out-of-date TCB whose current TCB (after a TD-preserving
    /// module update) is no longer out of date; relaunch the TD.
    TDRelaunchAdvised,
    /// As [`TcbStatus::TDRelaunchAdvised`], and the platform also needs configuration.
    TDRelaunchAdvisedConfigurationNeeded,
}

/// What verified evidence says about the machine and the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The TEE kind.
    pub kind: TeeKind,
    /// The launch measurement: SNP `measurement` (48 bytes), TDX `MRTD` (48), SGX `MRENCLAVE` (32),
    /// software: sha256 of the device public key (32).
    #[serde(with = "hex::serde")]
    pub measurement: Vec<u8>,
    /// Further named measurements: TDX `rtmr0`..`rtmr3`, SGX `mrsigner`, SNP `host_data`, … (hex).
    pub extra: std::collections::BTreeMap<String, String>,
    /// The 64-byte report data the attester was asked to include.
    #[serde(with = "hex::serde")]
    pub report_data: Vec<u8>,
    /// The TCB.
    pub tcb: Tcb,
    /// Whether the guest or enclave allows debugging (SNP policy bit 19, TDX `td_attributes`
    /// DEBUG, SGX `attributes` DEBUG). Always refused by policy.
    pub debug: bool,
    /// The chip or platform id: SNP `chip_id` (zero under VLEK), DCAP FMSPC/PPID where known.
    #[serde(with = "hex::serde")]
    pub platform_id: Vec<u8>,
}
