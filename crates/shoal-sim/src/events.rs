//! The event queue: events ordered by (time, sequence number), so events
//! at the same instant run in the order they were scheduled and a seed
//! always replays the same run. The heap holds only (time, sequence,
//! slot) keys; the events (some large: scheduler messages, fetch inputs)
//! stay put in a slab, so sifting the heap moves a few words per level.
//!
//! Most events are messages that arrive one fixed latency after they are
//! sent, so they are scheduled in time order: those go to a FIFO lane
//! ([`EventQueue::push_in_order`]) instead of the heap, and a pop takes
//! the earlier of the lane's front and the heap's top by (time, sequence).
//! The order is the same as with the heap alone; only the cost differs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::clock::SimTime;

/// Events waiting for their time.
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(SimTime, u64, u32)>>,
    /// Keys pushed in nondecreasing time order (so in (time, sequence)
    /// order): the earliest is at the front.
    lane: VecDeque<(SimTime, u64, u32)>,
    /// Events by slot; `None` marks a free slot (listed in `free`).
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue { heap: BinaryHeap::new(), lane: VecDeque::new(), slots: Vec::new(), free: Vec::new(), seq: 0 }
    }
}

impl<E> EventQueue<E> {
    /// Schedule `event` at `at`.
    pub fn push(&mut self, at: SimTime, event: E) {
        let key = self.key(at, event);
        self.heap.push(Reverse(key));
    }

    /// Schedule `event` at `at`, no earlier than anything pushed this way
    /// before (a message sent now that arrives one fixed latency later).
    pub fn push_in_order(&mut self, at: SimTime, event: E) {
        match self.lane.back() {
            Some(&(last, ..)) if at < last => self.push(at, event),
            _ => {
                let key = self.key(at, event);
                self.lane.push_back(key);
            }
        }
    }

    /// The key of `event`, kept in a slot.
    fn key(&mut self, at: SimTime, event: E) -> (SimTime, u64, u32) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 events waiting")
            }
        };
        (at, self.seq, slot)
    }

    /// When the next event is due.
    pub fn next_at(&self) -> Option<SimTime> {
        let heap = self.heap.peek().map(|e| e.0.0);
        let lane = self.lane.front().map(|e| e.0);
        heap.into_iter().chain(lane).min()
    }

    /// The next event and its time.
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let from_lane = match (self.heap.peek(), self.lane.front()) {
            (Some(Reverse(h)), Some(l)) => l < h,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        let (at, _, slot) = if from_lane { self.lane.pop_front()? } else { self.heap.pop()?.0 };
        let event = self.slots[slot as usize].take().expect("a queued slot holds its event");
        self.free.push(slot);
        Some((at, event))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len() + self.lane.len()
    }

    /// No events waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty() && self.lane.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_in_scheduling_order() {
        let mut q = EventQueue::default();
        q.push(SimTime(5), "late");
        q.push(SimTime(1), "first");
        q.push(SimTime(1), "second");
        q.push(SimTime(3), "middle");
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["first", "second", "middle", "late"]);
    }

    #[test]
    fn the_lane_and_the_heap_pop_in_one_order() {
        let mut q = EventQueue::default();
        q.push_in_order(SimTime(2), "lane 2");
        q.push(SimTime(2), "heap 2");
        q.push_in_order(SimTime(2), "lane 2 again");
        q.push(SimTime(1), "heap 1");
        q.push_in_order(SimTime(3), "lane 3");
        // Earlier than the lane's last: it goes to the heap, in its place.
        q.push_in_order(SimTime(1), "lane 1");
        q.push(SimTime(4), "heap 4");
        assert_eq!(q.len(), 7);
        assert_eq!(q.next_at(), Some(SimTime(1)));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, ["heap 1", "lane 1", "lane 2", "heap 2", "lane 2 again", "lane 3", "heap 4"]);
        assert!(q.is_empty());
    }
}
