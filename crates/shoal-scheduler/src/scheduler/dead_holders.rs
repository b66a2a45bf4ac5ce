//! Grant holders their children report dead: the origin grant moves on in
//! about a second instead of after `grant_stall`.
//!
//! A child that drops a parent because its connection was lost or it sent
//! nothing under outstanding requests reports it (`Timeout` or
//! `Unreachable`). When that parent holds a task's origin grant and its
//! piece count has not grown for `holder_quiet` either, the grant moves to
//! the task's most recently active waiting peer at once (or at the next
//! tick, once the holder has been quiet that long). A report alone is not
//! enough: a holder still reporting new pieces keeps its grant, so one
//! lying (or badly connected) child cannot take a live seed's grant away.
//! A report counts only until the holder's next progress, and for
//! `failure_memory` at most.

use std::collections::HashMap;

use shoal_proto::FailureKind;

use crate::state::{Holder, HostSlot, TaskSlot};
use crate::time::{Millis, as_ms};
use crate::types::Expired;

use super::Scheduler;

/// When a child last reported each (task, grant holder) dead.
#[derive(Debug, Default)]
pub(super) struct DeadReports {
    at: HashMap<(TaskSlot, HostSlot), Millis>,
}

impl DeadReports {
    /// Forget reports about `h` on `t` (its grant moved, or it left).
    pub(super) fn clear(&mut self, t: TaskSlot, h: HostSlot) {
        self.at.remove(&(t, h));
    }

    /// A report within `memory_ms` of `now` about `holder` of task `t`,
    /// not contradicted by its progress since.
    fn reported(&self, now: Millis, memory_ms: u64, t: TaskSlot, holder: &Holder) -> bool {
        self.at.get(&(t, holder.host)).is_some_and(|&at| at >= holder.progressed_at && !now.reached(at, memory_ms))
    }
}

/// Failure kinds that say a parent is dead or stalled, not that a piece
/// was wrong.
pub(super) fn says_dead(kind: FailureKind) -> bool {
    matches!(kind, FailureKind::Timeout | FailureKind::Unreachable)
}

impl Scheduler {
    /// A child reported `parent` dead on task `t`: if it holds the task's
    /// grant, note it and move the grant now if the holder is quiet too.
    pub(super) fn reported_dead(&mut self, now: Millis, t: TaskSlot, parent: HostSlot) {
        if !self.tasks[t].holds(parent) {
            return;
        }
        self.dead.at.insert((t, parent), now);
        let mut out = std::mem::take(&mut self.pending);
        self.move_dead_grants(now, t, &mut out);
        self.pending = out;
    }

    /// `holder` of task `t` was reported dead, made no progress since, and
    /// none for `holder_quiet`: its grant may move.
    pub(super) fn dead_holder(&self, now: Millis, t: TaskSlot, holder: &Holder) -> bool {
        let quiet = as_ms(self.config.holder_quiet);
        now.reached(holder.progressed_at, quiet) && self.dead.reported(now, self.limits.failure_ms, t, holder)
    }

    /// At a report or a tick: task `t`'s holders reported dead and quiet
    /// hand their grants to waiting peers (or just lose them when the task
    /// has a complete peer).
    pub(super) fn move_dead_grants(&mut self, now: Millis, t: TaskSlot, out: &mut Vec<Expired>) {
        let mut j = 0;
        while j < self.tasks[t].holders.len() {
            let holder = self.tasks[t].holders[j];
            if !self.dead_holder(now, t, &holder) {
                j += 1;
                continue;
            }
            self.dead.clear(t, holder.host);
            let old = &self.hosts[holder.host].info.id;
            tracing::info!(task = %self.tasks[t].id, holder = %old, "origin grant holder reported dead by a child and quiet: moving its grant");
            if !self.move_grant(now, t, j, out) {
                j += 1;
            }
        }
    }

    /// At a tick: move the grants of holders reported dead that have been
    /// quiet long enough since, and forget reports past their memory.
    pub(super) fn tick_dead(&mut self, now: Millis, out: &mut Vec<Expired>) {
        let memory = self.limits.failure_ms;
        self.dead.at.retain(|_, at| !now.reached(*at, memory));
        let tasks: Vec<TaskSlot> = self.dead.at.keys().map(|&(t, _)| t).collect();
        for t in tasks {
            if self.tasks.get(t).is_some() {
                self.move_dead_grants(now, t, out);
            }
        }
    }
}
