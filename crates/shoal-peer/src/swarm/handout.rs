//! Handing out each piece once at a time (super-seeding, BitTorrent's
//! term): a node uploads a piece to one child at a time, and for a short
//! grace after that upload ends, refuses the same piece to other children
//! (`PeerErrorCode::Elsewhere`). Those take another piece from it, or this
//! one from the child that just got it.
//!
//! Why: while the first node still downloads a blob from the origin, each
//! fresh piece exists only there and is the rarest piece for every child,
//! so all of them ask that node for it at once; its single uplink then
//! carries several copies of every piece and the whole swarm moves at a
//! fraction of the link rate. With one copy out at a time the uplink
//! carries distinct pieces and the children spread them among themselves.
//!
//! Only sources hand out one copy at a time: a node fetching the blob from
//! the origin, or holding it complete. A node still downloading the blob
//! from peers serves a piece to every child that asks at once: its fresh
//! pieces are what the other children lack, and refusing all but one of
//! them left relays' uplinks half idle (p50 of the 8-node benchmark,
//! BENCHMARKS.md).
//!
//! Pure: time is passed in; the piece server calls [`Handouts::begin`]
//! before an upload and [`Handouts::end`] after it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shoal_core::Digest;

/// How long after an upload of a piece ends it is still refused to other
/// children: time for the recipient to announce it.
pub const GRACE: Duration = Duration::from_millis(500);

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 4096;

#[derive(Debug)]
struct Entry {
    peer: String,
    active: u32,
    last_end: Option<Instant>,
}

impl Entry {
    /// Uploading, or uploaded within `grace` of `now`.
    fn busy(&self, now: Instant, grace: Duration) -> bool {
        self.active > 0 || self.last_end.is_some_and(|t| now.saturating_duration_since(t) < grace)
    }
}

/// Recent uploads per (task, piece).
#[derive(Debug)]
pub struct Handouts {
    grace: Duration,
    entries: HashMap<(Digest, u32), Entry>,
}

impl Default for Handouts {
    fn default() -> Self {
        Handouts::new(GRACE)
    }
}

impl Handouts {
    /// With a given grace.
    pub fn new(grace: Duration) -> Handouts {
        Handouts { grace, entries: HashMap::new() }
    }

    /// May `piece` of `task` go to `peer` now? If so, the upload is
    /// recorded as started; call [`Handouts::end`] when it ends.
    pub fn begin(&mut self, task: &Digest, piece: u32, peer: &str, now: Instant) -> bool {
        let grace = self.grace;
        if self.entries.len() >= SWEEP_AT {
            self.entries.retain(|_, e| e.busy(now, grace));
        }
        let key = (task.clone(), piece);
        if let Some(e) = self.entries.get(&key)
            && e.peer != peer
            && e.busy(now, grace)
        {
            return false;
        }
        let e = self.entries.entry(key).or_insert_with(|| Entry { peer: peer.to_owned(), active: 0, last_end: None });
        e.peer = peer.to_owned();
        e.active += 1;
        true
    }

    /// The upload `begin` allowed has ended (sent or failed).
    pub fn end(&mut self, task: &Digest, piece: u32, now: Instant) {
        if let Some(e) = self.entries.get_mut(&(task.clone(), piece)) {
            e.active = e.active.saturating_sub(1);
            e.last_end = Some(now);
        }
    }

    /// Entries held (for tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_at_a_time_then_a_grace() {
        let task = Digest::sha256_of(b"t");
        let mut h = Handouts::new(Duration::from_millis(500));
        let t0 = Instant::now();
        assert!(h.begin(&task, 3, "a", t0));
        // Another child is refused while a's copy is in flight...
        assert!(!h.begin(&task, 3, "b", t0));
        // ...but gets other pieces, and a may ask again (a retry).
        assert!(h.begin(&task, 4, "b", t0));
        assert!(h.begin(&task, 3, "a", t0));
        h.end(&task, 3, t0);
        h.end(&task, 3, t0 + Duration::from_millis(100));
        // Within the grace after the last copy ended: still a's.
        assert!(!h.begin(&task, 3, "b", t0 + Duration::from_millis(599)));
        // After it: b's turn.
        assert!(h.begin(&task, 3, "b", t0 + Duration::from_millis(600)));
        assert!(!h.begin(&task, 3, "c", t0 + Duration::from_millis(600)));
        // Other tasks are independent.
        assert!(h.begin(&Digest::sha256_of(b"u"), 3, "c", t0));
    }

    #[test]
    fn expired_entries_are_swept() {
        let task = Digest::sha256_of(b"t");
        let mut h = Handouts::new(Duration::from_millis(10));
        let t0 = Instant::now();
        for i in 0..SWEEP_AT as u32 {
            assert!(h.begin(&task, i, "a", t0));
            h.end(&task, i, t0);
        }
        assert_eq!(h.len(), SWEEP_AT);
        assert!(h.begin(&task, 0, "b", t0 + Duration::from_secs(1)));
        assert_eq!(h.len(), 1);
    }
}
