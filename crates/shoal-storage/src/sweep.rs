//! [`Store::gc`]: gathers GC candidates from the database and the lease
//! table, asks the pure [`gc::plan`](crate::gc::plan) what to evict, and
//! applies it. Manifests not accessed within `max_age` are dropped first.

use std::time::SystemTime;

use crate::error::StoreError;
use crate::gc::{GcCandidate, plan};
use crate::info::GcReport;
use crate::records::from_ms;
use crate::store::{Evicted, Store};

impl Store {
    /// Runs one GC pass as of `now`.
    ///
    /// A blob that gains a reader or writer between planning and eviction
    /// is skipped, so a live handle never loses its blob.
    pub fn gc(&self, now: SystemTime) -> Result<GcReport, StoreError> {
        let policy = self.inner.cfg.gc_policy();
        let expired = |ms| now.duration_since(from_ms(ms)).is_ok_and(|age| age > policy.max_age);
        let db = &self.inner.db;
        let mut report = GcReport::default();

        let mut manifest_bytes = 0;
        for (d, meta) in db.manifest_metas()? {
            if expired(meta.last_access_ms) {
                report.freed_bytes += meta.size;
                report.expired_manifests.push(d);
            } else {
                manifest_bytes += meta.size;
            }
        }
        if !report.expired_manifests.is_empty() {
            db.remove_manifests(&report.expired_manifests)?;
        }

        let candidates: Vec<GcCandidate> = db
            .blobs()?
            .into_iter()
            .map(|(d, meta)| GcCandidate {
                in_use: self.inner.leases.in_use(&d),
                digest: d,
                size: meta.size,
                last_access: from_ms(meta.last_access_ms),
                complete: meta.complete,
            })
            .collect();
        let used = manifest_bytes + candidates.iter().map(|c| c.size).sum::<u64>();
        for d in plan(&candidates, used, &policy, now) {
            match self.evict(&d)? {
                Evicted::Freed(size) => {
                    report.freed_bytes += size;
                    report.evicted.push(d);
                }
                Evicted::InUse | Evicted::Absent => {}
            }
        }

        report.used_after = self.usage()?.used_bytes;
        tracing::info!(
            evicted = report.evicted.len(),
            expired_manifests = report.expired_manifests.len(),
            freed_bytes = report.freed_bytes,
            used_after = report.used_after,
            "store gc pass"
        );
        Ok(report)
    }
}
