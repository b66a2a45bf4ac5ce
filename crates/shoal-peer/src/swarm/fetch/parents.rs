//! One parent as the fetch core sees it within a round: what it holds,
//! what is in flight there, and the per-parent policy (busy cool-down,
//! "elsewhere" hold-back, the hashes it announced before they were
//! trusted, and whether it went silent under our requests). Pure data;
//! time is passed in.

use std::time::Duration;

use shoal_core::HostId;
use shoal_proto::{Bitfield, ParentInfo};
use tokio::time::Instant;

use super::core::ParentId;
use crate::swarm::picker::ParentView;
use crate::swarm::trust::{Check, Learned, TrustedMap};
use crate::swarm::tuning::SwarmTuning;

/// A parent of the current round.
///
/// Laid out by use (`repr(C)`, each parent on its own cache lines): a
/// pick reads every parent's first line (`free`), and so does the scan
/// for the soonest stall clock (`stalls_at`) and a recheck of announced
/// hashes; an announcement reads the first two; the rest is read only for
/// the parent it concerns. A core is cold by
/// the time its next event comes when many run (the simulator), so each
/// line a scan touches is a cache miss per parent.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
pub(super) struct Parent {
    /// Answered "busy" with none of ours in flight: left alone until then.
    pub(super) cool_until: Option<Instant>,
    /// It offered nothing wanted at the last pick, and nothing that could
    /// change that happened since: the core's generation then, or
    /// [`NOT_BARREN`] (8 bytes, not an `Option`'s 16: see the layout).
    pub(super) barren: u64,
    /// Our requests to it in flight.
    pub(super) inflight: u32,
    /// Most requests it takes now: shrinks to what it served when it
    /// answered "busy" with requests of ours in flight, probes back up by
    /// one per piece it delivers.
    pub(super) max_inflight: u32,
    /// Its id now (a new one each time it is followed again).
    pub(super) id: ParentId,
    /// How many pieces it announced: `have.count()`, kept so a pick need
    /// not count bits.
    pub(super) held: u32,
    /// Offered as a parent (not only followed for its hashes).
    pub(super) fetch: bool,
    /// Not asked again this round (failed, left, or another geometry).
    pub(super) excluded: bool,
    /// Its availability stream delivered something.
    pub(super) heard: bool,
    /// The scheduler names it an authority: its hashes are trusted.
    pub(super) authority: bool,
    /// `unchecked` is not empty: read in this line, so that a recheck
    /// (each time the trusted map learns a hash) reads no other line of a
    /// parent with nothing to check.
    checks_owed: bool,
    /// While requests are outstanding: when it counts as stalled if it
    /// sends nothing more (since the first request, or its last byte or
    /// answer, plus [`SwarmTuning::stall_after`] its round trip then; a
    /// new round trip comes with a pulse, which restarts the clock).
    /// `None` with none. A deadline in this line, so that the scan for the
    /// soonest reads no other.
    pub(super) stall_deadline: Option<Instant>,
    /// Its connection's round trip, last we heard (zero: not known yet).
    pub(super) rtt: Duration,
    /// Pieces it announced (and did not since deny).
    pub(super) have: Bitfield,
    /// Pieces it answered "elsewhere" for, each until when it is not asked.
    pub(super) held_back: Vec<(u32, Instant)>,
    /// The pieces of those requests (`inflight` of them).
    pub(super) pending: Vec<u32>,
    /// A stable hash of its host id, for the tie-break between parents.
    pub(super) key: u64,
    /// Hashes it announced before the trusted map knew them: checked when
    /// the map learns them, so a contradiction found later still excludes
    /// it before those pieces are asked of it.
    unchecked: Vec<(u32, [u8; 32])>,
    /// Where to reach it.
    pub(super) info: ParentInfo,
}

/// [`Parent::barren`] of a parent not marked barren.
pub(super) const NOT_BARREN: u64 = u64::MAX;

// The layout above, kept: a pick's fields and the stall clock in the first
// line, the announced pieces in the first two.
const _: () = assert!(std::mem::offset_of!(Parent, stall_deadline) + std::mem::size_of::<Option<Instant>>() <= 64);
const _: () = assert!(std::mem::offset_of!(Parent, have) + std::mem::size_of::<Bitfield>() <= 128);

impl Parent {
    /// A parent just followed, holding nothing we know of.
    pub(super) fn new(
        id: ParentId,
        info: ParentInfo,
        pieces: u32,
        per_parent: u32,
        authority: bool,
        fetch: bool,
    ) -> Self {
        Parent {
            id,
            key: host_key(&info.host),
            info,
            have: Bitfield::new(pieces),
            held: 0,
            inflight: 0,
            pending: Vec::new(),
            stall_deadline: None,
            rtt: Duration::ZERO,
            max_inflight: per_parent,
            cool_until: None,
            held_back: Vec::new(),
            authority,
            fetch,
            heard: false,
            excluded: false,
            barren: NOT_BARREN,
            unchecked: Vec::new(),
            checks_owed: false,
        }
    }

    /// Its host id.
    pub(super) fn host(&self) -> &HostId {
        &self.info.host
    }

    /// Its pieces count toward rarity: offered and not excluded.
    pub(super) fn counted(&self) -> bool {
        self.fetch && !self.excluded
    }

    /// It would take a request at `now` and may have something for us.
    pub(super) fn free(&self, now: Instant, generation: u64) -> bool {
        self.askable(now) && self.inflight < self.max_inflight && self.barren != generation
    }

    /// It would give `piece` now (slots aside).
    pub(super) fn offers(&self, piece: u32) -> bool {
        self.have.get(piece) && !self.held_back.iter().any(|&(p, _)| p == piece)
    }

    /// It may be asked for pieces at `now` (offered, not excluded, not
    /// cooling down after a "busy").
    pub(super) fn askable(&self, now: Instant) -> bool {
        self.fetch && !self.excluded && self.cool_until.is_none_or(|t| t <= now)
    }

    /// A request for `piece` went to it at `now`.
    pub(super) fn asked(&mut self, now: Instant, piece: u32, tuning: &SwarmTuning) {
        if self.pending.is_empty() {
            self.stall_deadline = Some(self.stall_from(now, tuning));
        }
        self.pending.push(piece);
        self.inflight += 1;
    }

    /// Its request for `piece` was answered at `now` (bytes or a
    /// refusal); `false` if that request is not outstanding (the answer
    /// does not count).
    pub(super) fn answered(&mut self, now: Instant, piece: u32, tuning: &SwarmTuning) -> bool {
        let Some(at) = self.pending.iter().position(|&p| p == piece) else {
            return false;
        };
        self.pending.swap_remove(at);
        self.inflight = self.inflight.saturating_sub(1);
        let deadline = self.stall_from(now, tuning);
        self.stall_deadline = (!self.pending.is_empty()).then_some(deadline);
        true
    }

    /// It was heard from at `now` over a connection whose round trip is
    /// `rtt`: its stall clock, if running, starts again.
    pub(super) fn pulse(&mut self, now: Instant, rtt: Duration, tuning: &SwarmTuning) {
        self.rtt = rtt;
        if self.stall_deadline.is_some() {
            self.stall_deadline = Some(self.stall_from(now, tuning));
        }
    }

    /// When it counts as stalled if it sends nothing after `now`.
    fn stall_from(&self, now: Instant, tuning: &SwarmTuning) -> Instant {
        now + tuning.stall_after(self.rtt)
    }

    /// When it counts as stalled if nothing comes from it before: `None`
    /// while none of our requests are outstanding there (or it is out of
    /// the round already).
    pub(super) fn stalls_at(&self) -> Option<Instant> {
        if self.excluded {
            return None;
        }
        self.stall_deadline
    }

    /// Drop cool-downs and hold-backs that ran out by `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        if self.cool_until.is_some_and(|t| t <= now) {
            self.cool_until = None;
        }
        self.held_back.retain(|&(_, until)| until > now);
    }

    /// The soonest a cool-down or hold-back runs out, if any.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.cool_until.into_iter().chain(self.held_back.iter().map(|&(_, t)| t)).min()
    }

    /// Its view for the [`crate::swarm::picker::Outlook`] at `now`: only
    /// pieces whose trusted hash is known.
    pub(super) fn view(&self, now: Instant, trusted: &Bitfield) -> ParentView {
        ParentView {
            have: self.have.intersect(trusted),
            inflight: self.inflight as usize,
            max_inflight: self.max_inflight as usize,
            excluded: !self.askable(now),
            held_back: self.held_back.iter().map(|&(piece, _)| piece).collect(),
        }
    }

    /// It no longer holds `piece` (it said so; the caller checked it did).
    pub(super) fn forget(&mut self, piece: u32) {
        let mut fresh = Bitfield::new(self.have.len());
        self.have.iter().filter(|&p| p != piece).for_each(|p| fresh.set(p));
        self.have = fresh;
        self.held -= 1;
    }

    /// It announced `pieces` (index, hash): an authority's hashes go into
    /// the trusted map; anyone else's are checked against it, or kept to
    /// check once the map knows them (pieces whose hash became known go
    /// to `learned`). `false` when a hash contradicts the trusted map.
    pub(super) fn announce(
        &mut self,
        trust: &mut TrustedMap,
        pieces: &[(u32, [u8; 32])],
        learned: &mut Vec<u32>,
    ) -> bool {
        let mut consistent = true;
        for &(i, h) in pieces {
            if self.authority {
                match trust.learn(i, h, &self.info.host) {
                    Learned::New => learned.push(i),
                    Learned::Same => {}
                    Learned::Conflict => {
                        tracing::warn!(authority = %self.info.host, piece = i, "two authorities disagree about a piece's hash")
                    }
                }
                continue;
            }
            match trust.check(i, &h) {
                Check::Mismatch => consistent = false,
                Check::Unknown => {
                    self.unchecked.push((i, h));
                    self.checks_owed = true;
                }
                Check::Match => {}
            }
        }
        consistent
    }

    /// Check the announced hashes the trusted map has learned since; the
    /// first piece whose hash contradicts it, if any.
    pub(super) fn recheck(&mut self, trust: &TrustedMap) -> Option<u32> {
        debug_assert_eq!(self.checks_owed, !self.unchecked.is_empty());
        if !self.checks_owed {
            return None;
        }
        let mut bad = None;
        self.unchecked.retain(|&(i, h)| match trust.check(i, &h) {
            Check::Unknown => true,
            Check::Match => false,
            Check::Mismatch => {
                bad.get_or_insert(i);
                false
            }
        });
        self.checks_owed = !self.unchecked.is_empty();
        bad
    }
}

/// A stable, well-spread key of a host id (FNV-1a): a parent's tie-break
/// key, and a node's salt for its own piece choices.
pub fn host_key(host: &HostId) -> u64 {
    host.as_str().bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
