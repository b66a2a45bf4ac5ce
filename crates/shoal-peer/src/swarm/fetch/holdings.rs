//! Who holds what in the fetch core's round: parents' announced pieces
//! and their rarity counts, parents dropped for the round or excluded for
//! the download, and the reports that go with it.

use shoal_proto::FailureKind;

use super::core::{Action, Failure, FetchCore, Phase, wanted};
use super::parents::NOT_BARREN;

impl FetchCore {
    /// Exclude parent `i` for the whole download and report it.
    pub(super) fn exclude(&mut self, i: usize, piece: u32, kind: FailureKind, detail: &str) {
        tracing::warn!(parent = %self.parents[i].info.host, piece, ?kind, %detail, "excluding a parent from this task");
        self.drop_parent(i);
        self.excluded.insert(self.parents[i].info.host.clone());
        self.report(i, piece, kind);
        if matches!(kind, FailureKind::Unreachable | FailureKind::Timeout) && self.phase == Phase::Fetching {
            // A dead parent may have been the task's seed: ask the
            // scheduler again now (and soon after, as at a round's start),
            // so a grant it moves on reaches this node in a moment.
            self.refresh_at = self.refresh_at.min(self.progress_at);
            self.refresh_every = self.tuning.first_refresh;
        }
    }

    /// Parent `i` is not asked again this round: its pieces stop counting,
    /// and the pieces asked of it are missing again at once (asked of
    /// others at the next pick; its late answers are ignored).
    pub(super) fn drop_parent(&mut self, i: usize) {
        if self.parents[i].counted() {
            self.count_pieces(i, false);
        }
        let p = &mut self.parents[i];
        let before = p.stalls_at();
        p.excluded = true;
        p.stall_deadline = None;
        p.inflight = 0;
        let pending = std::mem::take(&mut p.pending);
        self.restall(i, before);
        if !pending.is_empty() {
            self.generation += 1;
            self.first_missing = None;
            self.dirty = true;
        }
        for piece in pending {
            self.picker.failed(piece);
            self.inflight = self.inflight.saturating_sub(1);
            self.resync(piece);
        }
    }

    /// Count parent `i`'s pieces toward rarity (`on`) or stop counting
    /// them (the caller knows which it was).
    pub(super) fn count_pieces(&mut self, i: usize, on: bool) {
        for piece in self.parents[i].have.iter() {
            if on {
                self.rarity.add(piece);
            } else {
                self.rarity.sub(piece);
            }
            self.rarity.sync(piece, wanted(&self.picker, &self.trust, piece));
        }
    }

    /// Parent `i` holds `piece` now (it announced it).
    pub(super) fn gains(&mut self, i: usize, piece: u32) {
        let p = &mut self.parents[i];
        if p.have.get(piece) {
            return;
        }
        p.have.set(piece);
        p.held += 1;
        // Only this parent offers more than before: the others' `barren`
        // marks still hold.
        p.barren = NOT_BARREN;
        if p.counted() {
            self.rarity.add(piece);
            self.resync(piece);
        }
    }

    /// Parent `i` does not hold `piece` (it said so).
    pub(super) fn loses(&mut self, i: usize, piece: u32) {
        let p = &mut self.parents[i];
        if !p.have.get(piece) {
            return;
        }
        p.forget(piece);
        if p.counted() {
            self.rarity.sub(piece);
            self.resync(piece);
        }
    }

    /// The trusted map learned `pieces`: they may be asked for now.
    pub(super) fn learned(&mut self, pieces: &[u32]) {
        if pieces.is_empty() {
            return;
        }
        self.generation += 1;
        pieces.iter().for_each(|&piece| self.resync(piece));
    }

    /// Whether `piece` is wanted changed (held, in flight, trusted): rank
    /// it anew.
    pub(super) fn resync(&mut self, piece: u32) {
        self.rarity.sync(piece, wanted(&self.picker, &self.trust, piece));
    }

    /// Report parent `i`'s failure.
    pub(super) fn report(&mut self, i: usize, piece: u32, kind: FailureKind) {
        let parent = self.parents[i].host().clone();
        self.out.push_back(Action::Report(Failure { parent, piece, kind }));
    }
}
