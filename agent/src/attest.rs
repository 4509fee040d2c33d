//! The agent's attester and its self-attestation at start.
//!
//! `tee` (and the framework tag of the kind, `tdx` for TDX) is advertised only when the
//! configured attester produced evidence at start that our own verifier accepts and that carries
//! the report data we asked for. The kind and the platform measurement of that evidence go into
//! the capacity advertisement.
//!
//! `agent.attestation`:
//! - `software`: [`SoftwareAttester`] over `agent.software_key`. **No hardware guarantee**: only an
//!   SMS whose policy allows software evidence (the simulator's tests and demos) accepts it.
//! - `auto`, `snp`, `tdx`: the configfs-tsm attester under
//!   `<system_root>/sys/kernel/config/tsm/report` (`edgepool_attestation::tsm`); `snp` and `tdx`
//!   also require its provider to be that kind. Without configfs-tsm the agent runs without `tee`.
//! - `none`: no attester, no `tee`.

use std::path::PathBuf;
use std::sync::Arc;

use edgepool_attestation::software::SoftwareAttester;
use edgepool_attestation::tsm::TsmAttester;
use edgepool_attestation::{Attester, EvidenceKind, TeeKind as ClaimedKind};
use edgepool_protocol::hash::keccak256_concat;
use edgepool_protocol::messages::TeeKind;
use edgepool_protocol::primitives::Address;

use crate::config::{AgentSection, AttestationMode, Config};

/// The domain of the self-attestation's report data.
pub const SELF_TEST_DOMAIN: &[u8] = b"edgepool/v1/self-attestation";

/// A working attester, as proven at start.
#[derive(Debug, Clone)]
pub struct SelfAttestation {
    /// The attester TEE tasks use.
    pub attester: Arc<dyn Attester>,
    /// The TEE kind its evidence claims.
    pub kind: TeeKind,
    /// The platform measurement its evidence claims.
    pub measurement: Vec<u8>,
}

/// Why no attester works.
#[derive(Debug, thiserror::Error)]
pub enum SelfAttestError {
    /// The configured attester does not exist on this machine or in this build.
    #[error("no attester: {0}")]
    Unavailable(String),
    /// The attester failed to produce evidence.
    #[error("the attester failed: {0}")]
    Attest(#[from] edgepool_attestation::AttestError),
    /// Our own verifier refused the evidence.
    #[error("the self-attestation evidence does not verify: {0}")]
    Verify(#[from] edgepool_attestation::VerifyError),
    /// The evidence does not carry the report data asked for.
    #[error("the self-attestation evidence carries other report data than asked for")]
    ReportData,
}

/// The software attester's key file: `agent.software_key`, else
/// `<state_dir>/attestation/software.key`.
pub fn software_key_path(agent: &AgentSection) -> PathBuf {
    agent
        .software_key
        .clone()
        .unwrap_or_else(|| agent.state_dir.join("attestation/software.key"))
}

/// The configfs-tsm report directory: `<system_root>/sys/kernel/config/tsm/report`.
pub fn tsm_root(agent: &AgentSection) -> PathBuf {
    agent.system_root.join("sys/kernel/config/tsm/report")
}

/// The attester `agent.attestation` names, or `Ok(None)` for `"none"`.
///
/// # Errors
/// [`SelfAttestError::Unavailable`] when this machine has no such attester (no configfs-tsm, or a
/// provider of another kind than `snp`/`tdx` asked for), [`SelfAttestError::Attest`] when the
/// software key cannot be read or made.
pub fn build_attester(agent: &AgentSection) -> Result<Option<Arc<dyn Attester>>, SelfAttestError> {
    let want = match agent.attestation {
        AttestationMode::None => return Ok(None),
        AttestationMode::Software => {
            return Ok(Some(Arc::new(SoftwareAttester::open_or_create(
                &software_key_path(agent),
            )?)))
        }
        AttestationMode::Auto => None,
        AttestationMode::Snp => Some(EvidenceKind::SevSnp),
        AttestationMode::Tdx => Some(EvidenceKind::Tdx),
    };
    let root = tsm_root(agent);
    let attester = TsmAttester::open(&root).map_err(|e| match e {
        edgepool_attestation::AttestError::Unavailable(why) => {
            SelfAttestError::Unavailable(format!("configfs-tsm at {}: {why}", root.display()))
        }
        other => SelfAttestError::Attest(other),
    })?;
    if let Some(want) = want {
        if attester.kind() != want {
            return Err(SelfAttestError::Unavailable(format!(
                "agent.attestation asks for {want:?} but configfs-tsm at {} provides {:?}",
                root.display(),
                attester.kind()
            )));
        }
    }
    Ok(Some(Arc::new(attester)))
}

/// The report data of the self-attestation of `worker`.
pub fn self_test_report_data(worker: &Address) -> [u8; 64] {
    let hash = keccak256_concat(&[SELF_TEST_DOMAIN, worker.as_bytes()]);
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(hash.as_bytes());
    out
}

/// Builds the configured attester and proves it works: `Ok(None)` for `agent.attestation =
/// "none"`.
///
/// # Errors
/// [`SelfAttestError`]; the caller runs without `tee`.
pub fn self_attest(
    config: &Config,
    worker: &Address,
    now_unix: u64,
) -> Result<Option<SelfAttestation>, SelfAttestError> {
    let Some(attester) = build_attester(&config.agent)? else {
        return Ok(None);
    };
    let report_data = self_test_report_data(worker);
    let evidence = attester.attest(&report_data)?;
    let claims = edgepool_attestation::verify(&evidence, now_unix)?;
    if claims.report_data.as_slice() != report_data.as_slice() {
        return Err(SelfAttestError::ReportData);
    }
    let kind = match claims.kind {
        ClaimedKind::SevSnp => TeeKind::SevSnp,
        ClaimedKind::Tdx => TeeKind::Tdx,
        ClaimedKind::Sgx => TeeKind::Sgx,
        ClaimedKind::Software => TeeKind::Software,
    };
    Ok(Some(SelfAttestation {
        attester,
        kind,
        measurement: claims.measurement,
    }))
}

/// The tags a working attester of `kind` adds: `tee`, plus `tdx` for TDX.
pub fn tee_tags(kind: TeeKind) -> &'static [&'static str] {
    match kind {
        TeeKind::Tdx => &["tee", "tdx"],
        TeeKind::SevSnp | TeeKind::Sgx | TeeKind::Software => &["tee"],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, mode: AttestationMode) -> Config {
        let mut config: Config = crate::config::from_str(
            "[pool]\naddress = \"0x1111111111111111111111111111111111111111\"\nscheduler = \"0x2222222222222222222222222222222222222222\"\n",
            std::path::Path::new("test.toml"),
            Vec::new(),
        )
        .unwrap();
        config.agent.state_dir = dir.to_path_buf();
        config.agent.attestation = mode;
        config
    }

    #[test]
    fn the_software_attester_self_attests_and_claims_its_key_hash() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), AttestationMode::Software);
        let found = self_attest(&config, &Address([1; 20]), 0).unwrap().unwrap();
        assert_eq!(found.kind, TeeKind::Software);
        assert_eq!(found.measurement.len(), 32);
        assert!(dir.path().join("attestation/software.key").exists());
        let again = self_attest(&config, &Address([1; 20]), 0).unwrap().unwrap();
        assert_eq!(found.measurement, again.measurement);
    }

    #[test]
    fn none_claims_nothing_and_hardware_without_tsm_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        assert!(self_attest(
            &config(dir.path(), AttestationMode::None),
            &Address::ZERO,
            0
        )
        .unwrap()
        .is_none());
        assert!(matches!(
            self_attest(
                &config(dir.path(), AttestationMode::Auto),
                &Address::ZERO,
                0
            ),
            Err(SelfAttestError::Unavailable(_))
        ));
    }
}
