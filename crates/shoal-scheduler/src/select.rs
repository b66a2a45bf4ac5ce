//! Parent selection: whom a joining child should fetch pieces from.
//!
//! # Candidates
//! A peer of the task is offered as a parent only if all of these hold:
//! - it is not the child itself;
//! - it holds at least one piece (`pieces_done > 0`) or is complete, so a
//!   peer that is still downloading is offered too (pipelining);
//! - its host is alive (it sent something within `host_ttl`);
//! - its host is not `busy` and has a free upload slot: reported uploads
//!   plus the times the scheduler named it a parent since that report are
//!   below `max_uploads`, or below [`LAG_OVERBOOK`] × `max_uploads` for a
//!   lagging child (one that holds pieces but is more than 1/[`LAG_SHARE`]
//!   of them behind the most any peer reported);
//! - fewer than `max_failures` piece failures were reported against it for
//!   this task within `failure_memory`.
//!
//! # Score
//! Each candidate gets an integer score, the sum of:
//! - progress: complete = [`COMPLETE`]; downloading =
//!   [`PROGRESS`] × done / total (total as reported, else the most pieces
//!   any peer reported);
//! - locality: same rack (within the same zone) = [`SAME_RACK`], same
//!   zone = [`SAME_ZONE`], otherwise 0;
//! - free upload capacity: [`PER_DOUBLING`] per doubling of the bandwidth a
//!   new child can expect, `(upload_capacity − upload_bps) / (uploads + 1)`
//!   bytes/s, at most [`MAX_DOUBLINGS`] doublings;
//! - recent failures: −[`PER_FAILURE`] each, at most −[`MAX_FAILURE_PENALTY`].
//!
//! The weights make a complete peer outrank every downloading one
//! (10,000 − 3,000 > 2,000 + 2,000 + 2,000), and among candidates equal in
//! all else, more pieces, closer, more free capacity and fewer failures each
//! rank higher. Exact ties go by a hash of (task, child, parent), so children
//! joining together start from different parents; counting each offer as an
//! upload until the next heartbeat spreads a burst further.
//!
//! The best `parents_per_join` are returned, best first. A task with more
//! than `scan_limit` peers holding pieces is sampled: the join looks at
//! `scan_limit` of them from a per-child offset, so a decision costs
//! O(min(seeders, scan_limit)), never O(hosts).

use std::cmp::Reverse;

use crate::state::{Host, HostSlot, NO_LABEL, Slab, Task, mix};
use crate::time::Millis;

/// Score of a complete parent.
pub const COMPLETE: i64 = 10_000;
/// Score of a downloading parent that holds every piece (scaled by done/total).
pub const PROGRESS: i64 = 2_000;
/// Same rack.
pub const SAME_RACK: i64 = 2_000;
/// Same zone, other rack.
pub const SAME_ZONE: i64 = 1_000;
/// Per doubling of the expected upload bandwidth.
pub const PER_DOUBLING: i64 = 50;
/// Bandwidth counts up to 2^40 bytes/s.
pub const MAX_DOUBLINGS: u32 = 40;
/// Per recent failure.
pub const PER_FAILURE: i64 = 300;
/// Failures cost at most this much.
pub const MAX_FAILURE_PENALTY: i64 = 3_000;
/// A child that holds pieces but is more than 1/`LAG_SHARE` of the task's
/// pieces behind the most any peer reported is lagging.
pub const LAG_SHARE: u32 = 16;
/// A lagging child is offered parents up to this many times their upload
/// slots: it follows them and gets a slot when one frees, where a child on
/// time (or one that holds nothing yet) is offered only parents with a
/// free slot.
pub const LAG_OVERBOOK: u32 = 4;

/// Where a parent sits relative to the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locality {
    Rack,
    Zone,
    Other,
}

impl Locality {
    pub(crate) fn between(child: &Host, parent: &Host) -> Locality {
        if child.rack != NO_LABEL && child.rack == parent.rack {
            Locality::Rack
        } else if child.zone != NO_LABEL && child.zone == parent.zone {
            Locality::Zone
        } else {
            Locality::Other
        }
    }
}

/// What the score looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    pub(crate) complete: bool,
    pub(crate) pieces_done: u32,
    pub(crate) pieces_total: u32,
    pub(crate) locality: Locality,
    /// Bytes/s a new child can expect.
    pub(crate) share_bps: u64,
    pub(crate) failures: u32,
}

/// The score described in the module doc.
pub(crate) fn score(f: &Facts) -> i64 {
    let progress = if f.complete {
        COMPLETE
    } else {
        let total = i64::from(f.pieces_total.max(1));
        PROGRESS * i64::from(f.pieces_done).min(total) / total
    };
    let locality = match f.locality {
        Locality::Rack => SAME_RACK,
        Locality::Zone => SAME_ZONE,
        Locality::Other => 0,
    };
    let doublings = f.share_bps.checked_ilog2().map_or(0, |l| l + 1).min(MAX_DOUBLINGS);
    let capacity = PER_DOUBLING * i64::from(doublings);
    let failures = (PER_FAILURE * i64::from(f.failures)).min(MAX_FAILURE_PENALTY);
    progress + locality + capacity - failures
}

/// Bytes/s a new child of `host` can expect.
pub(crate) fn share_bps(host: &Host) -> u64 {
    let free = host.info.upload_capacity.saturating_sub(host.load.upload_bps);
    free / (u64::from(host.uploads()) + 1)
}

/// Limits a selection runs under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) ttl_ms: u64,
    pub(crate) failure_ms: u64,
    pub(crate) max_failures: u32,
    pub(crate) parents: usize,
    pub(crate) scan_limit: usize,
}

/// A chosen parent: its rank key and position in `task.peers`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pick {
    key: (i64, u64, Reverse<HostSlot>),
    pub(crate) idx: usize,
}

/// Fills `out` with the best parents for `child`, best first.
pub(crate) fn select(
    now: Millis,
    lim: &Limits,
    task: &Task,
    hosts: &Slab<Host>,
    child: HostSlot,
    child_done: u32,
    out: &mut Vec<Pick>,
) {
    out.clear();
    if lim.parents == 0 {
        return;
    }
    let child_host = &hosts[child];
    let n = task.seeders;
    let scan = n.min(lim.scan_limit);
    let start = if n > scan { (mix(task.seed ^ u64::from(child)) % n as u64) as usize } else { 0 };
    let total = task.total_estimate();
    // A node of a large swarm that got few parents early falls behind and
    // stays behind (docs/design/swarm-lessons.md): every parent it is
    // offered later is at its upload cap. A fresh joiner is not lagging: it
    // waits for a slot, and the origin stays out of it.
    let lagging = child_done > 0 && task.max_done.saturating_sub(child_done) > total / LAG_SHARE;
    for k in 0..scan {
        let idx = (start + k) % n;
        let peer = &task.peers[idx];
        if peer.host == child {
            continue;
        }
        let host = &hosts[peer.host];
        let slots = if lagging { host.info.max_uploads.saturating_mul(LAG_OVERBOOK) } else { host.info.max_uploads };
        if !host.alive(now, lim.ttl_ms) || host.load.busy || host.uploads() >= slots {
            continue;
        }
        let failures = peer.recent_failures(now, lim.failure_ms);
        if failures >= lim.max_failures {
            continue;
        }
        let facts = Facts {
            complete: peer.complete,
            pieces_done: peer.pieces_done,
            pieces_total: total,
            locality: Locality::between(child_host, host),
            share_bps: share_bps(host),
            failures,
        };
        let jitter = mix(task.seed ^ mix((u64::from(child) << 32) | u64::from(peer.host)));
        let key = (score(&facts), jitter, Reverse(peer.host));
        if out.len() == lim.parents && key <= out[lim.parents - 1].key {
            continue;
        }
        let pos = out.partition_point(|p| p.key > key);
        out.insert(pos, Pick { key, idx });
        out.truncate(lim.parents);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            complete: false,
            pieces_done: 5,
            pieces_total: 10,
            locality: Locality::Other,
            share_bps: 1 << 20,
            failures: 0,
        }
    }

    #[test]
    fn complete_outranks_any_downloading_peer() {
        let worst_complete =
            Facts { complete: true, pieces_done: 0, locality: Locality::Other, share_bps: 0, failures: 100, ..facts() };
        let best_downloading =
            Facts { pieces_done: 10, locality: Locality::Rack, share_bps: u64::MAX, failures: 0, ..facts() };
        assert!(score(&worst_complete) > score(&best_downloading));
    }

    #[test]
    fn each_criterion_ranks_alone() {
        let base = score(&facts());
        assert!(score(&Facts { pieces_done: 6, ..facts() }) > base);
        assert!(score(&Facts { locality: Locality::Zone, ..facts() }) > base);
        assert!(
            score(&Facts { locality: Locality::Rack, ..facts() })
                > score(&Facts { locality: Locality::Zone, ..facts() })
        );
        assert!(score(&Facts { share_bps: 2 << 20, ..facts() }) > base);
        assert!(score(&Facts { failures: 1, ..facts() }) < base);
        assert!(score(&Facts { failures: 2, ..facts() }) < score(&Facts { failures: 1, ..facts() }));
    }

    #[test]
    fn zero_share_and_zero_total_are_safe() {
        assert_eq!(score(&Facts { share_bps: 0, pieces_total: 0, pieces_done: 0, ..facts() }), 0);
    }
}
