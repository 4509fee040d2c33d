#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use edgepool_protocol::primitives::Digest;

use crate::store::{Store, StoreError};

fn digest(byte: u8) -> Digest {
    Digest::from([byte; 32])
}

fn path(byte: u8) -> PathBuf {
    PathBuf::from(format!("/var/lib/edgepool/cache/{byte:02x}"))
}

#[test]
fn eviction_removes_least_recently_used_entries_until_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // Same timestamp for every use: recency must not depend on the clock.
    for byte in 1..=4 {
        store
            .cache_put(digest(byte), 100, &path(byte), 1000)
            .unwrap();
    }
    assert_eq!(store.cache_total_bytes().unwrap(), 400);
    // Use 1 and 3: the order from least to most recent becomes 2, 4, 1, 3.
    assert!(store.cache_get(digest(1), 1000).unwrap().is_some());
    let hit = store.cache_get(digest(3), 2000).unwrap().unwrap();
    assert_eq!(hit.path, path(3));
    assert_eq!(hit.size_bytes, 100);
    assert_eq!((hit.created_at_ms, hit.last_used_ms), (1000, 2000));
    assert_eq!(store.cache_get(digest(9), 2000).unwrap(), None);

    assert!(store.cache_evict_lru(400).unwrap().is_empty());
    let evicted = store.cache_evict_lru(250).unwrap();
    let evicted: Vec<Digest> = evicted.into_iter().map(|e| e.digest).collect();
    assert_eq!(evicted, [digest(2), digest(4)]);
    assert_eq!(store.cache_total_bytes().unwrap(), 200);
    let left: Vec<Digest> = store
        .cache_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.digest)
        .collect();
    assert_eq!(left, [digest(1), digest(3)]);

    let evicted = store.cache_evict_lru(0).unwrap();
    assert_eq!(evicted.len(), 2);
    assert_eq!(evicted[0].path, path(1));
    assert_eq!(store.cache_total_bytes().unwrap(), 0);
}

#[test]
fn putting_an_existing_digest_refreshes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.cache_put(digest(1), 10, &path(1), 1).unwrap();
    store.cache_put(digest(2), 10, &path(2), 2).unwrap();
    store.cache_put(digest(1), 30, &path(7), 3).unwrap();
    assert_eq!(store.cache_total_bytes().unwrap(), 40);
    let evicted = store.cache_evict_lru(30).unwrap();
    assert_eq!(evicted.len(), 1);
    assert_eq!(evicted[0].digest, digest(2));
    let kept = &store.cache_entries().unwrap()[0];
    assert_eq!((kept.path.clone(), kept.created_at_ms), (path(7), 1));
    assert!(store.cache_remove(digest(1)).unwrap());
    assert!(!store.cache_remove(digest(1)).unwrap());
}

#[test]
fn the_cache_index_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.cache_put(digest(1), 10, &path(1), 1).unwrap();
    store.cache_put(digest(2), 20, &path(2), 2).unwrap();
    store.cache_get(digest(1), 3).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.cache_total_bytes().unwrap(), 30);
    assert_eq!(store.cache_evict_lru(10).unwrap()[0].digest, digest(2));
}

#[cfg(unix)]
#[test]
fn a_non_utf8_path_is_refused() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bad = PathBuf::from(OsStr::from_bytes(b"/tmp/\xff"));
    let err = store.cache_put(digest(1), 1, &bad, 1).unwrap_err();
    assert!(matches!(err, StoreError::NonUtf8Path(_)), "{err}");
}
