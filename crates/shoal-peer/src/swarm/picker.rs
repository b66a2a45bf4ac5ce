//! One download's pieces as the fetch core keeps them: which are held and
//! which are in flight, the node's salt that spreads its choices from
//! other nodes', and the [`Outlook`] of what the parents could give now
//! (for the driver's debug log).
//!
//! The choice of which piece to ask which parent for is the fetch core's
//! (`fetch::rounds`); this is the bookkeeping it chooses from.

use shoal_proto::Bitfield;

/// One parent as the [`Outlook`] counts it.
#[derive(Debug, Clone)]
pub struct ParentView {
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

/// The pieces of one download: held, in flight, or missing.
#[derive(Debug, Clone)]
pub struct Picker {
    pieces: u32,
    /// By piece: [`HAVE`] and [`INFLIGHT`] bits, side by side (an
    /// announcement reads both: one cache line, not two).
    state: Vec<u8>,
    /// Per-node salt for ordering equally rare pieces and breaking ties
    /// between parents: nodes that start together must want *different*
    /// pieces, or they have nothing to trade and all wait on the seed; and
    /// every child breaking ties the same way (say, toward the complete
    /// seed listed first) turns the swarm into a star.
    pub salt: u64,
}

/// [`Picker::state`]: the piece is held.
const HAVE: u8 = 1;
/// [`Picker::state`]: a request for it is in flight.
const INFLIGHT: u8 = 2;

/// A cheap, well-mixed hash of (salt, piece) (SplitMix64 finaliser).
pub(crate) fn spread(salt: u64, piece: u32) -> u64 {
    let mut z = salt ^ (u64::from(piece).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Picker {
    /// A picker over `pieces` pieces, `held` already stored.
    pub fn new(pieces: u32, held: impl IntoIterator<Item = u32>) -> Picker {
        let mut state = vec![0; pieces as usize];
        for i in held {
            if i < pieces {
                state[i as usize] = HAVE;
            }
        }
        Picker { pieces, state, salt: 0 }
    }

    /// A request for `piece` went out.
    pub fn started(&mut self, piece: u32) {
        self.state[piece as usize] |= INFLIGHT;
    }

    /// The piece arrived and verified.
    pub fn done(&mut self, piece: u32) {
        self.state[piece as usize] = HAVE;
    }

    /// The request failed; the piece is missing again.
    pub fn failed(&mut self, piece: u32) {
        self.state[piece as usize] &= !INFLIGHT;
    }

    /// Every request in flight is abandoned: those pieces are missing again.
    pub fn abandon(&mut self) {
        self.state.iter_mut().for_each(|f| *f &= !INFLIGHT);
    }

    /// `piece` is held.
    pub fn holds(&self, piece: u32) -> bool {
        self.state.get(piece as usize).is_some_and(|&f| f & HAVE != 0)
    }

    /// A request for `piece` is in flight.
    pub fn is_inflight(&self, piece: u32) -> bool {
        self.state.get(piece as usize).is_some_and(|&f| f & INFLIGHT != 0)
    }

    /// The first missing piece (neither held nor in flight) at or after
    /// `from`, else the first one before it.
    pub fn first_missing_from(&self, from: u32) -> Option<u32> {
        let missing = |&i: &u32| self.state[i as usize] == 0;
        (from.min(self.pieces)..self.pieces).find(missing).or_else(|| (0..from.min(self.pieces)).find(missing))
    }

    /// Every piece is held.
    pub fn complete(&self) -> bool {
        self.state.iter().all(|&f| f & HAVE != 0)
    }

    /// Pieces neither held nor in flight.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.pieces).filter(|&i| self.state[i as usize] == 0)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(pieces: u32, have: &[u32], max: usize) -> ParentView {
        let mut b = Bitfield::new(pieces);
        have.iter().for_each(|&i| b.set(i));
        ParentView { have: b, inflight: 0, max_inflight: max, excluded: false, held_back: Vec::new() }
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
}
