//! The records behind the scheduler and the small containers that hold them.
//!
//! Hosts and tasks live in [`Slab`]s and refer to each other by `u32` slot,
//! so a (task, host) pair costs one [`PeerEntry`] in the task's vector plus
//! one slot in the [`EntryIndex`] and four bytes in the host's task list.
//! Each task keeps the peers that hold something at the front of its vector
//! (`peers[..seeders]`), so choosing parents never walks peers that have
//! nothing to give.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Index, IndexMut};

use shoal_core::TaskId;

use crate::time::Millis;
use crate::types::{HostInfo, Load};

/// A host's slot in the host slab.
pub(crate) type HostSlot = u32;
/// A task's slot in the task slab.
pub(crate) type TaskSlot = u32;
/// An interned label that matches nothing (no zone, no rack).
pub(crate) const NO_LABEL: u32 = u32::MAX;

/// A vector of optional records with a free list: stable `u32` slots, O(1)
/// insert and remove. A slot is reused only after everything that named it
/// was removed with it.
pub(crate) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { slots: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, value: T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(value);
                i
            }
            None => {
                self.slots.push(Some(value));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 records")
            }
        }
    }

    pub(crate) fn remove(&mut self, i: u32) -> Option<T> {
        let value = self.slots.get_mut(i as usize)?.take();
        if value.is_some() {
            self.free.push(i);
        }
        value
    }

    pub(crate) fn get(&self, i: u32) -> Option<&T> {
        self.slots.get(i as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.slots.get_mut(i as usize)?.as_mut()
    }

    /// One past the highest slot ever used: iterate `0..end()` with `get`.
    pub(crate) fn end(&self) -> u32 {
        u32::try_from(self.slots.len()).expect("fewer than 2^32 records")
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| Some((i as u32, s.as_ref()?)))
    }

    /// Heap bytes of the slab itself (not of what the records own).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Option<T>>() + self.free.capacity() * size_of::<u32>()
    }
}

impl<T> Index<u32> for Slab<T> {
    type Output = T;

    fn index(&self, i: u32) -> &T {
        self.get(i).expect("slot refers to a live record")
    }
}

impl<T> IndexMut<u32> for Slab<T> {
    fn index_mut(&mut self, i: u32) -> &mut T {
        self.get_mut(i).expect("slot refers to a live record")
    }
}

/// SplitMix64's finalizer: a cheap, well-spread 64-bit mix.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// FNV-1a, for a task's fixed seed (never a `RandomState`: decisions must
/// be reproducible).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Hasher for keys made of our own slot numbers (not attacker-chosen, so no
/// need for SipHash's flood resistance).
#[derive(Default, Clone, Copy)]
pub(crate) struct SlotHasher(u64);

impl Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = mix(self.0 ^ n);
    }
}

/// (task, host) -> position in the task's peer vector.
pub(crate) type EntryIndex = HashMap<u64, u32, BuildHasherDefault<SlotHasher>>;

pub(crate) fn entry_key(t: TaskSlot, h: HostSlot) -> u64 {
    (u64::from(t) << 32) | u64::from(h)
}

/// Label strings -> small ids, so locality is an integer compare.
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
}

impl Interner {
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.ids.len()).expect("fewer than 2^32 labels");
        self.ids.insert(s.to_owned(), id);
        id
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        map_bytes(&self.ids) + self.ids.keys().map(String::capacity).sum::<usize>()
    }
}

/// Estimated heap bytes of a hashbrown table: buckets of (K, V) plus one
/// control byte each.
pub(crate) fn map_bytes<K, V, S>(m: &HashMap<K, V, S>) -> usize {
    if m.capacity() == 0 {
        return 0;
    }
    let buckets = if m.capacity() < 8 { m.capacity() + 1 } else { (m.capacity() * 8 / 7).next_power_of_two() };
    buckets * (size_of::<(K, V)>() + 1) + 16
}

/// A registered host.
pub(crate) struct Host {
    pub(crate) info: HostInfo,
    /// Interned zone, or [`NO_LABEL`].
    pub(crate) zone: u32,
    /// Interned (zone, rack), or [`NO_LABEL`].
    pub(crate) rack: u32,
    pub(crate) load: Load,
    /// Times this host was named a parent since its last heartbeat: uploads
    /// the heartbeat cannot know about yet, counted so that a burst of
    /// joins spreads instead of piling onto one parent.
    pub(crate) assigned: u32,
    /// Last time it told us anything.
    pub(crate) last_seen: Millis,
    /// Tasks it is a peer of.
    pub(crate) tasks: Vec<TaskSlot>,
}

impl Host {
    pub(crate) fn alive(&self, now: Millis, ttl_ms: u64) -> bool {
        !now.reached(self.last_seen, ttl_ms)
    }

    /// Uploads as far as we know: reported plus assigned since.
    pub(crate) fn uploads(&self) -> u32 {
        self.load.uploads.saturating_add(self.assigned)
    }
}

/// Recent piece failures reported against a peer as a parent: the last
/// `max_failures` report times, oldest first. That is all it takes to know
/// whether `max_failures` of them fall within the memory window.
#[derive(Default)]
pub(crate) struct FailureLog {
    times: Vec<Millis>,
    /// The last report that the peer's copy may be gone for a child
    /// (unreachable, stalled, lacking a piece it announced), as opposed to
    /// a bad piece, which costs only that piece.
    gone: Option<Millis>,
}

impl FailureLog {
    pub(crate) fn record(&mut self, now: Millis, keep: usize) {
        self.times.push(now);
        if self.times.len() > keep {
            self.times.remove(0);
        }
    }

    /// [`FailureLog::record`] of a report that the copy may be gone.
    pub(crate) fn record_gone(&mut self, now: Millis, keep: usize) {
        self.record(now, keep);
        self.gone = Some(now);
    }

    pub(crate) fn recent(&self, now: Millis, memory_ms: u64) -> u32 {
        self.times.iter().filter(|&&t| !now.reached(t, memory_ms)).count() as u32
    }

    pub(crate) fn recently_gone(&self, now: Millis, memory_ms: u64) -> bool {
        self.gone.is_some_and(|t| !now.reached(t, memory_ms))
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        size_of::<FailureLog>() + self.times.capacity() * size_of::<Millis>()
    }
}

/// One peer's state in one task. Kept small: there is one per (host, task).
pub(crate) struct PeerEntry {
    pub(crate) host: HostSlot,
    pub(crate) pieces_done: u32,
    /// Last join or progress report on this task.
    pub(crate) last_active: Millis,
    /// Failures reported against it as a parent for this task; boxed so the
    /// common case (none) costs one pointer.
    pub(crate) failures: Option<Box<FailureLog>>,
    pub(crate) complete: bool,
    /// It held an origin grant on this task, so the piece hashes it
    /// announces were computed from bytes it read from the origin (or
    /// checked against an earlier authority's): joiners may trust them.
    /// Cleared when a child reports its map wrong.
    pub(crate) authority: bool,
}

impl PeerEntry {
    /// Whether it can serve anything.
    pub(crate) fn has_pieces(&self) -> bool {
        self.complete || self.pieces_done > 0
    }

    pub(crate) fn recent_failures(&self, now: Millis, memory_ms: u64) -> u32 {
        self.failures.as_ref().map_or(0, |f| f.recent(now, memory_ms))
    }

    /// A child reported lately that this copy may be gone (not merely
    /// that a piece of it was bad).
    pub(crate) fn reported_gone(&self, now: Millis, memory_ms: u64) -> bool {
        self.failures.as_ref().is_some_and(|f| f.recently_gone(now, memory_ms))
    }
}

/// An origin grant held by a peer of the task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holder {
    pub(crate) host: HostSlot,
    /// When it got the grant or last reported more pieces: the stall clock.
    pub(crate) progressed_at: Millis,
}

/// A task: the peers of one blob from one registry.
pub(crate) struct Task {
    pub(crate) id: TaskId,
    /// Fixed per-task seed for tie-breaks.
    pub(crate) seed: u64,
    /// Piece count, once any peer reported it.
    pub(crate) pieces_total: Option<u32>,
    /// Most pieces any peer ever reported (stands in for the total until
    /// one is known).
    pub(crate) max_done: u32,
    /// Peers; `peers[..seeders]` hold at least one piece.
    pub(crate) peers: Vec<PeerEntry>,
    pub(crate) seeders: usize,
    /// How many peers are complete.
    pub(crate) complete: usize,
    /// Origin grant holders (at most `max_origin_grants`).
    pub(crate) holders: Vec<Holder>,
    /// Peers whose `authority` flag is set (a handful), so a join lists
    /// them without scanning the task's peers.
    pub(crate) authorities: Vec<HostSlot>,
    /// Queued for a grant check at the next tick.
    pub(crate) dirty: bool,
    /// When the first peer joined.
    pub(crate) created: Millis,
}

impl Task {
    pub(crate) fn new(id: TaskId, created: Millis) -> Task {
        let seed = fnv1a(id.to_string().as_bytes());
        Task {
            id,
            seed,
            pieces_total: None,
            max_done: 0,
            peers: Vec::new(),
            seeders: 0,
            complete: 0,
            holders: Vec::new(),
            authorities: Vec::new(),
            dirty: false,
            created,
        }
    }

    /// The piece count to measure progress against (at least 1).
    pub(crate) fn total_estimate(&self) -> u32 {
        self.pieces_total.unwrap_or(self.max_done).max(1)
    }

    pub(crate) fn holds(&self, h: HostSlot) -> bool {
        self.holders.iter().any(|x| x.host == h)
    }

    /// Marks host `h`'s entry an authority (see `scheduler/maps.rs`).
    pub(crate) fn set_authority(&mut self, t: TaskSlot, index: &EntryIndex, h: HostSlot, on: bool) {
        if let Some(entry) = self.entry_mut(t, index, h) {
            entry.authority = on;
        }
        let listed = self.authorities.iter().position(|&a| a == h);
        match (on, listed) {
            (true, None) => self.authorities.push(h),
            (false, Some(p)) => {
                self.authorities.swap_remove(p);
            }
            _ => {}
        }
    }

    /// The entry of host `h`, if it is a peer of this task.
    pub(crate) fn entry_mut(&mut self, t: TaskSlot, index: &EntryIndex, h: HostSlot) -> Option<&mut PeerEntry> {
        let &i = index.get(&entry_key(t, h))?;
        self.peers.get_mut(i as usize)
    }

    fn swap(&mut self, t: TaskSlot, index: &mut EntryIndex, a: usize, b: usize) {
        if a == b {
            return;
        }
        self.peers.swap(a, b);
        index.insert(entry_key(t, self.peers[a].host), a as u32);
        index.insert(entry_key(t, self.peers[b].host), b as u32);
    }

    /// Adds a peer; returns its position.
    pub(crate) fn push(&mut self, t: TaskSlot, index: &mut EntryIndex, entry: PeerEntry) -> usize {
        let has = entry.has_pieces();
        let i = self.peers.len();
        index.insert(entry_key(t, entry.host), i as u32);
        self.peers.push(entry);
        if !has {
            return i;
        }
        let j = self.seeders;
        self.swap(t, index, i, j);
        self.seeders += 1;
        j
    }

    /// Moves peer `i` across the seeder boundary if `has_pieces` changed
    /// from `had`; returns its position.
    pub(crate) fn reposition(&mut self, t: TaskSlot, index: &mut EntryIndex, i: usize, had: bool) -> usize {
        match (had, self.peers[i].has_pieces()) {
            (false, true) => {
                let j = self.seeders;
                self.swap(t, index, i, j);
                self.seeders += 1;
                j
            }
            (true, false) => {
                let j = self.seeders - 1;
                self.swap(t, index, i, j);
                self.seeders -= 1;
                j
            }
            _ => i,
        }
    }

    /// Removes peer `i`, keeping the seeders in front.
    pub(crate) fn remove(&mut self, t: TaskSlot, index: &mut EntryIndex, mut i: usize) -> PeerEntry {
        if i < self.seeders {
            let j = self.seeders - 1;
            self.swap(t, index, i, j);
            self.seeders -= 1;
            i = j;
        }
        let last = self.peers.len() - 1;
        self.swap(t, index, i, last);
        let entry = self.peers.pop().expect("peer i exists");
        index.remove(&entry_key(t, entry.host));
        if let Some(p) = self.authorities.iter().position(|&a| a == entry.host) {
            self.authorities.swap_remove(p);
        }
        entry
    }
}
