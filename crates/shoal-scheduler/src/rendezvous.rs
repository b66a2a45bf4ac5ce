//! Rendezvous (highest random weight) hashing: which scheduler replica owns
//! a task. Every peer computes the same order from the same replica list,
//! so all requests about one task meet at one replica while it is up, with
//! no coordination between replicas. Removing a replica moves only the keys
//! it owned (each to its second choice); adding one takes about `1/n` of
//! the keys, and no others move.
//!
//! The weight of a replica for a key is a 64-bit hash of (replica address,
//! key). The hash is spelled out here (FNV-1a, then a SplitMix64 finaliser
//! to spread FNV's weak high bits) rather than taken from `std`, whose
//! hasher may change between Rust releases: peers built by different
//! compilers must agree.

use std::net::SocketAddr;

/// `replicas` ordered for `key`: highest weight first. Duplicates are
/// kept; equal weights (astronomically unlikely) order by address.
pub fn rendezvous(replicas: &[SocketAddr], key: &[u8]) -> Vec<SocketAddr> {
    let mut weighted: Vec<(u64, SocketAddr)> = replicas.iter().map(|&r| (weight(r, key), r)).collect();
    weighted.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    weighted.into_iter().map(|(_, r)| r).collect()
}

/// The weight of `replica` for `key`.
fn weight(replica: SocketAddr, key: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.write(replica.to_string().as_bytes());
    // A separator that cannot occur in an address, so ("a:1", "2") and
    // ("a:12", "") hash differently.
    h.write(&[0xff]);
    h.write(key);
    mix(h.0)
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(n: u16) -> Vec<SocketAddr> {
        (0..n).map(|i| SocketAddr::from(([10, 0, 0, 1 + i as u8], 65004))).collect()
    }

    fn keys() -> impl Iterator<Item = Vec<u8>> {
        (0..3000u32).map(|i| format!("sha256:{i:064x}").into_bytes())
    }

    #[test]
    fn order_is_a_stable_permutation() {
        let r = replicas(5);
        let key = b"sha256:abc";
        let order = rendezvous(&r, key);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, r);
        // The same answer every time and whatever the input order.
        let mut reversed = r.clone();
        reversed.reverse();
        assert_eq!(rendezvous(&reversed, key), order);
        // Pinned: a change here would split a rolling upgrade's peers
        // across replicas.
        assert_eq!(weight(r[0], key), 0xfd45_b901_6bf6_8407);
        assert_eq!(mix(1), 0x5692_161d_100b_05e5);
    }

    #[test]
    fn keys_spread_evenly() {
        let r = replicas(3);
        let mut owned = [0usize; 3];
        for key in keys() {
            let first = rendezvous(&r, &key)[0];
            owned[r.iter().position(|&x| x == first).unwrap()] += 1;
        }
        for n in owned {
            assert!((800..1200).contains(&n), "uneven spread: {owned:?}");
        }
    }

    #[test]
    fn removing_a_replica_moves_only_its_keys() {
        let all = replicas(4);
        let gone = all[2];
        let rest: Vec<_> = all.iter().copied().filter(|&r| r != gone).collect();
        let mut moved = 0;
        for key in keys() {
            let before = rendezvous(&all, &key);
            let after = rendezvous(&rest, &key);
            if before[0] == gone {
                // Its keys go to their second choice.
                assert_eq!(after[0], before[1]);
                moved += 1;
            } else {
                assert_eq!(after[0], before[0], "a key not owned by the removed replica moved");
            }
            // The rest of the order is unchanged too.
            let expected: Vec<_> = before.into_iter().filter(|&r| r != gone).collect();
            assert_eq!(after, expected);
        }
        assert!(moved > 0);
    }

    #[test]
    fn empty_and_single() {
        assert!(rendezvous(&[], b"k").is_empty());
        assert_eq!(rendezvous(&replicas(1), b"k"), replicas(1));
    }
}
