//! `matchOrders`: four orders in, one deal out.

use edgepool_protocol::hash::keccak256_concat;
use edgepool_protocol::messages::{AppRef, DatasetRef, DealSummary};
use edgepool_protocol::poco::consensus;
use edgepool_protocol::{Bytes32, DealId};

use super::batch::Batch;
use super::error::{LedgerError, MatchError};
use super::model::{Deal, DealOrders};
use super::orders::{
    check_orders, deal_tag, AppOrder, DatasetOrder, RequestOrder, WorkerpoolOrder,
};
use super::Ledger;

/// A deal `match_orders` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedDeal {
    /// `keccak256(requestOrderHash ‖ uint256(volume the request had consumed before))`.
    pub deal_id: DealId,
    /// How many tasks: the least volume left among the four orders.
    pub volume: u64,
    /// What the scheduler hands to workers (deadlines derive from its start time).
    pub summary: DealSummary,
}

impl Ledger {
    /// Matches four orders into a deal (`matchOrders`), at `now_ms` (the deal's start time).
    ///
    /// Checks, in this order: the order checks of [`check_orders`] (category equal, trust
    /// offered, each price under the request's maximum, deal tag `app|dataset|request` a subset
    /// of the workerpool tag and `tee` carried by the app order, same app and dataset,
    /// restrictions), the category exists, the app, dataset and workerpool are registered, every
    /// order has volume left. Then the requester locks `taskPrice · volume` and the workerpool
    /// owner `workerpoolStake · volume`; each order's consumed volume grows by `volume`.
    ///
    /// # Errors
    /// [`LedgerError::Match`], [`LedgerError::UnknownApp`], [`LedgerError::UnknownDataset`],
    /// [`LedgerError::UnknownWorkerpool`], [`LedgerError::InsufficientBalance`] (requester or
    /// workerpool owner), [`LedgerError::Overflow`], [`LedgerError::Store`].
    pub fn match_orders(
        &mut self,
        app_order: &AppOrder,
        dataset_order: Option<&DatasetOrder>,
        workerpool_order: &WorkerpoolOrder,
        request: &RequestOrder,
        now_ms: u64,
    ) -> Result<MatchedDeal, LedgerError> {
        check_orders(app_order, dataset_order, workerpool_order, request)?;
        let category = self
            .state
            .categories
            .get(&request.category)
            .ok_or(MatchError::UnknownCategory(request.category))?;
        let app = self
            .state
            .apps
            .get(&app_order.app)
            .ok_or(LedgerError::UnknownApp(app_order.app))?;
        let dataset = match dataset_order {
            Some(order) => Some(
                self.state
                    .datasets
                    .get(&order.dataset)
                    .ok_or(LedgerError::UnknownDataset(order.dataset))?,
            ),
            None => None,
        };
        let pool = self
            .state
            .workerpools
            .get(&workerpool_order.workerpool)
            .ok_or(LedgerError::UnknownWorkerpool(workerpool_order.workerpool))?;

        let app_hash = app_order.hash();
        let dataset_hash = dataset_order.map(DatasetOrder::hash);
        let pool_hash = workerpool_order.hash();
        let request_hash = request.hash();
        let mut volume = u64::MAX;
        let mut remaining = |order: &'static str, hash: &Bytes32, total: u64| {
            let left = total.saturating_sub(self.consumed(hash));
            if left == 0 {
                return Err(MatchError::VolumeExhausted { order });
            }
            volume = volume.min(left);
            Ok(())
        };
        remaining("app", &app_hash, app_order.volume)?;
        if let (Some(hash), Some(order)) = (&dataset_hash, dataset_order) {
            remaining("dataset", hash, order.volume)?;
        }
        remaining("workerpool", &pool_hash, workerpool_order.volume)?;
        remaining("request", &request_hash, request.volume)?;

        let bot_first = self.consumed(&request_hash);
        let deal_id = DealId(keccak256_concat(&[
            request_hash.as_bytes(),
            Bytes32::from_u64(bot_first).as_bytes(),
        ]));
        let dataset_price = dataset_order.map_or(0, |d| d.price);
        let task_price = app_order
            .price
            .checked_add(dataset_price)
            .and_then(|p| p.checked_add(workerpool_order.price))
            .ok_or(LedgerError::Overflow("task price"))?;
        let worker_stake = consensus::worker_stake(workerpool_order.price, pool.worker_stake_ratio)
            .ok_or(LedgerError::Overflow("worker stake"))?;
        let workerpool_stake = consensus::workerpool_stake(workerpool_order.price)
            .ok_or(LedgerError::Overflow("workerpool stake"))?;
        let escrow = task_price
            .checked_mul(volume)
            .ok_or(LedgerError::Overflow("deal price"))?;
        let pool_escrow = workerpool_stake
            .checked_mul(volume)
            .ok_or(LedgerError::Overflow("workerpool stake"))?;

        let summary = DealSummary {
            deal_id,
            app: AppRef {
                address: app.address,
                url: app.url.clone(),
                checksum: app.checksum,
                size_bytes: app.size_bytes,
            },
            dataset: dataset.map(|d| DatasetRef {
                address: d.address,
                url: d.url.clone(),
                checksum: d.checksum,
                filename: d.name.clone(),
                size_bytes: d.size_bytes,
                // The chain does not say whether a dataset is encrypted: the SMS does (it holds a
                // key for it). The service sets this when it hands the deal to the scheduler.
                encrypted: false,
            }),
            input_files: request.params.input_files.clone(),
            args: request.params.args.clone(),
            tag: deal_tag(app_order, dataset_order, request),
            trust: request.trust.max(1),
            category: category.id,
            time_ref_seconds: category.time_ref_seconds,
            start_time_ms: now_ms,
            requester: request.requester,
            beneficiary: request.beneficiary,
            callback: request.callback,
            result_encryption: request.params.result_encryption,
            result_storage_provider: request.params.result_storage_provider.clone(),
            result_storage_proxy: request.params.result_storage_proxy.clone(),
            bot_first,
            bot_size: volume,
        };
        let deal = Deal {
            summary: summary.clone(),
            workerpool: pool.address,
            workerpool_owner: pool.owner,
            app_owner: app.owner,
            dataset_owner: dataset.map(|d| d.owner),
            app_price: app_order.price,
            dataset_price,
            workerpool_price: workerpool_order.price,
            task_price,
            worker_stake,
            workerpool_stake,
            scheduler_reward_ratio: pool.scheduler_reward_ratio,
            orders: DealOrders {
                app: app_hash,
                dataset: dataset_hash,
                workerpool: pool_hash,
                request: request_hash,
            },
        };

        let mut batch = Batch::new(&self.state);
        batch.lock(request.requester, escrow)?;
        batch.lock(pool.owner, pool_escrow)?;
        let mut hashes = vec![app_hash, pool_hash, request_hash];
        hashes.extend(dataset_hash);
        for hash in hashes {
            let consumed = self.consumed(&hash).saturating_add(volume);
            batch.changes.consumed.insert(hash, consumed);
        }
        batch.changes.deals.push(deal);
        let changes = batch.finish()?;
        self.commit(changes)?;
        Ok(MatchedDeal {
            deal_id,
            volume,
            summary,
        })
    }
}
