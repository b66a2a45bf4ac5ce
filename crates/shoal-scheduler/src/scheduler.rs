//! [`Scheduler`]: hosts and tasks, driven by events, answering with
//! decisions. Its methods come in three kinds:
//! - reports from a host (`register`, `heartbeat`, `join`, `progress`,
//!   `piece_failed`, `leave`, `unregister`): each counts as a sign of life
//!   and updates state; `join` also answers with a [`JoinDecision`];
//! - `tick(now)`, called every second or so: expires hosts, moves stalled
//!   or orphaned origin grants, and reports what it changed;
//! - queries (`stats`, `holds_grant`, `grant_holders`, `heap_usage`).
//!
//! Origin grants (see `grants.rs` for the mechanics):
//! - a joiner that is not complete and was not offered a complete parent
//!   gets `Granted` if the task has fewer than `max_origin_grants` holders,
//!   or if one holder is dead (past `host_ttl`) or stalled (no new pieces
//!   for `grant_stall`): the joiner takes that grant over;
//! - spreading: during `grant_spread` after a task's first join, a joiner
//!   that already holds a grant on another task waits (unless it is the
//!   only host), so the next joiner, likely another node pulling the same
//!   image, takes it: each seed then uploads only its own layer's fresh
//!   pieces, and the origin's stream is split over several downlinks
//!   (`grants.rs`). A replica sees only the grants it holds, and tasks are
//!   routed to replicas by digest, so with several replicas the rule only
//!   spreads the layers that land on the same one;
//! - a holder that joins again keeps its grant; a complete peer never holds
//!   one: completing frees it, as do leaving, expiring and unregistering;
//! - a holder a child reports dead (`Timeout`, `Unreachable`) that has
//!   made no progress for `holder_quiet` loses its grant at once, to the
//!   task's most recently active waiting peer (`dead_holders.rs`); a
//!   report against a holder still making progress moves nothing;
//! - at a tick, a stalled holder loses its grant if another incomplete peer
//!   of the task can take it (or a complete peer exists); otherwise it keeps
//!   it, since no one else would fetch;
//! - at a tick, every task that lost a grant holder or a complete peer, and
//!   has no complete peer, hands free grants to its most recently active
//!   incomplete peers, so a swarm never waits on a dead seed.
//!
//! State is soft: a new `Scheduler` fed the hosts' registers and joins
//! rebuilds an equivalent picture.

use std::collections::HashMap;

use shoal_core::{HostId, TaskId};
use shoal_proto::FailureKind;

use crate::config::SchedulerConfig;
use crate::jobs::{JobLimits, Jobs};
use crate::select::{self, Limits, Pick};
use crate::state::{
    EntryIndex, FailureLog, Host, HostSlot, Interner, NO_LABEL, PeerEntry, Slab, Task, TaskSlot, entry_key, map_bytes,
};
use crate::time::{Millis, as_ms};
use crate::types::{Expired, Have, HeapUsage, HostInfo, JoinDecision, Load, OriginGrant, Parent, SchedError, Stats};

mod dead_holders;
mod follow;
mod grants;
mod maps;
mod own_jobs;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

/// The scheduler's decision core. See the module docs for the rules.
pub struct Scheduler {
    config: SchedulerConfig,
    limits: Limits,
    stall_ms: u64,
    hosts: Slab<Host>,
    host_ids: HashMap<HostId, HostSlot>,
    tasks: Slab<Task>,
    task_ids: HashMap<TaskId, TaskSlot>,
    /// Final piece maps reported by authorities.
    maps: maps::MapStore,
    index: EntryIndex,
    labels: Interner,
    /// Tasks to check for free grants at the next tick.
    dirty: Vec<TaskSlot>,
    /// Revocations made outside a tick, reported by the next one.
    pending: Vec<Expired>,
    grants: usize,
    picks: Vec<Pick>,
    jobs: Jobs,
    /// Grant holders reported dead by children.
    dead: dead_holders::DeadReports,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("config", &self.config).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig) -> Self {
        let limits = Limits {
            ttl_ms: as_ms(config.host_ttl),
            failure_ms: as_ms(config.failure_memory),
            max_failures: config.max_failures.max(1),
            parents: config.parents_per_join,
            scan_limit: config.scan_limit.max(1),
        };
        Scheduler {
            maps: maps::MapStore::new(config.map_budget),
            stall_ms: as_ms(config.grant_stall),
            config,
            limits,
            hosts: Slab::default(),
            host_ids: HashMap::new(),
            tasks: Slab::default(),
            task_ids: HashMap::new(),
            index: EntryIndex::default(),
            labels: Interner::default(),
            dirty: Vec::new(),
            pending: Vec::new(),
            grants: 0,
            picks: Vec::new(),
            jobs: Jobs::new(JobLimits::default()),
            dead: dead_holders::DeadReports::default(),
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Registers a host, or updates it if known (a restarted daemon
    /// registers again; its tasks stay until it leaves them or expires).
    /// Resets its load until the next heartbeat.
    pub fn register(&mut self, now: Millis, info: HostInfo) {
        let zone = info.labels.zone.as_deref().map_or(NO_LABEL, |z| self.labels.intern(z));
        let rack = info.labels.rack.as_deref().map_or(NO_LABEL, |r| {
            let key = format!("{}\0{r}", info.labels.zone.as_deref().unwrap_or(""));
            self.labels.intern(&key)
        });
        if let Some(&h) = self.host_ids.get(&info.id) {
            let host = &mut self.hosts[h];
            host.info = info;
            host.zone = zone;
            host.rack = rack;
            host.load = Load::default();
            host.assigned = 0;
            host.last_seen = now;
            return;
        }
        let id = info.id.clone();
        let host = Host { info, zone, rack, load: Load::default(), assigned: 0, last_seen: now, tasks: Vec::new() };
        let h = self.hosts.insert(host);
        self.host_ids.insert(id, h);
    }

    /// Records a host's load. `UnknownHost` tells it to register again.
    pub fn heartbeat(&mut self, now: Millis, host: &HostId, load: Load) -> Result<(), SchedError> {
        let h = self.touch(now, host)?;
        let host = &mut self.hosts[h];
        host.load = load;
        host.assigned = 0;
        Ok(())
    }

    /// A peer joins a task (or asks again): records what it has and answers
    /// with up to `parents_per_join` parents, best first (rules in
    /// [`crate::select`]), and/or an origin grant (rules in the module doc).
    /// A complete joiner is recorded as a seed and gets neither. A `Wait`
    /// with no parents carries `wait_retry` (ask again soon: the grant
    /// holder will have pieces by then); with parents, `wait_retry_with_parents`.
    ///
    /// The answer also names the task's live authorities (peers whose piece
    /// hashes the joiner may trust, see `maps.rs`) and, with `want_map`,
    /// the final piece map if the scheduler holds it.
    pub fn join(
        &mut self,
        now: Millis,
        host: &HostId,
        task: &TaskId,
        have: Have,
        want_map: bool,
    ) -> Result<JoinDecision, SchedError> {
        let h = self.touch(now, host)?;
        let t = self.task_slot(now, task);
        let idx = self.upsert(now, t, h, have);
        if self.tasks[t].peers[idx].complete {
            let retry_after = self.config.wait_retry_with_parents;
            return Ok(JoinDecision {
                parents: Vec::new(),
                origin: OriginGrant::Wait { retry_after },
                authorities: Vec::new(),
                map: None,
            });
        }
        let parents = self.choose_parents(now, t, h);
        // A complete copy on a live host means "wait for it", even when that
        // host is at its upload cap for the moment (and so not offered):
        // granting here would send the blob from the origin a second time.
        // A copy a child lately found unreachable, stalled or lacking a
        // piece does not count (its holder may be gone or have dropped it),
        // nor one with `max_failures` failures reported against it lately
        // (it is no parent then either); but one bad piece does not send
        // the joiner to the origin for the whole blob. Nor does any copy
        // count when no trusted piece map can be had: the joiner could not
        // check it.
        let (hosts, ttl, memory, max) =
            (&self.hosts, self.limits.ttl_ms, self.limits.failure_ms, self.limits.max_failures);
        let live_complete = self.tasks[t].complete > 0
            && self.tasks[t].peers.iter().any(|p| {
                p.complete
                    && p.host != h
                    && hosts[p.host].alive(now, ttl)
                    && p.recent_failures(now, memory) < max
                    && !p.reported_gone(now, memory)
            })
            && self.ensure_trust(now, t);
        let held = self.tasks[t].holds(h);
        let spread = if held || live_complete { None } else { self.spread_wait(now, t, h) };
        let granted = held || (!live_complete && spread.is_none() && self.try_grant(now, t, h));
        if granted {
            self.make_authority(t, h);
        }
        let origin = if granted {
            OriginGrant::Granted
        } else if let Some(retry_after) = spread {
            OriginGrant::Wait { retry_after }
        } else if parents.is_empty() {
            OriginGrant::Wait { retry_after: self.config.wait_retry }
        } else {
            OriginGrant::Wait { retry_after: self.config.wait_retry_with_parents }
        };
        let authorities = self.authorities(now, t, Some(h)).into_iter().map(|a| self.parent_info(t, a)).collect();
        let map = if want_map { self.final_map(now, t) } else { None };
        Ok(JoinDecision { parents, origin, authorities, map })
    }

    /// `a` as the parent record a joiner gets.
    fn parent_info(&self, t: TaskSlot, a: HostSlot) -> Parent {
        let task = &self.tasks[t];
        let entry = self.index.get(&entry_key(t, a)).map(|&i| &task.peers[i as usize]);
        let host = &self.hosts[a];
        Parent {
            host: host.info.id.clone(),
            addr: host.info.addr,
            pieces_done: entry.map_or(0, |e| e.pieces_done),
            complete: entry.is_some_and(|e| e.complete),
        }
    }

    /// Records what a peer holds of a task. A peer not yet in the task is
    /// added (a re-announce after a scheduler restart needs no join). A
    /// complete authority's `map` (one hash per piece) is kept as the task's
    /// final map; from anyone else, or of the wrong length, it is ignored.
    pub fn progress(
        &mut self,
        now: Millis,
        host: &HostId,
        task: &TaskId,
        have: Have,
        map: Option<Vec<[u8; 32]>>,
    ) -> Result<(), SchedError> {
        let h = self.touch(now, host)?;
        let t = self.task_slot(now, task);
        let idx = self.upsert(now, t, h, have);
        let entry = &self.tasks[t].peers[idx];
        if let Some(map) = map
            && have.complete
            && entry.authority
            && have.pieces_total == Some(map.len() as u32)
        {
            self.maps.put(now, t, host.clone(), map);
        }
        Ok(())
    }

    /// `host` got a bad piece (or none) from `parent` on `task`. Counts
    /// against `parent` for this task for `failure_memory`. A `Timeout` or
    /// `Unreachable` report against a quiet grant holder moves its grant
    /// (see the module docs). A parent or task
    /// the scheduler does not know is ignored (state is soft). `piece` is
    /// not tracked: failures count per parent, not per piece. `BadMap`
    /// (the parent's piece map made a blob with the wrong digest) also ends
    /// its authority on the task (see `maps.rs`).
    pub fn piece_failed(
        &mut self,
        now: Millis,
        host: &HostId,
        task: &TaskId,
        parent: &HostId,
        piece: u32,
        kind: FailureKind,
    ) -> Result<(), SchedError> {
        let _ = piece;
        self.touch(now, host)?;
        if kind == FailureKind::BadMap
            && let (Some(&t), Some(&p)) = (self.task_ids.get(task), self.host_ids.get(parent))
        {
            self.revoke_authority(now, t, p);
            return Ok(());
        }
        let (Some(&t), Some(&p)) = (self.task_ids.get(task), self.host_ids.get(parent)) else {
            return Ok(());
        };
        if dead_holders::says_dead(kind) {
            self.reported_dead(now, t, p);
        }
        let Some(&i) = self.index.get(&entry_key(t, p)) else {
            return Ok(());
        };
        let keep = self.limits.max_failures as usize;
        let entry = &mut self.tasks[t].peers[i as usize];
        let log = entry.failures.get_or_insert_with(Box::<FailureLog>::default);
        match kind {
            FailureKind::Corrupt => log.record(now, keep),
            _ => log.record_gone(now, keep),
        }
        Ok(())
    }

    /// The peer is done with the task (or gave up): it is no parent for it
    /// any more and its grant, if any, is freed.
    pub fn leave(&mut self, now: Millis, host: &HostId, task: &TaskId) {
        let Ok(h) = self.touch(now, host) else {
            return;
        };
        let Some(&t) = self.task_ids.get(task) else {
            return;
        };
        if let Some(&i) = self.index.get(&entry_key(t, h)) {
            self.remove_entry(t, h, i as usize, true);
        }
    }

    /// Starts prewarm job `job`, submitted by `host`, on the live hosts
    /// `selector` picks (rules in [`crate::jobs`]); returns them.
    pub fn submit_prewarm(
        &mut self,
        now: Millis,
        host: &HostId,
        job: String,
        spec: shoal_proto::PrewarmSpec,
        selector: &shoal_proto::NodeSelector,
    ) -> Result<Vec<HostId>, SchedError> {
        self.touch(now, host)?;
        self.submit_own_prewarm(now, job, spec, selector, None)
    }

    /// The prewarm jobs `host` should run now.
    pub fn poll_prewarm(
        &mut self,
        now: Millis,
        host: &HostId,
    ) -> Result<Vec<shoal_proto::PrewarmAssignment>, SchedError> {
        self.touch(now, host)?;
        Ok(self.jobs.poll(host))
    }

    /// Records `host`'s progress on prewarm job `job`.
    pub fn report_prewarm(
        &mut self,
        now: Millis,
        host: &HostId,
        job: &str,
        images: Vec<shoal_proto::ImageProgress>,
        finished: bool,
    ) -> Result<(), SchedError> {
        self.touch(now, host)?;
        self.jobs.report(now, host, job, images, finished);
        Ok(())
    }

    /// Where prewarm job `job` stands.
    pub fn prewarm_status(&self, now: Millis, job: &str) -> Result<shoal_proto::PrewarmJob, SchedError> {
        Ok(self.jobs.status(now, job)?)
    }

    /// Prewarm jobs held, and those not finished.
    pub fn prewarm_jobs(&self) -> (usize, usize) {
        (self.jobs.len(), self.jobs.active())
    }

    /// Forgets a host (it shut down cleanly): as if it had expired.
    pub fn unregister(&mut self, host: &HostId) {
        if let Some(&h) = self.host_ids.get(host) {
            self.remove_host(h);
        }
    }

    /// Counts, for metrics.
    pub fn stats(&self) -> Stats {
        Stats {
            hosts: self.host_ids.len(),
            tasks: self.task_ids.len(),
            peer_tasks: self.index.len(),
            grants: self.grants,
            prewarm_jobs: self.jobs.len(),
            prewarm_active: self.jobs.active(),
            piece_maps: self.maps.len_and_bytes().0,
        }
    }

    /// Whether `host` holds an origin grant for `task`.
    pub fn holds_grant(&self, host: &HostId, task: &TaskId) -> bool {
        match (self.host_ids.get(host), self.task_ids.get(task)) {
            (Some(&h), Some(&t)) => self.tasks[t].holds(h),
            _ => false,
        }
    }

    /// The hosts holding an origin grant for `task`.
    pub fn grant_holders(&self, task: &TaskId) -> Vec<HostId> {
        let Some(&t) = self.task_ids.get(task) else {
            return Vec::new();
        };
        self.tasks[t].holders.iter().map(|x| self.hosts[x.host].info.id.clone()).collect()
    }

    /// Approximate heap bytes held, computed from capacities.
    pub fn heap_usage(&self) -> HeapUsage {
        let mut usage = HeapUsage {
            hosts: self.hosts.heap_bytes() + map_bytes(&self.host_ids) + self.labels.heap_bytes(),
            tasks: self.tasks.heap_bytes() + map_bytes(&self.task_ids) + self.maps.heap_bytes(),
            peer_tasks: map_bytes(&self.index),
        };
        for (_, host) in self.hosts.iter() {
            let labels = &host.info.labels;
            let strings = labels.node.capacity()
                + labels.zone.as_ref().map_or(0, String::capacity)
                + labels.rack.as_ref().map_or(0, String::capacity);
            // The id lives twice: in the record and as the index key.
            usage.hosts += strings + 2 * host.info.id.as_str().len();
            usage.peer_tasks += host.tasks.capacity() * size_of::<TaskSlot>();
        }
        for (_, task) in self.tasks.iter() {
            // The digest lives twice too: in the record and as the index key.
            usage.tasks += 2 * task.id.to_string().len() + task.holders.capacity() * size_of::<crate::state::Holder>();
            usage.peer_tasks += task.peers.capacity() * size_of::<PeerEntry>();
            usage.peer_tasks +=
                task.peers.iter().filter_map(|p| p.failures.as_ref()).map(|f| f.heap_bytes()).sum::<usize>();
        }
        usage
    }

    /// Bytes of one (peer, task) entry record, not counting its index slot.
    pub const PEER_ENTRY_BYTES: usize = size_of::<PeerEntry>();

    /// Looks a host up and notes that it is alive.
    fn touch(&mut self, now: Millis, id: &HostId) -> Result<HostSlot, SchedError> {
        let &h = self.host_ids.get(id).ok_or_else(|| SchedError::UnknownHost(id.clone()))?;
        let host = &mut self.hosts[h];
        host.last_seen = host.last_seen.max(now);
        Ok(h)
    }

    fn task_slot(&mut self, now: Millis, id: &TaskId) -> TaskSlot {
        if let Some(&t) = self.task_ids.get(id) {
            return t;
        }
        let t = self.tasks.insert(Task::new(id.clone(), now));
        self.task_ids.insert(id.clone(), t);
        t
    }

    /// Adds or updates `h`'s entry in task `t`; returns its position.
    fn upsert(&mut self, now: Millis, t: TaskSlot, h: HostSlot, have: Have) -> usize {
        let task = &mut self.tasks[t];
        if let Some(total) = have.pieces_total {
            task.pieces_total = Some(total);
        }
        task.max_done = task.max_done.max(have.pieces_done);
        let idx = match self.index.get(&entry_key(t, h)) {
            None => {
                let entry = PeerEntry {
                    host: h,
                    pieces_done: have.pieces_done,
                    last_active: now,
                    failures: None,
                    complete: have.complete,
                    authority: false,
                };
                task.complete += usize::from(have.complete);
                self.hosts[h].tasks.push(t);
                task.push(t, &mut self.index, entry)
            }
            Some(&i) => {
                let i = i as usize;
                let entry = &mut task.peers[i];
                let had = entry.has_pieces();
                let was_complete = entry.complete;
                let grew = have.pieces_done > entry.pieces_done || (have.complete && !was_complete);
                entry.pieces_done = have.pieces_done;
                entry.complete = have.complete;
                entry.last_active = now;
                if grew && let Some(holder) = task.holders.iter_mut().find(|x| x.host == h) {
                    holder.progressed_at = now;
                }
                match (was_complete, have.complete) {
                    (false, true) => task.complete += 1,
                    (true, false) => task.complete -= 1,
                    _ => {}
                }
                task.reposition(t, &mut self.index, i, had)
            }
        };
        if have.complete {
            self.release(t, h);
        }
        self.note(t);
        idx
    }

    /// Removes `h`'s entry (at `i`) from task `t`, freeing its grant and
    /// dropping the task once empty.
    fn remove_entry(&mut self, t: TaskSlot, h: HostSlot, i: usize, unlink_host: bool) {
        let task = &mut self.tasks[t];
        let entry = task.remove(t, &mut self.index, i);
        task.complete -= usize::from(entry.complete);
        self.release(t, h);
        if unlink_host {
            let list = &mut self.hosts[h].tasks;
            if let Some(p) = list.iter().position(|&x| x == t) {
                list.swap_remove(p);
            }
        }
        if self.tasks[t].peers.is_empty() {
            let task = self.tasks.remove(t).expect("task exists");
            self.task_ids.remove(&task.id);
            self.maps.remove(t);
        } else {
            self.note(t);
        }
    }

    /// Removes a host from every task and forgets it; returns its id.
    fn remove_host(&mut self, h: HostSlot) -> HostId {
        let tasks = std::mem::take(&mut self.hosts[h].tasks);
        for t in tasks {
            if let Some(&i) = self.index.get(&entry_key(t, h)) {
                self.remove_entry(t, h, i as usize, false);
            }
        }
        let host = self.hosts.remove(h).expect("host exists");
        self.host_ids.remove(&host.info.id);
        host.info.id
    }

    /// Picks parents for `child` in task `t` and counts the offers as
    /// uploads until the parents' next heartbeats.
    fn choose_parents(&mut self, now: Millis, t: TaskSlot, child: HostSlot) -> Vec<Parent> {
        let task = &self.tasks[t];
        let child_done = self.index.get(&entry_key(t, child)).map_or(0, |&i| task.peers[i as usize].pieces_done);
        select::select(now, &self.limits, task, &self.hosts, child, child_done, &mut self.picks);
        let mut parents = Vec::with_capacity(self.picks.len());
        for pick in &self.picks {
            let peer = &task.peers[pick.idx];
            let host = &mut self.hosts[peer.host];
            host.assigned = host.assigned.saturating_add(1);
            parents.push(Parent {
                host: host.info.id.clone(),
                addr: host.info.addr,
                pieces_done: peer.pieces_done,
                complete: peer.complete,
            });
        }
        parents
    }
}
