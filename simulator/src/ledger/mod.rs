//! The PoCo contracts as an in-memory ledger persisted to SQLite.
//!
//! [`Ledger`] plays iExec's escrow, registries, categories, `matchOrders` and the task calls
//! (`initialize`, `contribute`, `reveal`, `finalize`, `claim`) with the contracts' checks, each
//! refusal a typed [`LedgerError`]. It is sans-IO apart from SQLite: time is an argument (unix
//! ms), it never reads the clock, sends nothing and spawns nothing.
//!
//! Money is `u64` nRLC. [`Ledger::deposit`] and [`Ledger::withdraw`] are the only ways in and
//! out; every other call moves money between free balances, frozen amounts and the call's pot
//! (`batch`), and is refused if it would leave money in the pot. So at every moment the
//! balances plus the frozen amounts (requester escrow, workerpool and worker stakes, the kitty)
//! add up to [`Ledger::supply`].
//!
//! What the simulator simplifies, on purpose:
//! - No order signatures and no `msg.sender`: the caller speaks for the parties (the MQTT
//!   service checks the worker's envelope signature before it calls [`Ledger::contribute`]).
//!   The WorkerpoolAuthorization and the enclave signature *are* checked, as the contract does.
//! - No TEE broker (`m_teebroker`): the workerpool owner signs every authorization.
//! - No `reopen`, no `contributeAndFinalize`, no callbacks, no identity groups in restrictions;
//!   `claim` needs an initialized task ([`Ledger::initialize`] it first).
//! - Matching follows the contract: three maximum prices in the request (app, dataset,
//!   workerpool), each at least the order's price — which implies the brief's
//!   "request max ≥ app + dataset + workerpool price".
//!
//! The brief (BRIEF §2) and the contracts agree on every formula used here (weight, tally,
//! consensus condition, deadlines, stake back plus reward and score + 1 for revealers when the
//! task was replicated, stake lost and score ×2/3 for the others). Where the brief is silent the
//! contracts decide: revealers share the pot in proportion to `log2(weight)`, the scheduler keeps
//! its `schedulerRewardRatio` and the rounding remainders, the workerpool owner stakes 30% of its
//! price per task, and failed tasks feed the kitty.
//!
//! Layout: [`model`] (records), [`orders`] (the four orders and the match checks), `batch`
//! (state and working set), `market` (`match_orders`), `tasks` (initialize, contribute,
//! reveal), `settle` (finalize, claim), `store` (SQLite), [`error`]; `tests/` next to them.

mod batch;
pub mod error;
mod market;
pub mod model;
pub mod orders;
mod settle;
mod store;
mod tasks;
#[cfg(test)]
mod tests;

use std::path::Path;

use edgepool_protocol::hash::keccak256_concat;
use edgepool_protocol::messages::DealSummary;
use edgepool_protocol::{Address, Bytes32, DealId, Digest, TaskId};

use batch::{Batch, Changes, State};
pub use error::{LedgerError, MatchError};
pub use market::MatchedDeal;
pub use model::{
    Account, App, Category, Contribution, ContributionStatus, Dataset, Deal, Settlement, Task,
    WorkerOutcome, WorkerSettlement, Workerpool, KITTY,
};
pub use orders::{AppOrder, DatasetOrder, RequestOrder, RequestParams, WorkerpoolOrder};
use store::Store;
pub use tasks::{ContributeCall, ContributeOutcome, RevealOutcome};

/// iExec's default categories (name, `workClockTimeRef` in seconds), for
/// [`Ledger::create_default_categories`].
pub const DEFAULT_CATEGORIES: [(&str, u64); 5] = [
    ("XS", 300),
    ("S", 1_200),
    ("M", 3_600),
    ("L", 10_800),
    ("XL", 36_000),
];

/// The PoCo ledger. See the [module docs](self).
#[derive(Debug)]
pub struct Ledger {
    state: State,
    store: Store,
}

impl Ledger {
    /// Opens (or creates) the ledger in the SQLite file at `path` and restores its state.
    ///
    /// # Errors
    /// [`LedgerError::Store`] when SQLite fails, [`LedgerError::Corrupt`] for an unreadable record.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let store = Store::open(path)?;
        let state = store.load()?;
        Ok(Self { state, store })
    }

    /// An empty ledger in an in-memory SQLite database (same code path, nothing on disk).
    ///
    /// # Errors
    /// [`LedgerError::Store`] when SQLite fails.
    pub fn in_memory() -> Result<Self, LedgerError> {
        Ok(Self {
            state: State::default(),
            store: Store::in_memory()?,
        })
    }

    /// Writes a call's changes, then applies them: a failed write changes nothing.
    fn commit(&mut self, changes: Changes) -> Result<(), LedgerError> {
        self.store.write(&changes)?;
        changes.apply(&mut self.state);
        Ok(())
    }

    // ----- accounts -------------------------------------------------------------------------

    /// Credits `amount` to `account` (the escrow's `deposit`: money enters the ledger).
    ///
    /// # Errors
    /// [`LedgerError::Overflow`], [`LedgerError::Store`].
    pub fn deposit(&mut self, account: Address, amount: u64) -> Result<(), LedgerError> {
        let supply = self
            .state
            .supply
            .checked_add(amount)
            .ok_or(LedgerError::Overflow("deposit"))?;
        let mut batch = Batch::new(&self.state);
        let entry = batch.account_mut(account);
        entry.balance = entry
            .balance
            .checked_add(amount)
            .ok_or(LedgerError::Overflow("deposit"))?;
        batch.changes.supply = Some(supply);
        let changes = batch.finish()?;
        self.commit(changes)
    }

    /// Debits `amount` from the free balance of `account` (money leaves the ledger).
    ///
    /// # Errors
    /// [`LedgerError::InsufficientBalance`], [`LedgerError::Store`].
    pub fn withdraw(&mut self, account: Address, amount: u64) -> Result<(), LedgerError> {
        let mut batch = Batch::new(&self.state);
        let entry = batch.account_mut(account);
        if entry.balance < amount {
            return Err(LedgerError::InsufficientBalance {
                account,
                needed: amount,
                available: entry.balance,
            });
        }
        entry.balance -= amount;
        batch.changes.supply = Some(self.state.supply.saturating_sub(amount));
        let changes = batch.finish()?;
        self.commit(changes)
    }

    /// The account (all zero when never seen).
    pub fn account(&self, account: &Address) -> Account {
        self.state
            .accounts
            .get(account)
            .cloned()
            .unwrap_or_default()
    }

    /// Every account that ever held money or a score.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.state.accounts.iter()
    }

    /// Deposited minus withdrawn.
    pub fn supply(&self) -> u64 {
        self.state.supply
    }

    /// The sum of every balance and frozen amount: always equal to [`Ledger::supply`].
    pub fn total_money(&self) -> u128 {
        self.state
            .accounts
            .values()
            .map(|a| u128::from(a.balance) + u128::from(a.frozen))
            .sum()
    }

    // ----- registries -----------------------------------------------------------------------

    /// Registers an app; its address is derived from the owner, name, url and checksum (as the
    /// registry's CREATE2 derives it from its arguments), so the same app cannot be registered
    /// twice.
    ///
    /// # Errors
    /// [`LedgerError::AlreadyRegistered`], [`LedgerError::InvalidArgument`] for an empty url,
    /// [`LedgerError::Store`].
    pub fn register_app(
        &mut self,
        owner: Address,
        name: &str,
        url: &str,
        checksum: Digest,
        size_bytes: Option<u64>,
    ) -> Result<Address, LedgerError> {
        require_url(url)?;
        let address = asset_address("app", &owner, name, url, &checksum.0);
        if self.state.apps.contains_key(&address) {
            return Err(LedgerError::AlreadyRegistered(address));
        }
        let mut changes = Changes::default();
        changes.apps.push(App {
            address,
            owner,
            name: name.to_string(),
            url: url.to_string(),
            checksum,
            size_bytes,
        });
        self.commit(changes)?;
        Ok(address)
    }

    /// Registers a dataset (address derived as for apps). Its name is the file name the app
    /// sees, so it must be a plain file name.
    ///
    /// # Errors
    /// [`LedgerError::AlreadyRegistered`], [`LedgerError::InvalidArgument`], [`LedgerError::Store`].
    pub fn register_dataset(
        &mut self,
        owner: Address,
        name: &str,
        url: &str,
        checksum: Digest,
        size_bytes: Option<u64>,
    ) -> Result<Address, LedgerError> {
        require_url(url)?;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(LedgerError::InvalidArgument {
                field: "dataset name",
                reason: "must be a plain file name",
            });
        }
        let address = asset_address("dataset", &owner, name, url, &checksum.0);
        if self.state.datasets.contains_key(&address) {
            return Err(LedgerError::AlreadyRegistered(address));
        }
        let mut changes = Changes::default();
        changes.datasets.push(Dataset {
            address,
            owner,
            name: name.to_string(),
            url: url.to_string(),
            checksum,
            size_bytes,
        });
        self.commit(changes)?;
        Ok(address)
    }

    /// Registers a workerpool with its policies (percentages, 0..=100).
    ///
    /// # Errors
    /// [`LedgerError::InvalidArgument`] for a ratio above 100, [`LedgerError::AlreadyRegistered`],
    /// [`LedgerError::Store`].
    pub fn register_workerpool(
        &mut self,
        owner: Address,
        description: &str,
        worker_stake_ratio: u64,
        scheduler_reward_ratio: u64,
    ) -> Result<Address, LedgerError> {
        if worker_stake_ratio > 100 {
            return Err(LedgerError::InvalidArgument {
                field: "worker_stake_ratio",
                reason: "must be a percentage (0..=100)",
            });
        }
        if scheduler_reward_ratio > 100 {
            return Err(LedgerError::InvalidArgument {
                field: "scheduler_reward_ratio",
                reason: "must be a percentage (0..=100)",
            });
        }
        let address = asset_address("workerpool", &owner, description, "", &Bytes32::ZERO);
        if self.state.workerpools.contains_key(&address) {
            return Err(LedgerError::AlreadyRegistered(address));
        }
        let mut changes = Changes::default();
        changes.workerpools.push(Workerpool {
            address,
            owner,
            description: description.to_string(),
            worker_stake_ratio,
            scheduler_reward_ratio,
        });
        self.commit(changes)?;
        Ok(address)
    }

    /// Creates the next category and returns its id.
    ///
    /// # Errors
    /// [`LedgerError::InvalidArgument`] for a zero timeref, [`LedgerError::Store`].
    pub fn create_category(
        &mut self,
        name: &str,
        time_ref_seconds: u64,
    ) -> Result<u64, LedgerError> {
        if time_ref_seconds == 0 {
            return Err(LedgerError::InvalidArgument {
                field: "time_ref_seconds",
                reason: "must not be zero",
            });
        }
        let id = self
            .state
            .categories
            .keys()
            .next_back()
            .map_or(0, |last| last + 1);
        let mut changes = Changes::default();
        changes.categories.push(Category {
            id,
            name: name.to_string(),
            time_ref_seconds,
        });
        self.commit(changes)?;
        Ok(id)
    }

    /// Creates [`DEFAULT_CATEGORIES`] when the ledger has no category yet; idempotent.
    ///
    /// # Errors
    /// [`LedgerError::Store`].
    pub fn create_default_categories(&mut self) -> Result<(), LedgerError> {
        if self.state.categories.is_empty() {
            for (name, time_ref) in DEFAULT_CATEGORIES {
                self.create_category(name, time_ref)?;
            }
        }
        Ok(())
    }

    /// A registered app.
    pub fn app(&self, address: &Address) -> Option<&App> {
        self.state.apps.get(address)
    }

    /// A registered dataset.
    pub fn dataset(&self, address: &Address) -> Option<&Dataset> {
        self.state.datasets.get(address)
    }

    /// A registered workerpool.
    pub fn workerpool(&self, address: &Address) -> Option<&Workerpool> {
        self.state.workerpools.get(address)
    }

    /// A category.
    pub fn category(&self, id: u64) -> Option<&Category> {
        self.state.categories.get(&id)
    }

    /// The volume an order (by its hash) has consumed.
    pub fn consumed(&self, order_hash: &Bytes32) -> u64 {
        self.state.consumed.get(order_hash).copied().unwrap_or(0)
    }

    /// A deal.
    pub fn deal(&self, deal_id: &DealId) -> Option<&Deal> {
        self.state.deals.get(deal_id)
    }

    /// Every deal, in no particular order.
    pub fn deals(&self) -> impl Iterator<Item = &Deal> {
        self.state.deals.values()
    }

    /// An initialized task.
    pub fn task(&self, task_id: &TaskId) -> Option<&Task> {
        self.state.tasks.get(task_id)
    }

    /// Every initialized task, in no particular order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.state.tasks.values()
    }

    /// How a finalized or claimed task settled.
    pub fn settlement(&self, task_id: &TaskId) -> Option<&Settlement> {
        self.state.settlements.get(task_id)
    }

    /// Every settlement, in no particular order.
    pub fn settlements(&self) -> impl Iterator<Item = &Settlement> {
        self.state.settlements.values()
    }

    /// The deal summary a scheduler hands to workers.
    pub fn deal_summary(&self, deal_id: &DealId) -> Option<&DealSummary> {
        self.state.deals.get(deal_id).map(|d| &d.summary)
    }
}

fn require_url(url: &str) -> Result<(), LedgerError> {
    if url.is_empty() {
        return Err(LedgerError::InvalidArgument {
            field: "url",
            reason: "must not be empty",
        });
    }
    Ok(())
}

/// The last 20 bytes of `keccak256(kind ‖ owner ‖ keccak(name) ‖ keccak(url) ‖ checksum)`.
fn asset_address(
    kind: &str,
    owner: &Address,
    name: &str,
    url: &str,
    checksum: &Bytes32,
) -> Address {
    let name = keccak256_concat(&[name.as_bytes()]);
    let url = keccak256_concat(&[url.as_bytes()]);
    let hash = keccak256_concat(&[
        kind.as_bytes(),
        owner.as_bytes(),
        name.as_bytes(),
        url.as_bytes(),
        checksum.as_bytes(),
    ]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash.0[12..]);
    Address(address)
}
