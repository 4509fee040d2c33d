//! The in-memory state and the working set one ledger call builds before it commits.
//!
//! A call reads the [`State`], copies the records it changes into a [`Batch`], and moves money
//! with the contract's four escrow primitives (`lock`, `unlock`, `seize`, `reward`). Only when
//! the call succeeded, and the money it seized was all paid out again, are the changes written to
//! SQLite in one transaction and then applied to the state: a refused call changes nothing.

use std::collections::{BTreeMap, HashMap};

use edgepool_protocol::{Address, Bytes32, DealId, TaskId};

use super::error::LedgerError;
use super::model::{Account, App, Category, Dataset, Deal, Settlement, Task, Workerpool};

/// Everything the ledger knows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct State {
    pub accounts: HashMap<Address, Account>,
    pub apps: HashMap<Address, App>,
    pub datasets: HashMap<Address, Dataset>,
    pub workerpools: HashMap<Address, Workerpool>,
    pub categories: BTreeMap<u64, Category>,
    /// Volume consumed per order hash (`m_consumed`).
    pub consumed: HashMap<Bytes32, u64>,
    pub deals: HashMap<DealId, Deal>,
    pub tasks: HashMap<TaskId, Task>,
    pub settlements: HashMap<TaskId, Settlement>,
    /// Deposited minus withdrawn: what every balance and frozen amount must add up to.
    pub supply: u64,
}

/// The records one call changed.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub accounts: BTreeMap<Address, Account>,
    pub apps: Vec<App>,
    pub datasets: Vec<Dataset>,
    pub workerpools: Vec<Workerpool>,
    pub categories: Vec<Category>,
    pub consumed: BTreeMap<Bytes32, u64>,
    pub deals: Vec<Deal>,
    pub tasks: Vec<Task>,
    pub settlements: Vec<Settlement>,
    pub supply: Option<u64>,
}

impl Changes {
    /// Applies to the state (after the store committed them).
    pub fn apply(self, state: &mut State) {
        state.accounts.extend(self.accounts);
        for app in self.apps {
            state.apps.insert(app.address, app);
        }
        for dataset in self.datasets {
            state.datasets.insert(dataset.address, dataset);
        }
        for pool in self.workerpools {
            state.workerpools.insert(pool.address, pool);
        }
        for category in self.categories {
            state.categories.insert(category.id, category);
        }
        state.consumed.extend(self.consumed);
        for deal in self.deals {
            state.deals.insert(deal.summary.deal_id, deal);
        }
        for task in self.tasks {
            state.tasks.insert(task.task_id, task);
        }
        for settlement in self.settlements {
            state.settlements.insert(settlement.task_id, settlement);
        }
        if let Some(supply) = self.supply {
            state.supply = supply;
        }
    }
}

/// A call's working set: changed records, and the money the contract holds mid-call.
#[derive(Debug)]
pub(crate) struct Batch<'a> {
    state: &'a State,
    pub changes: Changes,
    /// Seized and not yet rewarded: must be 0 when the call ends.
    pot: u64,
}

impl<'a> Batch<'a> {
    pub fn new(state: &'a State) -> Self {
        Self {
            state,
            changes: Changes::default(),
            pot: 0,
        }
    }

    /// The account as this call sees it.
    pub fn account(&self, address: &Address) -> Account {
        self.changes
            .accounts
            .get(address)
            .or_else(|| self.state.accounts.get(address))
            .cloned()
            .unwrap_or_default()
    }

    pub fn account_mut(&mut self, address: Address) -> &mut Account {
        let state = self.state;
        self.changes
            .accounts
            .entry(address)
            .or_insert_with(|| state.accounts.get(&address).cloned().unwrap_or_default())
    }

    /// Moves `amount` from the free balance to frozen.
    pub fn lock(&mut self, address: Address, amount: u64) -> Result<(), LedgerError> {
        let account = self.account_mut(address);
        if account.balance < amount {
            return Err(LedgerError::InsufficientBalance {
                account: address,
                needed: amount,
                available: account.balance,
            });
        }
        let frozen = account
            .frozen
            .checked_add(amount)
            .ok_or(LedgerError::Overflow("lock"))?;
        account.balance -= amount;
        account.frozen = frozen;
        Ok(())
    }

    /// Moves `amount` from frozen back to the free balance.
    pub fn unlock(&mut self, address: Address, amount: u64) -> Result<(), LedgerError> {
        let account = self.account_mut(address);
        account.frozen = account
            .frozen
            .checked_sub(amount)
            .ok_or(LedgerError::Invariant("unlock of more than is frozen"))?;
        account.balance = account
            .balance
            .checked_add(amount)
            .ok_or(LedgerError::Overflow("unlock"))?;
        Ok(())
    }

    /// Takes `amount` of frozen money into the pot.
    pub fn seize(&mut self, address: Address, amount: u64) -> Result<(), LedgerError> {
        let account = self.account_mut(address);
        account.frozen = account
            .frozen
            .checked_sub(amount)
            .ok_or(LedgerError::Invariant("seizure of more than is frozen"))?;
        self.pot = self
            .pot
            .checked_add(amount)
            .ok_or(LedgerError::Overflow("seize"))?;
        Ok(())
    }

    /// Pays `amount` from the pot to the free balance.
    pub fn reward(&mut self, address: Address, amount: u64) -> Result<(), LedgerError> {
        self.take_from_pot(amount)?;
        let account = self.account_mut(address);
        account.balance = account
            .balance
            .checked_add(amount)
            .ok_or(LedgerError::Overflow("reward"))?;
        Ok(())
    }

    /// Pays `amount` from the pot into the frozen amount (`rewardAndLock`, for the kitty).
    pub fn reward_and_lock(&mut self, address: Address, amount: u64) -> Result<(), LedgerError> {
        self.take_from_pot(amount)?;
        let account = self.account_mut(address);
        account.frozen = account
            .frozen
            .checked_add(amount)
            .ok_or(LedgerError::Overflow("reward"))?;
        Ok(())
    }

    fn take_from_pot(&mut self, amount: u64) -> Result<(), LedgerError> {
        self.pot = self
            .pot
            .checked_sub(amount)
            .ok_or(LedgerError::Invariant("reward of more than was seized"))?;
        Ok(())
    }

    /// The changes, if the call paid out everything it seized.
    pub fn finish(self) -> Result<Changes, LedgerError> {
        if self.pot != 0 {
            return Err(LedgerError::Invariant("money seized and never paid out"));
        }
        Ok(self.changes)
    }
}
