//! The PoCo ledger wired into the pool: [`LedgerHooks`] (the pool's [`PocoHooks`] over a
//! [`Ledger`]) and [`Market`] (registers the parties and matches the four orders of each deal).
//!
//! Both share one `Arc<Mutex<Ledger>>`: the runner, the demo and `serve` open deals through the
//! [`Market`] on their own thread, the pool thread calls the hooks.
//!
//! The simulator speaks for every party but the workers, with these amounts (nRLC, documented
//! in ARCHITECTURE.md):
//! - prices per task: app [`APP_PRICE`], dataset [`DATASET_PRICE`], workerpool
//!   [`WORKERPOOL_PRICE`]; the workerpool's policies: workers stake [`WORKER_STAKE_RATIO`]% of
//!   its price per contribution, the scheduler keeps [`SCHEDULER_REWARD_RATIO`]% of the pot;
//! - the requester deposits exactly what a deal locks (task price × volume) before the match,
//!   the workerpool owner (the scheduler) its stake (30% of its price × volume);
//! - a worker the ledger has never seen gets [`WORKER_DEPOSIT`] when it is first authorized
//!   (about 33 contributions' stakes): a slashed worker is not topped up again.
//!
//! Consensus is the ledger's (weights by score, BRIEF §2): the scheduler only records
//! contributions and moves a task to revealing when the ledger's `contribute` reached
//! consensus. A finalize that the ledger refuses because a winner has not revealed yet waits
//! for that reveal or the reveal deadline; a failed task is claimed once its final deadline
//! passed (`tick`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use edgepool_protocol::messages::{Contribution, DealSummary};
use edgepool_protocol::poco::WorkerpoolAuthorization;
use edgepool_protocol::primitives::{Address, Bytes32, Digest, TaskId};
use edgepool_protocol::status::ChainTaskStatus;
use edgepool_protocol::tags::Tag;

use crate::hooks::{PocoHooks, Settlement, Standing};
use crate::ledger::{
    AppOrder, ContributeCall, ContributionStatus, DatasetOrder, Ledger, LedgerError, RequestOrder,
    RequestParams, WorkerOutcome, WorkerpoolOrder,
};
use crate::scheduler::TaskRun;
use crate::sms::DatasetRestrictions;

/// App price per task (nRLC).
pub const APP_PRICE: u64 = 10;
/// Dataset price per task (nRLC).
pub const DATASET_PRICE: u64 = 10;
/// Workerpool price per task (nRLC): the reward pot of a task before seized stakes.
pub const WORKERPOOL_PRICE: u64 = 100;
/// Percent of the workerpool price a worker stakes per contribution.
pub const WORKER_STAKE_RATIO: u64 = 30;
/// Percent of the reward pot the scheduler keeps.
pub const SCHEDULER_REWARD_RATIO: u64 = 10;
/// What a worker new to the ledger is given to stake with.
pub const WORKER_DEPOSIT: u64 = 1_000;
/// The app owner the simulator plays.
pub const APP_OWNER: Address = Address([0xa0; 20]);

/// The ledger as the pool thread and the deal submitters share it.
pub type SharedLedger = Arc<Mutex<Ledger>>;

fn lock(ledger: &SharedLedger) -> Result<MutexGuard<'_, Ledger>, String> {
    ledger
        .lock()
        .map_err(|_| "the ledger lock is poisoned".to_string())
}

/// The workerpool on the ledger and the deals opened on it.
#[derive(Debug, Clone)]
pub struct Market {
    ledger: SharedLedger,
    workerpool: Address,
    owner: Address,
}

/// A dataset offered with a deal.
#[derive(Debug, Clone)]
pub struct DatasetOffer {
    /// Its owner (who pushes its key to the SMS).
    pub owner: Address,
    /// Its name (the file name the app sees).
    pub name: String,
    /// Where the (encrypted) file is.
    pub url: String,
    /// `sha256` of the published file.
    pub checksum: Digest,
    /// Its size.
    pub size_bytes: u64,
    /// iExec-encrypted (its key in the SMS): only TEE tasks can use it.
    pub encrypted: bool,
    /// The dataset order lends it only to this app (and to this workerpool and requester).
    pub restricted: bool,
}

/// What a requester asks for: the orders the [`Market`] builds and matches.
#[derive(Debug, Clone)]
pub struct DealOffer {
    /// The app's name.
    pub app_name: String,
    /// Where the module is.
    pub app_url: String,
    /// `sha256` of the module.
    pub app_checksum: Digest,
    /// Its size.
    pub app_size: u64,
    /// The dataset.
    pub dataset: Option<DatasetOffer>,
    /// Who pays (and receives the result).
    pub requester: Address,
    /// `iexec_args`.
    pub args: String,
    /// Input file URLs.
    pub input_files: Vec<String>,
    /// The requested tag (`tee` also goes on the app order, as iExec requires).
    pub tag: Tag,
    /// Trust.
    pub trust: u64,
    /// The category's reference time (a category with it is created when missing).
    pub time_ref_secs: u64,
    /// Tasks.
    pub volume: u64,
    /// Where results are uploaded.
    pub result_storage_proxy: Option<String>,
    /// `iexec_result_encryption`: the result is encrypted for the beneficiary (the requester),
    /// whose key the SMS releases to the attested TEE task.
    pub result_encryption: bool,
}

/// A matched deal.
#[derive(Debug, Clone)]
pub struct OpenedDeal {
    /// The deal as the scheduler hands it out.
    pub summary: DealSummary,
    /// The dataset order's restrictions, for the SMS.
    pub dataset_restrictions: Option<DatasetRestrictions>,
}

/// `AlreadyRegistered(address)` is the address: registration is idempotent here.
fn registered(result: Result<Address, LedgerError>) -> Result<Address, String> {
    match result {
        Ok(a) | Err(LedgerError::AlreadyRegistered(a)) => Ok(a),
        Err(e) => Err(e.to_string()),
    }
}

impl Market {
    /// Registers the workerpool of `owner` (the scheduler) as `description` (idempotent: a
    /// restarted `serve` finds it again) and the default categories.
    ///
    /// # Errors
    /// A ledger failure.
    pub fn new(ledger: SharedLedger, owner: Address, description: &str) -> Result<Self, String> {
        let workerpool = {
            let mut l = lock(&ledger)?;
            l.create_default_categories().map_err(|e| e.to_string())?;
            registered(l.register_workerpool(
                owner,
                description,
                WORKER_STAKE_RATIO,
                SCHEDULER_REWARD_RATIO,
            ))?
        };
        Ok(Self {
            ledger,
            workerpool,
            owner,
        })
    }

    /// The workerpool's registry address.
    pub fn workerpool(&self) -> Address {
        self.workerpool
    }

    /// The shared ledger.
    pub fn ledger(&self) -> &SharedLedger {
        &self.ledger
    }

    /// The hooks the pool calls.
    pub fn hooks(&self) -> LedgerHooks {
        LedgerHooks {
            ledger: Arc::clone(&self.ledger),
            authorizations: BTreeMap::new(),
            pending_finalize: BTreeMap::new(),
            pending_claim: BTreeSet::new(),
        }
    }

    /// Registers `dataset` (idempotent) and returns its registry address (what its key is
    /// pushed to the SMS under).
    ///
    /// # Errors
    /// A ledger failure.
    pub fn register_dataset(&self, dataset: &DatasetOffer) -> Result<Address, String> {
        let mut l = lock(&self.ledger)?;
        registered(l.register_dataset(
            dataset.owner,
            &dataset.name,
            &dataset.url,
            dataset.checksum,
            Some(dataset.size_bytes),
        ))
    }

    /// Registers the app and dataset (idempotent), funds the requester and the workerpool
    /// owner with what the deal locks, and matches the four orders at `now_ms`.
    ///
    /// # Errors
    /// Why the ledger refused (a tag the workerpool does not offer, …).
    pub fn open_deal(&self, offer: &DealOffer, now_ms: u64) -> Result<OpenedDeal, String> {
        let mut l = lock(&self.ledger)?;
        let e = |e: LedgerError| e.to_string();
        let time_ref = offer.time_ref_secs.max(1);
        let category = match (0..)
            .map_while(|id| l.category(id).map(|c| (id, c.time_ref_seconds)))
            .find(|(_, t)| *t == time_ref)
        {
            Some((id, _)) => id,
            None => l
                .create_category(&format!("sim-{time_ref}s"), time_ref)
                .map_err(e)?,
        };
        let app = registered(l.register_app(
            APP_OWNER,
            &offer.app_name,
            &offer.app_url,
            offer.app_checksum,
            Some(offer.app_size),
        ))?;
        let dataset = match &offer.dataset {
            Some(d) => Some(registered(l.register_dataset(
                d.owner,
                &d.name,
                &d.url,
                d.checksum,
                Some(d.size_bytes),
            ))?),
            None => None,
        };
        let salt = Bytes32(rand::random());
        let volume = offer.volume.max(1);
        let trust = offer.trust.max(1);
        let tee = if offer.tag.is_tee() {
            Tag::TEE
        } else {
            Tag::NONE
        };
        let app_order = AppOrder {
            tag: tee,
            salt,
            ..AppOrder::open(app, APP_PRICE, volume)
        };
        let dataset_order = match (dataset, &offer.dataset) {
            (Some(address), Some(d)) => {
                let mut order = DatasetOrder {
                    salt,
                    ..DatasetOrder::open(address, DATASET_PRICE, volume)
                };
                if d.restricted {
                    order.app_restrict = app;
                    order.workerpool_restrict = self.workerpool;
                    order.requester_restrict = offer.requester;
                }
                Some(order)
            }
            _ => None,
        };
        let pool_order = WorkerpoolOrder {
            salt,
            ..WorkerpoolOrder::open(
                self.workerpool,
                WORKERPOOL_PRICE,
                volume,
                category,
                trust,
                offer.tag,
            )
        };
        let request = RequestOrder {
            tag: offer.tag,
            params: RequestParams {
                args: offer.args.clone(),
                input_files: offer.input_files.clone(),
                result_encryption: offer.result_encryption,
                result_storage_provider: "http".into(),
                result_storage_proxy: offer.result_storage_proxy.clone(),
            },
            salt,
            ..RequestOrder::new(
                offer.requester,
                app,
                dataset.unwrap_or(Address::ZERO),
                category,
                trust,
                volume,
            )
        };
        let dataset_price = if dataset.is_some() { DATASET_PRICE } else { 0 };
        let price = APP_PRICE + dataset_price + WORKERPOOL_PRICE;
        let pool_stake =
            edgepool_protocol::poco::consensus::workerpool_stake(WORKERPOOL_PRICE).unwrap_or(0);
        l.deposit(offer.requester, price.saturating_mul(volume))
            .map_err(e)?;
        l.deposit(self.owner, pool_stake.saturating_mul(volume))
            .map_err(e)?;
        let matched = l
            .match_orders(
                &app_order,
                dataset_order.as_ref(),
                &pool_order,
                &request,
                now_ms,
            )
            .map_err(e)?;
        let mut summary = matched.summary;
        if let (Some(d), Some(r)) = (&mut summary.dataset, &offer.dataset) {
            d.encrypted = r.encrypted;
        }
        Ok(OpenedDeal {
            summary,
            dataset_restrictions: dataset_order.map(|o| DatasetRestrictions {
                app: o.app_restrict,
                workerpool: o.workerpool_restrict,
                requester: o.requester_restrict,
            }),
        })
    }
}

/// The pool's [`PocoHooks`] over the shared [`Ledger`]. See the [module docs](self).
#[derive(Debug)]
pub struct LedgerHooks {
    ledger: SharedLedger,
    authorizations: BTreeMap<(TaskId, Address), WorkerpoolAuthorization>,
    pending_finalize: BTreeMap<TaskId, String>,
    pending_claim: BTreeSet<TaskId>,
}

fn nrlc(amount: u64) -> String {
    format!("{amount} nRLC")
}

/// The report's view of a ledger settlement.
pub fn settlement_view(s: &crate::ledger::Settlement) -> Settlement {
    let mut out = Settlement {
        status: s.status.as_str().to_string(),
        ..Settlement::default()
    };
    for w in &s.workers {
        match w.outcome {
            WorkerOutcome::Rewarded => out.rewarded.push((
                w.worker,
                format!(
                    "{} reward + {} stake back, score {} -> {}",
                    nrlc(w.reward),
                    nrlc(w.stake),
                    w.score_before,
                    w.score_after
                ),
            )),
            WorkerOutcome::Slashed => out.slashed.push((
                w.worker,
                format!(
                    "{} stake seized, score {} -> {}",
                    nrlc(w.stake),
                    w.score_before,
                    w.score_after
                ),
            )),
            WorkerOutcome::Refunded => out
                .refunded
                .push((w.worker, format!("{} stake back", nrlc(w.stake)))),
        }
    }
    out
}

impl LedgerHooks {
    fn try_finalize(&mut self, task_id: &TaskId, now_ms: u64) -> Option<Settlement> {
        let link = self.pending_finalize.get(task_id)?.clone();
        let mut l = lock(&self.ledger).ok()?;
        match l.finalize(task_id, link.as_bytes(), now_ms) {
            Ok(s) => {
                self.pending_finalize.remove(task_id);
                self.authorizations.retain(|(t, _), _| t != task_id);
                Some(settlement_view(&s))
            }
            Err(LedgerError::RevealsPending { .. }) => None,
            Err(e) => {
                self.pending_finalize.remove(task_id);
                Some(Settlement {
                    status: format!("finalize refused: {e}"),
                    ..Settlement::default()
                })
            }
        }
    }

    fn try_claim(&mut self, task_id: &TaskId, now_ms: u64) -> Option<Settlement> {
        let mut l = lock(&self.ledger).ok()?;
        let deadline = l.task(task_id)?.final_deadline_ms;
        if now_ms < deadline {
            return None;
        }
        self.pending_claim.remove(task_id);
        self.authorizations.retain(|(t, _), _| t != task_id);
        Some(match l.claim(task_id, now_ms) {
            Ok(s) => settlement_view(&s),
            Err(e) => Settlement {
                status: format!("claim refused: {e}"),
                ..Settlement::default()
            },
        })
    }
}

impl PocoHooks for LedgerHooks {
    fn initialize(&mut self, deal: &DealSummary, index: u64, _now_ms: u64) -> Result<(), String> {
        let mut l = lock(&self.ledger)?;
        let task_id = edgepool_protocol::poco::task_id(&deal.deal_id, index);
        if l.task(&task_id).is_some() {
            return Ok(());
        }
        l.initialize(&deal.deal_id, index)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn authorized(&mut self, authorization: &WorkerpoolAuthorization, _now_ms: u64) {
        let worker = authorization.worker_wallet;
        if let Ok(mut l) = lock(&self.ledger) {
            if l.account(&worker) == crate::ledger::Account::default() {
                // A failed deposit leaves the worker unable to stake: `contribute` says so.
                let _ = l.deposit(worker, WORKER_DEPOSIT);
            }
        }
        self.authorizations
            .insert((authorization.chain_task_id, worker), *authorization);
    }

    fn decides_consensus(&self) -> bool {
        true
    }

    fn consensus(&self, task: &TaskId) -> Option<Bytes32> {
        lock(&self.ledger).ok()?.task(task)?.consensus
    }

    fn contribute(
        &mut self,
        task: &TaskRun,
        worker: Address,
        contribution: &Contribution,
        now_ms: u64,
    ) -> Result<(), String> {
        let authorization = self
            .authorizations
            .get(&(task.task_id, worker))
            .ok_or_else(|| format!("{worker} holds no authorization for {}", task.task_id))?;
        let mut l = lock(&self.ledger)?;
        if let Some(existing) = l.task(&task.task_id).and_then(|t| t.contribution(&worker)) {
            // A redelivered identical contribution changes nothing.
            return if existing.result_hash == contribution.result_hash
                && existing.result_seal == contribution.result_seal
            {
                Ok(())
            } else {
                Err(LedgerError::AlreadyContributed(worker).to_string())
            };
        }
        let call = ContributeCall::from_message(worker, contribution, authorization);
        l.contribute(&call, now_ms)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn reveal(
        &mut self,
        task: &TaskRun,
        worker: Address,
        digest: &Digest,
        now_ms: u64,
    ) -> Result<(), String> {
        {
            let mut l = lock(&self.ledger)?;
            let proved = l
                .task(&task.task_id)
                .and_then(|t| t.contribution(&worker))
                .is_some_and(|c| c.status == ContributionStatus::Proved);
            if !proved {
                l.reveal(worker, &task.task_id, *digest, now_ms)
                    .map_err(|e| e.to_string())?;
            }
        }
        // A finalize that waited for this reveal.
        let _ = self.try_finalize(&task.task_id, now_ms);
        Ok(())
    }

    fn finalize(
        &mut self,
        task: &TaskRun,
        _result_hash: Bytes32,
        result_link: &str,
        now_ms: u64,
    ) -> Settlement {
        self.pending_finalize
            .insert(task.task_id, result_link.to_string());
        self.try_finalize(&task.task_id, now_ms)
            .unwrap_or_else(|| Settlement {
                status: "pending: reveals (finalized at the next reveal or the reveal deadline)"
                    .into(),
                ..Settlement::default()
            })
    }

    fn fail(&mut self, task_id: TaskId, _reason: &str, now_ms: u64) -> Settlement {
        let initialized = lock(&self.ledger).is_ok_and(|l| l.task(&task_id).is_some());
        if !initialized {
            return Settlement {
                status: "never initialized on the ledger".into(),
                ..Settlement::default()
            };
        }
        self.pending_claim.insert(task_id);
        self.try_claim(&task_id, now_ms)
            .unwrap_or_else(|| Settlement {
                status: "pending: claim after the final deadline".into(),
                ..Settlement::default()
            })
    }

    fn can_stake(&self, worker: Address, deal: &DealSummary) -> bool {
        let Ok(l) = lock(&self.ledger) else {
            return true;
        };
        let Some(stake) = l.deal(&deal.deal_id).map(|d| d.worker_stake) else {
            return true;
        };
        let account = l.account(&worker);
        // A worker new to the ledger gets its deposit at its first authorization.
        account == crate::ledger::Account::default() || account.balance >= stake
    }

    fn standing(&self, worker: Address) -> Standing {
        match lock(&self.ledger) {
            Ok(l) => {
                let a = l.account(&worker);
                Standing {
                    score: Some(a.score),
                    stake: Some(format!(
                        "{} locked, {} free",
                        nrlc(a.frozen),
                        nrlc(a.balance)
                    )),
                }
            }
            Err(_) => Standing::default(),
        }
    }

    fn settlement(&self, task: &TaskId) -> Option<Settlement> {
        let l = lock(&self.ledger).ok()?;
        let s = l.settlement(task)?;
        debug_assert!(matches!(
            s.status,
            ChainTaskStatus::Completed | ChainTaskStatus::Failed
        ));
        Some(settlement_view(s))
    }

    fn tick(&mut self, now_ms: u64) {
        let finals: Vec<TaskId> = self.pending_finalize.keys().copied().collect();
        for task_id in finals {
            let _ = self.try_finalize(&task_id, now_ms);
        }
        let claims: Vec<TaskId> = self.pending_claim.iter().copied().collect();
        for task_id in claims {
            let _ = self.try_claim(&task_id, now_ms);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use edgepool_protocol::hash::sha256;
    use edgepool_protocol::messages::{Message, TaskLimits};
    use edgepool_protocol::signature::Signer;

    use super::*;
    use crate::scheduler::{Action, Scheduler};

    const START: u64 = 1_700_000_000_000;

    struct World {
        market: Market,
        hooks: LedgerHooks,
        scheduler: Scheduler,
        summary: DealSummary,
        task: TaskId,
        workers: Vec<Signer>,
    }

    fn offer(trust: u64) -> DealOffer {
        DealOffer {
            app_name: "app.wasm".into(),
            app_url: "http://127.0.0.1:1/apps/app.wasm".into(),
            app_checksum: Digest(sha256(b"module")),
            app_size: 6,
            dataset: None,
            requester: Address([0x51; 20]),
            args: String::new(),
            input_files: Vec::new(),
            tag: Tag::NONE,
            trust,
            time_ref_secs: 10,
            volume: 1,
            result_storage_proxy: None,
            result_encryption: false,
        }
    }

    /// A deal of one task at `trust`, initialized, assigned to `workers` fresh workers.
    fn world(trust: u64, workers: u8) -> World {
        let owner = Signer::from_bytes(&[0x70; 32]).unwrap();
        let ledger = Arc::new(Mutex::new(Ledger::in_memory().unwrap()));
        let market = Market::new(ledger, owner.address(), "test pool").unwrap();
        let summary = market.open_deal(&offer(trust), START).unwrap().summary;
        let mut hooks = market.hooks();
        assert!(hooks.decides_consensus());
        hooks.initialize(&summary, 0, START).unwrap();
        // Idempotent: a second placement of the same task changes nothing.
        hooks.initialize(&summary, 0, START).unwrap();
        let mut scheduler = Scheduler::new(owner);
        scheduler.set_ledger_consensus(true);
        let workers: Vec<Signer> = (1..=workers)
            .map(|i| Signer::from_bytes(&[i; 32]).unwrap())
            .collect();
        for w in &workers {
            let actions = scheduler
                .assign(
                    &summary,
                    0,
                    w.address(),
                    TaskLimits::default(),
                    Address::ZERO,
                    START,
                )
                .unwrap();
            for a in actions {
                if let Action::Send {
                    message: Message::Assignment(a),
                    ..
                } = a
                {
                    hooks.authorized(&a.authorization, START);
                }
            }
        }
        let task = edgepool_protocol::poco::task_id(&summary.deal_id, 0);
        World {
            market,
            hooks,
            scheduler,
            summary,
            task,
            workers,
        }
    }

    fn contribute(w: &mut World, i: usize, digest: Digest, at: u64) -> Result<(), String> {
        let worker = w.workers[i].address();
        let c = Contribution::standard(worker, w.task, digest, 1);
        let run = w.scheduler.task(&w.task).unwrap();
        w.hooks.contribute(run, worker, &c, at)
    }

    #[test]
    fn the_ledger_decides_consensus_slashes_the_liar_and_rewards_the_revealers() {
        let mut w = world(3, 4);
        let honest = Digest(sha256(b"honest"));
        let lie = Digest(sha256(b"lie"));
        // Fresh workers start with the deposit, and stake on contributing.
        let liar = w.workers[0].address();
        assert_eq!(
            w.hooks.standing(liar).stake.as_deref(),
            Some("0 nRLC locked, 1000 nRLC free")
        );
        contribute(&mut w, 0, lie, START + 1).unwrap();
        assert_eq!(
            w.hooks.standing(liar).stake.as_deref(),
            Some("30 nRLC locked, 970 nRLC free")
        );
        // A redelivered contribution is fine, a different one is refused.
        contribute(&mut w, 0, lie, START + 2).unwrap();
        assert!(contribute(&mut w, 0, honest, START + 2).is_err());
        // With a dissenter, trust 3 needs three agreeing fresh workers.
        contribute(&mut w, 1, honest, START + 3).unwrap();
        contribute(&mut w, 2, honest, START + 4).unwrap();
        assert_eq!(w.hooks.consensus(&w.task), None);
        contribute(&mut w, 3, honest, START + 5).unwrap();
        let hash = edgepool_protocol::poco::result_hash(&w.task, &honest);
        assert_eq!(w.hooks.consensus(&w.task), Some(hash));

        // The first revealer uploads; the finalize waits for the other two reveals.
        let run = w.scheduler.task(&w.task).unwrap().clone();
        w.hooks
            .reveal(&run, w.workers[1].address(), &honest, START + 6)
            .unwrap();
        assert!(w
            .hooks
            .reveal(&run, liar, &lie, START + 6)
            .unwrap_err()
            .contains(&liar.to_string()));
        let pending = w
            .hooks
            .finalize(&run, hash, "http://store/results/x", START + 7);
        assert!(pending.status.starts_with("pending"), "{pending:?}");
        assert!(w.hooks.settlement(&w.task).is_none());
        for i in [2, 3] {
            w.hooks
                .reveal(&run, w.workers[i].address(), &honest, START + 8)
                .unwrap();
        }
        let settled = w.hooks.settlement(&w.task).unwrap();
        assert_eq!(settled.status, "COMPLETED");
        assert_eq!(
            settled.slashed.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            vec![liar]
        );
        assert_eq!(settled.rewarded.len(), 3);
        assert_eq!(w.hooks.standing(liar).score, Some(0));
        for i in 1..4 {
            assert_eq!(w.hooks.standing(w.workers[i].address()).score, Some(1));
        }
        let l = w.market.ledger().lock().unwrap();
        assert_eq!(l.total_money(), u128::from(l.supply()));
    }

    #[test]
    fn a_failed_task_is_claimed_on_tick_once_its_final_deadline_passed() {
        let mut w = world(3, 2);
        contribute(&mut w, 0, Digest(sha256(b"a")), START + 1).unwrap();
        let pending = w.hooks.fail(w.task, "no consensus", START + 70_001);
        assert!(pending.status.starts_with("pending"), "{pending:?}");
        w.hooks.tick(START + 99_999);
        assert!(w.hooks.settlement(&w.task).is_none());
        w.hooks.tick(w.summary.final_deadline_ms());
        let settled = w.hooks.settlement(&w.task).unwrap();
        assert_eq!(settled.status, "FAILED");
        assert_eq!(settled.refunded.len(), 1);
        assert_eq!(
            w.hooks.standing(w.workers[0].address()).stake.as_deref(),
            Some("0 nRLC locked, 1000 nRLC free")
        );
    }

    #[test]
    fn a_contribution_without_an_authorization_or_after_consensus_is_refused() {
        let mut w = world(1, 2);
        let stranger = Signer::from_bytes(&[0x33; 32]).unwrap().address();
        let c = Contribution::standard(stranger, w.task, Digest(sha256(b"x")), 1);
        let run = w.scheduler.task(&w.task).unwrap().clone();
        assert!(w
            .hooks
            .contribute(&run, stranger, &c, START + 1)
            .unwrap_err()
            .contains("no authorization"));
        // Trust 1: the first contribution is the consensus; the task is no longer ACTIVE.
        contribute(&mut w, 0, Digest(sha256(b"x")), START + 1).unwrap();
        assert!(w.hooks.consensus(&w.task).is_some());
        assert!(contribute(&mut w, 1, Digest(sha256(b"x")), START + 2).is_err());
    }

    #[test]
    fn a_ledger_file_survives_a_restart_with_the_same_workerpool_and_deals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let owner = Address([0x70; 20]);
        let open = || {
            let ledger = Arc::new(Mutex::new(Ledger::open(&path).unwrap()));
            Market::new(ledger, owner, "edgepool-sim serve 0x01").unwrap()
        };
        let first = open();
        let deal = first.open_deal(&offer(1), START).unwrap().summary;
        // The same app again: registration is idempotent, a second deal is matched.
        first.open_deal(&offer(1), START + 1).unwrap();
        let pool = first.workerpool();
        drop(first);
        let again = open();
        assert_eq!(again.workerpool(), pool);
        let l = again.ledger().lock().unwrap();
        assert_eq!(l.deals().count(), 2);
        assert!(l.deal(&deal.deal_id).is_some());
        // The requester's escrow of both deals is still locked (task price 110 each).
        assert_eq!(l.account(&Address([0x51; 20])).frozen, 220);
    }
}
