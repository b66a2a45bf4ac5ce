//! Piece picking: which missing piece to ask which parent for, as a pure
//! function of what everyone holds and what is in flight.
//!
//! Two goals pull apart. The HTTP response streams from the client's read
//! position, so the pieces just ahead of it come first, in order (the
//! *window*). Beyond the window, the rarest pieces come first, so copies
//! spread through the swarm and no piece hangs on one parent. A piece goes
//! to the parent with the fewest requests in flight among those holding it,
//! which spreads load across parents.

use shoal_proto::Bitfield;

/// What the picker knows about one parent.
#[derive(Debug, Clone)]
pub struct ParentView {
    /// A stable id of the parent (e.g. a hash of its host id), for spreading
    /// requests: every child breaking ties the same way (say, toward the
    /// complete seed listed first) turns the swarm into a star.
    pub key: u64,
    /// Pieces the parent holds.
    pub have: Bitfield,
    /// Requests to it in flight.
    pub inflight: usize,
    /// Most requests it should have in flight.
    pub max_inflight: usize,
    /// Excluded (failed a piece for this task, or refused as busy lately).
    pub excluded: bool,
    /// Pieces it holds but handed to another child just now (super-seeding):
    /// not asked of it for a moment.
    pub held_back: Vec<u32>,
}

impl ParentView {
    /// It holds `piece` and would give it now.
    pub fn offers(&self, piece: u32) -> bool {
        !self.excluded && self.have.get(piece) && !self.held_back.contains(&piece)
    }

    /// Requests it would take on top of those in flight (none if excluded).
    pub fn free_slots(&self) -> usize {
        if self.excluded { 0 } else { self.max_inflight.saturating_sub(self.inflight) }
    }
}

/// One decision: ask `parent` (index into the slice given) for `piece`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Parent index.
    pub parent: usize,
    /// Piece index.
    pub piece: u32,
}

/// A snapshot of what a fetch could ask for; see [`Picker::outlook`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outlook {
    /// Pieces neither held nor in flight.
    pub missing: u32,
    /// Of those, pieces some parent offers now.
    pub offered: u32,
    /// Of those, pieces only parents that do not offer them now hold.
    pub withheld: u32,
    /// Requests the parents would take on top of those in flight.
    pub free_slots: usize,
}

/// The picker's state for one task.
#[derive(Debug, Clone)]
pub struct Picker {
    pieces: u32,
    have: Vec<bool>,
    inflight: Vec<bool>,
    /// Pieces ahead of the read position fetched in order.
    pub window: u32,
    /// Per-node salt for ordering equally rare pieces: nodes that start
    /// together must want *different* pieces, or they have nothing to
    /// trade and all wait on the seed.
    pub salt: u64,
}

/// A cheap, well-mixed hash of (salt, piece) (SplitMix64 finaliser).
fn spread(salt: u64, piece: u32) -> u64 {
    let mut z = salt ^ (u64::from(piece).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Picker {
    /// A picker over `pieces` pieces, `held` already stored.
    pub fn new(pieces: u32, held: impl IntoIterator<Item = u32>) -> Picker {
        let mut have = vec![false; pieces as usize];
        for i in held {
            if i < pieces {
                have[i as usize] = true;
            }
        }
        Picker { pieces, have, inflight: vec![false; pieces as usize], window: 2, salt: 0 }
    }

    /// A request for `piece` went out.
    pub fn started(&mut self, piece: u32) {
        self.inflight[piece as usize] = true;
    }

    /// The piece arrived and verified.
    pub fn done(&mut self, piece: u32) {
        self.inflight[piece as usize] = false;
        self.have[piece as usize] = true;
    }

    /// The request failed; the piece is missing again.
    pub fn failed(&mut self, piece: u32) {
        self.inflight[piece as usize] = false;
    }

    /// Every request in flight is abandoned: those pieces are missing again.
    pub fn abandon(&mut self) {
        self.inflight.iter_mut().for_each(|f| *f = false);
    }

    /// A request for `piece` is in flight.
    pub fn is_inflight(&self, piece: u32) -> bool {
        self.inflight.get(piece as usize).copied().unwrap_or(false)
    }

    /// The first missing piece (neither held nor in flight) at or after
    /// `from`, else the first one before it.
    pub fn first_missing_from(&self, from: u32) -> Option<u32> {
        let missing = |&i: &u32| !self.have[i as usize] && !self.inflight[i as usize];
        (from.min(self.pieces)..self.pieces).find(missing).or_else(|| (0..from.min(self.pieces)).find(missing))
    }

    /// Every piece is held.
    pub fn complete(&self) -> bool {
        self.have.iter().all(|&h| h)
    }

    /// Pieces neither held nor in flight.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.pieces).filter(|&i| !self.have[i as usize] && !self.inflight[i as usize])
    }

    /// What the fetch could ask for now: missing pieces (neither held nor
    /// in flight) that some parent offers, and the pieces a parent holds
    /// but does not offer yet (it handed them to another child just now, or
    /// is excluded or cooling down). With free request slots and nothing
    /// offered, the fetch is waiting on the swarm, not on its links.
    pub fn outlook(&self, parents: &[ParentView]) -> Outlook {
        let mut o = Outlook::default();
        for i in self.missing() {
            o.missing += 1;
            if parents.iter().any(|p| p.offers(i)) {
                o.offered += 1;
            } else if parents.iter().any(|p| p.have.get(i)) {
                o.withheld += 1;
            }
        }
        o.free_slots = parents.iter().map(ParentView::free_slots).sum();
        o
    }

    /// Decide the next requests, given the parents and the piece the client
    /// is reading (`read_piece`). Never assigns a piece twice, a piece a
    /// parent lacks, or more than a parent's free slots.
    pub fn pick(&self, parents: &[ParentView], read_piece: u32) -> Vec<Pick> {
        let mut slots: Vec<usize> = parents.iter().map(ParentView::free_slots).collect();
        let mut load: Vec<usize> = parents.iter().map(|p| p.inflight).collect();
        if slots.iter().all(|&s| s == 0) {
            return Vec::new();
        }
        let rarity = |i: u32| parents.iter().filter(|p| p.offers(i)).count();
        let window_end = read_piece.saturating_add(self.window).min(self.pieces);
        let mut order: Vec<u32> = (read_piece.min(self.pieces)..window_end).collect();
        let mut rest: Vec<(usize, u64, u32)> = self
            .missing()
            .filter(|&i| i < read_piece || i >= window_end)
            .map(|i| (rarity(i), spread(self.salt, i), i))
            .filter(|&(r, _, _)| r > 0)
            .collect();
        rest.sort_unstable();
        order.extend(rest.into_iter().map(|(_, _, i)| i));

        // A parent holding everything (a seed) counts as a little busier:
        // it should serve what nobody else has, while children hand each
        // other the rest, or its one uplink carries the whole swarm.
        let seed_penalty: Vec<usize> = parents.iter().map(|p| if p.have.is_full() { 2 } else { 0 }).collect();
        let mut picks = Vec::new();
        for piece in order {
            if self.have[piece as usize] || self.inflight[piece as usize] {
                continue;
            }
            let best = (0..parents.len())
                .filter(|&p| slots[p] > 0 && parents[p].offers(piece))
                .min_by_key(|&p| (load[p] + seed_penalty[p], spread(self.salt ^ parents[p].key, piece), p));
            if let Some(p) = best {
                slots[p] -= 1;
                load[p] += 1;
                picks.push(Pick { parent: p, piece });
                if slots.iter().all(|&s| s == 0) {
                    break;
                }
            }
        }
        picks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parent(pieces: u32, have: &[u32], max: usize) -> ParentView {
        let mut b = Bitfield::new(pieces);
        have.iter().for_each(|&i| b.set(i));
        ParentView { key: 0, have: b, inflight: 0, max_inflight: max, excluded: false, held_back: Vec::new() }
    }

    #[test]
    fn outlook_tells_offered_from_withheld() {
        let mut p = Picker::new(6, [0]);
        p.started(1);
        let mut seed = parent(6, &[0, 1, 2, 3, 4], 4);
        seed.held_back = vec![3];
        seed.inflight = 1;
        let mut cooling = parent(6, &[4, 5], 4);
        cooling.excluded = true;
        let o = p.outlook(&[seed, cooling]);
        // Missing: 2, 3, 4, 5 (0 held, 1 in flight). Offered: 2 and 4 (by
        // the seed). Withheld: 3 (held back) and 5 (only at an excluded
        // parent). Slots: the seed's 3 free; the excluded parent's none.
        assert_eq!(o, Outlook { missing: 4, offered: 2, withheld: 2, free_slots: 3 });
    }

    #[test]
    fn window_first_in_order() {
        let p = Picker::new(10, []);
        let parents = [parent(10, &(0..10).collect::<Vec<_>>(), 3)];
        let picks = p.pick(&parents, 2);
        assert_eq!(
            picks.iter().take(2).map(|x| x.piece).collect::<Vec<_>>(),
            vec![2, 3],
            "the window comes first, in order"
        );
        assert_eq!(picks.len(), 3);
    }

    #[test]
    fn a_held_back_piece_is_asked_of_another_holder_or_not_at_all() {
        let p = Picker::new(4, []);
        let mut seed = parent(4, &[0, 1, 2, 3], 4);
        seed.held_back = vec![0];
        let child = parent(4, &[0], 4);
        let picks = p.pick(&[seed.clone(), child], 0);
        assert!(picks.contains(&Pick { parent: 1, piece: 0 }), "{picks:?}");
        assert!(!picks.contains(&Pick { parent: 0, piece: 0 }), "{picks:?}");
        // With no other holder the piece waits; the seed's others still go.
        let picks = p.pick(&[seed], 0);
        assert!(picks.iter().all(|x| x.piece != 0) && picks.len() == 3, "{picks:?}");
    }

    #[test]
    fn rarest_first_beyond_the_window() {
        let mut p = Picker::new(10, []);
        p.window = 0;
        // Piece 7 is held by parent 0 only; every other piece by both.
        let all: Vec<u32> = (0..10).collect();
        let parents = [parent(10, &all, 1), parent(10, &[0, 1, 2, 3, 4, 5, 6, 8, 9], 1)];
        let picks = p.pick(&parents, 0);
        assert_eq!(picks[0], Pick { parent: 0, piece: 7 }, "the rare piece goes first: {picks:?}");
    }

    #[test]
    fn nodes_with_different_salts_want_different_pieces() {
        let all: Vec<u32> = (0..64).collect();
        let parents = [parent(64, &all, 8)];
        let firsts: std::collections::HashSet<Vec<u32>> = (0..8u64)
            .map(|salt| {
                let mut p = Picker::new(64, []);
                p.window = 0;
                p.salt = salt;
                p.pick(&parents, 0).into_iter().map(|x| x.piece).collect()
            })
            .collect();
        assert_eq!(firsts.len(), 8, "eight nodes starting together must not all ask for the same pieces");
    }

    #[test]
    fn load_spreads_across_parents() {
        let p = Picker::new(8, []);
        let all: Vec<u32> = (0..8).collect();
        let parents = [parent(8, &all, 4), parent(8, &all, 4)];
        let picks = p.pick(&parents, 0);
        assert_eq!(picks.len(), 8);
        assert_eq!(picks.iter().filter(|x| x.parent == 0).count(), 4);
        assert_eq!(picks.iter().filter(|x| x.parent == 1).count(), 4);
    }

    #[test]
    fn children_are_preferred_over_a_seed_for_pieces_both_hold() {
        // Piece 0 is missing; the seed (everything) and a child both hold it.
        let parents = [parent(2, &[0, 1], 4), parent(2, &[0], 4)];
        for salt in 0..32 {
            let mut p = Picker::new(2, [1]);
            p.salt = salt;
            let picks = p.pick(&parents, 0);
            assert_eq!(picks, vec![Pick { parent: 1, piece: 0 }], "salt {salt}: the child, not the seed");
        }
    }

    #[test]
    fn excluded_and_busy_parents_get_nothing() {
        let p = Picker::new(4, []);
        let all: Vec<u32> = (0..4).collect();
        let mut bad = parent(4, &all, 4);
        bad.excluded = true;
        let mut full = parent(4, &all, 2);
        full.inflight = 2;
        assert!(p.pick(&[bad, full], 0).is_empty());
    }

    #[test]
    fn held_and_inflight_pieces_are_skipped() {
        let mut p = Picker::new(4, [0]);
        p.started(1);
        let parents = [parent(4, &[0, 1, 2, 3], 4)];
        let sorted = |p: &Picker| {
            let mut v: Vec<u32> = p.pick(&parents, 0).into_iter().map(|x| x.piece).collect();
            v.sort_unstable();
            v
        };
        assert_eq!(sorted(&p), vec![2, 3]);
        p.failed(1);
        p.done(2);
        assert_eq!(sorted(&p), vec![1, 3]);
    }

    proptest! {
        #[test]
        fn picks_are_valid(
            pieces in 1u32..40,
            held in proptest::collection::vec(0u32..40, 0..20),
            parents_have in proptest::collection::vec(proptest::collection::vec(0u32..40, 0..40), 1..5),
            maxes in proptest::collection::vec(0usize..6, 5),
            read in 0u32..45,
        ) {
            let p = Picker::new(pieces, held.iter().copied());
            let parents: Vec<ParentView> = parents_have.iter().enumerate().map(|(i, h)| parent(pieces, h, maxes[i])).collect();
            let picks = p.pick(&parents, read);
            let mut seen = std::collections::HashSet::new();
            let mut per_parent = vec![0usize; parents.len()];
            for pk in &picks {
                prop_assert!(seen.insert(pk.piece), "piece {} picked twice", pk.piece);
                prop_assert!(parents[pk.parent].have.get(pk.piece));
                prop_assert!(!held.contains(&pk.piece));
                per_parent[pk.parent] += 1;
            }
            for (i, n) in per_parent.iter().enumerate() {
                prop_assert!(*n <= parents[i].max_inflight);
            }
        }
    }
}
