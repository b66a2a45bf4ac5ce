//! Origin election without a scheduler: which of the nodes downloading a
//! blob fetches it from the origin.
//!
//! Rendezvous (highest random weight) hashing: every candidate host gets the
//! weight SHA-256(task, host) and the heaviest one that is not excluded
//! wins. Every node that sees the same candidates elects the same winner
//! with no messages exchanged; a candidate joining changes the winner only
//! if it outweighs the current one (so mostly it does not), and when the
//! winner dies or stalls, dropping it elects the next heaviest, the same
//! one everywhere. Pure: no clock, no I/O.

use std::collections::HashSet;

use sha2::{Digest as _, Sha256};
use shoal_core::{HostId, TaskId};

/// The weight of `host` for `task`; ties (never seen in practice with 64
/// bits) are broken by host name so the order stays total.
fn weight<'a>(task: &TaskId, host: &'a HostId) -> (u64, &'a str) {
    let mut h = Sha256::new();
    h.update(b"shoal/elect/v1\0");
    h.update(task.registry().as_bytes());
    h.update(b"\0");
    h.update(task.digest().to_string().as_bytes());
    h.update(b"\0");
    h.update(host.as_str().as_bytes());
    let out = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out[..8]);
    (u64::from_be_bytes(first), host.as_str())
}

/// The candidates in election order (winner first, then who takes over),
/// each host once.
pub fn ranking<'a>(task: &TaskId, candidates: &'a [HostId]) -> Vec<&'a HostId> {
    let mut ranked: Vec<&HostId> = candidates.iter().collect::<HashSet<_>>().into_iter().collect();
    ranked.sort_by(|a, b| weight(task, b).cmp(&weight(task, a)));
    ranked
}

/// The host that fetches `task` from the origin: the heaviest candidate
/// not in `excluded` (those known dead or stalled). `None` when every
/// candidate is excluded.
pub fn elect<'a>(task: &TaskId, candidates: &'a [HostId], excluded: &HashSet<HostId>) -> Option<&'a HostId> {
    candidates.iter().filter(|h| !excluded.contains(*h)).max_by(|a, b| weight(task, a).cmp(&weight(task, b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::Digest;

    fn task(s: &str) -> TaskId {
        TaskId::new("docker.io", Digest::sha256_of(s.as_bytes())).unwrap()
    }

    fn hosts(n: usize) -> Vec<HostId> {
        (0..n).map(|i| format!("node-{i}").parse().unwrap()).collect()
    }

    #[test]
    fn deterministic_whatever_the_order() {
        let t = task("layer");
        let hs = hosts(8);
        let winner = elect(&t, &hs, &HashSet::new()).unwrap().clone();
        let mut reversed = hs.clone();
        reversed.reverse();
        assert_eq!(elect(&t, &reversed, &HashSet::new()), Some(&winner));
        let mut dup = hs.clone();
        dup.extend(hs.iter().cloned());
        assert_eq!(elect(&t, &dup, &HashSet::new()), Some(&winner));
        assert_eq!(ranking(&t, &hs)[0], &winner);
        assert_eq!(ranking(&t, &dup).len(), 8);
    }

    #[test]
    fn winners_spread_over_blobs() {
        // Different blobs elect different nodes, so origin load spreads.
        let hs = hosts(8);
        let winners: HashSet<&HostId> =
            (0..64).map(|i| elect(&task(&format!("blob-{i}")), &hs, &HashSet::new()).unwrap()).collect();
        assert!(winners.len() >= 6, "64 blobs over 8 nodes elected only {}", winners.len());
    }

    #[test]
    fn stable_when_losers_join() {
        let t = task("layer");
        let mut hs = hosts(4);
        let winner = elect(&t, &hs, &HashSet::new()).unwrap().clone();
        let mut joined_losers = 0;
        for i in 100..300 {
            let newcomer: HostId = format!("node-{i}").parse().unwrap();
            let mut with = hs.clone();
            with.push(newcomer.clone());
            let w = elect(&t, &with, &HashSet::new()).unwrap().clone();
            if w == newcomer {
                continue; // a heavier newcomer may win; the rule is about the others
            }
            assert_eq!(w, winner, "{newcomer} does not win yet moved the election");
            hs = with;
            joined_losers += 1;
        }
        assert!(joined_losers > 0);
    }

    #[test]
    fn moves_to_the_next_on_death() {
        let t = task("layer");
        let hs = hosts(6);
        let order = ranking(&t, &hs);
        let mut dead = HashSet::new();
        for expected in &order {
            assert_eq!(elect(&t, &hs, &dead), Some(*expected));
            dead.insert((*expected).clone());
        }
        assert_eq!(elect(&t, &hs, &dead), None);
        // Only the winner's death moves it: a dead loser changes nothing.
        let loser: HashSet<HostId> = [order[3].clone()].into();
        assert_eq!(elect(&t, &hs, &loser), Some(order[0]));
    }
}
