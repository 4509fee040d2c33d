#![allow(clippy::unwrap_used)]

use rusqlite::Connection;

use crate::store::{Store, StoreError, JOURNAL_FILE, SCHEMA_VERSION};

#[test]
fn opening_an_empty_directory_creates_and_migrates_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state").join("nested");
    let store = Store::open(&state_dir).unwrap();
    assert_eq!(store.path(), state_dir.join(JOURNAL_FILE));
    assert!(store.path().is_file());
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert_eq!(store.last_own_seq().unwrap(), 0);
    assert!(store.counts_by_state().unwrap().is_empty());
}

#[cfg(unix)]
#[test]
fn a_created_state_directory_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    Store::open(&state_dir).unwrap();
    let mode = std::fs::metadata(&state_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn the_schema_version_is_written_to_user_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn the_journal_runs_in_wal_mode_with_full_sync_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.journal_mode().unwrap(), "wal");
    let synchronous: i64 = store
        .conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .unwrap();
    assert_eq!(synchronous, 2, "synchronous=FULL");
    let foreign_keys: i64 = store
        .conn
        .pragma_query_value(None, "foreign_keys", |row| row.get(0))
        .unwrap();
    assert_eq!(foreign_keys, 1);
}

#[test]
fn reopening_an_up_to_date_journal_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.meta_set("started_at", b"123").unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.meta_get("started_at").unwrap().unwrap(), b"123");
    assert_eq!(store.meta_get("absent").unwrap(), None);
}

#[test]
fn a_journal_from_a_newer_agent_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let path = dir.path().join(JOURNAL_FILE);
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);

    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    let err = Store::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");

    let conn = Connection::open(&path).unwrap();
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION + 1);
}

#[test]
fn a_file_that_is_not_sqlite_gives_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();

    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::NotADatabase { path: p } if *p == path),
        "{err:?}"
    );
    let err = Store::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(&err, StoreError::NotADatabase { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "file left as it was"
    );
}

#[test]
fn a_read_only_open_without_a_journal_says_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NoJournal { .. }), "{err}");
    assert!(!dir.path().join(JOURNAL_FILE).exists());
}

#[test]
fn a_read_only_open_of_an_unversioned_file_says_there_is_no_journal() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 0;")
        .unwrap();
    drop(conn);
    let err = Store::open_read_only(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NoJournal { .. }), "{err}");
}

#[test]
fn a_reader_sees_the_writers_commits_while_the_writer_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Store::open(dir.path()).unwrap();
    writer.enqueue("t/1", b"one", false, 1).unwrap();

    let reader = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.outbox_len().unwrap(), 1);

    // A write transaction in progress does not block the reader, which sees the last commit.
    writer
        .transaction(|tx| {
            tx.enqueue("t/2", b"two", false, 2)?;
            assert_eq!(reader.outbox_len().unwrap(), 1);
            Ok(())
        })
        .unwrap();
    assert_eq!(reader.outbox_len().unwrap(), 2);
    assert_eq!(reader.journal_mode().unwrap(), "wal");
}

#[test]
fn writes_through_a_read_only_handle_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _writer = Store::open(dir.path()).unwrap();
    let mut reader = Store::open_read_only(dir.path()).unwrap();
    let err = reader.enqueue("t", b"x", false, 1).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = reader.meta_set("k", b"v").unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}
