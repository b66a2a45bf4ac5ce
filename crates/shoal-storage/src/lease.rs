//! In-process leases: who is reading, writing or removing each blob. GC and
//! `remove_blob` take a removal lease, which is refused while any reader or
//! writer lives, and readers and writers are refused while a removal runs,
//! so neither deletes a blob under a live handle. The one exception takes
//! no lease: `condemn` drops a damaged complete blob's name and records
//! under its readers, which keep their open file (see `condemn.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use shoal_core::Digest;

/// Lease counts per digest; entries vanish when the last lease drops.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    map: Mutex<HashMap<Digest, Entry>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    readers: usize,
    writer: bool,
    removing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Remove,
}

/// A held lease; dropping it releases it.
#[derive(Debug)]
pub(crate) struct Lease {
    table: Arc<LeaseTable>,
    digest: Digest,
    kind: Kind,
}

impl LeaseTable {
    /// The counters hold no invariant a panic could break halfway, so a
    /// poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Entry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read lease; `None` while the blob is being removed.
    pub(crate) fn read(self: &Arc<Self>, d: &Digest) -> Option<Lease> {
        let mut map = self.lock();
        let e = map.entry(d.clone()).or_default();
        if e.removing {
            return None;
        }
        e.readers += 1;
        Some(self.lease(d, Kind::Read))
    }

    /// The write lease; `None` if another writer or a removal holds the blob.
    pub(crate) fn write(self: &Arc<Self>, d: &Digest) -> Option<Lease> {
        let mut map = self.lock();
        let e = map.entry(d.clone()).or_default();
        if e.writer || e.removing {
            return None;
        }
        e.writer = true;
        Some(self.lease(d, Kind::Write))
    }

    /// The removal lease; `None` while any other lease is held.
    pub(crate) fn remove(self: &Arc<Self>, d: &Digest) -> Option<Lease> {
        let mut map = self.lock();
        let e = map.entry(d.clone()).or_default();
        if e.readers > 0 || e.writer || e.removing {
            return None;
        }
        e.removing = true;
        Some(self.lease(d, Kind::Remove))
    }

    /// Whether any reader or writer holds `d` now.
    pub(crate) fn in_use(&self, d: &Digest) -> bool {
        self.lock().get(d).is_some_and(|e| e.readers > 0 || e.writer)
    }

    fn lease(self: &Arc<Self>, d: &Digest, kind: Kind) -> Lease {
        Lease { table: Arc::clone(self), digest: d.clone(), kind }
    }
}

impl Lease {
    /// Another read lease on the same blob, granted without checks: a held
    /// read or write lease already excludes removal.
    pub(crate) fn share_read(&self) -> Lease {
        let mut map = self.table.lock();
        map.entry(self.digest.clone()).or_default().readers += 1;
        self.table.lease(&self.digest, Kind::Read)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut map = self.table.lock();
        let Some(e) = map.get_mut(&self.digest) else {
            return;
        };
        match self.kind {
            Kind::Read => e.readers -= 1,
            Kind::Write => e.writer = false,
            Kind::Remove => e.removing = false,
        }
        if e.readers == 0 && !e.writer && !e.removing {
            map.remove(&self.digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_excludes_readers_and_writers() {
        let t = Arc::new(LeaseTable::default());
        let d = Digest::sha256_of(b"a");
        let r = t.read(&d).unwrap();
        assert!(t.in_use(&d));
        assert!(t.remove(&d).is_none());
        drop(r);
        assert!(!t.in_use(&d));
        let w = t.write(&d).unwrap();
        assert!(t.write(&d).is_none(), "one writer at a time");
        assert!(t.read(&d).is_some(), "a writer allows readers");
        assert!(t.remove(&d).is_none());
        drop(w);
        let rm = t.remove(&d).unwrap();
        assert!(t.read(&d).is_none());
        assert!(t.write(&d).is_none());
        drop(rm);
        assert!(t.lock().is_empty(), "no entry outlives its leases");
    }
}
