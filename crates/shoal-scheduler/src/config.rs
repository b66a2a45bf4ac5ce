//! The scheduler's knobs, with the defaults the issue asks for.

use std::time::Duration;

/// Scheduler configuration. `Default` is a sensible cluster setting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// Most peers per task holding an origin grant at once. 0 means no peer
    /// is ever granted the origin.
    pub max_origin_grants: usize,
    /// Most parents one join answer names.
    pub parents_per_join: usize,
    /// A host that sent nothing (heartbeat, join, progress, failure report)
    /// for this long is expired at the next tick, and is not offered as a
    /// parent even before that.
    pub host_ttl: Duration,
    /// A grant holder whose piece count has not grown for this long (since
    /// it got the grant or last grew) is stalled: it loses the grant to a
    /// joiner or, at a tick, to another peer of the task that can take it.
    pub grant_stall: Duration,
    /// A grant holder a child reported dead (`Timeout`, `Unreachable`)
    /// whose piece count has not grown for this long loses its grant at
    /// once (a holder fetching from the origin reports new pieces every
    /// 200 ms, so a live one is never this quiet while it fetches). A
    /// report against a holder that made progress since moves nothing.
    pub holder_quiet: Duration,
    /// For this long after a task's first join, a joiner that already
    /// holds an origin grant on another task leaves this task's grant to
    /// the next joiner (see the scheduler's module doc). 0 turns it off.
    pub grant_spread: Duration,
    /// How long a reported piece failure counts against a parent.
    pub failure_memory: Duration,
    /// A parent with this many failures within `failure_memory` on a task
    /// is not offered for that task. 0 is treated as 1.
    pub max_failures: u32,
    /// `retry_after` in a `Wait` answer that came with no parents.
    pub wait_retry: Duration,
    /// `retry_after` in a `Wait` answer that came with parents.
    pub wait_retry_with_parents: Duration,
    /// Most peers one join looks at when choosing parents. Tasks with more
    /// peers holding pieces are sampled from a window that starts at a
    /// per-child offset, so a join stays O(scan_limit) in a 10,000-peer
    /// swarm (at the price of missing a better parent outside the window).
    pub scan_limit: usize,
    /// Bytes of final piece maps kept for joiners that arrive after the
    /// blob's authority left (32 bytes a piece, at most 32 KiB a blob); the
    /// least recently used go first. A task whose map was dropped and whose
    /// authorities are gone gets a new origin grant: one more origin copy.
    pub map_budget: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_origin_grants: 1,
            parents_per_join: 4,
            host_ttl: Duration::from_secs(30),
            grant_stall: Duration::from_secs(20),
            holder_quiet: Duration::from_secs(1),
            grant_spread: Duration::from_millis(150),
            failure_memory: Duration::from_secs(300),
            max_failures: 3,
            wait_retry: Duration::from_millis(200),
            wait_retry_with_parents: Duration::from_secs(5),
            scan_limit: 256,
            map_budget: 64 << 20,
        }
    }
}
