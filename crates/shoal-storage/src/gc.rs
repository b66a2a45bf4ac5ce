//! The GC decision: which blobs to evict, as a pure function over plain
//! data with the time passed in, so it is tested without disks or clocks.
//! [`Store::gc`](crate::Store::gc) gathers the candidates and applies the
//! plan.
//!
//! Two rules, in order:
//! 1. Age: every blob not in use whose last access is older than `max_age`,
//!    and every partial blob not in use whose last write is older than
//!    `partial_max_age` (an abandoned download nobody resumes).
//! 2. Space: if usage after rule 1 is above `high_watermark * capacity`,
//!    evict blobs not in use, least recently used first, until usage is at
//!    or below `low_watermark * capacity` (hysteresis: a store hovering near
//!    the high mark does not evict a little on every pass).
//!
//! A blob in use (a live reader or writer) is never chosen. Partial blobs
//! not in use are candidates like complete ones: they are abandoned
//! downloads. Ties on access time break by digest, so a plan is the same
//! whatever the order of the input.

use std::time::{Duration, SystemTime};

use shoal_core::Digest;

#[cfg(test)]
mod tests;

/// The limits GC enforces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GcPolicy {
    /// Bytes the store may hold.
    pub capacity: u64,
    /// Fraction of `capacity` above which space eviction starts.
    pub high_watermark: f64,
    /// Fraction of `capacity` space eviction brings usage down to.
    pub low_watermark: f64,
    /// Anything not accessed for longer than this is evicted.
    pub max_age: Duration,
    /// A partial blob not written for longer than this is evicted.
    pub partial_max_age: Duration,
}

/// One blob as GC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcCandidate {
    /// The blob.
    pub digest: Digest,
    /// Bytes it occupies (partials are preallocated, so their full size).
    pub size: u64,
    /// Last read or write.
    pub last_access: SystemTime,
    /// Whether the blob is complete. An idle partial is evicted by the
    /// same rules, being an abandoned download, and by its own, shorter
    /// age limit.
    pub complete: bool,
    /// A live reader or writer holds it: never evicted.
    pub in_use: bool,
}

impl GcPolicy {
    /// `fraction * capacity` in bytes, with the fraction clamped to [0, 1].
    fn mark(&self, fraction: f64) -> u64 {
        // u64 -> f64 loses precision only above 2^53 bytes (8 PiB).
        (self.capacity as f64 * fraction.clamp(0.0, 1.0)) as u64
    }
}

/// The digests to evict, in eviction order: expired blobs (oldest first),
/// then least recently used ones while usage is above the low watermark.
///
/// `used` is the store's whole usage, which may include bytes that are not
/// candidates (manifests); eviction subtracts each chosen blob's size.
pub fn plan(candidates: &[GcCandidate], used: u64, policy: &GcPolicy, now: SystemTime) -> Vec<Digest> {
    let mut idle: Vec<&GcCandidate> = candidates.iter().filter(|c| !c.in_use).collect();
    idle.sort_by(|a, b| (a.last_access, &a.digest).cmp(&(b.last_access, &b.digest)));

    let expired = |c: &GcCandidate| {
        let limit = if c.complete { policy.max_age } else { policy.partial_max_age.min(policy.max_age) };
        now.duration_since(c.last_access).is_ok_and(|age| age > limit)
    };
    let (old, fresh): (Vec<&GcCandidate>, Vec<&GcCandidate>) = idle.into_iter().partition(|c| expired(c));

    let mut used = used;
    let mut out = Vec::with_capacity(old.len());
    for c in old {
        used = used.saturating_sub(c.size);
        out.push(c.digest.clone());
    }

    if used > policy.mark(policy.high_watermark) {
        let low = policy.mark(policy.low_watermark);
        for c in fresh {
            if used <= low {
                break;
            }
            used = used.saturating_sub(c.size);
            out.push(c.digest.clone());
        }
    }
    out
}
