//! What a [`Pool`](super::Pool) is started with: [`PoolOptions`] (the required parts in
//! [`PoolOptions::new`], the optional ones by chainable setters) and [`Acks`].

use std::path::PathBuf;
use std::sync::mpsc::Sender;

use edgepool_protocol::primitives::Address;
use edgepool_protocol::signature::Signer;

use crate::hooks::PocoHooks;
use crate::pool::PoolSettings;
use crate::sms::Sms;
use crate::store::StoreHandle;

/// When a durable pool acknowledges the publications it receives (see the
/// [module documentation](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// On receipt, before the pool handled them (rumqttc's automatic acks).
    #[default]
    OnReceipt,
    /// Once the loop turn that handled them is committed to the journal (durable pools only):
    /// nothing the broker delivered is lost by a hard crash.
    AfterCommit,
}

/// Everything [`Pool::start`](super::Pool::start) needs besides the broker URL.
///
/// ```no_run
/// # use edgepool_simulator::service::{Acks, Pool, PoolOptions};
/// # fn start(
/// #     broker_url: &str,
/// #     pool: edgepool_protocol::primitives::Address,
/// #     signer: edgepool_protocol::signature::Signer,
/// #     store: edgepool_simulator::store::StoreHandle,
/// #     journal: &std::path::Path,
/// # ) -> Result<Pool, edgepool_simulator::service::ServiceError> {
/// let options = PoolOptions::new(pool, signer, Box::new(edgepool_simulator::hooks::NoLedger), store)
///     .with_journal(journal)
///     .with_acks(Acks::AfterCommit);
/// Pool::start(broker_url, options)
/// # }
/// ```
pub struct PoolOptions {
    /// The workerpool address: the pool's topics are under it.
    pub pool: Address,
    /// The scheduler's key: it seals every message the pool sends (agents trust its address).
    pub signer: Signer,
    /// The core's settings (default: [`PoolSettings::default`]).
    pub settings: PoolSettings,
    /// Where the ledger sees contributions, reveals and finalizations.
    pub hooks: Box<dyn PocoHooks>,
    /// The store, to allow uploads and read results.
    pub store: StoreHandle,
    /// Where the pool's progress lines go (default: nowhere).
    pub progress: Option<Sender<String>>,
    /// The SMS and the workerpool's registry address (which dataset orders restrict to), so
    /// that TEE deals can run (default: none; a TEE deal then cannot be served).
    pub sms: Option<(Sms, Address)>,
    /// The pool's journal (SQLite, created if missing; default: none). With one, the pool is
    /// restart-safe: its state is restored from the file first, each worker with an open
    /// replica is told again what to do next, every loop turn commits before it publishes, and
    /// the MQTT session is persistent (fixed client id from the scheduler's address), so the
    /// broker holds what workers publish while the pool is down. Without one the session is
    /// clean.
    pub journal: Option<PathBuf>,
    /// When publications are acknowledged (default: [`Acks::OnReceipt`]). Only a journaled
    /// pool can wait for its commit: without a journal acks are on receipt whatever this says.
    pub acks: Acks,
}

impl PoolOptions {
    /// A pool `pool` scheduled with `signer`, reporting to the ledger through `hooks` and
    /// allowing uploads to `store`; no progress lines, no SMS, no journal, default settings,
    /// acks on receipt.
    pub fn new(
        pool: Address,
        signer: Signer,
        hooks: Box<dyn PocoHooks>,
        store: StoreHandle,
    ) -> Self {
        Self {
            pool,
            signer,
            settings: PoolSettings::default(),
            hooks,
            store,
            progress: None,
            sms: None,
            journal: None,
            acks: Acks::default(),
        }
    }

    /// Sets [`PoolOptions::settings`].
    #[must_use]
    pub fn with_settings(mut self, settings: PoolSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Sets [`PoolOptions::progress`].
    #[must_use]
    pub fn with_progress(mut self, progress: Sender<String>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Sets [`PoolOptions::sms`]: `sms` answers for the workerpool `workerpool`.
    #[must_use]
    pub fn with_sms(mut self, sms: Sms, workerpool: Address) -> Self {
        self.sms = Some((sms, workerpool));
        self
    }

    /// Sets [`PoolOptions::journal`].
    #[must_use]
    pub fn with_journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(path.into());
        self
    }

    /// Sets [`PoolOptions::acks`].
    #[must_use]
    pub fn with_acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }
}

impl std::fmt::Debug for PoolOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolOptions")
            .field("pool", &self.pool)
            .field("signer", &self.signer)
            .field("settings", &self.settings)
            .field("store", &self.store)
            .field("progress", &self.progress.is_some())
            .field("sms", &self.sms)
            .field("journal", &self.journal)
            .field("acks", &self.acks)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::NoLedger;
    use crate::store::Store;

    fn options(store: &Store) -> PoolOptions {
        PoolOptions::new(
            Address([7; 20]),
            Signer::random(&mut rand::thread_rng()),
            Box::new(NoLedger),
            store.handle(),
        )
    }

    #[test]
    fn new_options_describe_a_plain_pool_with_default_settings() {
        let store = Store::start().expect("store");
        let options = options(&store);
        assert_eq!(options.pool, Address([7; 20]));
        assert!(options.progress.is_none());
        assert!(options.sms.is_none());
        assert!(options.journal.is_none());
        assert_eq!(options.acks, Acks::OnReceipt);
        assert_eq!(
            options.settings.heartbeat_limit_ms,
            PoolSettings::default().heartbeat_limit_ms
        );
    }

    #[test]
    fn setters_fill_the_optional_parts() {
        let store = Store::start().expect("store");
        let (tx, rx) = std::sync::mpsc::channel();
        let workerpool = Address([9; 20]);
        let sms = Sms::new(
            Address([1; 20]),
            edgepool_attestation::policy::Policy::simulator(),
        );
        let options = options(&store)
            .with_settings(PoolSettings {
                heartbeat_limit_ms: 123,
            })
            .with_progress(tx)
            .with_sms(sms, workerpool)
            .with_journal("state/pool.sqlite")
            .with_acks(Acks::AfterCommit);
        assert_eq!(options.settings.heartbeat_limit_ms, 123);
        assert_eq!(options.sms.as_ref().map(|(_, w)| *w), Some(workerpool));
        assert_eq!(
            options.journal.as_deref(),
            Some(std::path::Path::new("state/pool.sqlite"))
        );
        assert_eq!(options.acks, Acks::AfterCommit);
        options
            .progress
            .as_ref()
            .expect("progress")
            .send("line".into())
            .expect("send");
        assert_eq!(rx.recv().expect("recv"), "line");
        // Debug never shows the scheduler's key.
        assert!(format!("{options:?}").contains("key redacted"));
    }
}
