//! The fetch core's rounds: joins and their answers, refreshes, the
//! picking of requests under the pace, and the ends of a round (stuck,
//! with its backoff) and of the download.

use std::time::Duration;

use shoal_core::HostId;
use shoal_proto::{FailureKind, OriginGrant, ParentInfo};
use tokio::time::Instant;

use super::core::{Action, End, FetchCore, Pace, ParentId, Phase, ToOrigin, wanted};
use super::parents::Parent;
use crate::swarm::Joined;
use crate::swarm::picker::spread;

/// Up to this many pieces offered by a pick's free parents are sorted
/// into the pick's order rather than found by walking every listed piece.
const FEW: usize = 64;

impl FetchCore {
    /// The scheduler answered a join: a round's, or a refresh.
    pub(super) fn joined(&mut self, now: Instant, j: Joined) {
        self.join_out = false;
        match self.phase {
            Phase::Joining => self.round_answer(now, j),
            Phase::Fetching => {
                if j.origin == OriginGrant::Granted {
                    tracing::debug!("origin grant mid-fetch: this node seeds the task");
                    self.end(End::Origin(ToOrigin::Granted));
                } else {
                    self.ingest(j);
                }
            }
            // A refresh answered after its round ended: the next round asks
            // anew.
            Phase::Paused(_) | Phase::Ended => {}
        }
    }

    fn round_answer(&mut self, now: Instant, j: Joined) {
        if j.origin == OriginGrant::Granted {
            tracing::debug!("origin grant: this node seeds the task");
            return self.end(End::Origin(ToOrigin::Granted));
        }
        // Only a swarm that stopped delivering is given up on: a node on a
        // slow link still receiving pieces would get them no faster from
        // the origin, and would cost it another copy.
        let after = self.tuning.give_up_after;
        if now.saturating_duration_since(self.delivered_at) > after {
            tracing::warn!(?after, "the swarm delivered no piece for this long; fetching the rest from the origin");
            return self.end(End::Origin(ToOrigin::GaveUp(after)));
        }
        if j.parents.iter().all(|p| self.excluded.contains(&p.host) || p.host == self.me) {
            let wait = match j.origin {
                OriginGrant::Wait { retry_after_ms } => retry_after_ms.clamp(20, 2_000),
                OriginGrant::Granted => 0,
            };
            self.learn_map(&j);
            self.phase = Phase::Paused(now + Duration::from_millis(wait).max(self.pause));
            return;
        }
        self.phase = Phase::Fetching;
        self.progress_at = now;
        self.missing_at_start = self.layout.count() - self.held;
        self.refresh_every = self.tuning.first_refresh;
        self.refresh_at = now + self.refresh_every;
        self.paced_until = None;
        self.ingest(j);
    }

    fn learn_map(&mut self, j: &Joined) {
        let Some(map) = &j.map else { return };
        if self.trust.is_complete() {
            return;
        }
        if !self.trust.learn_all(&map.hashes, &map.from) {
            tracing::warn!(from = %map.from, "the scheduler's piece map has the wrong length; ignored");
            return;
        }
        let every: Vec<u32> = (0..self.layout.count()).collect();
        self.learned(&every);
    }

    /// Take in a scheduler answer: its final map into the trusted map, its
    /// authorities followed for their hashes, its parents followed and
    /// asked. Parents this download excluded are left out.
    fn ingest(&mut self, j: Joined) {
        self.learn_map(&j);
        let offered = j.parents.into_iter().map(|p| (p, true));
        let authorities = j.authorities.into_iter().map(|p| (p, false));
        let mut seen_authority: Vec<HostId> = Vec::new();
        for (info, is_parent) in authorities.chain(offered) {
            let authority = !is_parent || seen_authority.contains(&info.host);
            if !is_parent {
                seen_authority.push(info.host.clone());
            }
            if info.host == self.me || self.excluded.contains(&info.host) {
                continue;
            }
            if let Some(i) = self.parents.iter().position(|p| p.info.host == info.host) {
                if is_parent && !self.parents[i].fetch {
                    self.parents[i].fetch = true;
                    self.generation += 1;
                    if self.parents[i].counted() {
                        self.count_pieces(i, true);
                    }
                }
                let p = &mut self.parents[i];
                if authority && !p.authority {
                    // Its hashes count from now on: follow it again, so its
                    // bitfield (every hash) comes anew.
                    p.authority = true;
                    let old = p.id;
                    let id = self.fresh_id();
                    self.parents[i].id = id;
                    self.set_index(id, i);
                    self.out.push_back(Action::Unfollow(old));
                    self.out.push_back(Action::Follow(id, self.parents[i].info.clone()));
                }
                continue;
            }
            let followed = self.parents.iter().filter(|p| p.counted()).count();
            if is_parent && !authority && followed >= self.tuning.max_parents {
                // Enough parents; one that fails this download frees a place.
                continue;
            }
            self.follow(info, authority, is_parent);
        }
    }

    fn fresh_id(&mut self) -> ParentId {
        self.next_id += 1;
        ParentId(self.next_id - 1)
    }

    fn follow(&mut self, info: ParentInfo, authority: bool, fetch: bool) {
        let id = self.fresh_id();
        let p = Parent::new(id, info.clone(), self.layout.count(), self.per_parent(), authority, fetch);
        self.set_index(id, self.parents.len());
        self.parents.push(p);
        self.out.push_back(Action::Follow(id, info));
    }

    /// Decide what to do next (into `out`).
    pub(super) fn step(&mut self, now: Instant, pace: &mut dyn Pace) {
        // `held` counts the picker's held pieces (`picker.complete()`
        // without a scan).
        debug_assert_eq!(self.held == self.layout.count(), self.picker.complete());
        if self.phase != Phase::Ended && self.held == self.layout.count() {
            return self.end(End::Complete);
        }
        match self.phase {
            Phase::Ended => {}
            Phase::Joining => {
                if !self.join_out {
                    self.join();
                }
            }
            Phase::Paused(until) => {
                if now >= until {
                    self.phase = Phase::Joining;
                    if !self.join_out {
                        self.join();
                    }
                }
            }
            Phase::Fetching => self.fetching(now, pace),
        }
    }

    fn fetching(&mut self, now: Instant, pace: &mut dyn Pace) {
        let known = self.trust.known_count();
        if known != self.known {
            self.known = known;
            for i in 0..self.parents.len() {
                if self.parents[i].excluded {
                    continue;
                }
                if let Some(piece) = self.parents[i].recheck(&self.trust) {
                    let why = "announced a piece hash that contradicts the trusted piece map";
                    self.exclude(i, piece, FailureKind::Corrupt, why);
                }
            }
        }
        for i in 0..self.parents.len() {
            if self.stall_at.is_none_or(|at| at > now) {
                break;
            }
            let p = &self.parents[i];
            if let Some(at) = p.stalls_at()
                && at <= now
            {
                let why = format!(
                    "sent nothing for {:?} with {} request(s) outstanding (round trip {:?})",
                    self.tuning.stall_after(p.rtt),
                    p.pending.len(),
                    p.rtt
                );
                let piece = p.pending.first().copied().unwrap_or(0);
                self.exclude(i, piece, FailureKind::Timeout, &why);
            }
        }
        if self.expiry.is_some_and(|t| t <= now) {
            self.parents.iter_mut().for_each(|p| p.expire(now));
            self.recompute_expiry();
            self.generation += 1;
            self.dirty = true;
        }
        if self.paced_until.is_some_and(|t| t <= now) {
            self.paced_until = None;
            self.dirty = true;
        }
        if self.dirty && self.paced_until.is_none() {
            self.dirty = false;
            self.request(now, pace);
        }
        if !self.out.is_empty() {
            // Hand these out first; the round's end is decided after.
            return;
        }
        if self.inflight == 0 && self.parents.iter().filter(|p| p.fetch).all(|p| p.excluded) {
            return self.stuck(now, "every parent failed or left");
        }
        let idle = now >= self.progress_at + self.idle;
        // Held back by the pace is not idle.
        if self.inflight == 0 && idle && self.paced_until.is_none() {
            // A parent whose availability never came (its address answers
            // nothing) is a failed parent, not one to offer again.
            for i in 0..self.parents.len() {
                let p = &self.parents[i];
                if p.fetch && !p.heard && !p.excluded {
                    let why = format!("its availability did not come within {:?}", self.tuning.idle);
                    self.exclude(i, 0, FailureKind::Unreachable, &why);
                }
            }
            let why = if self.trust.known_count() == 0 {
                "no trusted piece hashes (no authority reachable, no final map)"
            } else {
                "no new pieces"
            };
            return self.stuck(now, why);
        }
        if now >= self.refresh_at && !self.join_out {
            self.refresh_every = (self.refresh_every * 2).min(self.tuning.refresh);
            self.refresh_at = now + self.refresh_every;
            self.join();
        }
    }

    /// Ask parents for what they offer, as far as the pace allows: the
    /// pieces from the client's read position on (the window) in order,
    /// then the rarest. Each piece goes to the parent offering it with the
    /// fewest requests in flight (a seed, holding everything, counts as a
    /// little busier: it should serve what nobody else has, while children
    /// hand each other the rest), ties spread per node.
    fn request(&mut self, now: Instant, pace: &mut dyn Pace) {
        let generation = self.generation;
        let mut s = std::mem::take(&mut self.scratch);
        s.free.extend((0..self.parents.len()).filter(|&i| self.parents[i].free(now, generation)));
        if s.free.is_empty() {
            self.scratch = s;
            return;
        }
        let count = self.layout.count();
        s.full.extend(s.free.iter().map(|&i| self.parents[i].held == count));
        s.pending.resize(s.free.len(), 0);
        s.found.resize(s.free.len(), false);
        let read = self.first_missing().unwrap_or(0);
        let window = read..read.saturating_add(self.tuning.window).min(count);
        // The same pieces in the same order either way, less those no free
        // parent offers (they pick nothing): sorted when few, else walked.
        let mut order = std::mem::take(&mut self.order);
        let haves = s.free.iter().map(|&i| &self.parents[i].have);
        {
            let (mut few, mut all);
            let pieces: &mut dyn Iterator<Item = u32> = if self.rarity.offered(haves, &window, FEW, &mut order) {
                few = order.iter().map(|&(_, _, piece)| piece);
                &mut few
            } else {
                let candidates = window.clone().filter(|&p| wanted(&self.picker, &self.trust, p));
                all = candidates.chain(self.rarity.ranked().filter(|p| !window.contains(p)));
                &mut all
            };
            for piece in pieces {
                let best = (0..s.free.len())
                    .filter(|&f| self.parents[s.free[f]].offers(piece))
                    .inspect(|&f| s.found[f] = true)
                    .filter(|&f| {
                        let p = &self.parents[s.free[f]];
                        p.inflight + s.pending[f] < p.max_inflight
                    })
                    .min_by_key(|&f| {
                        let p = &self.parents[s.free[f]];
                        let load = p.inflight + s.pending[f];
                        (load + if s.full[f] { 2 } else { 0 }, spread(self.picker.salt ^ p.key, piece), s.free[f])
                    });
                if let Some(f) = best {
                    s.picks.push((s.free[f], piece));
                    s.pending[f] += 1;
                    let p = &self.parents[s.free[f]];
                    if p.inflight + s.pending[f] >= p.max_inflight {
                        s.free.remove(f);
                        s.pending.remove(f);
                        s.found.remove(f);
                        s.full.remove(f);
                        if s.free.is_empty() {
                            break;
                        }
                    }
                }
            }
        }
        order.clear();
        self.order = order;
        // Parents left with free slots offered nothing wanted: skip them
        // until something changes.
        for (f, &i) in s.free.iter().enumerate() {
            if !s.found[f] {
                self.parents[i].barren = generation;
            }
        }
        for &(i, piece) in &s.picks {
            let Some(expected) = self.trust.get(piece) else { continue };
            let len = self.layout.len_of(piece);
            if let Err(wait) = pace.try_take(now, len) {
                self.paced_until = Some(now + wait);
                break;
            }
            self.start(piece);
            self.resync(piece);
            let p = &mut self.parents[i];
            p.asked(now, piece, &self.tuning);
            // Asking can only start a stall clock, never move one later.
            if let Some(at) = p.stalls_at() {
                self.stall_at = Some(self.stall_at.map_or(at, |s| s.min(at)));
            }
            self.inflight += 1;
            let (parent, peer) = (p.id, p.info.clone());
            self.out.push_back(Action::Request { parent, peer, piece, len, expected });
        }
        s.free.clear();
        s.pending.clear();
        s.found.clear();
        s.full.clear();
        s.picks.clear();
        self.scratch = s;
    }

    /// The round cannot finish the blob: drop its parents, pause (longer
    /// while rounds make no progress), then join again.
    fn stuck(&mut self, now: Instant, why: &str) {
        let progressed = self.layout.count() - self.held < self.missing_at_start;
        let (lo, hi) = self.tuning.stuck_backoff;
        self.pause = if progressed { Duration::ZERO } else { (self.pause * 2).clamp(lo, hi) };
        tracing::info!(%why, pause = ?self.pause, "parents cannot finish the blob; asking the scheduler again");
        for p in self.parents.drain(..) {
            self.out.push_back(Action::Unfollow(p.id));
        }
        self.ids.clear();
        self.expiry = None;
        self.rarity.clear();
        self.paced_until = None;
        self.phase = Phase::Paused(now + self.pause);
    }
}
