//! SQLite persistence of the ledger: the only file that knows SQL.
//!
//! One table of JSON records keyed by kind and id. Every call's changes are written in one
//! `BEGIN IMMEDIATE` transaction before they reach the in-memory state, so a crash leaves either
//! the whole call or none of it. WAL with `synchronous=NORMAL`: a committed call survives a
//! process crash or `kill -9` (not necessarily a power cut), at about 10 µs a commit instead of
//! about 100 µs, which the simulator's benchmark needs.

use std::path::Path;

use rusqlite::{params, Connection, TransactionBehavior};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::batch::{Changes, State};
use super::error::LedgerError;
use super::model::{Account, App, Category, Dataset, Deal, Settlement, Task, Workerpool};

/// Numbered migrations; `PRAGMA user_version` holds how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE record (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    ) STRICT, WITHOUT ROWID;"];

#[derive(Debug)]
pub(crate) struct Store {
    conn: Connection,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::migrate(conn)
    }

    pub fn in_memory() -> Result<Self, LedgerError> {
        Self::migrate(Connection::open_in_memory()?)
    }

    fn migrate(mut conn: Connection) -> Result<Self, LedgerError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let done = usize::try_from(version).unwrap_or(usize::MAX);
        if done > MIGRATIONS.len() {
            return Err(LedgerError::Corrupt {
                kind: "schema".into(),
                key: "user_version".into(),
                reason: format!(
                    "version {version} is newer than this build's {}",
                    MIGRATIONS.len()
                ),
            });
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(done) {
            tx.execute_batch(sql)?;
            tx.pragma_update(
                None,
                "user_version",
                i64::try_from(index + 1).unwrap_or(i64::MAX),
            )?;
        }
        tx.commit()?;
        Ok(Self { conn })
    }

    /// Writes one call's changes in one transaction.
    pub fn write(&mut self, changes: &Changes) -> Result<(), LedgerError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO record (kind, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
            )?;
            let mut write = |kind: &str, key: String, value: String| {
                put.execute(params![kind, key, value]).map(|_| ())
            };
            for (address, account) in &changes.accounts {
                write("account", address.to_lower_hex(), json(account)?)?;
            }
            for app in &changes.apps {
                write("app", app.address.to_lower_hex(), json(app)?)?;
            }
            for dataset in &changes.datasets {
                write("dataset", dataset.address.to_lower_hex(), json(dataset)?)?;
            }
            for pool in &changes.workerpools {
                write("workerpool", pool.address.to_lower_hex(), json(pool)?)?;
            }
            for category in &changes.categories {
                write("category", category.id.to_string(), json(category)?)?;
            }
            for (hash, consumed) in &changes.consumed {
                write("consumed", hash.to_string(), consumed.to_string())?;
            }
            for deal in &changes.deals {
                write("deal", deal.summary.deal_id.to_string(), json(deal)?)?;
            }
            for task in &changes.tasks {
                write("task", task.task_id.to_string(), json(task)?)?;
            }
            for settlement in &changes.settlements {
                write(
                    "settlement",
                    settlement.task_id.to_string(),
                    json(settlement)?,
                )?;
            }
            if let Some(supply) = changes.supply {
                write("meta", "supply".into(), supply.to_string())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Reads every record back.
    pub fn load(&self) -> Result<State, LedgerError> {
        let mut state = State::default();
        let mut query = self.conn.prepare("SELECT kind, key, value FROM record")?;
        let mut rows = query.query([])?;
        while let Some(row) = rows.next()? {
            let kind: String = row.get(0)?;
            let key: String = row.get(1)?;
            let value: String = row.get(2)?;
            let corrupt = |reason: String| LedgerError::Corrupt {
                kind: kind.clone(),
                key: key.clone(),
                reason,
            };
            let address = || key.parse().map_err(|e| corrupt(format!("{e}")));
            match kind.as_str() {
                "account" => {
                    let account: Account = parse(&value).map_err(corrupt)?;
                    state.accounts.insert(address()?, account);
                }
                "app" => {
                    let app: App = parse(&value).map_err(corrupt)?;
                    state.apps.insert(app.address, app);
                }
                "dataset" => {
                    let dataset: Dataset = parse(&value).map_err(corrupt)?;
                    state.datasets.insert(dataset.address, dataset);
                }
                "workerpool" => {
                    let pool: Workerpool = parse(&value).map_err(corrupt)?;
                    state.workerpools.insert(pool.address, pool);
                }
                "category" => {
                    let category: Category = parse(&value).map_err(corrupt)?;
                    state.categories.insert(category.id, category);
                }
                "consumed" => {
                    let hash = key.parse().map_err(|e| corrupt(format!("{e}")))?;
                    let consumed = value.parse().map_err(|e| corrupt(format!("{e}")))?;
                    state.consumed.insert(hash, consumed);
                }
                "deal" => {
                    let deal: Deal = parse(&value).map_err(corrupt)?;
                    state.deals.insert(deal.summary.deal_id, deal);
                }
                "task" => {
                    let task: Task = parse(&value).map_err(corrupt)?;
                    state.tasks.insert(task.task_id, task);
                }
                "settlement" => {
                    let settlement: Settlement = parse(&value).map_err(corrupt)?;
                    state.settlements.insert(settlement.task_id, settlement);
                }
                "meta" if key == "supply" => {
                    state.supply = value.parse().map_err(|e| corrupt(format!("{e}")))?;
                }
                _ => return Err(corrupt("unknown record kind".into())),
            }
        }
        Ok(state)
    }
}

fn json<T: Serialize>(value: &T) -> Result<String, rusqlite::Error> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn parse<T: DeserializeOwned>(value: &str) -> Result<T, String> {
    serde_json::from_str(value).map_err(|e| e.to_string())
}
