//! The pieces a round can ask for, rarest first, kept up to date as
//! parents announce, fail or leave and pieces start, arrive or fail: a
//! pick then walks a few entries instead of every piece times every parent
//! (the simulator polls a core millions of times).
//!
//! A piece is listed while it is missing (neither held nor in flight), its
//! trusted hash is known, and at least one of the round's counted parents
//! (offered, not excluded) announced it. Its rank is (holders, a per-node
//! spread of the index, index): the rarest first, and nodes that start
//! together want different pieces.
//!
//! The order is kept as one bitset per holders count, over the pieces'
//! places in the per-node spread order (fixed when the core starts): a
//! piece changing rank flips two bits, and walking the order reads a few
//! contiguous words, where a search tree chased pointers through memory
//! that a simulated swarm of thousands of cores keeps out of cache. The
//! listed pieces are also kept as a bitfield by index, so a pick whose
//! free parents offer only a few of them sorts those few instead of
//! walking the order past the pieces only busy parents hold.

use std::ops::Range;

use shoal_proto::Bitfield;

use crate::swarm::picker::spread;

/// See the module docs.
#[derive(Debug, Clone)]
pub(super) struct Rarity {
    /// By piece: its holders count, rank and place side by side (an
    /// announcement reads and changes all three: one cache miss, not
    /// three).
    slots: Vec<Slot>,
    /// The pieces listed.
    bits: Bitfield,
    /// The piece at each place.
    at_place: Vec<u32>,
    /// Words per rank: one bit per place.
    words: usize,
    /// By holders count - 1, `words` words each: its listed pieces, one
    /// bit per place (bit `p % 64` of the rank's word `p / 64`). Grown as
    /// counts grow.
    ranks: Vec<u64>,
    /// By holders count - 1: how many pieces are listed under it.
    sizes: Vec<u32>,
}

/// One piece's entry in [`Rarity`].
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Counted parents holding it.
    holders: u16,
    /// The holders count it is listed under; 0: not listed.
    rank: u16,
    /// Its place in the spread order: by (spread, index).
    place: u32,
}

impl Rarity {
    pub(super) fn new(pieces: u32, salt: u64) -> Rarity {
        let mut at_place: Vec<u32> = (0..pieces).collect();
        at_place.sort_unstable_by_key(|&piece| (spread(salt, piece), piece));
        let mut slots = vec![Slot::default(); pieces as usize];
        for (p, &piece) in at_place.iter().enumerate() {
            slots[piece as usize].place = p as u32;
        }
        Rarity {
            slots,
            bits: Bitfield::new(pieces),
            at_place,
            words: (pieces as usize).div_ceil(64),
            ranks: Vec::new(),
            sizes: Vec::new(),
        }
    }

    /// One more counted parent holds `piece`.
    pub(super) fn add(&mut self, piece: u32) {
        if let Some(s) = self.slots.get_mut(piece as usize) {
            s.holders = s.holders.saturating_add(1);
        }
    }

    /// One counted parent fewer holds `piece`.
    pub(super) fn sub(&mut self, piece: u32) {
        if let Some(s) = self.slots.get_mut(piece as usize) {
            s.holders = s.holders.saturating_sub(1);
        }
    }

    /// No parent is counted any more (the round ended).
    pub(super) fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| (s.holders, s.rank) = (0, 0));
        self.bits = Bitfield::new(self.bits.len());
        self.ranks.iter_mut().for_each(|w| *w = 0);
        self.sizes.iter_mut().for_each(|s| *s = 0);
    }

    /// List or unlist `piece`, `wanted` (missing, with a trusted hash) or
    /// not, under its current holders count.
    pub(super) fn sync(&mut self, piece: u32, wanted: bool) {
        let i = piece as usize;
        let Some(&Slot { holders, rank: old, place }) = self.slots.get(i) else { return };
        let rank = if wanted { holders } else { 0 };
        if old == rank {
            return;
        }
        let (word, bit) = (place as usize / 64, place % 64);
        if old > 0 {
            let r = usize::from(old) - 1;
            self.ranks[r * self.words + word] &= !(1 << bit);
            self.sizes[r] -= 1;
            self.bits.unset(piece);
        }
        if rank > 0 {
            let r = usize::from(rank) - 1;
            if self.sizes.len() <= r {
                self.ranks.resize((r + 1) * self.words, 0);
                self.sizes.resize(r + 1, 0);
            }
            self.ranks[r * self.words + word] |= 1 << bit;
            self.sizes[r] += 1;
            self.bits.set(piece);
        }
        self.slots[i].rank = rank;
    }

    /// What `add` and `sync` read first for `piece` (see
    /// `FetchCore::warm`).
    pub(super) fn warm(&self, piece: u32) -> u64 {
        let i = piece as usize;
        self.slots.get(i).map_or(0, |s| u64::from(s.holders) ^ u64::from(s.rank))
    }

    /// What `sync` reads after the slot for `piece` (see
    /// `FetchCore::warm`): the rank words it may clear and set when one
    /// more parent holds it.
    pub(super) fn warm_ranks(&self, piece: u32) -> u64 {
        let Some(s) = self.slots.get(piece as usize) else { return 0 };
        let word = s.place as usize / 64;
        let at = |rank: u16| self.ranks.get(usize::from(rank).checked_sub(1)? * self.words + word).copied();
        let listed = self.bits.bytes().get(piece as usize / 8).copied().unwrap_or(0);
        at(s.rank).unwrap_or(0) ^ at(s.holders.saturating_add(1)).unwrap_or(0) ^ u64::from(listed)
    }

    /// The listed pieces, rarest first.
    pub(super) fn ranked(&self) -> Ranked<'_> {
        Ranked { rarity: self, rank: 0, next: 0, bits: 0 }
    }

    /// The listed pieces any of `haves` holds, into `out` in the order a
    /// pick walks them: those in `window` by index, then the others as
    /// [`Rarity::ranked`] lists them. `false` when there are more than
    /// `limit` (`out` then holds an unspecified part of them): walking the
    /// order is then cheaper than sorting.
    pub(super) fn offered<'a>(
        &self,
        haves: impl Iterator<Item = &'a Bitfield> + Clone,
        window: &Range<u32>,
        limit: usize,
        out: &mut Vec<(u16, u32, u32)>,
    ) -> bool {
        out.clear();
        let listed = self.bits.bytes();
        for at in (0..listed.len()).step_by(8) {
            let mut word = word_at(listed, at);
            if word == 0 {
                continue;
            }
            word &= haves.clone().fold(0, |acc, h| acc | word_at(h.bytes(), at));
            while word != 0 {
                let bit = word.leading_zeros();
                word &= !(1 << 63 >> bit);
                let piece = at as u32 * 8 + bit;
                let Slot { rank, place, .. } = self.slots[piece as usize];
                if rank == 0 {
                    continue;
                }
                if out.len() == limit {
                    return false;
                }
                // Window pieces first (0 is below every listed rank), by
                // index; the others by rank, then place.
                let key = if window.contains(&piece) { (0, piece, piece) } else { (rank, place, piece) };
                out.push(key);
            }
        }
        out.sort_unstable();
        true
    }
}

/// [`Rarity::ranked`]'s walk: rank by rank, place by place.
pub(super) struct Ranked<'a> {
    rarity: &'a Rarity,
    /// The rank (holders count - 1) being walked.
    rank: usize,
    /// Its next word to read.
    next: usize,
    /// The bits of the word before it not yet handed out.
    bits: u64,
}

impl Iterator for Ranked<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let r = self.rarity;
        while self.bits == 0 {
            let &size = r.sizes.get(self.rank)?;
            if size == 0 || self.next >= r.words {
                self.rank += 1;
                self.next = 0;
                continue;
            }
            self.bits = r.ranks[self.rank * r.words + self.next];
            self.next += 1;
        }
        let bit = self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(r.at_place[(self.next - 1) * 64 + bit])
    }
}

/// The 64 bits from byte `at` of a bitfield's bytes, piece order from the
/// most significant bit; zeros past the end.
fn word_at(bytes: &[u8], at: usize) -> u64 {
    if let Some(&word) = bytes.get(at..).and_then(|b| b.first_chunk::<8>()) {
        return u64::from_be_bytes(word);
    }
    let mut word = [0u8; 8];
    let end = bytes.len().min(at + 8);
    if let Some(src) = bytes.get(at..end) {
        word[..src.len()].copy_from_slice(src);
    }
    u64::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    /// The order the docs define, from scratch.
    fn reference(r: &Rarity, salt: u64) -> Vec<u32> {
        let set: BTreeSet<(u16, u64, u32)> = (0..r.slots.len() as u32)
            .filter(|&p| r.slots[p as usize].rank > 0)
            .map(|p| (r.slots[p as usize].rank, spread(salt, p), p))
            .collect();
        set.into_iter().map(|(_, _, p)| p).collect()
    }

    #[test]
    fn ranked_is_rarest_first_then_the_spread_order_through_any_changes() {
        let mut rng = StdRng::seed_from_u64(7);
        for pieces in [1, 63, 64, 65, 300] {
            let salt = rng.random();
            let mut r = Rarity::new(pieces, salt);
            let mut wanted = vec![true; pieces as usize];
            for step in 0..3_000 {
                let piece = rng.random_range(0..pieces);
                match rng.random_range(0..10) {
                    0..=4 => r.add(piece),
                    5..=6 => r.sub(piece),
                    7..=8 => wanted[piece as usize] = !wanted[piece as usize],
                    _ if step % 500 == 0 => r.clear(),
                    _ => {}
                }
                r.sync(piece, wanted[piece as usize]);
                if step % 50 == 0 {
                    assert_eq!(r.ranked().collect::<Vec<_>>(), reference(&r, salt), "{pieces} pieces, step {step}");
                }
            }
            assert_eq!(r.ranked().collect::<Vec<_>>(), reference(&r, salt));
        }
    }

    #[test]
    fn offered_pieces_come_in_the_walks_order() {
        let mut rng = StdRng::seed_from_u64(9);
        for pieces in [5, 64, 130, 700] {
            let mut r = Rarity::new(pieces, rng.random());
            for _ in 0..pieces * 3 {
                let piece = rng.random_range(0..pieces);
                r.add(piece);
                r.sync(piece, rng.random_range(0..4) > 0);
            }
            for _ in 0..20 {
                let haves: Vec<Bitfield> = (0..rng.random_range(1..4))
                    .map(|_| {
                        let mut b = Bitfield::new(pieces);
                        (0..rng.random_range(0..pieces / 2 + 2)).for_each(|_| b.set(rng.random_range(0..pieces)));
                        b
                    })
                    .collect();
                let start = rng.random_range(0..pieces);
                let window = start..(start + 16).min(pieces);
                let offered = |p: u32| haves.iter().any(|h| h.get(p));
                let listed = |p: u32| r.slots[p as usize].rank > 0;
                let mut walk: Vec<u32> = window.clone().filter(|&p| listed(p) && offered(p)).collect();
                walk.extend(r.ranked().filter(|p| !window.contains(p) && offered(*p)));
                let mut out = Vec::new();
                assert!(r.offered(haves.iter(), &window, usize::MAX, &mut out));
                assert_eq!(out.iter().map(|k| k.2).collect::<Vec<_>>(), walk, "{pieces} pieces");
                if !walk.is_empty() {
                    assert!(!r.offered(haves.iter(), &window, walk.len() - 1, &mut out));
                }
            }
        }
    }

    #[test]
    fn a_piece_leaves_the_order_when_unwanted_or_unheld() {
        let mut r = Rarity::new(8, 1);
        r.add(3);
        r.sync(3, true);
        r.add(5);
        r.add(5);
        r.sync(5, true);
        assert_eq!(r.ranked().collect::<Vec<_>>(), [3, 5]);
        r.sync(3, false);
        assert_eq!(r.ranked().collect::<Vec<_>>(), [5]);
        r.sub(5);
        r.sub(5);
        r.sync(5, true);
        assert_eq!(r.ranked().count(), 0);
    }
}
