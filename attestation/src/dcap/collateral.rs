//! The collateral ("aux") of a DCAP quote: dcap-qvl's `QuoteCollateralV3` as JSON.
//!
//! ```json
//! {
//!   "pck_crl_issuer_chain": "-----BEGIN CERTIFICATE-----…",   // PEM: PCK CA, root
//!   "root_ca_crl": "3082…",                                     // hex DER
//!   "pck_crl": "3082…",                                         // hex DER
//!   "tcb_info_issuer_chain": "-----BEGIN CERTIFICATE-----…",  // PEM: TCB Signing, root
//!   "tcb_info": "{\"id\":\"TDX\",…}",                           // the exact signed JSON text
//!                                                               // (the PCS body's `tcbInfo`)
//!   "tcb_info_signature": "…",                                  // hex r ‖ s (64 bytes)
//!   "qe_identity_issuer_chain": "-----BEGIN CERTIFICATE-----…",
//!   "qe_identity": "{\"id\":\"TD_QE\",…}",
//!   "qe_identity_signature": "…",
//!   "pck_certificate_chain": "-----BEGIN…"                      // optional: replaces the quote's
//! }
//! ```
//!
//! This is what Intel's PCS/PCCS serve (`/tcb`, `/qe/identity`, `/pckcrl`, `/rootcacrl`), with
//! the `…-Issuer-Chain` headers, gathered into one document.

use dcap_qvl::QuoteCollateralV3;

use super::quote::TEE_TYPE_TDX;
use super::{CollateralItem, DcapError};

/// Parses the collateral JSON.
pub(crate) fn parse(bytes: &[u8]) -> Result<QuoteCollateralV3, DcapError> {
    serde_json::from_slice(bytes).map_err(|e| DcapError::MalformedCollateral(e.to_string()))
}

/// `issueDate` and `nextUpdate` (seconds since the epoch) of a signed TCB info or QE identity.
pub(crate) fn window(which: CollateralItem, json: &str) -> Result<(u64, u64), DcapError> {
    let bad = |what: &str| DcapError::MalformedCollateral(format!("{which}: {what}"));
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    // The signed text is the inner object; accept the PCS response with its wrapper too.
    let inner = match which {
        CollateralItem::TcbInfo => v.get("tcbInfo"),
        CollateralItem::QeIdentity => v.get("enclaveIdentity"),
    }
    .unwrap_or(&v);
    let date = |key: &str| -> Result<u64, DcapError> {
        let s = inner
            .get(key)
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad(&format!("no {key}")))?;
        let t = chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| bad(&format!("{key} {s:?}: {e}")))?;
        u64::try_from(t.timestamp()).map_err(|_| bad(&format!("{key} {s:?} before 1970")))
    };
    Ok((date("issueDate")?, date("nextUpdate")?))
}

/// Checks that `now_unix` is inside `[issueDate, nextUpdate]`.
pub(crate) fn check_window(
    which: CollateralItem,
    json: &str,
    now_unix: u64,
) -> Result<(), DcapError> {
    let (issue_date, next_update) = window(which, json)?;
    if now_unix < issue_date {
        return Err(DcapError::CollateralNotYetValid {
            which,
            issue_date,
            now: now_unix,
        });
    }
    if now_unix > next_update {
        return Err(DcapError::CollateralExpired {
            which,
            next_update,
            now: now_unix,
        });
    }
    Ok(())
}

/// Checks that the TCB info and the QE identity are for `tee_type` (`"TDX"`/`"TD_QE"` for a TDX
/// quote, `"SGX"`/`"QE"` for SGX) and that the TCB info's FMSPC is the PCK certificate's.
/// Only the `id` and `fmspc` fields are read; dcap-qvl checks the versions and the rest.
pub(crate) fn check_kind_and_fmspc(
    col: &QuoteCollateralV3,
    tee_type: u32,
    pck_fmspc: &[u8; 6],
) -> Result<(), DcapError> {
    let (tcb_id, qe_id) = match tee_type {
        TEE_TYPE_TDX => ("TDX", "TD_QE"),
        _ => ("SGX", "QE"),
    };
    let field = |which: CollateralItem, json: &str, key: &str| -> Result<String, DcapError> {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| DcapError::MalformedCollateral(format!("{which}: {e}")))?;
        let inner = v
            .get("tcbInfo")
            .or_else(|| v.get("enclaveIdentity"))
            .unwrap_or(&v);
        inner
            .get(key)
            .and_then(|x| x.as_str())
            .map(str::to_owned)
            .ok_or_else(|| DcapError::MalformedCollateral(format!("{which}: no {key}")))
    };
    let found = field(CollateralItem::TcbInfo, &col.tcb_info, "id")?;
    if found != tcb_id {
        return Err(DcapError::CollateralKindMismatch(format!(
            "the TCB info is for {found}, the quote is {tcb_id}"
        )));
    }
    let found = field(CollateralItem::QeIdentity, &col.qe_identity, "id")?;
    if found != qe_id {
        return Err(DcapError::CollateralKindMismatch(format!(
            "the QE identity is for {found}, the quote needs {qe_id}"
        )));
    }
    let fmspc = field(CollateralItem::TcbInfo, &col.tcb_info, "fmspc")?;
    if !fmspc.eq_ignore_ascii_case(&hex::encode(pck_fmspc)) {
        return Err(DcapError::FmspcMismatch);
    }
    Ok(())
}
