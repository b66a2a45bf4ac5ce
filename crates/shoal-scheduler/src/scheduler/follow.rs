//! Following another replica's decisions: a replica that does not own a
//! task still hears what its owner told each joiner ([`Scheduler::follow`])
//! and every peer's progress, so when the owner dies and the task's
//! requests move here, this replica already knows who is downloading the
//! blob, who holds it and who fetches it from the origin, and grants the
//! origin to no one else.

use shoal_core::{HostId, TaskId};

use crate::state::Holder;
use crate::time::Millis;
use crate::types::{Have, SchedError};

use super::Scheduler;

impl Scheduler {
    /// The replica that owns `task` told `host`, which holds `have`,
    /// whether it may fetch from the origin (`granted`). `host` becomes a
    /// peer of the task here as a join would make it, and with `granted`
    /// it holds the grant here too (and is an authority for the task's
    /// piece hashes, as the owner made it). The owner's decision stands
    /// over one this replica made alone: if the grants are full, the
    /// holder that progressed least recently makes way. That can only be
    /// a grant this replica gave at a tick from the reports it was copied,
    /// which nobody acted on while the owner answered the task's joins.
    pub fn follow(
        &mut self,
        now: Millis,
        host: &HostId,
        task: &TaskId,
        have: Have,
        granted: bool,
    ) -> Result<(), SchedError> {
        let h = self.touch(now, host)?;
        let t = self.task_slot(now, task);
        let idx = self.upsert(now, t, h, have);
        if !granted || self.tasks[t].peers[idx].complete || self.tasks[t].holds(h) {
            return Ok(());
        }
        while self.tasks[t].holders.len() >= self.config.max_origin_grants.max(1) {
            let holders = &self.tasks[t].holders;
            let Some(oldest) = holders.iter().min_by_key(|x| x.progressed_at).map(|x| x.host) else {
                break;
            };
            self.release(t, oldest);
        }
        self.tasks[t].holders.push(Holder { host: h, progressed_at: now });
        self.grants += 1;
        self.make_authority(t, h);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shoal_core::{Digest, HostId, TaskId};

    use super::super::proptests::assert_consistent;
    use crate::{Have, HostInfo, Labels, Millis, OriginGrant, Scheduler, SchedulerConfig};

    const T0: Millis = Millis(1_000_000);
    const NODES: [&str; 4] = ["a", "b", "c", "d"];

    fn id(name: &str) -> HostId {
        name.parse().unwrap()
    }

    fn replica() -> Scheduler {
        let mut s = Scheduler::new(SchedulerConfig::default());
        for (i, n) in NODES.iter().enumerate() {
            let labels = Labels { node: (*n).to_owned(), zone: None, rack: None };
            let addr = format!("10.0.0.{}:4000", i + 1).parse().unwrap();
            s.register(T0, HostInfo { id: id(n), addr, labels, upload_capacity: 100 << 20, max_uploads: 16 });
        }
        s
    }

    fn have(done: u32) -> Have {
        Have { pieces_done: done, pieces_total: Some(64), complete: false }
    }

    fn at(ms: u64) -> Millis {
        T0 + Duration::from_millis(ms)
    }

    /// What a client does: join at the owner, copy the outcome to the
    /// other replica.
    fn join_both(owner: &mut Scheduler, other: &mut Scheduler, now: Millis, name: &str, t: &TaskId) -> bool {
        let d = owner.join(now, &id(name), t, have(0), true).unwrap();
        let granted = d.origin == OriginGrant::Granted;
        other.follow(now, &id(name), t, have(0), granted).unwrap();
        assert_consistent(other);
        granted
    }

    #[test]
    fn the_replica_that_takes_a_task_over_keeps_its_seed_and_grants_no_one_else() {
        let t = TaskId::new("docker.io", Digest::sha256_of(b"layer")).unwrap();
        let (mut owner, mut other) = (replica(), replica());
        assert!(join_both(&mut owner, &mut other, at(0), "a", &t), "the first joiner is the seed");
        for (i, n) in ["b", "c"].into_iter().enumerate() {
            assert!(!join_both(&mut owner, &mut other, at(400 + i as u64), n, &t));
        }
        // Progress is copied too; the other replica ticks as it always does.
        other.progress(at(1_000), &id("a"), &t, have(20), None).unwrap();
        other.progress(at(1_100), &id("b"), &t, have(5), None).unwrap();
        other.tick(at(1_200));
        // The owner dies: every later request about the task lands here.
        for (i, n) in ["b", "c", "d"].into_iter().enumerate() {
            let d = other.join(at(2_000 + i as u64), &id(n), &t, have(0), true).unwrap();
            assert_ne!(d.origin, OriginGrant::Granted, "{n} was sent to the origin beside the seed");
            assert!(d.parents.iter().any(|p| p.host == id("a")), "{n} was not offered the seed");
            assert!(d.authorities.iter().any(|p| p.host == id("a")), "the seed's hashes are not trusted here");
        }
        assert!(other.holds_grant(&id("a"), &t));
        let d = other.join(at(3_000), &id("a"), &t, have(30), true).unwrap();
        assert_eq!(d.origin, OriginGrant::Granted, "the seed keeps its grant");
    }

    #[test]
    fn the_owners_grant_replaces_one_this_replica_gave_alone() {
        let t = TaskId::new("docker.io", Digest::sha256_of(b"layer")).unwrap();
        let mut other = replica();
        // b's progress reached this replica before a's grant did, and a tick
        // gave b the free grant here.
        other.progress(at(0), &id("b"), &t, have(0), None).unwrap();
        other.tick(at(10));
        assert!(other.holds_grant(&id("b"), &t));
        other.follow(at(20), &id("a"), &t, have(0), true).unwrap();
        assert_consistent(&other);
        assert!(other.holds_grant(&id("a"), &t));
        assert!(!other.holds_grant(&id("b"), &t));
        let d = other.join(at(30), &id("b"), &t, have(0), true).unwrap();
        assert_ne!(d.origin, OriginGrant::Granted);
    }

    #[test]
    fn a_follow_without_the_grant_or_from_a_complete_peer_grants_nothing() {
        let t = TaskId::new("docker.io", Digest::sha256_of(b"layer")).unwrap();
        let mut other = replica();
        other.follow(at(0), &id("a"), &t, have(0), false).unwrap();
        let done = Have { pieces_done: 64, pieces_total: Some(64), complete: true };
        other.follow(at(0), &id("b"), &t, done, true).unwrap();
        assert_consistent(&other);
        assert!(!other.holds_grant(&id("a"), &t) && !other.holds_grant(&id("b"), &t));
        let d = other.join(at(10), &id("c"), &t, have(0), true).unwrap();
        assert!(d.parents.iter().any(|p| p.host == id("b")), "the complete peer is known here");
        assert!(other.follow(at(10), &id("stranger"), &t, have(0), true).is_err(), "an unregistered host is refused");
    }
}
