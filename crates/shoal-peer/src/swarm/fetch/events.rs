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
                    self.parents[i].excluded = true;
                    return self.report(i, 0, FailureKind::Missing);
                }
                if hashes.len() != have.count() as usize {
                    return self.exclude(i, 0, FailureKind::Corrupt, "malformed bitfield");
                }
                let pieces: Vec<(u32, [u8; 32])> = have.iter().zip(hashes).collect();
                if self.parents[i].announce(&mut self.trust, &pieces) {
                    self.parents[i].have = have;
                } else {
                    let why = "announced piece hashes that contradict the trusted piece map";
                    self.exclude(i, 0, FailureKind::Corrupt, why);
                }
            }
            PeerEvent::Have { index, blake3 } => {
                if index >= count {
                    return self.exclude(i, index, FailureKind::Corrupt, "announced a piece beyond the blob");
                }
                if self.parents[i].announce(&mut self.trust, &[(index, blake3)]) {
                    self.parents[i].have.set(index);
                } else {
                    let why = "announced a piece hash that contradicts the trusted piece map";
                    self.exclude(i, index, FailureKind::Corrupt, why);
                }
            }
            PeerEvent::Complete => {}
            PeerEvent::Gone => {
                // Keep using what it announced until a request fails.
                if self.parents[i].have.count() == 0 {
                    self.parents[i].excluded = true;
                }
            }
        }
    }

    /// Parent `i`'s availability stream ended (with `error`).
    pub(super) fn avail_ended(&mut self, i: usize, error: Option<String>) {
        if self.parents[i].have.count() > 0 {
            return; // keep using what it announced until a request fails
        }
        match error {
            // A parent we cannot reach (refused handshake, wrong hello, no
            // route) is a failed parent: reported and excluded at once, not
            // retried round after round.
            Some(e) => self.exclude(i, 0, FailureKind::Unreachable, &e),
            None => self.parents[i].excluded = true,
        }
    }

    /// A piece arrived from `id`, verified and stored by the driver.
    pub(super) fn arrived(&mut self, now: Instant, id: ParentId, piece: u32) {
        if piece >= self.layout.count() || !self.picker.is_inflight(piece) {
            return;
        }
        self.picker.done(piece);
        self.trust.used(piece);
        self.held += 1;
        self.inflight = self.inflight.saturating_sub(1);
        self.progress_at = now;
        if let Some(&i) = self.ids.get(&id) {
            let p = &mut self.parents[i];
            p.inflight = p.inflight.saturating_sub(1);
            // Probe back toward the full pipeline after a "busy".
            p.max_inflight = (p.max_inflight + 1).min(self.tuning.per_parent);
        }
    }

    /// A request to `id` for `piece` failed.
    pub(super) fn failed(&mut self, now: Instant, id: ParentId, piece: u32, error: PieceError) {
        if piece >= self.layout.count() || !self.picker.is_inflight(piece) {
            return;
        }
        self.picker.failed(piece);
        self.inflight = self.inflight.saturating_sub(1);
        let Some(&i) = self.ids.get(&id) else { return };
        self.parents[i].inflight = self.parents[i].inflight.saturating_sub(1);
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
                    p.cool_until = Some(now + self.tuning.busy_cooldown);
                }
            }
            // It just gave this piece to another child: take others from
            // it, this one from that child.
            PieceError::Elsewhere => {
                tracing::debug!(parent = %host, piece, "parent handed the piece elsewhere; asking others");
                self.parents[i].held_back.push((piece, now + self.tuning.elsewhere_wait));
            }
            PieceError::Missing(detail) => {
                tracing::info!(parent = %host, piece, %detail, "parent lacks a piece it announced");
                self.parents[i].forget(piece);
                self.report(i, piece, FailureKind::Missing);
            }
            PieceError::Corrupt(detail) => self.exclude(i, piece, FailureKind::Corrupt, &detail),
            PieceError::Timeout(detail) => self.exclude(i, piece, FailureKind::Timeout, &detail),
            PieceError::Unreachable(detail) => self.exclude(i, piece, FailureKind::Unreachable, &detail),
        }
    }
}
