//! The call into dcap-qvl and the mapping of its `anyhow` errors to [`DcapError`].
//!
//! dcap-qvl reports failures as message strings; the version is pinned (`=0.7.1`) and the
//! mapping below matches its messages. A message not recognised becomes
//! [`DcapError::Rejected`] with the text, so an upgrade can only make an error less precise,
//! never turn a refusal into an acceptance.

use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::{QuoteCollateralV3, QuotePolicy};

use super::{ChainKind, CollateralItem, DcapError, INTEL_SGX_ROOT_CA_DER};
use crate::claims::TcbStatus;

/// What dcap-qvl concluded.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub status: TcbStatus,
    pub advisories: Vec<String>,
    pub fmspc: [u8; 6],
}

/// Full verification by dcap-qvl against the pinned root. Debug enclaves and TDs are allowed
/// through (the policy refuses them on the `debug` claim); service-TD binding is not.
pub(crate) fn verify(
    quote: &[u8],
    collateral: QuoteCollateralV3,
    now_unix: u64,
) -> Result<Verdict, DcapError> {
    let claims = QuoteVerifier::new(INTEL_SGX_ROOT_CA_DER.to_vec())
        .allow_debug(true)
        .verify_with_policy(
            quote,
            collateral,
            now_unix,
            &QuotePolicy::claims_only(now_unix),
        )
        // `{:#}` prints anyhow's whole context chain, "outer: inner: root cause".
        .map_err(|e| classify_message(&format!("{e:#}")))?;
    Ok(Verdict {
        status: status(claims.tcb.status),
        advisories: claims.tcb.advisory_ids,
        fmspc: claims.platform.pck.fmspc,
    })
}

fn status(s: dcap_qvl::TcbStatus) -> TcbStatus {
    use dcap_qvl::TcbStatus as U;
    match s {
        U::UpToDate => TcbStatus::UpToDate,
        U::SWHardeningNeeded => TcbStatus::SWHardeningNeeded,
        U::ConfigurationNeeded => TcbStatus::ConfigurationNeeded,
        U::ConfigurationAndSWHardeningNeeded => TcbStatus::ConfigurationAndSWHardeningNeeded,
        U::OutOfDate => TcbStatus::OutOfDate,
        U::OutOfDateConfigurationNeeded => TcbStatus::OutOfDateConfigurationNeeded,
        U::Revoked => TcbStatus::Revoked,
        U::TDRelaunchAdvised => TcbStatus::TDRelaunchAdvised,
        U::TDRelaunchAdvisedConfigurationNeeded => TcbStatus::TDRelaunchAdvisedConfigurationNeeded,
    }
}

/// Maps a dcap-qvl error message (its whole context chain) to the closest typed refusal.
fn classify_message(text: &str) -> DcapError {
    let has = |needle: &str| text.contains(needle);
    let msg = text.to_owned();
    if has("TCB status is invalid: Revoked") {
        DcapError::TcbRevoked
    } else if has("No matching TCB level") || has("ISVSVN") && has("below minimum") {
        if has("QE ISVSVN") {
            DcapError::QeIdentityMismatch(msg)
        } else if has("TDX module") {
            DcapError::TdxModuleMismatch(msg)
        } else {
            DcapError::TcbNoMatchingLevel(msg)
        }
    } else if has("Fmspc mismatch") {
        DcapError::FmspcMismatch
    } else if has("non-TDX TCB info")
        || has("non-SGX TCB info")
        || has("Unsupported QE Identity id")
    {
        DcapError::CollateralKindMismatch(msg)
    } else if has("QE MRSIGNER")
        || has("QE ISVPRODID")
        || has("QE MISCSELECT")
        || has("QE ATTRIBUTES")
        || has("QE report validation")
        || has("QE Identity") && (has("Unrecognized TCB status") || has("No TCB levels"))
    {
        DcapError::QeIdentityMismatch(msg)
    } else if has("TDX module") || has("tdxModule") {
        DcapError::TdxModuleMismatch(msg)
    } else if has("TD attributes")
        || has("TD migration")
        || has("SEPT_VE_DISABLE")
        || has("SERVTD_EXT")
        || has("MR service TD")
    {
        DcapError::TdAttributes(msg)
    } else if has("Signature is invalid for tcb_info") {
        DcapError::CollateralSignature {
            which: CollateralItem::TcbInfo,
        }
    } else if has("Signature is invalid for qe_identity") {
        DcapError::CollateralSignature {
            which: CollateralItem::QeIdentity,
        }
    } else if has("Signature is invalid for qe_report") {
        DcapError::BadQeReportSignature
    } else if has("ISV enclave report signature is invalid") {
        DcapError::BadQuoteSignature
    } else if has("QE report hash mismatch") {
        DcapError::QeBindingMismatch
    } else if has("Failed to decode TcbInfo") || has("Failed to decode QeIdentity") {
        DcapError::MalformedCollateral(msg)
    } else if has("PCK certificate") || has("PCK cert") {
        DcapError::Chain {
            which: ChainKind::Pck,
            reason: msg,
        }
    } else {
        DcapError::Rejected(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_messages_map_to_typed_refusals() {
        assert_eq!(
            classify_message("TCB status is invalid: Revoked"),
            DcapError::TcbRevoked
        );
        assert!(matches!(
            classify_message("No matching TCB level found"),
            DcapError::TcbNoMatchingLevel(_)
        ));
        assert_eq!(classify_message("Fmspc mismatch"), DcapError::FmspcMismatch);
        assert!(matches!(
            classify_message("QE ISVSVN 1 is below minimum required 2 from QE Identity"),
            DcapError::QeIdentityMismatch(_)
        ));
        assert!(matches!(
            classify_message("TDX module identity check: TDX module MRSIGNER mismatch"),
            DcapError::TdxModuleMismatch(_)
        ));
        assert!(matches!(
            classify_message("SGX quote with non-SGX TCB info in the collateral"),
            DcapError::CollateralKindMismatch(_)
        ));
        assert!(matches!(
            classify_message("SEPT_VE_DISABLE is not enabled"),
            DcapError::TdAttributes(_)
        ));
        assert!(matches!(
            classify_message("something new"),
            DcapError::Rejected(_)
        ));
    }
}
