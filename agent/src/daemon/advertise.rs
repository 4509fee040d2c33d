//! The capacity advertisement: detected at start and every minute, sealed (signed, with a sequence
//! number) only when it changed, and kept in the journal so a restart with the same capacity
//! re-publishes the same bytes.
//!
//! The sandbox benchmark (fuel per second) takes tens of milliseconds, so it does not delay
//! READY: the advertisement starts with the figure measured at the previous start (kept in the
//! journal; 0 on the very first start), and the daemon measures again in the background and
//! republishes only when the figure moved by more than [`FUEL_CHANGE_PERCENT`].

use edgepool_protocol::envelope::Envelope;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{CapacityAdvertisement, Message, TeeKind};
use edgepool_protocol::primitives::Address;
use edgepool_protocol::signature::Signer;
use edgepool_protocol::tags::Tag;

use super::{now_ms, DaemonError};
use crate::capacity::{self, DetectOptions, Detected};
use crate::config::Config;
use crate::store::{Store, StoreError};

const META_HASH: &str = "capacity.hash";
const META_FUEL: &str = "capacity.fuel_per_second";

/// A new benchmark figure within this many percent of the advertised one is not republished.
pub const FUEL_CHANGE_PERCENT: u64 = 10;
const META_ENVELOPE: &str = "capacity.envelope";

/// Holds the detected capacity and its sealed advertisement.
#[derive(Debug)]
pub struct Advertiser {
    worker: Address,
    detected: Detected,
    /// The kind and measurement the self-attestation proved, if it did.
    tee: Option<(TeeKind, Vec<u8>)>,
    fuel_per_second: u64,
    current: CapacityAdvertisement,
    sealed: Vec<u8>,
}

impl Advertiser {
    /// Detects the capacity; the benchmark figure is the one kept in the journal.
    ///
    /// # Errors
    /// [`DaemonError::Capacity`], [`DaemonError::Store`].
    pub fn detect(config: &Config, worker: Address, store: &Store) -> Result<Self, DaemonError> {
        let detected = capacity::detect(&detect_options(config))
            .map_err(|e| DaemonError::Capacity(e.to_string()))?;
        let fuel_per_second = store
            .meta_get(META_FUEL)?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        tracing::info!(
            cpu = %detected.cpu.model,
            threads = detected.cpu.threads,
            ram_bytes = detected.ram_bytes,
            gpus = detected.gpus.len(),
            fuel_per_second,
            "capacity detected"
        );
        let current = detected.advertisement(
            worker,
            config.agent.slots,
            config.limits.to_task_limits(),
            fuel_per_second,
        );
        Ok(Self {
            worker,
            detected,
            tee: None,
            fuel_per_second,
            current,
            sealed: Vec::new(),
        })
    }

    /// Detects again (the benchmark figure is kept: it is measured once per start).
    ///
    /// # Errors
    /// [`DaemonError::Capacity`].
    pub fn redetect(&mut self, config: &Config) -> Result<(), DaemonError> {
        self.detected = capacity::detect(&detect_options(config))
            .map_err(|e| DaemonError::Capacity(e.to_string()))?;
        self.current = self.detected.advertisement(
            self.worker,
            config.agent.slots,
            config.limits.to_task_limits(),
            self.fuel_per_second,
        );
        self.apply_tee();
        Ok(())
    }

    /// Claims `tee` (and the framework tag of `kind`), the kind and the measurement: only after
    /// a successful self-attestation ([`crate::attest::self_attest`]).
    pub fn set_tee(&mut self, kind: TeeKind, measurement: Vec<u8>) {
        self.tee = Some((kind, measurement));
        self.apply_tee();
    }

    fn apply_tee(&mut self) {
        let Some((kind, measurement)) = &self.tee else {
            return;
        };
        self.current.tee = Some(*kind);
        self.current.tee_measurement = measurement.clone();
        if let Ok(tags) = Tag::encode(crate::attest::tee_tags(*kind)) {
            self.current.tags = self.current.tags.union(tags);
        }
    }

    /// Takes a new benchmark figure; returns whether the advertisement changed (the figure moved
    /// by more than [`FUEL_CHANGE_PERCENT`], or there was none).
    ///
    /// # Errors
    /// [`DaemonError::Store`].
    pub fn update_fuel(&mut self, store: &mut Store, measured: u64) -> Result<bool, DaemonError> {
        let old = self.fuel_per_second;
        let moved = old == 0 || measured.abs_diff(old) * 100 > old * FUEL_CHANGE_PERCENT;
        if !moved {
            return Ok(false);
        }
        store.transaction(|tx| tx.meta_set(META_FUEL, &measured.to_be_bytes()))?;
        self.fuel_per_second = measured;
        self.current.fuel_per_second = measured;
        Ok(true)
    }

    /// The advertisement for the current detection.
    pub fn advertisement(&self) -> &CapacityAdvertisement {
        &self.current
    }

    /// Free disk of the state directory, as last detected.
    pub fn disk_free_bytes(&self) -> u64 {
        self.detected.disk_free_bytes
    }

    /// The sealed advertisement to publish.
    pub fn sealed(&self) -> &[u8] {
        &self.sealed
    }

    /// Seals the advertisement with a new sequence number if it differs from the last one sealed
    /// (kept in the journal), else reuses the stored bytes. Returns whether it changed.
    ///
    /// # Errors
    /// [`DaemonError::Store`].
    pub fn seal_if_changed(
        &mut self,
        store: &mut Store,
        signer: &Signer,
        topic: &str,
    ) -> Result<bool, DaemonError> {
        let advertisement = self.current.clone();
        let text = serde_json::to_vec(&advertisement).map_err(|e| DaemonError::Seal {
            kind: "capacity",
            reason: e.to_string(),
        })?;
        let hash = sha256(&text);
        if store.meta_get(META_HASH)?.as_deref() == Some(hash.as_bytes().as_slice()) {
            if let Some(bytes) = store.meta_get(META_ENVELOPE)? {
                self.sealed = bytes;
                return Ok(false);
            }
        }
        let now = now_ms();
        let sealed = store.transaction(|tx| {
            let seq = tx.next_own_seq()?;
            let bytes = Envelope::seal(signer, topic, seq, now, &Message::Capacity(advertisement))
                .map_err(|e| StoreError::Corrupt {
                    what: "capacity advertisement".into(),
                    reason: e.to_string(),
                })?;
            tx.meta_set(META_HASH, hash.as_bytes())?;
            tx.meta_set(META_ENVELOPE, &bytes)?;
            Ok(bytes)
        })?;
        self.sealed = sealed;
        Ok(true)
    }
}

impl Advertiser {
    /// Seals the advertisement with a number from [`Store::unjournaled_seq`], for a journal that
    /// cannot be written; [`Advertiser::seal_if_changed`] journals it once it can.
    ///
    /// # Errors
    /// [`DaemonError::Store`] if the journal cannot be read, [`DaemonError::Seal`].
    pub fn seal_unjournaled(
        &mut self,
        store: &mut Store,
        signer: &Signer,
        topic: &str,
    ) -> Result<(), DaemonError> {
        let seq = store.unjournaled_seq()?;
        self.sealed = Envelope::seal(
            signer,
            topic,
            seq,
            now_ms(),
            &Message::Capacity(self.current.clone()),
        )
        .map_err(|e| DaemonError::Seal {
            kind: "capacity",
            reason: e.to_string(),
        })?;
        Ok(())
    }
}

fn detect_options(config: &Config) -> DetectOptions {
    DetectOptions {
        system_root: config.agent.system_root.clone(),
        state_dir: config.agent.state_dir.clone(),
        operator_tags: config.agent.tags.clone(),
        attestation: config.agent.attestation,
    }
}
