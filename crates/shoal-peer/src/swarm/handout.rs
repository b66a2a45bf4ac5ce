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
//! Fresh pieces first: while a source holds pieces it has never handed
//! out, it refuses a second copy of one it has (to another child than the
//! first), however long ago the first went. Its uplink carries every piece
//! once before any piece twice; the children pass the rest among
//! themselves. Once every piece it holds went out, only the grace applies,
//! so the end of a download is not held up. With only the grace, a seed
//! uploaded some pieces twice, and every extra copy is uplink the fresh
//! pieces did not get (docs/design/swarm-lessons.md).
//!
//! Only sources hand out one copy at a time: a node fetching the blob from
//! the origin, or holding it complete. A node still downloading the blob
//! from peers serves a piece to every child that asks at once: its fresh
//! pieces are what the other children lack, and refusing all but one of
//! them left relays' uplinks half idle (docs/design/swarm-lessons.md).
//!
//! A source also spreads its uplink over its children: at most
//! [`SwarmTuning::per_child`] uploads to one child at a time (more are answered `Busy`).
//! Each child relays what it got from the source to the others, so a child
//! that took more than its share from the source had more to relay than
//! its uplink could carry, while others had nothing to relay.
//!
//! The grace is [`SwarmTuning::handout_grace`].
//!
//! Pure: time is passed in; the piece server calls [`Handouts::begin`]
//! before an upload and [`Handouts::end`] after it.

use std::collections::HashMap;
use std::time::Duration;

use shoal_core::Digest;
use shoal_proto::Bitfield;
use tokio::time::Instant;

use super::tuning::SwarmTuning;

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 4096;

/// A task's record of pieces handed out is forgotten this long after its
/// last handout (a later swarm for the same blob starts afresh).
pub const SENT_TTL: Duration = Duration::from_secs(60);

/// Tasks whose records are kept before stale ones are swept.
const SENT_SWEEP_AT: usize = 256;

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

/// The pieces of one task a source has handed out at least once.
#[derive(Debug)]
struct Sent {
    pieces: Bitfield,
    last: Instant,
}

/// What [`Handouts::begin`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Upload it (recorded as started).
    Go,
    /// Another child just got this piece: take it from that child.
    Elsewhere,
    /// This piece went out before and we still hold pieces that have not:
    /// take one of those from us, this one from a child.
    Fresh,
    /// This child has [`SwarmTuning::per_child`] uploads from us in flight
    /// already.
    ChildBusy,
}

/// Recent uploads per (task, piece), pieces handed out per task, and
/// uploads in flight per child.
#[derive(Debug)]
pub struct Handouts {
    grace: Duration,
    per_child_max: u32,
    entries: HashMap<(Digest, u32), Entry>,
    sent: HashMap<Digest, Sent>,
    per_child: HashMap<String, u32>,
}

impl Handouts {
    /// With the node's grace and per-child cap.
    pub fn new(tuning: &SwarmTuning) -> Handouts {
        Handouts {
            grace: tuning.handout_grace,
            per_child_max: tuning.per_child,
            entries: HashMap::new(),
            sent: HashMap::new(),
            per_child: HashMap::new(),
        }
    }

    /// May `piece` of `task` (a blob of `pieces` pieces, of which we hold
    /// `held`) go to `peer` now? If so ([`Verdict::Go`]), the upload is
    /// recorded as started; call [`Handouts::end`] when it ends.
    pub fn begin(&mut self, task: &Digest, piece: u32, peer: &str, held: u32, pieces: u32, now: Instant) -> Verdict {
        let grace = self.grace;
        if self.entries.len() >= SWEEP_AT {
            self.entries.retain(|_, e| e.busy(now, grace));
        }
        if self.sent.len() >= SENT_SWEEP_AT {
            self.sent.retain(|_, s| now.saturating_duration_since(s.last) < SENT_TTL);
        }
        let key = (task.clone(), piece);
        let entry = self.entries.get(&key);
        let first_recipient = entry.is_some_and(|e| e.peer == peer);
        if entry.is_some_and(|e| e.peer != peer && e.busy(now, grace)) {
            return Verdict::Elsewhere;
        }
        let sent = self.sent.entry(task.clone()).or_insert_with(|| Sent { pieces: Bitfield::new(pieces), last: now });
        if now.saturating_duration_since(sent.last) >= SENT_TTL || sent.pieces.len() != pieces {
            *sent = Sent { pieces: Bitfield::new(pieces), last: now };
        }
        if !first_recipient && sent.pieces.get(piece) && sent.pieces.count() < held {
            return Verdict::Fresh;
        }
        let child = self.per_child.entry(peer.to_owned()).or_insert(0);
        if *child >= self.per_child_max {
            return Verdict::ChildBusy;
        }
        *child += 1;
        if let Some(sent) = self.sent.get_mut(task) {
            sent.pieces.set(piece);
            sent.last = now;
        }
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

    /// What the grace and per-child tests pass as `held`: no piece is
    /// fresh, so only the rule under test applies.
    const HELD: u32 = 0;
    /// The test blobs' piece count.
    const PIECES: u32 = 8192;

    /// Production's settings (grace 500 ms, two uploads per child).
    fn handouts() -> Handouts {
        Handouts::new(&SwarmTuning::default())
    }

    #[test]
    fn one_copy_at_a_time_then_a_grace() {
        use Verdict::*;
        let task = Digest::sha256_of(b"t");
        let mut h = handouts();
        let t0 = Instant::now();
        assert_eq!(h.begin(&task, 3, "a", HELD, PIECES, t0), Go);
        // Another child is refused while a's copy is in flight...
        assert_eq!(h.begin(&task, 3, "b", HELD, PIECES, t0), Elsewhere);
        // ...but gets other pieces, and a may ask again (a retry).
        assert_eq!(h.begin(&task, 4, "b", HELD, PIECES, t0), Go);
        assert_eq!(h.begin(&task, 3, "a", HELD, PIECES, t0), Go);
        h.end(&task, 3, "a", t0);
        h.end(&task, 3, "a", t0 + Duration::from_millis(100));
        // Within the grace after the last copy ended: still a's.
        let ended = t0 + Duration::from_millis(100);
        let grace = SwarmTuning::default().handout_grace;
        assert_eq!(h.begin(&task, 3, "b", HELD, PIECES, ended + grace - Duration::from_millis(1)), Elsewhere);
        // After it: b's turn (b's second upload in flight).
        assert_eq!(h.begin(&task, 3, "b", HELD, PIECES, ended + grace), Go);
        assert_eq!(h.begin(&task, 3, "c", HELD, PIECES, ended + grace), Elsewhere);
        // Other tasks are independent.
        assert_eq!(h.begin(&Digest::sha256_of(b"u"), 3, "c", HELD, PIECES, t0), Go);
    }

    #[test]
    fn each_child_gets_at_most_per_child_uploads_at_once() {
        use Verdict::*;
        let (t, u) = (Digest::sha256_of(b"t"), Digest::sha256_of(b"u"));
        let mut h = handouts();
        let t0 = Instant::now();
        for i in 0..SwarmTuning::default().per_child {
            assert_eq!(h.begin(&t, i, "a", HELD, PIECES, t0), Go);
        }
        // The cap holds across tasks, and for other children not at all.
        assert_eq!(h.begin(&u, 0, "a", HELD, PIECES, t0), ChildBusy);
        assert_eq!(h.begin(&u, 0, "b", HELD, PIECES, t0), Go);
        // A refused piece is not recorded as handed out: c may have it.
        assert_eq!(h.begin(&t, 99, "a", HELD, PIECES, t0), ChildBusy);
        assert_eq!(h.begin(&t, 99, "c", HELD, PIECES, t0), Go);
        // One upload ends: a may have one more.
        h.end(&t, 0, "a", t0);
        assert_eq!(h.begin(&u, 1, "a", HELD, PIECES, t0), Go);
        assert_eq!(h.begin(&u, 2, "a", HELD, PIECES, t0), ChildBusy);
    }

    #[test]
    fn expired_entries_are_swept() {
        let task = Digest::sha256_of(b"t");
        let mut h = Handouts::new(&SwarmTuning { handout_grace: Duration::from_millis(10), ..SwarmTuning::default() });
        let t0 = Instant::now();
        for i in 0..SWEEP_AT as u32 {
            assert_eq!(h.begin(&task, i, "a", HELD, PIECES, t0), Verdict::Go);
            h.end(&task, i, "a", t0);
        }
        assert_eq!(h.len(), SWEEP_AT);
        assert_eq!(h.begin(&task, 0, "b", HELD, PIECES, t0 + Duration::from_secs(1)), Verdict::Go);
        assert_eq!(h.len(), 1);
    }

    /// Asks for `piece` for `peer`; if it may go, the upload also ends at `at`.
    fn ask(h: &mut Handouts, task: &Digest, piece: u32, peer: &str, held: u32, at: Instant) -> Verdict {
        let v = h.begin(task, piece, peer, held, PIECES, at);
        if v == Verdict::Go {
            h.end(task, piece, peer, at);
        }
        v
    }

    #[test]
    fn fresh_pieces_go_out_before_second_copies() {
        use Verdict::*;
        let task = Digest::sha256_of(b"t");
        let mut h = handouts();
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        // We hold 3 pieces; piece 0 goes to a.
        assert_eq!(ask(&mut h, &task, 0, "a", 3, t0), Go);
        // Long after the grace, nobody else gets 0 while 1 and 2 never went...
        assert_eq!(ask(&mut h, &task, 0, "b", 3, later), Fresh);
        // ...except a, its first recipient (a retry).
        assert_eq!(ask(&mut h, &task, 0, "a", 3, later), Go);
        assert_eq!(ask(&mut h, &task, 1, "b", 3, later), Go);
        assert_eq!(ask(&mut h, &task, 2, "c", 3, later), Go);
        // Every piece held went out once: second copies are allowed (after
        // the grace).
        let after = later + Duration::from_secs(1);
        assert_eq!(ask(&mut h, &task, 0, "c", 3, after), Go);
        // A new piece (from the origin) is fresh again.
        assert_eq!(ask(&mut h, &task, 1, "d", 4, after), Fresh);
        assert_eq!(ask(&mut h, &task, 3, "d", 4, after), Go);
        // Other tasks keep their own record.
        assert_eq!(ask(&mut h, &Digest::sha256_of(b"u"), 1, "d", 4, after), Go);
        // A record idle for SENT_TTL is forgotten: a later swarm starts afresh.
        let much_later = after + SENT_TTL;
        assert_eq!(ask(&mut h, &task, 1, "e", 5, much_later), Go);
        assert_eq!(ask(&mut h, &task, 2, "e", 5, much_later), Go);
        assert_eq!(ask(&mut h, &task, 1, "f", 5, much_later + Duration::from_secs(1)), Fresh);
    }
}
