//! Which pieces of a blob a peer holds: one bit per piece, bit `i` of byte
//! `i / 8` (most significant first), as BitTorrent does.

/// A fixed-length set of piece indices.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bitfield {
    len: u32,
    bits: Vec<u8>,
}

impl Bitfield {
    /// An empty set over `len` pieces.
    pub fn new(len: u32) -> Bitfield {
        Bitfield { len, bits: vec![0; (len as usize).div_ceil(8)] }
    }

    /// A full set over `len` pieces.
    pub fn full(len: u32) -> Bitfield {
        let mut b = Bitfield::new(len);
        (0..len).for_each(|i| b.set(i));
        b
    }

    /// Number of pieces covered.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Covers no pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Does it hold piece `i`? (False out of range.)
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Add piece `i`; ignored out of range.
    pub fn set(&mut self, i: u32) {
        if i < self.len {
            self.bits[(i / 8) as usize] |= 0x80 >> (i % 8);
        }
    }

    /// Remove piece `i`; ignored out of range.
    pub fn unset(&mut self, i: u32) {
        if i < self.len {
            self.bits[(i / 8) as usize] &= !(0x80 >> (i % 8));
        }
    }

    /// The bits as on the wire: piece `i` is bit `0x80 >> (i % 8)` of byte
    /// `i / 8`, no bit set beyond `len`.
    pub fn bytes(&self) -> &[u8] {
        &self.bits
    }

    /// How many pieces it holds.
    pub fn count(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// Holds every piece.
    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }

    /// The pieces both hold (over the shorter length).
    pub fn intersect(&self, other: &Bitfield) -> Bitfield {
        let len = self.len.min(other.len);
        let mut out = Bitfield::new(len);
        for (o, (a, b)) in out.bits.iter_mut().zip(self.bits.iter().zip(&other.bits)) {
            *o = a & b;
        }
        if !len.is_multiple_of(8)
            && let Some(last) = out.bits.last_mut()
        {
            *last &= !(0xFF >> (len % 8));
        }
        out
    }

    /// The pieces held, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }

    /// Checks a bitfield received from the wire: length matches and no bit
    /// beyond `len` is set.
    pub fn is_valid_for(&self, pieces: u32) -> bool {
        self.len == pieces
            && self.bits.len() == (pieces as usize).div_ceil(8)
            && (pieces.is_multiple_of(8) || self.bits.last().is_none_or(|b| b & (0xFF >> (pieces % 8)) == 0))
    }
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.count(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn intersect_keeps_common_pieces_only() {
        let (mut a, mut b) = (Bitfield::new(11), Bitfield::new(11));
        [0, 3, 9, 10].iter().for_each(|&i| a.set(i));
        [3, 4, 10].iter().for_each(|&i| b.set(i));
        let c = a.intersect(&b);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![3, 10]);
        assert!(c.is_valid_for(11));
        assert_eq!(Bitfield::full(9).intersect(&Bitfield::full(20)).count(), 9);
    }

    #[test]
    fn set_get_count() {
        let mut b = Bitfield::new(10);
        assert_eq!(b.count(), 0);
        b.set(0);
        b.set(9);
        b.set(10);
        assert!(b.get(0) && b.get(9) && !b.get(10) && !b.get(5));
        assert_eq!(b.bytes(), [0x80, 0x40]);
        b.set(5);
        b.unset(5);
        b.unset(10);
        assert_eq!(b.bytes(), [0x80, 0x40]);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![0, 9]);
        assert!(b.is_valid_for(10));
        assert!(!b.is_valid_for(11));
        assert!(Bitfield::full(10).is_full());
    }

    #[test]
    fn stray_bits_are_invalid() {
        let bad = Bitfield { len: 3, bits: vec![0b0001_0000] };
        assert!(!bad.is_valid_for(3));
    }

    proptest! {
        #[test]
        fn set_bits_are_exactly_those_set(len in 0u32..300, picks in proptest::collection::vec(0u32..300, 0..50)) {
            let mut b = Bitfield::new(len);
            for &p in &picks { b.set(p); }
            let want: std::collections::BTreeSet<u32> = picks.into_iter().filter(|&p| p < len).collect();
            prop_assert_eq!(b.iter().collect::<Vec<_>>(), want.into_iter().collect::<Vec<_>>());
            prop_assert!(b.is_valid_for(len));
        }
    }
}
