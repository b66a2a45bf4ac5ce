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

use std::collections::BTreeSet;

use crate::swarm::picker::spread;

/// See the module docs.
#[derive(Debug, Clone)]
pub(super) struct Rarity {
    salt: u64,
    /// Counted parents holding each piece.
    holders: Vec<u16>,
    /// The holders count each listed piece is ranked under.
    listed: Vec<Option<u16>>,
    order: BTreeSet<(u16, u64, u32)>,
}

impl Rarity {
    pub(super) fn new(pieces: u32, salt: u64) -> Rarity {
        Rarity { salt, holders: vec![0; pieces as usize], listed: vec![None; pieces as usize], order: BTreeSet::new() }
    }

    /// One more counted parent holds `piece`.
    pub(super) fn add(&mut self, piece: u32) {
        if let Some(h) = self.holders.get_mut(piece as usize) {
            *h = h.saturating_add(1);
        }
    }

    /// One counted parent fewer holds `piece`.
    pub(super) fn sub(&mut self, piece: u32) {
        if let Some(h) = self.holders.get_mut(piece as usize) {
            *h = h.saturating_sub(1);
        }
    }

    /// No parent is counted any more (the round ended).
    pub(super) fn clear(&mut self) {
        self.holders.iter_mut().for_each(|h| *h = 0);
        self.listed.iter_mut().for_each(|l| *l = None);
        self.order.clear();
    }

    /// List or unlist `piece`, `wanted` (missing, with a trusted hash) or
    /// not, under its current holders count.
    pub(super) fn sync(&mut self, piece: u32, wanted: bool) {
        let i = piece as usize;
        let Some(&holders) = self.holders.get(i) else { return };
        let rank = (wanted && holders > 0).then_some(holders);
        if self.listed[i] == rank {
            return;
        }
        if let Some(old) = self.listed[i] {
            self.order.remove(&(old, spread(self.salt, piece), piece));
        }
        if let Some(h) = rank {
            self.order.insert((h, spread(self.salt, piece), piece));
        }
        self.listed[i] = rank;
    }

    /// What `add` and `sync` read first for `piece` (see
    /// `FetchCore::warm`).
    pub(super) fn warm(&self, piece: u32) -> u64 {
        let i = piece as usize;
        let holders = self.holders.get(i).copied().unwrap_or(0);
        let listed = self.listed.get(i).copied().flatten().unwrap_or(0);
        u64::from(holders) ^ u64::from(listed)
    }

    /// The listed pieces, rarest first.
    pub(super) fn ranked(&self) -> impl Iterator<Item = u32> + '_ {
        self.order.iter().map(|&(_, _, piece)| piece)
    }
}
