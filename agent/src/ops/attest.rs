//! `attest verify` and `attest show`: TEE evidence from files or from this machine's attester,
//! verified by `edgepool-attestation` against its pinned roots, then judged by the policy.
//!
//! Exit codes: 0 valid and accepted; 1 invalid evidence, refused by the policy, or no attester;
//! 2 arguments that do not fit together (`--cert` with `--kind tdx`, a bad `--now`); 3 a file
//! could not be read.

use std::io::Write;
use std::path::{Path, PathBuf};

use edgepool_attestation::policy::Policy;
use edgepool_attestation::{snp, Claims, Evidence, EvidenceKind};
use serde_json::json;

use super::{write_out, OpsError};
use crate::cli::{AttestCommand, EvidenceKindArg};

/// Runs an `attest` command.
///
/// # Errors
/// [`OpsError`] with the exit codes of the module doc.
pub fn run(command: AttestCommand, stdout: &mut dyn Write) -> Result<(), OpsError> {
    match command {
        AttestCommand::Verify {
            evidence,
            kind,
            cert,
            chain,
            collateral,
            now,
            json,
            policy,
        } => {
            let files = EvidenceFiles {
                evidence,
                kind,
                cert,
                chain,
                collateral,
            };
            let now = match now {
                Some(text) => parse_rfc3339(&text)?,
                None => unix_now(),
            };
            let policy = match policy {
                Some(path) => load_policy(&path)?,
                None => Policy::default(),
            };
            verify(&files, now, &policy, json, stdout)
        }
        AttestCommand::Show { config, json } => show(&config, json, stdout),
    }
}

/// The files `attest verify` reads.
#[derive(Debug)]
struct EvidenceFiles {
    evidence: PathBuf,
    kind: EvidenceKindArg,
    cert: Option<PathBuf>,
    chain: Option<PathBuf>,
    collateral: Option<PathBuf>,
}

impl EvidenceFiles {
    fn load(&self) -> Result<Evidence, OpsError> {
        let report = read_evidence(&self.evidence)?;
        match self.kind {
            EvidenceKindArg::Snp => {
                if self.collateral.is_some() {
                    return Err(OpsError::Usage(
                        "--collateral is for tdx/sgx; snp takes --cert and --chain".into(),
                    ));
                }
                let cert = self.cert.as_deref().ok_or_else(|| {
                    OpsError::Usage("--kind snp needs --cert (the VCEK or VLEK)".into())
                })?;
                let leaf = read(cert)?;
                let chain = self.chain.as_deref().map(read).transpose()?;
                let aux = snp::assemble_cert_table(&report, &leaf, chain.as_deref())
                    .map_err(|e| OpsError::Refused(e.to_string()))?;
                Ok(Evidence {
                    kind: EvidenceKind::SevSnp,
                    report,
                    aux,
                })
            }
            EvidenceKindArg::Tdx | EvidenceKindArg::Sgx => {
                if self.cert.is_some() || self.chain.is_some() {
                    return Err(OpsError::Usage(
                        "--cert/--chain are for snp; tdx/sgx take --collateral".into(),
                    ));
                }
                let aux = self.collateral.as_deref().map(read).transpose()?;
                Ok(Evidence {
                    kind: if self.kind == EvidenceKindArg::Tdx {
                        EvidenceKind::Tdx
                    } else {
                        EvidenceKind::Sgx
                    },
                    report,
                    aux: aux.unwrap_or_default(),
                })
            }
        }
    }
}

/// Reads a `--policy` file (TOML, see `edgepool_attestation::policy`).
fn load_policy(path: &Path) -> Result<Policy, OpsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OpsError::Io(format!("reading {}: {e}", path.display())))?;
    Policy::from_toml_str(&text)
        .map_err(|e| OpsError::Config(format!("policy {}: {e}", path.display())))
}

fn verify(
    files: &EvidenceFiles,
    now: u64,
    policy: &Policy,
    json: bool,
    stdout: &mut dyn Write,
) -> Result<(), OpsError> {
    let evidence = files.load()?;
    let verdict = Verdict::judge(&evidence, now, policy);
    verdict.print(json, stdout)?;
    verdict.into_result()
}

/// What verification and the policy concluded.
#[derive(Debug)]
struct Verdict {
    kind: EvidenceKind,
    report_len: usize,
    aux_len: usize,
    now: u64,
    claims: Option<Claims>,
    /// Why the evidence is invalid (verification) or refused (policy).
    refusal: Option<String>,
}

impl Verdict {
    fn judge(evidence: &Evidence, now: u64, policy: &Policy) -> Self {
        let (claims, refusal) = match edgepool_attestation::verify(evidence, now) {
            Ok(claims) => {
                let refusal = policy
                    .check(&claims)
                    .err()
                    .map(|why| format!("refused by the policy: {why}"));
                (Some(claims), refusal)
            }
            Err(e) => (None, Some(format!("invalid: {e}"))),
        };
        Verdict {
            kind: evidence.kind,
            report_len: evidence.report.len(),
            aux_len: evidence.aux.len(),
            now,
            claims,
            refusal,
        }
    }

    fn print(&self, json: bool, stdout: &mut dyn Write) -> Result<(), OpsError> {
        if json {
            let value = json!({
                "valid": self.refusal.is_none(),
                "verified": self.claims.is_some(),
                "reason": self.refusal,
                "kind": format!("{:?}", self.kind),
                "report_bytes": self.report_len,
                "aux_bytes": self.aux_len,
                "now": self.now,
                "claims": self.claims,
            });
            return write_out(stdout, &value.to_string());
        }
        let mut text = match &self.refusal {
            None => "verdict: valid\n".to_owned(),
            Some(why) => format!("verdict: {why}\n"),
        };
        text.push_str(&format!(
            "evidence: {:?}, {} bytes, aux {} bytes, verified at {}\n",
            self.kind, self.report_len, self.aux_len, self.now
        ));
        if let Some(c) = &self.claims {
            text.push_str(&claims_text(c));
        }
        write_out(stdout, text.trim_end())
    }

    fn into_result(self) -> Result<(), OpsError> {
        match self.refusal {
            None => Ok(()),
            Some(why) => Err(OpsError::Refused(why)),
        }
    }
}

fn claims_text(c: &Claims) -> String {
    let mut text = format!(
        "tee: {}\nmeasurement: {}\nreport_data: {}\ntcb: {:?}\ndebug: {}\nplatform_id: {}\n",
        c.kind.as_str(),
        hex::encode(&c.measurement),
        hex::encode(&c.report_data),
        c.tcb,
        c.debug,
        hex::encode(&c.platform_id),
    );
    for (k, v) in &c.extra {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text
}

fn show(config_path: &Path, json: bool, stdout: &mut dyn Write) -> Result<(), OpsError> {
    // Without a configuration file: the defaults, with the system root still overridable by
    // the environment as it is for a configured agent.
    let mut defaults = crate::config::AgentSection::default();
    if let Some(root) = super::process_env("EDGEPOOL_AGENT_SYSTEM_ROOT") {
        defaults.system_root = root.into();
    }
    let config = if config_path.exists() {
        Some(super::load_config(config_path)?)
    } else {
        None
    };
    let agent = config.as_ref().map(|c| &c.agent).unwrap_or(&defaults);
    let root = crate::attest::tsm_root(agent);
    let attester = match crate::attest::build_attester(agent) {
        Ok(Some(attester)) => Ok(attester),
        Ok(None) => Err("attestation is off (agent.attestation = \"none\")".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let attester = match attester {
        Ok(a) => a,
        Err(why) => {
            let text = if json {
                json!({"available": false, "reason": why, "root": root}).to_string()
            } else {
                format!("attester: unavailable: {why}")
            };
            write_out(stdout, &text)?;
            return Err(OpsError::Refused(why));
        }
    };
    let mut report_data = [0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut report_data);
    let evidence = attester
        .attest(&report_data)
        .map_err(|e| OpsError::Refused(e.to_string()))?;
    let verdict = Verdict::judge(&evidence, unix_now(), &Policy::default());
    verdict.print(json, stdout)?;
    verdict.into_result()
}

/// Reads a report or quote: raw binary, or hex text (whitespace and a `0x` prefix allowed).
fn read_evidence(path: &Path) -> Result<Vec<u8>, OpsError> {
    let bytes = read(path)?;
    let text: String = match std::str::from_utf8(&bytes) {
        Ok(t) => t.split_whitespace().collect(),
        Err(_) => return Ok(bytes),
    };
    let text = text.strip_prefix("0x").unwrap_or(&text);
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| OpsError::Refused(format!("{}: {e}", path.display())))
    } else {
        Ok(bytes)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, OpsError> {
    std::fs::read(path).map_err(|e| OpsError::Io(format!("reading {}: {e}", path.display())))
}

fn parse_rfc3339(text: &str) -> Result<u64, OpsError> {
    let t = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| OpsError::Usage(format!("--now {text:?} is not RFC 3339: {e}")))?;
    u64::try_from(t.timestamp())
        .map_err(|_| OpsError::Usage(format!("--now {text:?} is before 1970")))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgepool_attestation::TeeKind;

    #[test]
    fn rfc3339_with_an_offset_is_converted_to_utc() {
        assert_eq!(
            parse_rfc3339("2025-06-01T00:00:00Z").ok(),
            Some(1_748_736_000)
        );
        assert_eq!(
            parse_rfc3339("2025-06-01T02:00:00+02:00").ok(),
            Some(1_748_736_000)
        );
        assert!(matches!(parse_rfc3339("June 1st"), Err(OpsError::Usage(_))));
    }

    #[test]
    fn the_default_policy_refuses_debug_and_software() {
        let mut claims = Claims {
            kind: TeeKind::SevSnp,
            measurement: vec![0; 48],
            extra: Default::default(),
            report_data: vec![0; 64],
            tcb: edgepool_attestation::Tcb::Snp {
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115,
            },
            debug: false,
            platform_id: vec![],
        };
        let policy = Policy::default();
        assert!(policy.check(&claims).is_ok());
        claims.debug = true;
        assert!(policy.check(&claims).is_err());
        claims.debug = false;
        claims.kind = TeeKind::Software;
        claims.tcb = edgepool_attestation::Tcb::None;
        assert!(policy.check(&claims).is_err());
    }
}
