//! The fetch core's per-parent inputs: availability (bitfields, `Have`s,
//! streams that end) and the answers to piece requests, with the policy
//! each one triggers (cool-down, hold-back, exclusion, reports).

use shoal_proto::{FailureKind, PeerEvent};
use tokio::time::Instant;

use super::core::{FetchCore, ParentId, PieceError};

impl FetchCore {
    /// Parent `i`'s availability stream delivered `ev`.
    pub(super) fn avail(&mut self, i: usize, ev: PeerEvent) {
        self.parents[i].heard = true;
        let count = self.layout.count();
        match ev {
            PeerEvent::Bitfield { size, piece_size, have, hashes } => {
                if size != self.layout.blob_size || piece_size != self.layout.piece_size || !have.is_valid_for(count) {
                    // Another piece size (say, a blob stored by an older
                    // daemon): its pieces are not ours. Reported, so the
                    // scheduler stops counting it as a usable copy and
                    // grants the origin instead of telling us to wait; not
                    // excluded for good (a later round may find it
                    // re-stored).
                    tracing::warn!(parent = %self.parents[i].host(), "parent announced another geometry; ignoring it");
                    self.drop_parent(i);
                    return self.report(i, 0, FailureKind::Missing);
                }
                if hashes.len() != have.count() as usize {
                    return self.exclude(i, 0, FailureKind::Corrupt, "malformed bitfield");
                }
                let pieces: Vec<(u32, [u8; 32])> = have.iter().zip(hashes).collect();
                let mut learned = Vec::new();
                let consistent = self.parents[i].announce(&mut self.trust, &pieces, &mut learned);
                self.learned(&learned);
                if consistent {
                    // A bitfield says everything held now (it comes again
                    // when a parent is followed anew).
                    let gone: Vec<u32> = self.parents[i].have.iter().filter(|&p| !have.get(p)).collect();
                    gone.into_iter().for_each(|piece| self.loses(i, piece));
                    pieces.iter().for_each(|&(piece, _)| self.gains(i, piece));
                } else {
                    let why = "announced piece hashes that contradict the trusted piece map";
                    self.exclude(i, 0, FailureKind::Corrupt, why);
                }
            }
            PeerEvent::Have { index, blake3 } => {
                if index >= count {
                    return self.exclude(i, index, FailureKind::Corrupt, "announced a piece beyond the blob");
                }
                let mut learned = Vec::new();
                let consistent = self.parents[i].announce(&mut self.trust, &[(index, blake3)], &mut learned);
                self.learned(&learned);
                if consistent {
                    self.gains(i, index);
                } else {
                    let why = "announced a piece hash that contradicts the trusted piece map";
                    self.exclude(i, index, FailureKind::Corrupt, why);
                }
            }
            PeerEvent::Complete => {}
            PeerEvent::Gone => {
                // Keep using what it announced until a request fails.
                if self.parents[i].held == 0 {
                    self.drop_parent(i);
                }
            }
        }
    }

    /// Parent `i`'s availability stream ended (with `error`).
    pub(super) fn avail_ended(&mut self, i: usize, error: Option<String>) {
        if self.parents[i].held > 0 {
            return; // keep using what it announced until a request fails
        }
        match error {
            // A parent we cannot reach (refused handshake, wrong hello, no
            // route) is a failed parent: reported and excluded at once, not
            // retried round after round.
            Some(e) => self.exclude(i, 0, FailureKind::Unreachable, &e),
            None => self.drop_parent(i),
        }
    }

    /// Parent `i` answered its request for `piece` at `now` (bytes or a
    /// refusal), its stall clock moved with it; `false` if that request is
    /// not outstanding (the answer does not count).
    fn answered(&mut self, now: Instant, i: usize, piece: u32) -> bool {
        let before = self.parents[i].stalls_at();
        if !self.parents[i].answered(now, piece, &self.tuning) {
            return false;
        }
        self.restall(i, before);
        true
    }

    /// A piece arrived from `id`, verified and stored by the driver. Only
    /// an outstanding request's answer counts (see [`FetchCore::awaits`]).
    pub(super) fn arrived(&mut self, now: Instant, id: ParentId, piece: u32) {
        if piece >= self.layout.count() || !self.picker.is_inflight(piece) {
            return;
        }
        let Some(i) = self.index(id) else { return };
        if !self.answered(now, i, piece) {
            return;
        }
        self.picker.done(piece);
        self.resync(piece);
        self.trust.used(piece);
        self.held += 1;
        self.inflight = self.inflight.saturating_sub(1);
        self.progress_at = now;
        self.delivered_at = now;
        let per_parent = self.per_parent();
        let p = &mut self.parents[i];
        // Probe back toward the full pipeline after a "busy".
        p.max_inflight = (p.max_inflight + 1).min(per_parent);
    }

    /// A request to `id` for `piece` failed.
    pub(super) fn failed(&mut self, now: Instant, id: ParentId, piece: u32, error: PieceError) {
        if piece >= self.layout.count() || !self.picker.is_inflight(piece) {
            return;
        }
        let Some(i) = self.index(id) else { return };
        if !self.answered(now, i, piece) {
            return;
        }
        self.picker.failed(piece);
        self.first_missing = None;
        self.resync(piece);
        self.generation += 1;
        self.inflight = self.inflight.saturating_sub(1);
        let host = self.parents[i].host().clone();
        match error {
            // It has the piece but no upload slot for us. With requests of
            // ours still in flight there, that is as many as it gives us (a
            // source's per-child cap): keep to it. With none, leave it alone
            // a moment. Either way its pieces are not forgotten.
            PieceError::Busy => {
                tracing::debug!(parent = %host, piece, "parent busy; asking others");
                let p = &mut self.parents[i];
                if p.inflight > 0 {
                    p.max_inflight = p.inflight;
                } else {
                    let until = now + self.tuning.busy_cooldown;
                    if p.cool_until.replace(until).is_some() {
                        // An earlier cool-down (run out, not yet dropped)
                        // is gone: it may have been the soonest.
                        self.recompute_expiry();
                    } else {
                        self.expires_at(until);
                    }
                }
            }
            // It just gave this piece to another child: take others from
            // it, this one from that child.
            PieceError::Elsewhere => {
                tracing::debug!(parent = %host, piece, "parent handed the piece elsewhere; asking others");
                let until = now + self.tuning.elsewhere_wait;
                self.parents[i].held_back.push((piece, until));
                self.expires_at(until);
            }
            PieceError::Missing(detail) => {
                tracing::info!(parent = %host, piece, %detail, "parent lacks a piece it announced");
                self.loses(i, piece);
                self.report(i, piece, FailureKind::Missing);
            }
            // Every piece is checked, so a bad one costs only itself: it is
            // asked elsewhere (of this parent too, after `elsewhere_wait`,
            // if no other has it), and the parent is excluded once it sent
            // `corrupt_strikes` of them.
            PieceError::Corrupt(detail) => {
                let strikes = self.corrupt.entry(host.clone()).or_insert(0);
                *strikes += 1;
                if *strikes >= self.tuning.corrupt_strikes {
                    self.exclude(i, piece, FailureKind::Corrupt, &detail);
                } else {
                    tracing::warn!(parent = %host, piece, %detail, "a piece failed its hash; asking for it elsewhere");
                    let until = now + self.tuning.elsewhere_wait;
                    self.parents[i].held_back.push((piece, until));
                    self.expires_at(until);
                    self.report(i, piece, FailureKind::Corrupt);
                }
            }
            PieceError::Timeout(detail) => self.exclude(i, piece, FailureKind::Timeout, &detail),
            PieceError::Unreachable(detail) => self.exclude(i, piece, FailureKind::Unreachable, &detail),
        }
    }
}
