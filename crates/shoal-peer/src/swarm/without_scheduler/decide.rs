//! The join answer when no scheduler answers: the pure rule that turns what
//! the discovery DHT found into the `Parents` a scheduler would have sent.
//!
//! - Parents: every provider found that is not this node and was not
//!   reported dead or stalled lately; complete ones first, then the seed,
//!   then other downloaders.
//! - Authorities (whose piece hashes the fetch trusts): complete providers
//!   (their blob passed its digest) and the seed (it hashed bytes read from
//!   the origin). A downloader that is not the seed never is one.
//! - The origin: exactly one node per blob at a time goes there, agreed
//!   without messages. A node that is already the seed keeps the grant. If
//!   any live provider is complete or the seed, nobody else goes. Otherwise,
//!   once the task has been known here for `settle` (so the announcements
//!   of nodes that started together have spread), the rendezvous-hash
//!   winner among the live downloaders and this node goes
//!   ([`shoal_discovery::elect`]); the others wait briefly and ask again,
//!   and when the winner dies or stalls the children report it, it is
//!   excluded, and the next one wins.

use std::collections::HashMap;
use std::time::Duration;

use shoal_core::{HostId, TaskId};
use shoal_discovery::{Provider, ProviderState};
use shoal_proto::{HaveState, OriginGrant, ParentInfo, SchedulerResponse};
use tokio::time::Instant;

/// The timing of the rule, with defaults for a LAN.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// How long after this node first asked about a task it may elect a
    /// seed: nodes that start a pull together see each other first.
    pub settle: Duration,
    /// How long a provider reported dead or stalled stays excluded.
    pub dead_for: Duration,
    /// Most parents in one answer.
    pub max_parents: usize,
    /// Wait before asking again when someone else should fetch.
    pub retry_soon: Duration,
    /// Wait before asking again when parents can serve everything.
    pub retry_later: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            settle: Duration::from_millis(500),
            dead_for: Duration::from_secs(30),
            max_parents: 16,
            retry_soon: Duration::from_millis(500),
            retry_later: Duration::from_secs(5),
        }
    }
}

/// What this node remembers of one task between joins.
#[derive(Debug, Clone)]
pub struct TaskView {
    /// When this node first asked about the task.
    pub first_join: Instant,
    /// This node is the task's seed (it was granted the origin).
    pub seeding: bool,
    /// Providers reported dead or stalled, and when.
    pub dead: HashMap<HostId, Instant>,
}

impl TaskView {
    /// A task first asked about at `now`.
    pub fn new(now: Instant) -> Self {
        TaskView { first_join: now, seeding: false, dead: HashMap::new() }
    }

    /// A child reported `host` dead, stalled or lying at `now`.
    pub fn failed(&mut self, now: Instant, host: HostId) {
        self.dead.insert(host, now);
    }
}

/// The `Parents` answer for `me`, which holds `have` of `task`, from the
/// providers `found` (this node among them or not).
pub fn answer(
    now: Instant,
    me: &HostId,
    task: &TaskId,
    have: HaveState,
    found: &[Provider],
    view: &mut TaskView,
    rules: &Rules,
) -> SchedulerResponse {
    view.dead.retain(|_, at| now.saturating_duration_since(*at) < rules.dead_for);
    let mut live: Vec<&Provider> = found.iter().filter(|p| &p.host != me && !view.dead.contains_key(&p.host)).collect();
    live.sort_by_key(|p| (rank(p.state), p.host.clone()));
    live.dedup_by(|a, b| a.host == b.host);
    let info = |p: &Provider| ParentInfo {
        host: p.host.clone(),
        addr: p.addr,
        pieces_done: 0,
        complete: p.state == ProviderState::Complete,
    };
    let parents: Vec<ParentInfo> = live.iter().take(rules.max_parents).map(|p| info(p)).collect();
    let authorities: Vec<ParentInfo> =
        live.iter().filter(|p| p.state != ProviderState::Downloading).map(|p| info(p)).collect();
    let wait = |after: Duration| OriginGrant::Wait { retry_after_ms: after.as_millis() as u64 };
    let origin = if have.complete {
        view.seeding = false;
        wait(rules.retry_later)
    } else if view.seeding {
        OriginGrant::Granted
    } else if !authorities.is_empty() {
        wait(rules.retry_later)
    } else if now.saturating_duration_since(view.first_join) < rules.settle {
        wait(rules.settle - now.saturating_duration_since(view.first_join))
    } else {
        let mut candidates: Vec<HostId> = live.iter().map(|p| p.host.clone()).collect();
        candidates.push(me.clone());
        let excluded = view.dead.keys().cloned().collect();
        if shoal_discovery::elect(task, &candidates, &excluded) == Some(me) {
            view.seeding = true;
            OriginGrant::Granted
        } else {
            wait(rules.retry_soon)
        }
    };
    SchedulerResponse::Parents { parents, origin, authorities, map: None }
}

/// Complete copies first, then the seed, then other downloaders.
fn rank(state: ProviderState) -> u8 {
    match state {
        ProviderState::Complete => 0,
        ProviderState::Origin => 1,
        ProviderState::Downloading => 2,
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
