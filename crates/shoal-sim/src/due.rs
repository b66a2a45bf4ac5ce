//! The flows' completion times as an indexed 4-ary min-heap: one entry per
//! running flow, ordered by (time, flow), moved in place when a flow's
//! rate changes and taken out when it ends, so the heap never holds stale
//! entries (a shared uplink changes every one of its flows' rates at each
//! start and end).

use crate::clock::SimTime;

/// Children per entry: a wider heap is shallower, so a moved entry
/// crosses fewer levels (each a likely cache miss, in `pos` too), and a
/// node's children share a cache line.
const ARITY: usize = 4;

/// [`Due::pos`] of a flow without an entry.
const ABSENT: u32 = u32::MAX;

/// See the module docs.
#[derive(Default)]
pub(crate) struct Due {
    heap: Vec<(SimTime, u32)>,
    /// By flow: its entry's index in `heap`, or [`ABSENT`].
    pos: Vec<u32>,
}

impl Due {
    /// Flow `f` completes at `at` (replacing its entry, if any).
    pub(crate) fn set(&mut self, f: u32, at: SimTime) {
        let fi = f as usize;
        if self.pos.len() <= fi {
            self.pos.resize(fi + 1, ABSENT);
        }
        match self.pos[fi] {
            ABSENT => {
                self.heap.push((at, f));
                self.pos[fi] = (self.heap.len() - 1) as u32;
                self.up(self.heap.len() - 1);
            }
            i => {
                let i = i as usize;
                let old = self.heap[i].0;
                self.heap[i].0 = at;
                if at < old {
                    self.up(i);
                } else {
                    self.down(i);
                }
            }
        }
    }

    /// Flow `f` no longer completes (it ended or was removed).
    pub(crate) fn remove(&mut self, f: u32) {
        let Some(&i) = self.pos.get(f as usize) else { return };
        if i == ABSENT {
            return;
        }
        let i = i as usize;
        self.pos[f as usize] = ABSENT;
        let last = self.heap.pop().expect("an entry");
        if i < self.heap.len() {
            self.heap[i] = last;
            self.pos[last.1 as usize] = i as u32;
            self.up(i);
            self.down(self.pos[last.1 as usize] as usize);
        }
    }

    /// The earliest (time, flow).
    pub(crate) fn peek(&self) -> Option<(SimTime, u32)> {
        self.heap.first().copied()
    }

    fn up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if self.heap[parent] <= self.heap[i] {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn down(&mut self, mut i: usize) {
        loop {
            let first = ARITY * i + 1;
            let end = (first + ARITY).min(self.heap.len());
            let mut least = i;
            for c in first..end {
                if self.heap[c] < self.heap[least] {
                    least = c;
                }
            }
            if least == i {
                break;
            }
            self.swap(i, least);
            i = least;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_after_moves_and_removals() {
        let mut due = Due::default();
        for (f, t) in [(0, 50), (1, 10), (2, 30), (3, 20), (4, 40)] {
            due.set(f, SimTime(t));
        }
        due.set(1, SimTime(60)); // later
        due.set(4, SimTime(5)); // sooner
        due.remove(3);
        let mut order = Vec::new();
        while let Some((at, f)) = due.peek() {
            order.push((at.0, f));
            due.remove(f);
        }
        assert_eq!(order, [(5, 4), (30, 2), (50, 0), (60, 1)]);
    }

    #[test]
    fn many_moves_and_removals_keep_the_earliest_first() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(7);
        let mut due = Due::default();
        // The reference: each flow's time, or none.
        let mut times: Vec<Option<u64>> = vec![None; 300];
        for step in 0..20_000 {
            let f = rng.random_range(0..times.len());
            if rng.random_bool(0.2) {
                due.remove(f as u32);
                times[f] = None;
            } else {
                // Few distinct times: ties are broken by flow.
                let at = rng.random_range(0..50);
                due.set(f as u32, SimTime(at));
                times[f] = Some(at);
            }
            let least = times.iter().enumerate().filter_map(|(f, t)| Some((SimTime((*t)?), f as u32))).min();
            assert_eq!(due.peek(), least, "step {step}");
        }
    }
}
