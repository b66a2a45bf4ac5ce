//! Property tests: random event sequences, from proptest and from seeded
//! RNGs, run against the scheduler and a small model of what it was told.
//! After every event the scheduler's records must agree with each other;
//! every decision must respect the candidate rules; after every tick, every
//! task with live incomplete peers and no complete peer has a grant holder.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_core::{Digest, HostId, TaskId};
use shoal_proto::FailureKind;

use super::Scheduler;
use crate::state::entry_key;
use crate::{Expired, Have, HostInfo, Labels, Load, Millis, OriginGrant, SchedError, SchedulerConfig};

/// Checks that indexes agree with records and counters with contents.
pub(super) fn assert_consistent(s: &Scheduler) {
    let mut entries = 0;
    let mut grants = 0;
    assert_eq!(s.host_ids.len(), s.hosts.iter().count());
    let mut host_links = 0;
    for (h, host) in s.hosts.iter() {
        assert_eq!(s.host_ids[&host.info.id], h);
        let unique: BTreeSet<_> = host.tasks.iter().collect();
        assert_eq!(unique.len(), host.tasks.len(), "a host lists a task once");
        for &t in &host.tasks {
            assert!(s.index.contains_key(&entry_key(t, h)), "host task list matches the index");
        }
        host_links += host.tasks.len();
    }
    assert_eq!(s.task_ids.len(), s.tasks.iter().count());
    for (t, task) in s.tasks.iter() {
        assert_eq!(s.task_ids[&task.id], t);
        assert!(!task.peers.is_empty(), "empty tasks are dropped");
        assert!(task.holders.len() <= s.config.max_origin_grants, "grant limit");
        assert_eq!(task.complete, task.peers.iter().filter(|p| p.complete).count());
        for (i, p) in task.peers.iter().enumerate() {
            assert_eq!(s.index[&entry_key(t, p.host)] as usize, i);
            assert_eq!(i < task.seeders, p.has_pieces(), "peers with pieces come first");
            assert!(s.hosts[p.host].tasks.contains(&t));
        }
        let holders: BTreeSet<_> = task.holders.iter().map(|x| x.host).collect();
        assert_eq!(holders.len(), task.holders.len(), "one grant per holder");
        for &h in &holders {
            let i = s.index[&entry_key(t, h)] as usize;
            assert!(!task.peers[i].complete, "a complete peer holds no grant");
        }
        let flagged: BTreeSet<_> = task.peers.iter().filter(|p| p.authority).map(|p| p.host).collect();
        let listed: BTreeSet<_> = task.authorities.iter().copied().collect();
        assert_eq!(listed.len(), task.authorities.len(), "an authority is listed once");
        assert_eq!(flagged, listed, "the authority list matches the entries' flags");
        entries += task.peers.len();
        grants += task.holders.len();
    }
    assert_eq!(s.index.len(), entries);
    assert_eq!(host_links, entries);
    assert_eq!(s.grants, grants);
}

const HOSTS: u8 = 7;
const TASKS: u8 = 3;
const TTL: Duration = Duration::from_secs(30);
const MEMORY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
enum Op {
    Register(u8),
    Heartbeat(u8, bool),
    Join(u8, u8, Have),
    Progress(u8, u8, Have),
    Fail(u8, u8, u8),
    Leave(u8, u8),
    Unregister(u8),
    Advance(u64),
    Tick,
}

impl Op {
    /// One event from a handful of random numbers (shared by proptest and
    /// the seeded-RNG runs).
    fn from_parts(kind: u8, a: u8, b: u8, c: u8, ms: u64) -> Op {
        let (h, t, p) = (a % HOSTS, b % TASKS, c % HOSTS);
        let have = match c % 4 {
            0 => Have::NOTHING,
            3 => Have::complete(10),
            _ => Have::partial(u32::from(c / 4 % 10), 10),
        };
        match kind % 16 {
            0 | 15 => Op::Register(h),
            1 => Op::Heartbeat(h, c.is_multiple_of(5)),
            2..=5 => Op::Join(h, t, have),
            6 | 7 => Op::Progress(h, t, have),
            8 => Op::Fail(h, t, p),
            9 => Op::Leave(h, t),
            10 => Op::Unregister(h),
            11 | 12 => Op::Advance(ms),
            _ => Op::Tick,
        }
    }
}

fn host_id(h: u8) -> HostId {
    format!("h{h}").parse().unwrap()
}

fn digest(t: u8) -> TaskId {
    TaskId::new("docker.io", Digest::sha256_of(&[t])).unwrap()
}

fn host_info(h: u8) -> HostInfo {
    HostInfo {
        id: host_id(h),
        addr: format!("10.0.0.{h}:4000").parse().unwrap(),
        labels: Labels {
            node: format!("h{h}"),
            zone: (!h.is_multiple_of(3)).then(|| format!("z{}", h % 2)),
            rack: (h.is_multiple_of(2)).then(|| format!("r{}", h % 4)),
        },
        upload_capacity: u64::from(h) << 20,
        max_uploads: u32::from(h % 4),
    }
}

/// What the scheduler was told, kept naively.
#[derive(Default)]
struct Model {
    now: Millis,
    /// Registered hosts: last contact, busy.
    hosts: BTreeMap<u8, (Millis, bool)>,
    /// (task, host) members: complete, failure report times.
    members: BTreeMap<(u8, u8), (bool, Vec<Millis>)>,
}

impl Model {
    fn touch(&mut self, h: u8) -> bool {
        match self.hosts.get_mut(&h) {
            Some(e) => {
                e.0 = e.0.max(self.now);
                true
            }
            None => false,
        }
    }

    fn alive(&self, h: u8) -> bool {
        self.hosts.get(&h).is_some_and(|&(last, _)| self.now.since(last) < TTL)
    }

    fn recent_failures(&self, t: u8, h: u8) -> usize {
        self.members.get(&(t, h)).map_or(0, |m| m.1.iter().filter(|&&at| self.now.since(at) < MEMORY).count())
    }

    fn forget(&mut self, h: u8) {
        self.hosts.remove(&h);
        self.members.retain(|&(_, x), _| x != h);
    }
}

fn unknown(h: u8) -> SchedError {
    SchedError::UnknownHost(host_id(h))
}

/// How much of the behaviour a run exercised.
#[derive(Debug, Default)]
struct Coverage {
    parents_offered: usize,
    granted: usize,
    waits: usize,
    expired: usize,
    revoked: usize,
    given: usize,
}

fn run(config: SchedulerConfig, ops: &[Op]) -> Coverage {
    let mut cov = Coverage::default();
    let mut s = Scheduler::new(config.clone());
    let mut m = Model { now: Millis(5_000_000), ..Model::default() };
    for h in 0..HOSTS {
        s.register(m.now, host_info(h));
        m.hosts.insert(h, (m.now, false));
    }
    for op in ops {
        step(&mut s, &mut m, &config, op, &mut cov);
        assert_consistent(&s);
    }
    cov
}

fn step(s: &mut Scheduler, m: &mut Model, config: &SchedulerConfig, op: &Op, cov: &mut Coverage) {
    let now = m.now;
    match *op {
        Op::Register(h) => {
            s.register(now, host_info(h));
            m.hosts.insert(h, (now, false));
        }
        Op::Heartbeat(h, busy) => {
            let r = s.heartbeat(now, &host_id(h), Load { uploads: 0, upload_bps: 0, busy });
            if m.touch(h) {
                r.unwrap();
                m.hosts.get_mut(&h).unwrap().1 = busy;
            } else {
                assert_eq!(r, Err(unknown(h)));
            }
        }
        Op::Join(h, t, have) => {
            let r = s.join(now, &host_id(h), &digest(t), have, false);
            if !m.touch(h) {
                assert_eq!(r, Err(unknown(h)));
                return;
            }
            let d = r.unwrap();
            m.members.entry((t, h)).or_default().0 = have.complete;
            assert!(d.parents.len() <= config.parents_per_join);
            let named: BTreeSet<_> = d.parents.iter().map(|p| p.host.clone()).collect();
            assert_eq!(named.len(), d.parents.len(), "no parent twice");
            for parent in &d.parents {
                let p = (0..HOSTS).find(|&x| host_id(x) == parent.host).unwrap();
                assert_ne!(p, h, "never the joiner itself");
                assert!(m.alive(p), "never an expired host");
                assert!(!m.hosts[&p].1, "never a busy host");
                assert!(m.members.contains_key(&(t, p)), "only peers of the task");
                assert!(m.recent_failures(t, p) < config.max_failures.max(1) as usize, "never a failing parent");
            }
            if have.complete {
                assert!(d.parents.is_empty());
                assert_ne!(d.origin, OriginGrant::Granted, "a complete peer never gets the grant");
            }
            if d.origin == OriginGrant::Granted {
                assert!(s.holds_grant(&host_id(h), &digest(t)));
                cov.granted += 1;
            } else {
                cov.waits += 1;
            }
            cov.parents_offered += d.parents.len();
        }
        Op::Progress(h, t, have) => {
            let r = s.progress(now, &host_id(h), &digest(t), have, None);
            if m.touch(h) {
                r.unwrap();
                m.members.entry((t, h)).or_default().0 = have.complete;
            } else {
                assert_eq!(r, Err(unknown(h)));
            }
        }
        Op::Fail(h, t, p) => {
            let r = s.piece_failed(now, &host_id(h), &digest(t), &host_id(p), 0, FailureKind::Corrupt);
            if m.touch(h) {
                r.unwrap();
                if let Some(member) = m.members.get_mut(&(t, p)) {
                    member.1.push(now);
                }
            } else {
                assert_eq!(r, Err(unknown(h)));
            }
        }
        Op::Leave(h, t) => {
            s.leave(now, &host_id(h), &digest(t));
            if m.touch(h) {
                m.members.remove(&(t, h));
            }
        }
        Op::Unregister(h) => {
            s.unregister(&host_id(h));
            m.forget(h);
        }
        Op::Advance(ms) => m.now = now + Duration::from_millis(ms),
        Op::Tick => {
            let events = s.tick(now);
            let dead: BTreeSet<u8> = m.hosts.keys().copied().filter(|&h| !m.alive(h)).collect();
            let expired: BTreeSet<u8> = events
                .iter()
                .filter_map(|e| match e {
                    Expired::Host(id) => (0..HOSTS).find(|&x| host_id(x) == *id),
                    _ => None,
                })
                .collect();
            assert_eq!(expired, dead, "exactly the silent hosts expire");
            cov.expired += expired.len();
            cov.revoked += events.iter().filter(|e| matches!(e, Expired::GrantRevoked { .. })).count();
            cov.given += events.iter().filter(|e| matches!(e, Expired::GrantGiven { .. })).count();
            for h in dead {
                m.forget(h);
            }
            for t in 0..TASKS {
                let peers: Vec<_> = m.members.iter().filter(|((x, _), _)| *x == t).collect();
                let holders = s.grant_holders(&digest(t));
                for holder in &holders {
                    let h = (0..HOSTS).find(|&x| host_id(x) == *holder).unwrap();
                    assert!(m.members.get(&(t, h)).is_some_and(|p| !p.0), "holders are incomplete peers");
                }
                let has_complete = peers.iter().any(|(_, p)| p.0);
                if !peers.is_empty() && !has_complete && config.max_origin_grants > 0 {
                    assert!(!holders.is_empty(), "task {t} with only incomplete peers has a grant holder");
                }
            }
        }
    }
}

fn config(grants: usize, parents: usize, failures: u32, scan: usize) -> SchedulerConfig {
    SchedulerConfig {
        max_origin_grants: grants,
        parents_per_join: parents,
        host_ttl: TTL,
        grant_stall: Duration::from_secs(20),
        failure_memory: MEMORY,
        max_failures: failures,
        scan_limit: scan,
        ..SchedulerConfig::default()
    }
}

fn op() -> impl Strategy<Value = Op> {
    (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), 0u64..15_000)
        .prop_map(|(k, a, b, c, ms)| Op::from_parts(k, a, b, c, ms))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_events_keep_the_invariants(
        grants in 0usize..4,
        parents in 0usize..6,
        failures in 0u32..4,
        scan in 1usize..8,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let _ = run(config(grants, parents, failures, scan), &ops);
    }
}

#[test]
fn long_seeded_runs_keep_the_invariants() {
    let mut total = Coverage::default();
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let cfg =
            config(rng.random_range(1..4), rng.random_range(1..6), rng.random_range(1..4), rng.random_range(1..10));
        let ops: Vec<Op> = (0..2_000)
            .map(|_| {
                Op::from_parts(rng.random(), rng.random(), rng.random(), rng.random(), rng.random_range(0..15_000))
            })
            .collect();
        let cov = run(cfg, &ops);
        total.parents_offered += cov.parents_offered;
        total.granted += cov.granted;
        total.waits += cov.waits;
        total.expired += cov.expired;
        total.revoked += cov.revoked;
        total.given += cov.given;
    }
    // The runs must reach every part of the behaviour, or they prove little.
    let Coverage { parents_offered, granted, waits, expired, revoked, given } = total;
    println!("{total:?}");
    assert!(parents_offered > 0 && granted > 0 && waits > 0 && expired > 0 && revoked > 0 && given > 0);
}
