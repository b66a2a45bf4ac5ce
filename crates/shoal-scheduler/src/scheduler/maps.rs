//! Trusted piece maps: which peers of a task may vouch for its piece
//! hashes, and the final maps the scheduler keeps for later joiners.
//!
//! A child checks every piece against a hash that does not come from the
//! node sending the bytes. The hashes come from an *authority*: a peer that
//! held an origin grant on the task, so it computed them from bytes it read
//! from the origin (or checked against an earlier authority's map). When an
//! authority completes the blob (its digest matched) it reports its final
//! map, which is kept here, under a byte budget, for joiners that arrive
//! after the authority left. When neither is known (the scheduler
//! restarted, or the map was dropped) but a peer holds the blob complete,
//! that peer is made the authority: its blob passed its digest, so its
//! piece hashes are final, and a joiner gets them from it directly. A peer
//! still downloading is never an authority. A child whose blob failed its
//! digest after every piece matched reports the authority (`BadMap`): it
//! stops being one, and its map is dropped.

use std::collections::HashMap;

use shoal_core::HostId;

use crate::state::{HostSlot, TaskSlot, entry_key, map_bytes};
use crate::time::Millis;

use super::Scheduler;

/// A final piece map and who vouched for it.
struct Stored {
    hashes: Box<[[u8; 32]]>,
    from: HostId,
    used: Millis,
}

/// Final piece maps by task, at most `budget` bytes of hashes; the least
/// recently used go first when a new one does not fit.
pub(crate) struct MapStore {
    maps: HashMap<TaskSlot, Stored>,
    bytes: usize,
    budget: usize,
}

impl MapStore {
    pub(crate) fn new(budget: usize) -> MapStore {
        MapStore { maps: HashMap::new(), bytes: 0, budget }
    }

    /// Keeps `hashes` as task `t`'s final map, vouched for by `from`.
    pub(crate) fn put(&mut self, now: Millis, t: TaskSlot, from: HostId, hashes: Vec<[u8; 32]>) {
        let size = hashes.len() * 32;
        if size > self.budget {
            return;
        }
        self.remove(t);
        while self.bytes + size > self.budget {
            let Some((&oldest, _)) = self.maps.iter().min_by_key(|(_, m)| m.used) else {
                break;
            };
            self.remove(oldest);
        }
        self.bytes += size;
        self.maps.insert(t, Stored { hashes: hashes.into_boxed_slice(), from, used: now });
    }

    /// Task `t`'s final map, if held (and marks it used).
    pub(crate) fn get(&mut self, now: Millis, t: TaskSlot) -> Option<&[[u8; 32]]> {
        let m = self.maps.get_mut(&t)?;
        m.used = now;
        Some(&m.hashes)
    }

    pub(crate) fn contains(&self, t: TaskSlot) -> bool {
        self.maps.contains_key(&t)
    }

    /// Who vouched for task `t`'s map.
    pub(crate) fn source(&self, t: TaskSlot) -> Option<&HostId> {
        self.maps.get(&t).map(|m| &m.from)
    }

    pub(crate) fn remove(&mut self, t: TaskSlot) {
        if let Some(m) = self.maps.remove(&t) {
            self.bytes -= m.hashes.len() * 32;
        }
    }

    /// Maps held, and bytes of hashes.
    pub(crate) fn len_and_bytes(&self) -> (usize, usize) {
        (self.maps.len(), self.bytes)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        map_bytes(&self.maps) + self.bytes
    }
}

impl Scheduler {
    /// Task `t`'s final map and the host that vouched for it, if held.
    pub(crate) fn final_map(&mut self, now: Millis, t: TaskSlot) -> Option<(HostId, Vec<[u8; 32]>)> {
        let from = self.maps.source(t)?.clone();
        Some((from, self.maps.get(now, t)?.to_vec()))
    }

    /// Whether a joiner of task `t` can get trusted piece hashes: the
    /// scheduler holds the final map, or a live authority with fewer than
    /// `max_failures` recent failures is a peer of the task, or one can be
    /// made of a live complete peer without recent failures. Without any,
    /// copies held by other peers cannot be checked, so they do not count
    /// as a reason to keep the joiner from the origin.
    pub(crate) fn ensure_trust(&mut self, now: Millis, t: TaskSlot) -> bool {
        if self.maps.contains(t) || !self.authorities(now, t, None).is_empty() {
            return true;
        }
        let (ttl, memory) = (self.limits.ttl_ms, self.limits.failure_ms);
        let task = &self.tasks[t];
        let best = task
            .peers
            .iter()
            .filter(|p| p.complete && self.hosts[p.host].alive(now, ttl) && p.recent_failures(now, memory) == 0)
            .max_by_key(|p| (p.last_active, std::cmp::Reverse(p.host)))
            .map(|p| p.host);
        match best {
            Some(h) => {
                self.make_authority(t, h);
                true
            }
            None => false,
        }
    }

    /// The live authorities of task `t` other than `except`, best first
    /// (complete, then most pieces).
    pub(crate) fn authorities(&self, now: Millis, t: TaskSlot, except: Option<HostSlot>) -> Vec<HostSlot> {
        let (ttl, memory, max) = (self.limits.ttl_ms, self.limits.failure_ms, self.limits.max_failures);
        let task = &self.tasks[t];
        let mut found: Vec<(bool, u32, HostSlot)> = task
            .authorities
            .iter()
            .filter(|&&a| Some(a) != except)
            .filter_map(|&a| self.index.get(&entry_key(t, a)).map(|&i| &task.peers[i as usize]))
            .filter(|p| self.hosts[p.host].alive(now, ttl) && p.recent_failures(now, memory) < max)
            .map(|p| (p.complete, p.pieces_done, p.host))
            .collect();
        found.sort_by(|a, b| b.cmp(a));
        found.into_iter().map(|(_, _, h)| h).collect()
    }

    /// `h` now holds an origin grant on task `t`: its hashes are trusted.
    pub(crate) fn make_authority(&mut self, t: TaskSlot, h: HostSlot) {
        self.tasks[t].set_authority(t, &self.index, h, true);
    }

    /// A child found `parent`'s piece map wrong on task `t`: it is no
    /// authority any more, counts as failed for the whole failure memory,
    /// and a final map it vouched for is dropped.
    pub(crate) fn revoke_authority(&mut self, now: Millis, t: TaskSlot, parent: HostSlot) {
        let keep = self.limits.max_failures as usize;
        self.tasks[t].set_authority(t, &self.index, parent, false);
        if let Some(entry) = self.tasks[t].entry_mut(t, &self.index, parent) {
            let log = entry.failures.get_or_insert_with(Box::default);
            for _ in 0..keep {
                log.record(now, keep);
            }
        }
        if self.maps.source(t) == Some(&self.hosts[parent].info.id) {
            self.maps.remove(t);
        }
        self.release(t, parent);
        self.note(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_evicts_least_recently_used() {
        let mut m = MapStore::new(3 * 32 * 2);
        let h: HostId = "a".parse().unwrap();
        m.put(Millis(1), 1, h.clone(), vec![[1; 32]; 3]);
        m.put(Millis(2), 2, h.clone(), vec![[2; 32]; 3]);
        assert!(m.get(Millis(3), 1).is_some());
        m.put(Millis(4), 3, h.clone(), vec![[3; 32]; 3]);
        assert!(m.contains(1) && m.contains(3) && !m.contains(2));
        assert_eq!(m.len_and_bytes(), (2, 6 * 32));
        m.put(Millis(5), 4, h, vec![[4; 32]; 7]);
        assert!(!m.contains(4), "a map larger than the budget is not kept");
        m.remove(1);
        assert_eq!(m.len_and_bytes(), (1, 3 * 32));
    }
}
