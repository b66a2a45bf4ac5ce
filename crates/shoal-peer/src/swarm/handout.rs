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
//! A source also spreads its uplink over its children: at most
//! [`PER_CHILD`] uploads to one child at a time (more are answered `Busy`).
//! Each child relays what it got from the source to the others, so a child
//! that took more than its share from the source had more to relay than
//! its uplink could carry, while others had nothing to relay.
//!
//! Pure: time is passed in; the piece server calls [`Handouts::begin`]
//! before an upload and [`Handouts::end`] after it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shoal_core::Digest;

/// How long after an upload of a piece ends it is still refused to other
/// children: time for the recipient to announce it.
pub const GRACE: Duration = Duration::from_millis(500);

/// Uploads a source sends one child at once.
pub const PER_CHILD: u32 = 2;

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

/// What [`Handouts::begin`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Upload it (recorded as started).
    Go,
    /// Another child just got this piece: take it from that child.
    Elsewhere,
    /// This child has [`PER_CHILD`] uploads from us in flight already.
    ChildBusy,
}

/// Recent uploads per (task, piece), and uploads in flight per child.
#[derive(Debug)]
pub struct Handouts {
    grace: Duration,
    entries: HashMap<(Digest, u32), Entry>,
    per_child: HashMap<String, u32>,
}

impl Default for Handouts {
    fn default() -> Self {
        Handouts::new(GRACE)
    }
}

impl Handouts {
    /// With a given grace.
    pub fn new(grace: Duration) -> Handouts {
        Handouts { grace, entries: HashMap::new(), per_child: HashMap::new() }
    }

    /// May `piece` of `task` go to `peer` now? If so ([`Verdict::Go`]),
    /// the upload is recorded as started; call [`Handouts::end`] when it
    /// ends.
    pub fn begin(&mut self, task: &Digest, piece: u32, peer: &str, now: Instant) -> Verdict {
        let grace = self.grace;
        if self.entries.len() >= SWEEP_AT {
            self.entries.retain(|_, e| e.busy(now, grace));
        }
        let key = (task.clone(), piece);
        if let Some(e) = self.entries.get(&key)
            && e.peer != peer
            && e.busy(now, grace)
        {
            return Verdict::Elsewhere;
        }
        let child = self.per_child.entry(peer.to_owned()).or_insert(0);
        if *child >= PER_CHILD {
            return Verdict::ChildBusy;
        }
        *child += 1;
        let e = self.entries.entry(key).or_insert_with(|| Entry { peer: peer.to_owned(), active: 0, last_end: None });
        e.peer = peer.to_owned();
        e.active += 1;
        Verdict::Go
    }

    /// The upload `begin` allowed has ended (sent or failed).
    pub fn end(&mut self, task: &Digest, piece: u32, peer: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(&(task.clone(), piece)) {
            e.active = e.active.saturating_sub(1);
            e.last_end = Some(now);
        }
        if let Some(n) = self.per_child.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_child.remove(peer);
            }
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
        use Verdict::*;
        let task = Digest::sha256_of(b"t");
        let mut h = Handouts::new(Duration::from_millis(500));
        let t0 = Instant::now();
        assert_eq!(h.begin(&task, 3, "a", t0), Go);
        // Another child is refused while a's copy is in flight...
        assert_eq!(h.begin(&task, 3, "b", t0), Elsewhere);
        // ...but gets other pieces, and a may ask again (a retry).
        assert_eq!(h.begin(&task, 4, "b", t0), Go);
        assert_eq!(h.begin(&task, 3, "a", t0), Go);
        h.end(&task, 3, "a", t0);
        h.end(&task, 3, "a", t0 + Duration::from_millis(100));
        // Within the grace after the last copy ended: still a's.
        assert_eq!(h.begin(&task, 3, "b", t0 + Duration::from_millis(599)), Elsewhere);
        // After it: b's turn (b's second upload in flight).
        assert_eq!(h.begin(&task, 3, "b", t0 + Duration::from_millis(600)), Go);
        assert_eq!(h.begin(&task, 3, "c", t0 + Duration::from_millis(600)), Elsewhere);
        // Other tasks are independent.
        assert_eq!(h.begin(&Digest::sha256_of(b"u"), 3, "c", t0), Go);
    }

    #[test]
    fn each_child_gets_at_most_per_child_uploads_at_once() {
        use Verdict::*;
        let (t, u) = (Digest::sha256_of(b"t"), Digest::sha256_of(b"u"));
        let mut h = Handouts::new(Duration::from_millis(500));
        let t0 = Instant::now();
        for i in 0..PER_CHILD {
            assert_eq!(h.begin(&t, i, "a", t0), Go);
        }
        // The cap holds across tasks, and for other children not at all.
        assert_eq!(h.begin(&u, 0, "a", t0), ChildBusy);
        assert_eq!(h.begin(&u, 0, "b", t0), Go);
        // A refused piece is not recorded as handed out: c may have it.
        assert_eq!(h.begin(&t, 99, "a", t0), ChildBusy);
        assert_eq!(h.begin(&t, 99, "c", t0), Go);
        // One upload ends: a may have one more.
        h.end(&t, 0, "a", t0);
        assert_eq!(h.begin(&u, 1, "a", t0), Go);
        assert_eq!(h.begin(&u, 2, "a", t0), ChildBusy);
    }

    #[test]
    fn expired_entries_are_swept() {
        let task = Digest::sha256_of(b"t");
        let mut h = Handouts::new(Duration::from_millis(10));
        let t0 = Instant::now();
        for i in 0..SWEEP_AT as u32 {
            assert_eq!(h.begin(&task, i, "a", t0), Verdict::Go);
            h.end(&task, i, "a", t0);
        }
        assert_eq!(h.len(), SWEEP_AT);
        assert_eq!(h.begin(&task, 0, "b", t0 + Duration::from_secs(1)), Verdict::Go);
        assert_eq!(h.len(), 1);
    }
}
