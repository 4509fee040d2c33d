//! Tasks: one row per task with its state, assignment and outputs, and a log of its transitions.

use std::collections::BTreeMap;

use edgepool_protocol::primitives::{Bytes32, DealId, Digest, TaskId};
use edgepool_protocol::status::{ReplicateStatus, ReplicateStatusCause};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::error::{corrupt, to_i64, to_u64};
use super::{Store, StoreError, Tx};

/// A task to journal when its assignment arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask<'a> {
    /// The task.
    pub task_id: TaskId,
    /// Its deal.
    pub deal_id: DealId,
    /// Its index in the deal.
    pub task_index: u64,
    /// The assignment as received (for example the signed envelope bytes), kept so the task can
    /// resume after a restart.
    pub assignment: &'a [u8],
    /// The first state, usually [`ReplicateStatus::Created`].
    pub state: ReplicateStatus,
    /// When the assignment arrived (ms since the Unix epoch).
    pub received_at_ms: u64,
}

/// What a task produced. In [`Tx::set_task_outputs`], `None` leaves a field as it is.
///
/// The contribution fields (`result_digest`, `result_hash`, `result_seal`, `enclave_signature`,
/// `fuel_used`) are written once: the journal refuses a different value for a field already set,
/// so a task never yields two different contributions. `result_link` may be replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOutputs {
    /// The iExec result digest.
    pub result_digest: Option<Digest>,
    /// `keccak256(taskId ‖ resultDigest)`.
    pub result_hash: Option<Bytes32>,
    /// `keccak256(worker ‖ taskId ‖ resultDigest)`.
    pub result_seal: Option<Bytes32>,
    /// The enclave signature of the contribution (65 bytes, or 32 zero bytes for a standard task).
    pub enclave_signature: Option<Vec<u8>>,
    /// Fuel the app consumed.
    pub fuel_used: Option<u64>,
    /// Where the result was uploaded.
    pub result_link: Option<String>,
}

/// A journaled task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task.
    pub task_id: TaskId,
    /// Its deal.
    pub deal_id: DealId,
    /// Its index in the deal.
    pub task_index: u64,
    /// Its current state.
    pub state: ReplicateStatus,
    /// Why it reached that state, if a cause was given.
    pub cause: Option<ReplicateStatusCause>,
    /// When it was journaled (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// When its state or outputs last changed.
    pub updated_at_ms: u64,
    /// The assignment bytes, as given to [`Tx::insert_task`].
    pub assignment: Vec<u8>,
    /// What it produced so far.
    pub outputs: TaskOutputs,
}

/// One state a task went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state entered.
    pub state: ReplicateStatus,
    /// Its cause, if any.
    pub cause: Option<ReplicateStatusCause>,
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
}

/// Which tasks [`Store::tasks`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFilter {
    /// Every task.
    All,
    /// Tasks not in a final state (to resume after a restart).
    Active,
    /// Tasks in a final state.
    Final,
    /// Tasks in this state.
    State(ReplicateStatus),
}

impl TaskFilter {
    /// The state names this filter selects.
    fn states(self) -> Vec<&'static str> {
        let keep = |s: &ReplicateStatus| match self {
            TaskFilter::All => true,
            TaskFilter::Active => !s.is_final(),
            TaskFilter::Final => s.is_final(),
            TaskFilter::State(wanted) => *s == wanted,
        };
        ReplicateStatus::ALL
            .iter()
            .filter(|s| keep(s))
            .map(|s| s.as_str())
            .collect()
    }
}

const TASK_COLUMNS: &str = "task_id, deal_id, task_index, state, cause, created_at_ms, \
    updated_at_ms, assignment, result_digest, result_hash, result_seal, enclave_signature, \
    fuel_used, result_link";

/// A task row as SQLite returns it, before parsing.
struct RawTask {
    task_id: String,
    deal_id: String,
    task_index: i64,
    state: String,
    cause: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    assignment: Vec<u8>,
    result_digest: Option<String>,
    result_hash: Option<String>,
    result_seal: Option<String>,
    enclave_signature: Option<Vec<u8>>,
    fuel_used: Option<i64>,
    result_link: Option<String>,
}

impl RawTask {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<RawTask> {
        Ok(RawTask {
            task_id: row.get(0)?,
            deal_id: row.get(1)?,
            task_index: row.get(2)?,
            state: row.get(3)?,
            cause: row.get(4)?,
            created_at_ms: row.get(5)?,
            updated_at_ms: row.get(6)?,
            assignment: row.get(7)?,
            result_digest: row.get(8)?,
            result_hash: row.get(9)?,
            result_seal: row.get(10)?,
            enclave_signature: row.get(11)?,
            fuel_used: row.get(12)?,
            result_link: row.get(13)?,
        })
    }

    fn parse(self) -> Result<TaskRecord, StoreError> {
        Ok(TaskRecord {
            task_id: parse_text("tasks.task_id", &self.task_id)?,
            deal_id: parse_text("tasks.deal_id", &self.deal_id)?,
            task_index: to_u64("tasks.task_index", self.task_index)?,
            state: parse_text("tasks.state", &self.state)?,
            cause: parse_cause("tasks.cause", self.cause.as_deref())?,
            created_at_ms: to_u64("tasks.created_at_ms", self.created_at_ms)?,
            updated_at_ms: to_u64("tasks.updated_at_ms", self.updated_at_ms)?,
            assignment: self.assignment,
            outputs: TaskOutputs {
                result_digest: parse_opt_hex("tasks.result_digest", self.result_digest)?,
                result_hash: parse_opt_hex("tasks.result_hash", self.result_hash)?,
                result_seal: parse_opt_hex("tasks.result_seal", self.result_seal)?,
                enclave_signature: self.enclave_signature,
                fuel_used: self
                    .fuel_used
                    .map(|v| to_u64("tasks.fuel_used", v))
                    .transpose()?,
                result_link: self.result_link,
            },
        })
    }
}

fn parse_text<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| corrupt(what, e))
}

fn parse_opt_hex<T: std::str::FromStr>(
    what: &str,
    text: Option<String>,
) -> Result<Option<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.map(|t| parse_text(what, &t)).transpose()
}

fn parse_cause(what: &str, text: Option<&str>) -> Result<Option<ReplicateStatusCause>, StoreError> {
    text.map(|t| parse_text(what, t)).transpose()
}

fn get_task(conn: &Connection, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?1");
    let raw = conn
        .prepare_cached(&sql)?
        .query_row([id.to_string()], RawTask::from_row)
        .optional()?;
    raw.map(RawTask::parse).transpose()
}

fn record_transition(
    conn: &Connection,
    id: TaskId,
    state: ReplicateStatus,
    cause: Option<ReplicateStatusCause>,
    at_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO task_transitions (task_id, state, cause, at_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        id.to_string(),
        state.as_str(),
        cause.map(|c| c.as_str()),
        at_ms
    ])?;
    Ok(())
}

/// Refuses to replace a journaled contribution field with a different value.
fn check_unchanged<T: PartialEq + std::fmt::Debug>(
    task_id: TaskId,
    field: &'static str,
    existing: &Option<T>,
    proposed: &Option<T>,
) -> Result<(), StoreError> {
    match (existing, proposed) {
        (Some(old), Some(new)) if old != new => Err(StoreError::OutputConflict {
            task_id,
            field,
            existing: format!("{old:?}"),
            proposed: format!("{new:?}"),
        }),
        _ => Ok(()),
    }
}

impl Tx<'_> {
    /// Journals a new task. Idempotent: returns `false` and changes nothing if the task is already
    /// journaled (a redelivered assignment).
    ///
    /// # Errors
    /// [`StoreError::OutOfRange`] for an index or time beyond `i64::MAX`, or an SQLite error.
    pub fn insert_task(&mut self, task: &NewTask<'_>) -> Result<bool, StoreError> {
        let at_ms = to_i64("received_at_ms", task.received_at_ms)?;
        let inserted = self.inner.execute(
            "INSERT INTO tasks (task_id, deal_id, task_index, state, assignment, created_at_ms, \
             updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (task_id) DO NOTHING",
            params![
                task.task_id.to_string(),
                task.deal_id.to_string(),
                to_i64("task_index", task.task_index)?,
                task.state.as_str(),
                task.assignment,
                at_ms,
            ],
        )? == 1;
        if inserted {
            record_transition(&self.inner, task.task_id, task.state, None, at_ms)?;
        }
        Ok(inserted)
    }

    /// Moves a task to `state` with `cause` (`None` clears a previous cause), sets its
    /// `updated_at_ms` and logs the transition. The store does not judge transitions; the task
    /// state machine does.
    ///
    /// # Errors
    /// [`StoreError::TaskNotFound`] if the task is not journaled.
    pub fn set_task_state(
        &mut self,
        id: TaskId,
        state: ReplicateStatus,
        cause: Option<ReplicateStatusCause>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let at_ms = to_i64("now_ms", now_ms)?;
        let changed = self
            .inner
            .prepare_cached(
                "UPDATE tasks SET state = ?2, cause = ?3, updated_at_ms = ?4 WHERE task_id = ?1",
            )?
            .execute(params![
                id.to_string(),
                state.as_str(),
                cause.map(|c| c.as_str()),
                at_ms
            ])?;
        if changed == 0 {
            return Err(StoreError::TaskNotFound(id));
        }
        record_transition(&self.inner, id, state, cause, at_ms)
    }

    /// Records outputs of a task; fields left `None` keep their journaled value.
    ///
    /// # Errors
    /// [`StoreError::TaskNotFound`], or [`StoreError::OutputConflict`] if a contribution field
    /// already holds a different value (then nothing is written).
    pub fn set_task_outputs(
        &mut self,
        id: TaskId,
        outputs: &TaskOutputs,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let at_ms = to_i64("now_ms", now_ms)?;
        let old = get_task(&self.inner, id)?
            .ok_or(StoreError::TaskNotFound(id))?
            .outputs;
        check_unchanged(
            id,
            "result_digest",
            &old.result_digest,
            &outputs.result_digest,
        )?;
        check_unchanged(id, "result_hash", &old.result_hash, &outputs.result_hash)?;
        check_unchanged(id, "result_seal", &old.result_seal, &outputs.result_seal)?;
        check_unchanged(
            id,
            "enclave_signature",
            &old.enclave_signature,
            &outputs.enclave_signature,
        )?;
        check_unchanged(id, "fuel_used", &old.fuel_used, &outputs.fuel_used)?;
        let fuel_used = outputs
            .fuel_used
            .map(|f| to_i64("fuel_used", f))
            .transpose()?;
        self.inner.execute(
            "UPDATE tasks SET result_digest = COALESCE(?2, result_digest), \
             result_hash = COALESCE(?3, result_hash), result_seal = COALESCE(?4, result_seal), \
             enclave_signature = COALESCE(?5, enclave_signature), \
             fuel_used = COALESCE(?6, fuel_used), result_link = COALESCE(?7, result_link), \
             updated_at_ms = ?8 WHERE task_id = ?1",
            params![
                id.to_string(),
                outputs.result_digest.map(|d| d.to_string()),
                outputs.result_hash.map(|h| h.to_string()),
                outputs.result_seal.map(|s| s.to_string()),
                outputs.enclave_signature.as_deref(),
                fuel_used,
                outputs.result_link.as_deref(),
                at_ms,
            ],
        )?;
        Ok(())
    }

    /// The task as journaled so far in this transaction.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if the row does not parse.
    pub fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        get_task(&self.inner, id)
    }

    /// Keeps `bytes` as the result archive of `task_id` (replacing any), in this transaction.
    ///
    /// # Errors
    /// An SQLite error.
    pub fn put_result_archive(&mut self, task_id: TaskId, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.execute(
            "INSERT OR REPLACE INTO result_archives (task_id, bytes) VALUES (?1, ?2)",
            params![task_id.to_string(), bytes],
        )?;
        Ok(())
    }

    /// Drops the result archive of `task_id` kept in the journal, if any.
    ///
    /// # Errors
    /// An SQLite error.
    pub fn drop_result_archive(&mut self, task_id: TaskId) -> Result<(), StoreError> {
        self.inner.execute(
            "DELETE FROM result_archives WHERE task_id = ?1",
            params![task_id.to_string()],
        )?;
        Ok(())
    }

    /// Forgets tasks in a final state last updated before `before_ms`, with their transitions
    /// and kept result archives.
    /// Returns how many were removed.
    ///
    /// # Errors
    /// An SQLite error.
    pub fn delete_final_tasks(&mut self, before_ms: u64) -> Result<u64, StoreError> {
        let finals = TaskFilter::Final.states();
        let placeholders = vec!["?"; finals.len()].join(", ");
        let sql =
            format!("DELETE FROM tasks WHERE updated_at_ms < ? AND state IN ({placeholders})");
        let mut values: Vec<rusqlite::types::Value> = vec![to_i64("before_ms", before_ms)?.into()];
        values.extend(finals.iter().map(|s| (*s).to_owned().into()));
        let removed = self.inner.execute(&sql, params_from_iter(values))?;
        Ok(removed as u64)
    }
}

impl Store {
    /// [`Tx::insert_task`] in a transaction of its own.
    ///
    /// # Errors
    /// As [`Tx::insert_task`].
    pub fn insert_task(&mut self, task: &NewTask<'_>) -> Result<bool, StoreError> {
        self.transaction(|tx| tx.insert_task(task))
    }

    /// [`Tx::set_task_state`] in a transaction of its own.
    ///
    /// # Errors
    /// As [`Tx::set_task_state`].
    pub fn set_task_state(
        &mut self,
        id: TaskId,
        state: ReplicateStatus,
        cause: Option<ReplicateStatusCause>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.transaction(|tx| tx.set_task_state(id, state, cause, now_ms))
    }

    /// One task.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if its row does not parse.
    pub fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        get_task(&self.conn, id)
    }

    /// The result archive of `task_id` kept in the journal ([`Tx::put_result_archive`]), if any.
    ///
    /// # Errors
    /// An SQLite error.
    pub fn result_archive(&self, task_id: TaskId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT bytes FROM result_archives WHERE task_id = ?1",
                params![task_id.to_string()],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// The tasks `filter` selects, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if a row does not parse.
    pub fn tasks(&self, filter: TaskFilter) -> Result<Vec<TaskRecord>, StoreError> {
        // `All` has no condition, so that a row with an unknown state is reported as corrupt
        // rather than silently left out.
        let states = match filter {
            TaskFilter::All => Vec::new(),
            _ => filter.states(),
        };
        let condition = match filter {
            TaskFilter::All => "1".to_owned(),
            _ => format!("state IN ({})", vec!["?"; states.len()].join(", ")),
        };
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE {condition} ORDER BY created_at_ms, task_id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let raws = stmt
            .query_map(params_from_iter(states), RawTask::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter().map(RawTask::parse).collect()
    }

    /// How many tasks are in each state (states with no task are left out).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if a state name is unknown.
    pub fn counts_by_state(&self) -> Result<BTreeMap<ReplicateStatus, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM tasks GROUP BY state")?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(state, count)| {
                Ok((
                    parse_text("tasks.state", &state)?,
                    to_u64("tasks count", count)?,
                ))
            })
            .collect()
    }

    /// The states a task went through, oldest first (the first is its state at insertion).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if a row does not parse.
    pub fn transitions(&self, id: TaskId) -> Result<Vec<Transition>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT state, cause, at_ms FROM task_transitions WHERE task_id = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([id.to_string()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(state, cause, at_ms)| {
                Ok(Transition {
                    state: parse_text("task_transitions.state", &state)?,
                    cause: parse_cause("task_transitions.cause", cause.as_deref())?,
                    at_ms: to_u64("task_transitions.at_ms", at_ms)?,
                })
            })
            .collect()
    }
}
