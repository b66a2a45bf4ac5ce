//! [`StoreConfig`]: where the store lives and how much it may hold. The
//! daemon builds it from its own config; nothing here reads files or env.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::StoreError;
use crate::gc::GcPolicy;

/// Default quota: 20 GiB.
pub const DEFAULT_QUOTA: u64 = 20 << 30;
/// Default free space kept on the store's filesystem: 256 MiB, room for
/// the metadata database to grow and for other writers on a shared disk.
pub const DEFAULT_MIN_FREE: u64 = 256 << 20;
/// Default age after which an idle partial download is garbage: 1 hour.
pub const DEFAULT_PARTIAL_MAX_AGE: Duration = Duration::from_secs(3600);

/// Settings of one store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Directory holding `blobs/` and `meta.redb`; created if missing.
    pub root: PathBuf,
    /// Bytes the store may hold (blobs, complete or partial, plus manifests).
    pub quota: u64,
    /// Fraction of `quota` above which GC starts evicting (default 0.90).
    pub high_watermark: f64,
    /// Fraction of `quota` GC evicts down to once started (default 0.80).
    pub low_watermark: f64,
    /// Content not accessed for longer than this is dropped by GC whatever
    /// the usage (default 7 days).
    pub max_age: Duration,
    /// Bytes left free on the store's filesystem: a write that would go
    /// below this evicts first, and fails if eviction cannot make room
    /// (default 256 MiB).
    pub min_free: u64,
    /// A partial blob nobody has written for longer than this is an
    /// abandoned download: GC drops it, and so does a restart of a daemon
    /// that was down longer (default 1 hour).
    pub partial_max_age: Duration,
}

impl StoreConfig {
    /// A config with the defaults: 20 GiB quota, watermarks 0.90/0.80,
    /// 7 days max age, 256 MiB kept free, partials kept 1 hour.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreConfig {
            root: root.into(),
            quota: DEFAULT_QUOTA,
            high_watermark: 0.90,
            low_watermark: 0.80,
            max_age: Duration::from_secs(7 * 24 * 3600),
            min_free: DEFAULT_MIN_FREE,
            partial_max_age: DEFAULT_PARTIAL_MAX_AGE,
        }
    }

    /// The GC policy these settings describe.
    pub fn gc_policy(&self) -> GcPolicy {
        GcPolicy {
            capacity: self.quota,
            high_watermark: self.high_watermark,
            low_watermark: self.low_watermark,
            max_age: self.max_age,
            partial_max_age: self.partial_max_age,
        }
    }

    /// Rejects settings GC cannot honour: watermarks must satisfy
    /// `0 < low <= high <= 1`.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let (low, high) = (self.low_watermark, self.high_watermark);
        if !(low > 0.0 && low <= high && high <= 1.0) {
            return Err(StoreError::InvalidConfig(format!(
                "watermarks must satisfy 0 < low <= high <= 1, got low {low} and high {high}"
            )));
        }
        Ok(())
    }
}
