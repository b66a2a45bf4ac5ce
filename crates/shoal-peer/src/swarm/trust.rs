//! [`TrustedMap`]: the piece hashes a child checks pieces against, and who
//! vouched for each (pure data).
//!
//! A hash is trusted only from an authority of the task (a peer the
//! scheduler granted the origin, so it hashed bytes it read from the
//! origin) or from the scheduler's final map; never from the node that
//! sends the piece's bytes, unless that node is the authority itself. Every
//! other parent's announced hashes are only compared against this map: a
//! parent announcing a different hash for a piece holds wrong bytes (or
//! lies), and is dropped before any of its bytes are asked for.
//!
//! When the whole blob fails its digest although every piece matched this
//! map, the map was wrong: [`TrustedMap::vouchers`] names the authorities
//! to blame.

use shoal_core::HostId;
use shoal_proto::Bitfield;

/// What learning a hash did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// The piece's hash is known now.
    New,
    /// It was known, with the same value.
    Same,
    /// It was known with another value (the first one stays): two
    /// authorities disagree, so one of them is wrong.
    Conflict,
}

/// What a hash announced by a parent says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The trusted hash is not known yet.
    Unknown,
    /// It matches the trusted hash.
    Match,
    /// It differs from the trusted hash.
    Mismatch,
}

/// Trusted hashes of one blob's pieces; see the module docs.
#[derive(Debug, Clone)]
pub struct TrustedMap {
    hashes: Vec<Option<[u8; 32]>>,
    voucher: Vec<u16>,
    hosts: Vec<HostId>,
    known: Bitfield,
    /// How many hashes are known.
    known_count: u32,
    /// Pieces stored after matching this map.
    used: Bitfield,
    conflicts: u32,
}

impl TrustedMap {
    /// Nothing known yet, for a blob of `pieces` pieces.
    pub fn new(pieces: u32) -> TrustedMap {
        TrustedMap {
            hashes: vec![None; pieces as usize],
            voucher: vec![0; pieces as usize],
            hosts: Vec::new(),
            known: Bitfield::new(pieces),
            known_count: 0,
            used: Bitfield::new(pieces),
            conflicts: 0,
        }
    }

    /// `from` (an authority) says piece `i` hashes to `hash`.
    pub fn learn(&mut self, i: u32, hash: [u8; 32], from: &HostId) -> Learned {
        let Some(slot) = self.hashes.get_mut(i as usize) else { return Learned::Same };
        match slot {
            Some(h) if *h == hash => Learned::Same,
            Some(_) => {
                self.conflicts += 1;
                Learned::Conflict
            }
            None => {
                *slot = Some(hash);
                let who = match self.hosts.iter().position(|h| h == from) {
                    Some(p) => p,
                    None => {
                        self.hosts.push(from.clone());
                        self.hosts.len() - 1
                    }
                };
                self.voucher[i as usize] = who as u16;
                self.known.set(i);
                self.known_count += 1;
                Learned::New
            }
        }
    }

    /// `from` vouches for a whole map (one hash per piece, by index);
    /// ignored when its length is not the blob's piece count.
    pub fn learn_all(&mut self, hashes: &[[u8; 32]], from: &HostId) -> bool {
        if hashes.len() != self.hashes.len() {
            return false;
        }
        for (i, h) in hashes.iter().enumerate() {
            self.learn(i as u32, *h, from);
        }
        true
    }

    /// The trusted hash of piece `i`, if known.
    pub fn get(&self, i: u32) -> Option<[u8; 32]> {
        self.hashes.get(i as usize).copied().flatten()
    }

    /// What `hash`, announced by a parent for piece `i`, says.
    pub fn check(&self, i: u32, hash: &[u8; 32]) -> Check {
        match self.get(i) {
            None => Check::Unknown,
            Some(h) if h == *hash => Check::Match,
            Some(_) => Check::Mismatch,
        }
    }

    /// Pieces whose hash is known: the only ones a child may fetch from a
    /// peer.
    pub fn known(&self) -> &Bitfield {
        &self.known
    }

    /// How many pieces' hashes are known.
    pub fn known_count(&self) -> u32 {
        self.known_count
    }

    /// Whether every piece's hash is known.
    pub fn is_complete(&self) -> bool {
        self.known_count == self.known.len()
    }

    /// Piece `i` was stored after matching this map.
    pub fn used(&mut self, i: u32) {
        self.used.set(i);
    }

    /// The hosts that vouched for pieces stored after matching this map:
    /// whom to blame when the blob they make has the wrong digest.
    pub fn blame(&self) -> Vec<HostId> {
        self.vouchers(self.used.iter())
    }

    /// How many times two authorities disagreed.
    pub fn conflicts(&self) -> u32 {
        self.conflicts
    }

    /// The hosts that vouched for any of `pieces`.
    pub fn vouchers(&self, pieces: impl IntoIterator<Item = u32>) -> Vec<HostId> {
        let mut out: Vec<HostId> = Vec::new();
        for i in pieces {
            if self.get(i).is_some() {
                let h = &self.hosts[self.voucher[i as usize] as usize];
                if !out.contains(h) {
                    out.push(h.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(n: &str) -> HostId {
        n.parse().unwrap()
    }

    #[test]
    fn first_voucher_wins_and_disagreement_is_counted() {
        let mut m = TrustedMap::new(4);
        assert_eq!(m.check(1, &[1; 32]), Check::Unknown);
        assert_eq!(m.learn(1, [1; 32], &host("seed")), Learned::New);
        assert_eq!(m.learn(1, [1; 32], &host("other")), Learned::Same);
        assert_eq!(m.learn(1, [2; 32], &host("other")), Learned::Conflict);
        assert_eq!(m.get(1), Some([1; 32]));
        assert_eq!(m.conflicts(), 1);
        assert_eq!(m.check(1, &[1; 32]), Check::Match);
        assert_eq!(m.check(1, &[2; 32]), Check::Mismatch);
        assert_eq!(m.known().iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(m.learn(9, [1; 32], &host("seed")), Learned::Same, "out of range is ignored");
    }

    #[test]
    fn vouchers_name_who_vouched_for_the_pieces_used() {
        let mut m = TrustedMap::new(3);
        m.learn(0, [0; 32], &host("a"));
        assert!(!m.learn_all(&[[9; 32]; 2], &host("b")), "wrong length");
        assert!(m.learn_all(&[[0; 32], [1; 32], [2; 32]], &host("b")));
        assert!(m.is_complete());
        assert_eq!(m.vouchers([0]), vec![host("a")]);
        assert_eq!(m.vouchers([0, 1, 2]), vec![host("a"), host("b")]);
        assert!(m.vouchers(std::iter::empty()).is_empty());
        assert!(m.blame().is_empty(), "nothing stored: nobody to blame");
        m.used(2);
        assert_eq!(m.blame(), vec![host("b")]);
    }
}
