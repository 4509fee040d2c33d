//! What a relying party (the SMS) accepts: [`Policy`].
//!
//! A policy is checked against the [`Claims`] of evidence that already verified: it never looks
//! at bytes. Every rejection is a [`PolicyError`] variant that says which rule failed and what
//! was found. Debug guests and enclaves are never accepted: there is no knob for it.
//!
//! # TOML
//!
//! ```toml
//! accepted_kinds = ["sev-snp", "tdx"]
//! accepted_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]
//! allow_software = false
//!
//! [measurements]                      # empty list = any measurement of that kind
//! sev-snp = ["<96 hex digits>"]
//!
//! [min_snp_tcb]
//! bootloader = 3
//! tee = 0
//! snp = 8
//! microcode = 115
//! ```

use serde::{Deserialize, Serialize};

use crate::claims::TcbStatus;
use crate::{Claims, Tcb, TeeKind};

/// What a relying party accepts. [`Policy::default`] accepts hardware evidence only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// The hardware TEE kinds accepted. `software` is not accepted here: see
    /// [`Policy::allow_software`].
    pub accepted_kinds: Vec<TeeKind>,
    /// Measurement allow-lists, per kind (empty = any measurement).
    pub measurements: Measurements,
    /// The lowest SEV-SNP reported TCB accepted, component by component (none = any).
    pub min_snp_tcb: Option<SnpTcb>,
    /// The DCAP TCB statuses accepted (TDX, SGX).
    pub accepted_tcb_statuses: Vec<TcbStatus>,
    /// Whether software evidence (no hardware guarantee at all) is accepted. Default false; only
    /// the simulator's tests and demos set it.
    pub allow_software: bool,
}

/// Measurement allow-lists, one per kind, as hex (an optional `0x` prefix is accepted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Measurements {
    /// SEV-SNP `measurement` values (48 bytes).
    pub sev_snp: Vec<String>,
    /// TDX `MRTD` values (48 bytes).
    pub tdx: Vec<String>,
    /// SGX `MRENCLAVE` values (32 bytes).
    pub sgx: Vec<String>,
    /// Software device-key hashes (32 bytes).
    pub software: Vec<String>,
}

impl Measurements {
    fn for_kind(&self, kind: TeeKind) -> &[String] {
        match kind {
            TeeKind::SevSnp => &self.sev_snp,
            TeeKind::Tdx => &self.tdx,
            TeeKind::Sgx => &self.sgx,
            TeeKind::Software => &self.software,
        }
    }
}

/// An SEV-SNP TCB (security version numbers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpTcb {
    /// Boot loader SVN.
    pub bootloader: u8,
    /// TEE SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode SVN.
    pub microcode: u8,
}

/// Why claims were refused by a [`Policy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The guest or enclave allows debugging: its memory is readable by the host.
    #[error("debug-enabled {kind} evidence is never accepted")]
    Debug {
        /// The kind.
        kind: &'static str,
    },
    /// Software evidence, and the policy does not allow it.
    #[error("software evidence gives no hardware guarantee and this policy does not allow it")]
    SoftwareNotAllowed,
    /// A kind the policy does not list.
    #[error("TEE kind {kind} is not accepted (accepted: {accepted})")]
    KindNotAccepted {
        /// The kind.
        kind: &'static str,
        /// What is accepted.
        accepted: String,
    },
    /// A measurement outside the kind's allow-list.
    #[error("measurement {found} is not in the {kind} allow-list")]
    MeasurementNotAllowed {
        /// The kind.
        kind: &'static str,
        /// The measurement, hex.
        found: String,
    },
    /// An SNP TCB component below the minimum.
    #[error("SEV-SNP TCB component {component} is {found}, the minimum is {minimum}")]
    TcbTooLow {
        /// `bootloader`, `tee`, `snp` or `microcode`.
        component: &'static str,
        /// Reported.
        found: u8,
        /// Required.
        minimum: u8,
    },
    /// A DCAP TCB status the policy does not accept.
    #[error("DCAP TCB status {found:?} is not accepted")]
    TcbStatusNotAccepted {
        /// The status.
        found: TcbStatus,
    },
    /// The claims' TCB does not fit their kind (e.g. SNP claims without an SNP TCB).
    #[error("{kind} claims carry no {kind} TCB")]
    TcbMissing {
        /// The kind.
        kind: &'static str,
    },
}

impl PolicyError {
    /// A short stable name for counters and refusal reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            PolicyError::Debug { .. } => "debug",
            PolicyError::SoftwareNotAllowed => "software-not-allowed",
            PolicyError::KindNotAccepted { .. } => "kind-not-accepted",
            PolicyError::MeasurementNotAllowed { .. } => "measurement-not-allowed",
            PolicyError::TcbTooLow { .. } => "tcb-too-low",
            PolicyError::TcbStatusNotAccepted { .. } => "tcb-status-not-accepted",
            PolicyError::TcbMissing { .. } => "tcb-missing",
        }
    }
}

/// Why a policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// Not valid TOML for a policy (unknown key, wrong type, …).
    #[error("invalid policy: {0}")]
    Toml(#[from] toml::de::Error),
    /// A measurement that is not hex.
    #[error("invalid policy: measurement {value:?} of {kind} is not hex")]
    Measurement {
        /// The kind.
        kind: &'static str,
        /// The value.
        value: String,
    },
}

impl Default for Policy {
    /// Hardware only: SEV-SNP, TDX and SGX, any measurement, any SNP TCB, DCAP statuses
    /// `UpToDate` and `SWHardeningNeeded`, no software evidence.
    ///
    /// `SWHardeningNeeded` is accepted because it says the platform is patched and only the
    /// enclave software must mitigate a known issue (e.g. LVI); our guests run an interpreter
    /// that a relying party pins by measurement anyway. `ConfigurationNeeded` (often SMT on, or
    /// memory integrity off) and every `OutOfDate`/`Revoked` status are refused. Fleets should
    /// pin measurements and a minimum SNP TCB in their own policy file.
    fn default() -> Self {
        Self {
            accepted_kinds: vec![TeeKind::SevSnp, TeeKind::Tdx, TeeKind::Sgx],
            measurements: Measurements::default(),
            min_snp_tcb: None,
            accepted_tcb_statuses: vec![TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded],
            allow_software: false,
        }
    }
}

impl Policy {
    /// The default policy that also accepts software evidence: for the simulator's tests and
    /// demos on machines without a TEE. Never for production.
    pub fn simulator() -> Self {
        Self::default().allow_software()
    }

    /// This policy, also accepting software evidence.
    #[must_use]
    pub fn allow_software(mut self) -> Self {
        self.allow_software = true;
        self
    }

    /// Parses a policy from TOML (missing keys take their default values).
    ///
    /// # Errors
    /// [`PolicyLoadError`].
    pub fn from_toml_str(text: &str) -> Result<Self, PolicyLoadError> {
        let policy: Policy = toml::from_str(text)?;
        for kind in [
            TeeKind::SevSnp,
            TeeKind::Tdx,
            TeeKind::Sgx,
            TeeKind::Software,
        ] {
            for value in policy.measurements.for_kind(kind) {
                if decode_hex(value).is_none() {
                    return Err(PolicyLoadError::Measurement {
                        kind: kind.as_str(),
                        value: value.clone(),
                    });
                }
            }
        }
        Ok(policy)
    }

    /// Checks verified `claims`: debug, kind, measurement, then TCB.
    ///
    /// # Errors
    /// The first [`PolicyError`] that applies.
    pub fn check(&self, claims: &Claims) -> Result<(), PolicyError> {
        let kind = claims.kind.as_str();
        if claims.debug {
            return Err(PolicyError::Debug { kind });
        }
        if claims.kind == TeeKind::Software {
            if !self.allow_software {
                return Err(PolicyError::SoftwareNotAllowed);
            }
        } else if !self.accepted_kinds.contains(&claims.kind) {
            return Err(PolicyError::KindNotAccepted {
                kind,
                accepted: self
                    .accepted_kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            });
        }
        let allowed = self.measurements.for_kind(claims.kind);
        if !allowed.is_empty()
            && !allowed
                .iter()
                .any(|m| decode_hex(m).is_some_and(|m| m == claims.measurement))
        {
            return Err(PolicyError::MeasurementNotAllowed {
                kind,
                found: hex::encode(&claims.measurement),
            });
        }
        match (claims.kind, &claims.tcb) {
            (TeeKind::Software, _) => Ok(()),
            (
                TeeKind::SevSnp,
                Tcb::Snp {
                    bootloader,
                    tee,
                    snp,
                    microcode,
                },
            ) => {
                let Some(min) = self.min_snp_tcb else {
                    return Ok(());
                };
                for (component, found, minimum) in [
                    ("bootloader", *bootloader, min.bootloader),
                    ("tee", *tee, min.tee),
                    ("snp", *snp, min.snp),
                    ("microcode", *microcode, min.microcode),
                ] {
                    if found < minimum {
                        return Err(PolicyError::TcbTooLow {
                            component,
                            found,
                            minimum,
                        });
                    }
                }
                Ok(())
            }
            (TeeKind::Tdx | TeeKind::Sgx, Tcb::Dcap { status, .. }) => {
                if self.accepted_tcb_statuses.contains(status) {
                    Ok(())
                } else {
                    Err(PolicyError::TcbStatusNotAccepted { found: *status })
                }
            }
            _ => Err(PolicyError::TcbMissing { kind }),
        }
    }
}

fn decode_hex(value: &str) -> Option<Vec<u8>> {
    let digits = value.strip_prefix("0x").unwrap_or(value);
    hex::decode(digits).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims(kind: TeeKind, tcb: Tcb) -> Claims {
        Claims {
            kind,
            measurement: vec![0xab; 48],
            extra: Default::default(),
            report_data: vec![0; 64],
            tcb,
            debug: false,
            platform_id: Vec::new(),
        }
    }

    fn snp(bootloader: u8, microcode: u8) -> Claims {
        claims(
            TeeKind::SevSnp,
            Tcb::Snp {
                bootloader,
                tee: 0,
                snp: 8,
                microcode,
            },
        )
    }

    fn dcap(status: TcbStatus) -> Claims {
        claims(
            TeeKind::Tdx,
            Tcb::Dcap {
                status,
                advisories: Vec::new(),
            },
        )
    }

    #[test]
    fn the_default_policy_accepts_hardware_and_refuses_software() {
        let policy = Policy::default();
        assert_eq!(policy.check(&snp(3, 115)), Ok(()));
        assert_eq!(policy.check(&dcap(TcbStatus::UpToDate)), Ok(()));
        assert_eq!(
            policy.check(&claims(TeeKind::Software, Tcb::None)),
            Err(PolicyError::SoftwareNotAllowed)
        );
        assert_eq!(
            Policy::simulator().check(&claims(TeeKind::Software, Tcb::None)),
            Ok(())
        );
    }

    #[test]
    fn debug_evidence_is_refused_even_when_software_is_allowed() {
        let mut debug = snp(3, 115);
        debug.debug = true;
        assert_eq!(
            Policy::simulator().check(&debug),
            Err(PolicyError::Debug { kind: "sev-snp" })
        );
    }

    #[test]
    fn out_of_date_and_configuration_needed_statuses_are_refused_by_default() {
        let policy = Policy::default();
        assert_eq!(policy.check(&dcap(TcbStatus::SWHardeningNeeded)), Ok(()));
        for status in [
            TcbStatus::ConfigurationNeeded,
            TcbStatus::OutOfDate,
            TcbStatus::Revoked,
        ] {
            assert_eq!(
                policy.check(&dcap(status)),
                Err(PolicyError::TcbStatusNotAccepted { found: status })
            );
        }
    }

    #[test]
    fn a_kind_outside_the_list_is_refused_with_the_list() {
        let policy = Policy {
            accepted_kinds: vec![TeeKind::Tdx],
            ..Policy::default()
        };
        assert_eq!(
            policy.check(&snp(3, 115)),
            Err(PolicyError::KindNotAccepted {
                kind: "sev-snp",
                accepted: "tdx".into()
            })
        );
    }

    #[test]
    fn a_measurement_outside_a_non_empty_allow_list_is_refused() {
        let mut policy = Policy::default();
        policy.measurements.sev_snp = vec![format!("0x{}", hex::encode([0xcd; 48]))];
        assert!(matches!(
            policy.check(&snp(3, 115)),
            Err(PolicyError::MeasurementNotAllowed { .. })
        ));
        policy.measurements.sev_snp.push(hex::encode([0xab; 48]));
        assert_eq!(policy.check(&snp(3, 115)), Ok(()));
    }

    #[test]
    fn an_snp_tcb_below_the_minimum_names_the_component() {
        let policy = Policy {
            min_snp_tcb: Some(SnpTcb {
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115,
            }),
            ..Policy::default()
        };
        assert_eq!(policy.check(&snp(3, 115)), Ok(()));
        assert_eq!(
            policy.check(&snp(3, 114)),
            Err(PolicyError::TcbTooLow {
                component: "microcode",
                found: 114,
                minimum: 115
            })
        );
        assert_eq!(
            policy.check(&snp(2, 200)),
            Err(PolicyError::TcbTooLow {
                component: "bootloader",
                found: 2,
                minimum: 3
            })
        );
    }

    #[test]
    fn claims_whose_tcb_does_not_fit_their_kind_are_refused() {
        assert_eq!(
            Policy::default().check(&claims(TeeKind::SevSnp, Tcb::None)),
            Err(PolicyError::TcbMissing { kind: "sev-snp" })
        );
    }

    #[test]
    fn a_policy_loads_from_toml_and_refuses_unknown_keys_and_bad_hex() {
        let policy = Policy::from_toml_str(
            r#"
            accepted_kinds = ["sev-snp"]
            accepted_tcb_statuses = ["UpToDate"]
            [measurements]
            sev-snp = ["0xabab"]
            [min_snp_tcb]
            bootloader = 1
            tee = 0
            snp = 2
            microcode = 3
            "#,
        )
        .unwrap();
        assert_eq!(policy.accepted_kinds, vec![TeeKind::SevSnp]);
        assert!(!policy.allow_software);
        assert_eq!(policy.min_snp_tcb.unwrap().microcode, 3);
        assert!(matches!(
            Policy::from_toml_str("debug = true"),
            Err(PolicyLoadError::Toml(_))
        ));
        assert!(matches!(
            Policy::from_toml_str("[measurements]\ntdx = [\"zz\"]"),
            Err(PolicyLoadError::Measurement { kind: "tdx", .. })
        ));
        assert_eq!(Policy::from_toml_str("").unwrap(), Policy::default());
    }
}
