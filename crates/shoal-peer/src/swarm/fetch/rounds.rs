//! The fetch core's rounds: joins and their answers, refreshes, the
//! picking of requests under the pace, and the ends of a round (stuck,
//! with its backoff) and of the download.

use std::time::Duration;

use shoal_core::HostId;
use shoal_proto::{FailureKind, OriginGrant, ParentInfo};
use tokio::time::Instant;

use super::core::{Action, End, FetchCore, Pace, ParentId, Phase, ToOrigin};
use super::parents::Parent;
use crate::swarm::Joined;

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
        let after = self.tuning.give_up_after;
        if now.saturating_duration_since(self.started) > after {
            tracing::warn!(?after, "the swarm did not deliver in time; fetching the rest from the origin");
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
        if let Some(map) = &j.map
            && !self.trust.learn_all(&map.hashes, &map.from)
        {
            tracing::warn!(from = %map.from, "the scheduler's piece map has the wrong length; ignored");
        }
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
                let p = &mut self.parents[i];
                p.fetch |= is_parent;
                if authority && !p.authority {
                    // Its hashes count from now on: follow it again, so its
                    // bitfield (every hash) comes anew.
                    p.authority = true;
                    let old = p.id;
                    let id = self.fresh_id();
                    self.parents[i].id = id;
                    self.ids.insert(id, i);
                    self.out.push_back(Action::Unfollow(old));
                    self.out.push_back(Action::Follow(id, self.parents[i].info.clone()));
                }
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
        let p = Parent::new(id, info.clone(), self.layout.count(), self.tuning.per_parent, authority, fetch);
        self.ids.insert(id, self.parents.len());
        self.parents.push(p);
        self.out.push_back(Action::Follow(id, info));
    }

    /// Decide what to do next (into `out`).
    pub(super) fn step(&mut self, now: Instant, pace: &mut dyn Pace) {
        if self.phase != Phase::Ended && self.picker.complete() {
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
        let known = self.trust.known().count();
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
        let expired = self.parents.iter().filter_map(Parent::next_expiry).any(|t| t <= now);
        if expired {
            self.parents.iter_mut().for_each(|p| p.expire(now));
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
        let idle = now >= self.progress_at + self.tuning.idle;
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
            let why = if self.trust.known().count() == 0 {
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

    /// Ask parents for what they offer, as far as the pace allows.
    fn request(&mut self, now: Instant, pace: &mut dyn Pace) {
        if !self.parents.iter().any(|p| p.askable(now) && p.inflight < p.max_inflight) {
            return;
        }
        let trusted = self.trust.known();
        let views: Vec<_> = self.parents.iter().map(|p| p.view(now, trusted)).collect();
        let read = self.picker.first_missing_from(self.read_at).unwrap_or(0);
        for pick in self.picker.pick(&views, read) {
            let Some(expected) = self.trust.get(pick.piece) else { continue };
            let len = self.layout.len_of(pick.piece);
            if let Err(wait) = pace.try_take(now, len) {
                self.paced_until = Some(now + wait);
                break;
            }
            self.picker.started(pick.piece);
            let p = &mut self.parents[pick.parent];
            p.inflight += 1;
            self.inflight += 1;
            let (parent, peer) = (p.id, p.info.clone());
            self.out.push_back(Action::Request { parent, peer, piece: pick.piece, len, expected });
        }
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
        self.paced_until = None;
        self.phase = Phase::Paused(now + self.pause);
    }
}
