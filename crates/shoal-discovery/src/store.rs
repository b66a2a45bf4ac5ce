//! [`BoundedStore`]: Kademlia's memory store, counted and swept.
//!
//! libp2p's `MemoryStore` bounds the keys it holds and the providers per
//! key, but drops an expired provider record only when someone asks for
//! that key, so a node that stored `max_stored_keys` keys once would refuse
//! every new key for good. This wrapper sweeps expired records on the
//! driver's period and before refusing a new key, and counts the keys it
//! holds so the bound can be observed ([`crate::DiscoveryStats`]).

use std::borrow::Cow;
use std::collections::HashSet;

use libp2p::PeerId;
use libp2p::kad::store::{self, MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use tokio::time::Instant;

/// Kademlia's record store with a sweep for expired providers.
pub(crate) struct BoundedStore {
    inner: MemoryStore,
    max_keys: usize,
    keys: HashSet<RecordKey>,
    /// The driver's clock at its last tick, for sweeps from `add_provider`.
    now: Option<Instant>,
}

impl BoundedStore {
    pub(crate) fn new(local: PeerId, config: MemoryStoreConfig) -> BoundedStore {
        let max_keys = config.max_provided_keys;
        BoundedStore { inner: MemoryStore::with_config(local, config), max_keys, keys: HashSet::new(), now: None }
    }

    /// Keys with at least one provider record, this node's own included.
    pub(crate) fn stored_keys(&self) -> usize {
        self.keys.len()
    }

    /// Drops every expired provider record (the driver calls this on its
    /// period with its clock; kad stamps records with the std clock, which
    /// `into_std` gives without a second clock in this crate).
    pub(crate) fn sweep(&mut self, now: Instant) {
        self.now = Some(now);
        let std_now = now.into_std();
        let keys: Vec<RecordKey> = self.keys.iter().cloned().collect();
        for key in keys {
            for p in self.inner.providers(&key) {
                if p.is_expired(std_now) {
                    self.remove_provider(&key, &p.provider);
                }
            }
        }
    }
}

impl RecordStore for BoundedStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.inner.get(k)
    }

    fn put(&mut self, r: Record) -> store::Result<()> {
        self.inner.put(r)
    }

    fn remove(&mut self, k: &RecordKey) {
        self.inner.remove(k)
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.inner.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        if !self.keys.contains(&record.key)
            && self.keys.len() >= self.max_keys
            && let Some(now) = self.now
        {
            self.sweep(now);
        }
        let key = record.key.clone();
        self.inner.add_provider(record)?;
        self.keys.insert(key);
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.inner.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        self.inner.remove_provider(k, p);
        if self.inner.providers(k).is_empty() {
            self.keys.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(key: &[u8], expires_in: Option<Duration>, now: Instant) -> ProviderRecord {
        let mut r = ProviderRecord::new(RecordKey::new(&key), PeerId::random(), Vec::new());
        r.expires = expires_in.map(|d| (now + d).into_std());
        r
    }

    #[test]
    fn expired_keys_are_swept_and_make_room() {
        let t0 = Instant::now();
        let config = MemoryStoreConfig { max_provided_keys: 2, ..MemoryStoreConfig::default() };
        let mut store = BoundedStore::new(PeerId::random(), config);
        store.add_provider(record(b"old", Some(Duration::from_secs(60)), t0)).unwrap();
        store.add_provider(record(b"kept", None, t0)).unwrap();
        assert_eq!(store.stored_keys(), 2);
        // Full: a third key is refused while nothing has expired.
        store.sweep(t0 + Duration::from_secs(59));
        assert!(store.add_provider(record(b"new", None, t0)).is_err());
        assert_eq!(store.stored_keys(), 2);
        // Once "old" has expired, the sweep drops it and a new key fits.
        store.sweep(t0 + Duration::from_secs(61));
        assert_eq!(store.stored_keys(), 1);
        store.add_provider(record(b"new", None, t0)).unwrap();
        assert_eq!(store.stored_keys(), 2);
        assert!(store.providers(&RecordKey::new(&b"old")).is_empty());
    }
}
