//! [`StoreError`]: what can go wrong with the journal, one variant per outcome a caller handles.

use std::path::PathBuf;

use edgepool_protocol::primitives::TaskId;
use rusqlite::ErrorCode;

/// An error of the journal.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory or the journal file could not be created or opened.
    #[error("cannot open the journal {path}: {reason}")]
    Open {
        /// The journal file (or the state directory).
        path: PathBuf,
        /// What the operating system or SQLite said.
        reason: String,
    },
    /// A read-only open found no journal (the daemon never ran with this state directory).
    #[error("no journal at {path}")]
    NoJournal {
        /// Where the journal was expected.
        path: PathBuf,
    },
    /// The file exists but is not an SQLite database.
    #[error("expected an SQLite journal at {path}, found a file that is not a database")]
    NotADatabase {
        /// The journal file.
        path: PathBuf,
    },
    /// A numbered migration failed; the journal stays at the version before it.
    #[error("journal migration {version} failed: {reason}")]
    Migration {
        /// The migration that failed.
        version: u32,
        /// What SQLite said.
        reason: String,
    },
    /// The journal was written by a newer agent; this one refuses to touch it.
    #[error(
        "journal schema version {found} is newer than this agent supports (at most {supported})"
    )]
    NewerSchema {
        /// `PRAGMA user_version` of the file.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// A read-only open found a journal older than this build; it needs the daemon to migrate it.
    #[error("journal schema version {found} is older than this agent's {expected}: start the daemon once to migrate it")]
    OlderSchema {
        /// `PRAGMA user_version` of the file.
        found: u32,
        /// The version this build writes.
        expected: u32,
    },
    /// The state directory is full, read-only or failing: nothing more can be journaled.
    #[error("the journal cannot be written: {0}")]
    Unavailable(String),
    /// Another connection held a lock longer than the busy timeout.
    #[error("the journal stayed locked by another connection: {0}")]
    Busy(String),
    /// A value read back from the journal is not what this build writes (or SQLite found the file
    /// damaged).
    #[error("corrupt journal {what}: {reason}")]
    Corrupt {
        /// What was read (a table and column, or the file).
        what: String,
        /// What was wrong with it.
        reason: String,
    },
    /// No task with this id is journaled.
    #[error("no task {0} in the journal")]
    TaskNotFound(TaskId),
    /// An output of a task was already journaled with a different value; outputs are written
    /// once so that a task never yields two different contributions.
    #[error("task {task_id} already has {field} {existing}, refusing {proposed}")]
    OutputConflict {
        /// The task.
        task_id: TaskId,
        /// The column.
        field: &'static str,
        /// The journaled value.
        existing: String,
        /// The refused value.
        proposed: String,
    },
    /// A number does not fit SQLite's signed 64-bit integers.
    #[error("{what} {value} is out of range (at most {max})", max = i64::MAX)]
    OutOfRange {
        /// What the number is.
        what: &'static str,
        /// The number.
        value: u64,
    },
    /// A path is not valid UTF-8 and cannot be journaled as text.
    #[error("expected a UTF-8 path, found {0:?}")]
    NonUtf8Path(PathBuf),
    /// Any other SQLite error (a bug of this module rather than of the environment).
    #[error("sqlite: {0}")]
    Sqlite(String),
}

/// The `what` of a [`StoreError::Corrupt`] about the whole file, before the path is known.
pub(crate) const FILE: &str = "file";

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(ErrorCode::DiskFull | ErrorCode::ReadOnly | ErrorCode::SystemIoFailure)
            | Some(ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
                StoreError::Unavailable(err.to_string())
            }
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Busy(err.to_string())
            }
            // The path is filled in by `Store::open`, which knows it.
            Some(ErrorCode::NotADatabase) => StoreError::NotADatabase {
                path: PathBuf::new(),
            },
            Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                what: FILE.to_owned(),
                reason: err.to_string(),
            },
            _ => StoreError::Sqlite(err.to_string()),
        }
    }
}

/// Converts a number we journal into SQLite's integer type.
pub(crate) fn to_i64(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

/// Converts an integer read back from the journal; a negative one means the file was edited.
pub(crate) fn to_u64(what: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        what: what.to_owned(),
        reason: format!("expected a non-negative integer, found {value}"),
    })
}

/// A [`StoreError::Corrupt`] for a value that does not parse.
pub(crate) fn corrupt(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}
