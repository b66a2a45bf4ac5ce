//! Origin grants and the tick: who may fetch from the origin, and how a
//! grant moves on when its holder dies, stalls or finishes.

use std::cmp::Reverse;
use std::time::Duration;

use crate::state::{Holder, Host, HostSlot, Slab, Task, TaskSlot};
use crate::time::{Millis, as_ms};
use crate::types::Expired;

use super::Scheduler;

impl Scheduler {
    /// Expires hosts that sent nothing for `host_ttl` (removing them from
    /// every task and freeing their grants), revokes stalled grants where
    /// someone else can take them, and hands free grants to waiting peers of
    /// tasks that have no complete peer. Returns what changed, including
    /// grants revoked by joins since the last tick.
    pub fn tick(&mut self, now: Millis) -> Vec<Expired> {
        let mut out = std::mem::take(&mut self.pending);
        let ttl = self.limits.ttl_ms;
        let dead: Vec<HostSlot> = self.hosts.iter().filter(|(_, h)| !h.alive(now, ttl)).map(|(h, _)| h).collect();
        for h in dead {
            out.push(Expired::Host(self.remove_host(h)));
        }
        self.tick_dead(now, &mut out);
        self.revoke_stalled(now, &mut out);
        self.fill_grants(now, &mut out);
        let host_ids = &self.host_ids;
        self.jobs.tick(now, |h| host_ids.contains_key(h));
        out
    }

    /// Frees `h`'s grant on task `t`, if it holds one.
    pub(super) fn release(&mut self, t: TaskSlot, h: HostSlot) {
        let holders = &mut self.tasks[t].holders;
        if let Some(p) = holders.iter().position(|x| x.host == h) {
            holders.swap_remove(p);
            self.grants -= 1;
        }
        self.dead.clear(t, h);
    }

    /// Queues task `t` for a grant check at the next tick if it may need
    /// one: no complete peer and a free grant.
    pub(super) fn note(&mut self, t: TaskSlot) {
        let task = &mut self.tasks[t];
        if !task.dirty && task.complete == 0 && task.holders.len() < self.config.max_origin_grants {
            task.dirty = true;
            self.dirty.push(t);
        }
    }

    /// Gives `h` a grant on task `t` if one is free, or takes over one whose
    /// holder is dead or stalled (reported at the next tick).
    pub(super) fn try_grant(&mut self, now: Millis, t: TaskSlot, h: HostSlot) -> bool {
        let max = self.config.max_origin_grants;
        let task = &mut self.tasks[t];
        let holder = Holder { host: h, progressed_at: now };
        if task.holders.len() < max {
            task.holders.push(holder);
            self.grants += 1;
            return true;
        }
        let (hosts, ttl, stall) = (&self.hosts, self.limits.ttl_ms, self.stall_ms);
        let lapsed = |x: &Holder| !hosts[x.host].alive(now, ttl) || now.reached(x.progressed_at, stall);
        let Some(p) = task.holders.iter().position(lapsed).or_else(|| {
            let task = &self.tasks[t];
            task.holders.iter().position(|x| self.dead_holder(now, t, x))
        }) else {
            return false;
        };
        let task = &mut self.tasks[t];
        self.dead.clear(t, task.holders[p].host);
        let old = std::mem::replace(&mut task.holders[p], holder);
        self.pending.push(Expired::GrantRevoked { task: task.id.clone(), host: hosts[old.host].info.id.clone() });
        true
    }

    /// How long `h` should leave task `t`'s free grant to another joiner,
    /// if at all: `t` is younger than `grant_spread` and has no holder, `h`
    /// already holds a grant on another task, and `h` is not the only host.
    /// Several nodes pulling one image join its layers within milliseconds
    /// of each other, so the next joiner takes this layer; `h` asks again
    /// when the window ends and gets it if nobody did. Why: a seed must
    /// upload every fresh piece of its blob once, so one seed for every
    /// layer caps the swarm at that seed's uplink, and its one downlink
    /// carries the whole origin stream (docs/design/swarm-lessons.md). A
    /// lone puller on a
    /// cluster waits at most the window for its second layer's grant.
    pub(super) fn spread_wait(&self, now: Millis, t: TaskSlot, h: HostSlot) -> Option<Duration> {
        let window = as_ms(self.config.grant_spread);
        let task = &self.tasks[t];
        if window == 0 || !task.holders.is_empty() || now.reached(task.created, window) || self.host_ids.len() < 2 {
            return None;
        }
        let seeds_another =
            self.hosts[h].tasks.iter().any(|&o| o != t && self.tasks.get(o).is_some_and(|other| other.holds(h)));
        seeds_another.then(|| Duration::from_millis(window) - now.since(task.created))
    }

    /// At a tick: a holder with no new pieces for `grant_stall` loses its
    /// grant to the task's most recently active other incomplete peer, or
    /// loses it outright if the task has a complete peer. With neither, it
    /// keeps it: nobody else would fetch.
    fn revoke_stalled(&mut self, now: Millis, out: &mut Vec<Expired>) {
        let stall = self.stall_ms;
        for t in 0..self.tasks.end() {
            if self.tasks.get(t).is_none() {
                continue;
            }
            let mut j = 0;
            while j < self.tasks[t].holders.len() {
                let holder = self.tasks[t].holders[j];
                if !now.reached(holder.progressed_at, stall) || !self.move_grant(now, t, j, out) {
                    j += 1;
                }
            }
        }
    }

    /// Holder `j` of task `t` loses its grant: outright if the task has a
    /// complete peer, else to the task's most recently active waiting peer;
    /// with neither it keeps it, since nobody else would fetch. Returns
    /// whether it left the holder list (then `j` names the next holder).
    pub(super) fn move_grant(&mut self, now: Millis, t: TaskSlot, j: usize, out: &mut Vec<Expired>) -> bool {
        let task = &mut self.tasks[t];
        let old = self.hosts[task.holders[j].host].info.id.clone();
        if task.complete > 0 {
            task.holders.swap_remove(j);
            self.grants -= 1;
            out.push(Expired::GrantRevoked { task: task.id.clone(), host: old });
            return true;
        }
        if let Some(next) = best_waiting(task, &self.hosts) {
            task.holders[j] = Holder { host: next, progressed_at: now };
            task.set_authority(t, &self.index, next, true);
            out.push(Expired::GrantRevoked { task: task.id.clone(), host: old });
            out.push(Expired::GrantGiven { task: task.id.clone(), host: self.hosts[next].info.id.clone() });
        }
        false
    }

    /// At a tick: tasks queued by [`Scheduler::note`] that still have no
    /// complete peer get their free grants filled.
    fn fill_grants(&mut self, now: Millis, out: &mut Vec<Expired>) {
        let max = self.config.max_origin_grants;
        for t in std::mem::take(&mut self.dirty) {
            let Some(task) = self.tasks.get_mut(t) else {
                continue;
            };
            task.dirty = false;
            while task.complete == 0 && task.holders.len() < max {
                let Some(next) = best_waiting(task, &self.hosts) else {
                    break;
                };
                task.holders.push(Holder { host: next, progressed_at: now });
                task.set_authority(t, &self.index, next, true);
                self.grants += 1;
                out.push(Expired::GrantGiven { task: task.id.clone(), host: self.hosts[next].info.id.clone() });
            }
        }
    }
}

/// The incomplete non-holder of `task` that reported most recently (then
/// the one with most pieces, then the lowest slot). O(peers): only runs
/// when a grant must move.
fn best_waiting(task: &Task, hosts: &Slab<Host>) -> Option<HostSlot> {
    task.peers
        .iter()
        .filter(|p| !p.complete && !task.holds(p.host) && hosts.get(p.host).is_some())
        .max_by_key(|p| (p.last_active, p.pieces_done, Reverse(p.host)))
        .map(|p| p.host)
}
