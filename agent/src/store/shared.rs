//! The journal shared between the daemon's event loop and its task jobs.

use std::sync::{Arc, Mutex, MutexGuard};

use super::Store;

/// A [`Store`] behind a mutex, cheap to clone. Calls are short (one transaction), so a blocking
/// mutex is right even from async code; a job that panicked while holding it does not make the
/// journal unusable (SQLite rolled the transaction back), so poisoning is ignored.
#[derive(Debug, Clone)]
pub struct SharedStore(Arc<Mutex<Store>>);

impl SharedStore {
    /// Shares `store`.
    pub fn new(store: Store) -> Self {
        Self(Arc::new(Mutex::new(store)))
    }

    /// Locks the journal.
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The mutex itself, which is the fetcher's cache index.
    pub fn index(&self) -> &Mutex<Store> {
        &self.0
    }
}
