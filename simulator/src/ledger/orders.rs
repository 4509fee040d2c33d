//! The four PoCo orders and the checks `matchOrders` makes on them.
//!
//! Orders are plain structs: the simulator has no order book and no order signatures (the
//! contract checks an EIP-712 signature by each owner, or a presign). Whoever calls
//! [`super::Ledger::match_orders`] speaks for the owners, as the simulator process does for the
//! parties it plays. An order's identity is its [`hash`](AppOrder::hash), which includes a salt,
//! and the ledger counts the volume each hash consumed, as the contract's `m_consumed` does.
//!
//! Checked against iExec's `IexecPoco1Facet.matchOrders` (repository
//! `iExecBlockchainComputing/PoCo`). Restrictions compare addresses only: the contract also
//! accepts an ERC-734 identity group holding the address, which the simulator does not model.

use edgepool_protocol::hash::keccak256_concat;
use edgepool_protocol::{Address, Bytes32, Tag};
use serde::{Deserialize, Serialize};

use super::error::MatchError;

/// An app owner's offer to run its app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppOrder {
    /// The app.
    pub app: Address,
    /// Price per task (nRLC).
    pub price: u64,
    /// How many tasks it may be used for in total.
    pub volume: u64,
    /// What the app needs (e.g. `tee`): joins the deal's tag.
    pub tag: Tag,
    /// Only with this dataset ([`Address::ZERO`]: any).
    pub dataset_restrict: Address,
    /// Only on this workerpool ([`Address::ZERO`]: any).
    pub workerpool_restrict: Address,
    /// Only for this requester ([`Address::ZERO`]: any).
    pub requester_restrict: Address,
    /// Makes otherwise equal orders distinct.
    pub salt: Bytes32,
}

/// A dataset owner's offer to lend its dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetOrder {
    /// The dataset.
    pub dataset: Address,
    /// Price per task (nRLC).
    pub price: u64,
    /// How many tasks it may be used for in total.
    pub volume: u64,
    /// What the dataset needs (e.g. `tee`): joins the deal's tag.
    pub tag: Tag,
    /// Only with this app ([`Address::ZERO`]: any).
    pub app_restrict: Address,
    /// Only on this workerpool ([`Address::ZERO`]: any).
    pub workerpool_restrict: Address,
    /// Only for this requester ([`Address::ZERO`]: any).
    pub requester_restrict: Address,
    /// Makes otherwise equal orders distinct.
    pub salt: Bytes32,
}

/// A workerpool's offer of computing time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerpoolOrder {
    /// The workerpool.
    pub workerpool: Address,
    /// Price per task (nRLC).
    pub price: u64,
    /// How many tasks in total.
    pub volume: u64,
    /// What its workers offer (`tee`, `gpu`, …): the deal's tag must be a subset.
    pub tag: Tag,
    /// The category it serves.
    pub category: u64,
    /// The highest trust it accepts.
    pub trust: u64,
    /// Only this app ([`Address::ZERO`]: any).
    pub app_restrict: Address,
    /// Only this dataset ([`Address::ZERO`]: any).
    pub dataset_restrict: Address,
    /// Only this requester ([`Address::ZERO`]: any).
    pub requester_restrict: Address,
    /// Makes otherwise equal orders distinct.
    pub salt: Bytes32,
}

/// The parameters of a request (`params` of the request order, iExec's JSON made typed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestParams {
    /// `iexec_args`.
    pub args: String,
    /// `iexec_input_files`.
    pub input_files: Vec<String>,
    /// `iexec_result_encryption`.
    pub result_encryption: bool,
    /// `iexec_result_storage_provider`.
    pub result_storage_provider: String,
    /// `iexec_result_storage_proxy`.
    pub result_storage_proxy: Option<String>,
}

/// A requester's order for tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOrder {
    /// The app to run.
    pub app: Address,
    /// The most it pays the app owner per task.
    pub app_max_price: u64,
    /// The dataset, [`Address::ZERO`] for none.
    pub dataset: Address,
    /// The most it pays the dataset owner per task.
    pub dataset_max_price: u64,
    /// The workerpool, [`Address::ZERO`] for any.
    pub workerpool: Address,
    /// The most it pays the workerpool per task.
    pub workerpool_max_price: u64,
    /// Who pays.
    pub requester: Address,
    /// How many tasks.
    pub volume: u64,
    /// What it requires (`tee`, `gpu`, …).
    pub tag: Tag,
    /// The category.
    pub category: u64,
    /// The trust level (0 counts as 1).
    pub trust: u64,
    /// Who receives the result.
    pub beneficiary: Address,
    /// The callback contract, [`Address::ZERO`] for none.
    pub callback: Address,
    /// Arguments, input files and result options.
    pub params: RequestParams,
    /// Makes otherwise equal orders distinct.
    pub salt: Bytes32,
}

impl AppOrder {
    /// An order for `app` at `price` for `volume` tasks: no tag, no restriction, zero salt.
    pub fn open(app: Address, price: u64, volume: u64) -> Self {
        Self {
            app,
            price,
            volume,
            tag: Tag::NONE,
            dataset_restrict: Address::ZERO,
            workerpool_restrict: Address::ZERO,
            requester_restrict: Address::ZERO,
            salt: Bytes32::ZERO,
        }
    }
}

impl DatasetOrder {
    /// An order for `dataset` at `price` for `volume` tasks: no tag, no restriction, zero salt.
    pub fn open(dataset: Address, price: u64, volume: u64) -> Self {
        Self {
            dataset,
            price,
            volume,
            tag: Tag::NONE,
            app_restrict: Address::ZERO,
            workerpool_restrict: Address::ZERO,
            requester_restrict: Address::ZERO,
            salt: Bytes32::ZERO,
        }
    }
}

impl WorkerpoolOrder {
    /// An order of `workerpool` at `price` for `volume` tasks of `category`, up to `trust`,
    /// offering `tag`: no restriction, zero salt.
    pub fn open(
        workerpool: Address,
        price: u64,
        volume: u64,
        category: u64,
        trust: u64,
        tag: Tag,
    ) -> Self {
        Self {
            workerpool,
            price,
            volume,
            tag,
            category,
            trust,
            app_restrict: Address::ZERO,
            dataset_restrict: Address::ZERO,
            requester_restrict: Address::ZERO,
            salt: Bytes32::ZERO,
        }
    }
}

impl RequestOrder {
    /// A request by `requester` for `volume` tasks of `app` (with `dataset`, or
    /// [`Address::ZERO`]) in `category` at `trust`, on any workerpool, accepting any price (the
    /// escrow locks the orders' prices, not the maximums); the requester is the beneficiary;
    /// no tag, default params, zero salt.
    pub fn new(
        requester: Address,
        app: Address,
        dataset: Address,
        category: u64,
        trust: u64,
        volume: u64,
    ) -> Self {
        Self {
            app,
            app_max_price: u64::MAX,
            dataset,
            dataset_max_price: u64::MAX,
            workerpool: Address::ZERO,
            workerpool_max_price: u64::MAX,
            requester,
            volume,
            tag: Tag::NONE,
            category,
            trust,
            beneficiary: requester,
            callback: Address::ZERO,
            params: RequestParams::default(),
            salt: Bytes32::ZERO,
        }
    }
}

/// Builds an order hash from typed fields (not EIP-712: the simulator signs no order).
struct HashInput(Vec<Vec<u8>>);

impl HashInput {
    fn new(kind: &str) -> Self {
        Self(vec![format!("edgepool-ledger/{kind}/v1").into_bytes()])
    }
    fn address(mut self, address: &Address) -> Self {
        self.0.push(address.as_bytes().to_vec());
        self
    }
    fn u64(mut self, value: u64) -> Self {
        self.0.push(Bytes32::from_u64(value).as_bytes().to_vec());
        self
    }
    fn bytes32(mut self, value: &Bytes32) -> Self {
        self.0.push(value.as_bytes().to_vec());
        self
    }
    fn text(mut self, text: &str) -> Self {
        // Hashed like EIP-712 hashes dynamic values, so field boundaries stay unambiguous.
        self.0
            .push(keccak256_concat(&[text.as_bytes()]).as_bytes().to_vec());
        self
    }
    fn finish(self) -> Bytes32 {
        let parts: Vec<&[u8]> = self.0.iter().map(Vec::as_slice).collect();
        keccak256_concat(&parts)
    }
}

impl AppOrder {
    /// The order's identity.
    pub fn hash(&self) -> Bytes32 {
        HashInput::new("apporder")
            .address(&self.app)
            .u64(self.price)
            .u64(self.volume)
            .bytes32(&self.tag.0)
            .address(&self.dataset_restrict)
            .address(&self.workerpool_restrict)
            .address(&self.requester_restrict)
            .bytes32(&self.salt)
            .finish()
    }
}

impl DatasetOrder {
    /// The order's identity.
    pub fn hash(&self) -> Bytes32 {
        HashInput::new("datasetorder")
            .address(&self.dataset)
            .u64(self.price)
            .u64(self.volume)
            .bytes32(&self.tag.0)
            .address(&self.app_restrict)
            .address(&self.workerpool_restrict)
            .address(&self.requester_restrict)
            .bytes32(&self.salt)
            .finish()
    }
}

impl WorkerpoolOrder {
    /// The order's identity.
    pub fn hash(&self) -> Bytes32 {
        HashInput::new("workerpoolorder")
            .address(&self.workerpool)
            .u64(self.price)
            .u64(self.volume)
            .bytes32(&self.tag.0)
            .u64(self.category)
            .u64(self.trust)
            .address(&self.app_restrict)
            .address(&self.dataset_restrict)
            .address(&self.requester_restrict)
            .bytes32(&self.salt)
            .finish()
    }
}

impl RequestOrder {
    /// The order's identity.
    pub fn hash(&self) -> Bytes32 {
        let mut input = HashInput::new("requestorder")
            .address(&self.app)
            .u64(self.app_max_price)
            .address(&self.dataset)
            .u64(self.dataset_max_price)
            .address(&self.workerpool)
            .u64(self.workerpool_max_price)
            .address(&self.requester)
            .u64(self.volume)
            .bytes32(&self.tag.0)
            .u64(self.category)
            .u64(self.trust)
            .address(&self.beneficiary)
            .address(&self.callback)
            .text(&self.params.args)
            .u64(self.params.input_files.len() as u64);
        for file in &self.params.input_files {
            input = input.text(file);
        }
        input
            .u64(u64::from(self.params.result_encryption))
            .text(&self.params.result_storage_provider)
            .text(self.params.result_storage_proxy.as_deref().unwrap_or(""))
            .bytes32(&self.salt)
            .finish()
    }
}

/// `restriction == 0 || restriction == actual`.
fn check_restriction(
    order: &'static str,
    field: &'static str,
    restriction: Address,
    actual: Address,
) -> Result<(), MatchError> {
    if restriction.is_zero() || restriction == actual {
        Ok(())
    } else {
        Err(MatchError::Restricted {
            order,
            field,
            allowed: restriction,
            found: actual,
        })
    }
}

/// Every check of `matchOrders` that needs only the orders and the workerpool's address:
/// category, trust, prices, tag subset (and `tee` carried by the app order), the request's app,
/// dataset and workerpool, and every restriction. Registries, volumes and balances are the
/// ledger's to check.
///
/// # Errors
/// The first failed check, as a [`MatchError`].
pub fn check_orders(
    app: &AppOrder,
    dataset: Option<&DatasetOrder>,
    workerpool: &WorkerpoolOrder,
    request: &RequestOrder,
) -> Result<(), MatchError> {
    if request.category != workerpool.category {
        return Err(MatchError::CategoryMismatch {
            request: request.category,
            workerpool: workerpool.category,
        });
    }
    if request.trust > workerpool.trust {
        return Err(MatchError::TrustTooHigh {
            requested: request.trust,
            offered: workerpool.trust,
        });
    }
    let price_checks = [
        ("app", request.app_max_price, app.price),
        (
            "dataset",
            request.dataset_max_price,
            dataset.map_or(0, |d| d.price),
        ),
        ("workerpool", request.workerpool_max_price, workerpool.price),
    ];
    for (what, max, price) in price_checks {
        if price > max {
            return Err(MatchError::PriceTooHigh { what, max, price });
        }
    }
    let deal_tag = deal_tag(app, dataset, request);
    if !deal_tag.is_subset_of(&workerpool.tag) {
        return Err(MatchError::TagNotOffered {
            deal: deal_tag,
            workerpool: workerpool.tag,
        });
    }
    if deal_tag.is_tee() && !app.tag.is_tee() {
        return Err(MatchError::TeeAppOrderMissing);
    }
    if request.app != app.app {
        return Err(MatchError::WrongApp {
            requested: request.app,
            ordered: app.app,
        });
    }
    match (dataset, request.dataset.is_zero()) {
        (None, true) => {}
        (Some(order), false) if order.dataset == request.dataset => {}
        (order, _) => {
            return Err(MatchError::WrongDataset {
                requested: request.dataset,
                ordered: order.map_or(Address::ZERO, |o| o.dataset),
            })
        }
    }
    check_restriction(
        "request",
        "workerpool",
        request.workerpool,
        workerpool.workerpool,
    )?;
    let dataset_address = dataset.map_or(Address::ZERO, |d| d.dataset);
    check_restriction("app", "dataset", app.dataset_restrict, dataset_address)?;
    check_restriction(
        "app",
        "workerpool",
        app.workerpool_restrict,
        workerpool.workerpool,
    )?;
    check_restriction(
        "app",
        "requester",
        app.requester_restrict,
        request.requester,
    )?;
    if let Some(order) = dataset {
        check_restriction("dataset", "app", order.app_restrict, app.app)?;
        check_restriction(
            "dataset",
            "workerpool",
            order.workerpool_restrict,
            workerpool.workerpool,
        )?;
        check_restriction(
            "dataset",
            "requester",
            order.requester_restrict,
            request.requester,
        )?;
    }
    check_restriction("workerpool", "app", workerpool.app_restrict, app.app)?;
    check_restriction(
        "workerpool",
        "dataset",
        workerpool.dataset_restrict,
        dataset_address,
    )?;
    check_restriction(
        "workerpool",
        "requester",
        workerpool.requester_restrict,
        request.requester,
    )?;
    Ok(())
}

/// The deal's tag: `app.tag | dataset.tag | request.tag`.
pub fn deal_tag(app: &AppOrder, dataset: Option<&DatasetOrder>, request: &RequestOrder) -> Tag {
    let dataset_tag = dataset.map_or(Tag::NONE, |d| d.tag);
    app.tag.union(dataset_tag).union(request.tag)
}
