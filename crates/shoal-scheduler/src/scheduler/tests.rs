//! One test per rule, driving the public API with a virtual clock.

use std::collections::BTreeSet;
use std::time::Duration;

use shoal_core::{Digest, HostId, TaskId};
use shoal_proto::FailureKind;

use super::Scheduler;
use super::proptests::assert_consistent;
use crate::{Expired, Have, HostInfo, JoinDecision, Labels, Load, Millis, OriginGrant, SchedError, SchedulerConfig};

const T0: Millis = Millis(1_000_000);
const SOON: OriginGrant = OriginGrant::Wait { retry_after: Duration::from_millis(200) };
const LATER: OriginGrant = OriginGrant::Wait { retry_after: Duration::from_secs(5) };

fn id(name: &str) -> HostId {
    name.parse().unwrap()
}

fn task(n: u8) -> TaskId {
    TaskId::new("docker.io", Digest::sha256_of(&[n])).unwrap()
}

fn at(secs: u64) -> Millis {
    T0 + Duration::from_secs(secs)
}

fn info(name: &str, zone: Option<&str>, rack: Option<&str>) -> HostInfo {
    let n = name.bytes().fold(0u16, |a, b| a.wrapping_mul(31).wrapping_add(u16::from(b)));
    HostInfo {
        id: id(name),
        addr: format!("10.0.{}.{}:4000", n >> 8, n & 0xff).parse().unwrap(),
        labels: Labels { node: name.to_owned(), zone: zone.map(str::to_owned), rack: rack.map(str::to_owned) },
        upload_capacity: 100 << 20,
        max_uploads: 16,
    }
}

fn sched_with(config: SchedulerConfig, names: &[&str]) -> Scheduler {
    let mut s = Scheduler::new(config);
    for n in names {
        s.register(T0, info(n, Some("z1"), Some("r1")));
    }
    s
}

fn sched(names: &[&str]) -> Scheduler {
    sched_with(SchedulerConfig::default(), names)
}

fn join(s: &mut Scheduler, now: Millis, name: &str, t: &TaskId, have: Have) -> JoinDecision {
    let d = s.join(now, &id(name), t, have, true).unwrap();
    assert_consistent(s);
    d
}

fn parents(d: &JoinDecision) -> Vec<String> {
    d.parents.iter().map(|p| p.host.to_string()).collect()
}

fn progress(s: &mut Scheduler, now: Millis, name: &str, t: &TaskId, have: Have) {
    s.progress(now, &id(name), t, have, None).unwrap();
    assert_consistent(s);
}

/// `name` takes the origin grant on `t` and completes it, reporting its
/// final map of `pieces` hashes: a complete authority.
fn authority_completes(s: &mut Scheduler, now: Millis, name: &str, t: &TaskId, pieces: u32) {
    assert_eq!(join(s, now, name, t, Have::NOTHING).origin, OriginGrant::Granted, "{name} should get the grant");
    s.progress(now, &id(name), t, Have::complete(pieces), Some(map_of(pieces))).unwrap();
    assert_consistent(s);
}

fn map_of(pieces: u32) -> Vec<[u8; 32]> {
    (0..pieces).map(|i| [i as u8; 32]).collect()
}

#[test]
fn first_joiner_gets_the_grant_and_the_next_waits_briefly() {
    let mut s = sched(&["a", "b"]);
    let t = task(1);
    let d = join(&mut s, T0, "a", &t, Have::NOTHING);
    assert_eq!(d, JoinDecision { parents: vec![], origin: OriginGrant::Granted, authorities: vec![], map: None });
    let d = join(&mut s, T0, "b", &t, Have::NOTHING);
    assert_eq!((d.parents, d.origin), (vec![], SOON));
    // The grant holder reads the blob from the origin: b may trust its hashes.
    assert_eq!(d.authorities.iter().map(|a| a.host.clone()).collect::<Vec<_>>(), vec![id("a")]);
    assert_eq!(s.grant_holders(&t), vec![id("a")]);
    // Asking again keeps the grant with its holder.
    assert_eq!(join(&mut s, T0, "a", &t, Have::NOTHING).origin, OriginGrant::Granted);
    assert_eq!(s.stats().grants, 1);
}

#[test]
fn a_seed_of_one_layer_leaves_the_next_layer_to_another_joiner() {
    let ms = |n| T0 + Duration::from_millis(n);
    let mut s = sched(&["a", "b", "c"]);
    let (l1, l2, l3) = (task(1), task(2), task(3));
    assert_eq!(join(&mut s, T0, "a", &l1, Have::NOTHING).origin, OriginGrant::Granted);
    // "a" seeds layer 1: layer 2's grant waits for another joiner, and "a"
    // is told to ask again when the window ends.
    let d = join(&mut s, ms(10), "a", &l2, Have::NOTHING);
    assert_eq!(d.origin, OriginGrant::Wait { retry_after: Duration::from_millis(150) });
    assert_eq!(join(&mut s, ms(20), "b", &l2, Have::NOTHING).origin, OriginGrant::Granted);
    assert_eq!(s.grant_holders(&l2), vec![id("b")]);
    // Nobody else comes for layer 3: "a" gets it once the window is over.
    assert_eq!(
        join(&mut s, ms(30), "a", &l3, Have::NOTHING).origin,
        OriginGrant::Wait { retry_after: Duration::from_millis(150) }
    );
    assert_eq!(
        join(&mut s, ms(100), "a", &l3, Have::NOTHING).origin,
        OriginGrant::Wait { retry_after: Duration::from_millis(80) }
    );
    assert_eq!(join(&mut s, ms(180), "a", &l3, Have::NOTHING).origin, OriginGrant::Granted);
    assert_eq!(s.grant_holders(&l3), vec![id("a")]);
}

#[test]
fn a_lone_host_or_a_zero_window_is_never_held_back() {
    let mut s = sched(&["a"]);
    for n in 1..=3 {
        assert_eq!(join(&mut s, T0, "a", &task(n), Have::NOTHING).origin, OriginGrant::Granted);
    }
    let config = SchedulerConfig { grant_spread: Duration::ZERO, ..SchedulerConfig::default() };
    let mut s = sched_with(config, &["a", "b"]);
    for n in 1..=3 {
        assert_eq!(join(&mut s, T0, "a", &task(n), Have::NOTHING).origin, OriginGrant::Granted);
    }
}

#[test]
fn grant_limit_two_admits_two_holders() {
    let config = SchedulerConfig { max_origin_grants: 2, ..SchedulerConfig::default() };
    let mut s = sched_with(config, &["a", "b", "c"]);
    let t = task(1);
    assert_eq!(join(&mut s, T0, "a", &t, Have::NOTHING).origin, OriginGrant::Granted);
    assert_eq!(join(&mut s, T0, "b", &t, Have::NOTHING).origin, OriginGrant::Granted);
    assert_eq!(join(&mut s, T0, "c", &t, Have::NOTHING).origin, SOON);
    assert_eq!(s.stats().grants, 2);
    // Each task has its own grants.
    assert_eq!(join(&mut s, T0, "c", &task(2), Have::NOTHING).origin, OriginGrant::Granted);
}

#[test]
fn zero_grants_means_nobody_fetches_from_the_origin() {
    let config = SchedulerConfig { max_origin_grants: 0, ..SchedulerConfig::default() };
    let mut s = sched_with(config, &["a"]);
    assert_eq!(join(&mut s, T0, "a", &task(1), Have::NOTHING).origin, SOON);
    assert!(s.tick(at(1)).is_empty());
}

#[test]
fn pipelining_offers_a_peer_that_is_still_downloading() {
    let mut s = sched(&["seed", "b", "c"]);
    let t = task(1);
    join(&mut s, T0, "seed", &t, Have::NOTHING);
    assert_eq!(join(&mut s, T0, "b", &t, Have::NOTHING).origin, SOON);
    progress(&mut s, at(1), "seed", &t, Have::partial(3, 10));
    let d = join(&mut s, at(1), "b", &t, Have::NOTHING);
    assert_eq!(parents(&d), ["seed"]);
    assert_eq!((d.parents[0].pieces_done, d.parents[0].complete), (3, false));
    assert_eq!(d.origin, LATER);
    // b's pieces make it a parent for c in turn.
    progress(&mut s, at(2), "b", &t, Have::partial(1, 10));
    assert_eq!(parents(&join(&mut s, at(2), "c", &t, Have::NOTHING)), ["seed", "b"]);
}

#[test]
fn completing_frees_the_grant_and_a_complete_peer_never_gets_one() {
    let mut s = sched(&["a", "b", "c"]);
    let t = task(1);
    join(&mut s, T0, "a", &t, Have::NOTHING);
    progress(&mut s, at(1), "a", &t, Have::complete(10));
    assert!(!s.holds_grant(&id("a"), &t));
    assert_eq!(s.stats().grants, 0);
    // b is offered the complete seed, so it needs no grant.
    let d = join(&mut s, at(1), "b", &t, Have::NOTHING);
    assert_eq!((parents(&d), d.origin), (vec!["a".to_owned()], LATER));
    // A complete joiner gets nothing: it is a seed.
    let d = join(&mut s, at(1), "c", &task(2), Have::complete(4));
    assert_eq!(d, JoinDecision { parents: vec![], origin: LATER, authorities: vec![], map: None });
    assert!(s.grant_holders(&task(2)).is_empty());
    // A holder that joins again as complete also drops its grant.
    join(&mut s, at(1), "b", &task(3), Have::NOTHING);
    assert!(s.holds_grant(&id("b"), &task(3)));
    join(&mut s, at(2), "b", &task(3), Have::complete(4));
    assert!(!s.holds_grant(&id("b"), &task(3)));
}

#[test]
fn a_busy_complete_seed_is_waited_for_not_bypassed() {
    let mut s = sched(&["seed", "b", "c"]);
    let t = task(1);
    authority_completes(&mut s, T0, "seed", &t, 10);
    s.heartbeat(T0, &id("seed"), Load { busy: true, ..Load::default() }).unwrap();
    // The only complete peer is at its upload cap: not offered, but the
    // blob is in the swarm, so the origin is not asked for it again.
    let d = join(&mut s, T0, "b", &t, Have::NOTHING);
    assert_eq!(d.parents.len(), 0);
    assert!(matches!(d.origin, OriginGrant::Wait { .. }), "{:?}", d.origin);
    // One bad piece from the complete copy costs that piece, not the blob:
    // the joiner still waits for it.
    s.piece_failed(T0, &id("c"), &t, &id("seed"), 3, FailureKind::Corrupt).unwrap();
    let d = join(&mut s, T0, "c", &t, Have::NOTHING);
    assert_ne!(d.origin, OriginGrant::Granted, "one bad piece sent c to the origin");
    // A copy that failed children `max_failures` times is no reason to wait.
    for piece in 4..6 {
        s.piece_failed(T0, &id("c"), &t, &id("seed"), piece, FailureKind::Corrupt).unwrap();
    }
    let d = join(&mut s, T0, "c", &t, Have::NOTHING);
    assert_eq!(d.origin, OriginGrant::Granted, "the seed's copy is suspect: c may fetch");
    s.leave(T0, &id("c"), &t);
    // A copy a child could not reach may be gone: one report is enough.
    let t = task(2);
    authority_completes(&mut s, T0, "seed", &t, 10);
    s.piece_failed(T0, &id("c"), &t, &id("seed"), 0, FailureKind::Unreachable).unwrap();
    let d = join(&mut s, T0, "c", &t, Have::NOTHING);
    assert_eq!(d.origin, OriginGrant::Granted, "an unreachable copy was waited for");
    s.leave(T0, &id("c"), &t);
    let t = task(1);
    s.leave(T0, &id("c"), &t);
    // Once the seed is gone (expired), the origin is the way.
    s.heartbeat(at(20), &id("b"), Load::default()).unwrap();
    s.tick(at(31));
    let d = join(&mut s, at(31), "b", &t, Have::NOTHING);
    assert_eq!(d.origin, OriginGrant::Granted);
}

#[test]
fn grant_moves_on_when_the_holder_expires() {
    let mut s = sched(&["a", "b"]);
    let t = task(1);
    join(&mut s, T0, "a", &t, Have::NOTHING);
    join(&mut s, T0, "b", &t, Have::NOTHING);
    // b stays alive, a goes silent past the 30 s ttl.
    s.heartbeat(at(20), &id("b"), Load::default()).unwrap();
    let events = s.tick(at(31));
    assert_eq!(events, vec![Expired::Host(id("a")), Expired::GrantGiven { task: t.clone(), host: id("b") }]);
    assert_consistent(&s);
    assert_eq!(join(&mut s, at(31), "b", &t, Have::NOTHING).origin, OriginGrant::Granted);
}

#[test]
fn a_joiner_takes_over_the_grant_of_a_dead_holder_before_the_tick() {
    let mut s = sched(&["a", "b"]);
    let t = task(1);
    join(&mut s, T0, "a", &t, Have::NOTHING);
    // a is past its ttl but no tick ran yet.
    assert_eq!(join(&mut s, at(30), "b", &t, Have::NOTHING).origin, OriginGrant::Granted);
    assert_eq!(s.grant_holders(&t), vec![id("b")]);
    let events = s.tick(at(30));
    assert_eq!(events, vec![Expired::GrantRevoked { task: t.clone(), host: id("a") }, Expired::Host(id("a"))]);
}

#[test]
fn grant_moves_on_when_the_holder_stalls() {
    let mut s = sched(&["a", "b"]);
    let t = task(1);
    join(&mut s, T0, "a", &t, Have::NOTHING);
    join(&mut s, T0, "b", &t, Have::NOTHING);
    // Both stay alive; a reports, but never a new piece.
    progress(&mut s, at(10), "a", &t, Have::NOTHING);
    s.heartbeat(at(19), &id("b"), Load::default()).unwrap();
    assert!(s.tick(at(19)).is_empty(), "not stalled before grant_stall");
    let events = s.tick(at(20));
    assert_eq!(
        events,
        vec![
            Expired::GrantRevoked { task: t.clone(), host: id("a") },
            Expired::GrantGiven { task: t.clone(), host: id("b") }
        ]
    );
    assert_eq!(s.grant_holders(&t), vec![id("b")]);
}

#[test]
fn progress_keeps_the_grant_and_a_lone_stalled_holder_keeps_it_too() {
    let mut s = sched(&["a", "b"]);
    let t = task(1);
    join(&mut s, T0, "a", &t, Have::NOTHING);
    for i in 1..=5 {
        progress(&mut s, at(i * 10), "a", &t, Have::partial(i as u32, 100));
    }
    s.heartbeat(at(40), &id("b"), Load::default()).unwrap();
    s.heartbeat(at(80), &id("b"), Load::default()).unwrap();
    assert!(s.tick(at(55)).is_empty());
    // Stalled, but nobody else could take the grant: it stays.
    s.heartbeat(at(90), &id("a"), Load::default()).unwrap();
    assert!(s.tick(at(90)).is_empty());
    assert!(s.holds_grant(&id("a"), &t));
    // A joiner takes a stalled grant over at once.
    assert_eq!(join(&mut s, at(90), "b", &t, Have::NOTHING).origin, OriginGrant::Granted);
    assert_eq!(s.tick(at(91)), vec![Expired::GrantRevoked { task: t.clone(), host: id("a") }]);
}

#[test]
fn a_stalled_holder_loses_the_grant_once_a_complete_peer_exists() {
    let mut s = sched(&["a", "seed"]);
    let t = task(1);
    join(&mut s, T0, "a", &t, Have::NOTHING);
    join(&mut s, at(5), "seed", &t, Have::complete(10));
    s.heartbeat(at(20), &id("a"), Load::default()).unwrap();
    assert_eq!(s.tick(at(20)), vec![Expired::GrantRevoked { task: t.clone(), host: id("a") }]);
    assert_eq!(s.stats().grants, 0);
}

#[test]
fn losing_the_only_complete_peer_hands_the_grant_to_a_waiting_peer() {
    let mut s = sched(&["seed", "b", "c"]);
    let t = task(1);
    authority_completes(&mut s, T0, "seed", &t, 10);
    join(&mut s, T0, "b", &t, Have::NOTHING);
    progress(&mut s, at(1), "c", &t, Have::partial(2, 10));
    assert!(s.tick(at(1)).is_empty(), "the seed serves them");
    s.leave(at(2), &id("seed"), &t);
    assert_eq!(s.tick(at(2)), vec![Expired::GrantGiven { task: t.clone(), host: id("c") }]);
    // A seed that loses its blob (complete -> not) counts the same way.
    let t2 = task(2);
    authority_completes(&mut s, at(3), "b", &t2, 4);
    join(&mut s, at(3), "c", &t2, Have::NOTHING);
    progress(&mut s, at(4), "b", &t2, Have::partial(0, 4));
    assert_eq!(s.tick(at(4)), vec![Expired::GrantGiven { task: t2.clone(), host: id("b") }]);
}

#[test]
fn failures_exclude_a_parent_for_that_task_until_they_age_out() {
    let mut s = sched(&["p", "q", "child", "other"]);
    let t = task(1);
    join(&mut s, T0, "p", &t, Have::complete(10));
    join(&mut s, T0, "q", &t, Have::complete(10));
    for piece in 0..3 {
        s.piece_failed(at(1), &id("child"), &t, &id("p"), piece, FailureKind::Corrupt).unwrap();
    }
    assert_eq!(parents(&join(&mut s, at(1), "child", &t, Have::NOTHING)), ["q"]);
    // Failures are per task: p still serves another blob.
    join(&mut s, T0, "p", &task(2), Have::complete(10));
    assert_eq!(parents(&join(&mut s, at(1), "other", &task(2), Have::NOTHING)), ["p"]);
    // Five minutes later they no longer count.
    for n in ["p", "q"] {
        s.heartbeat(at(301), &id(n), Load::default()).unwrap();
    }
    let mut back = parents(&join(&mut s, at(301), "child", &t, Have::NOTHING));
    back.sort();
    assert_eq!(back, ["p", "q"]);
}

#[test]
fn fewer_recent_failures_rank_higher() {
    let mut s = sched(&["p", "q", "child"]);
    let t = task(1);
    join(&mut s, T0, "p", &t, Have::complete(10));
    join(&mut s, T0, "q", &t, Have::complete(10));
    s.piece_failed(T0, &id("child"), &t, &id("p"), 0, FailureKind::Corrupt).unwrap();
    assert_eq!(parents(&join(&mut s, T0, "child", &t, Have::NOTHING)), ["q", "p"]);
    s.piece_failed(T0, &id("child"), &t, &id("q"), 0, FailureKind::Corrupt).unwrap();
    s.piece_failed(T0, &id("child"), &t, &id("q"), 1, FailureKind::Corrupt).unwrap();
    assert_eq!(parents(&join(&mut s, T0, "child", &t, Have::NOTHING)), ["p", "q"]);
}

#[test]
fn failure_reports_about_strangers_are_ignored() {
    let mut s = sched(&["child"]);
    s.piece_failed(T0, &id("child"), &task(1), &id("nobody"), 0, FailureKind::Corrupt).unwrap();
    join(&mut s, T0, "child", &task(1), Have::NOTHING);
    s.piece_failed(T0, &id("child"), &task(1), &id("child"), 0, FailureKind::Corrupt).unwrap();
    s.piece_failed(T0, &id("child"), &task(9), &id("child"), 0, FailureKind::Corrupt).unwrap();
    assert_eq!(s.stats().tasks, 1);
}

#[test]
fn locality_orders_same_rack_then_same_zone_then_elsewhere() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.register(T0, info("child", Some("z1"), Some("r1")));
    s.register(T0, info("rack", Some("z1"), Some("r1")));
    s.register(T0, info("zone", Some("z1"), Some("r2")));
    // Same rack name in another zone is another rack.
    s.register(T0, info("far", Some("z2"), Some("r1")));
    s.register(T0, info("unlabelled", None, None));
    let t = task(1);
    for n in ["unlabelled", "far", "zone", "rack"] {
        join(&mut s, T0, n, &t, Have::complete(10));
    }
    let d = join(&mut s, T0, "child", &t, Have::NOTHING);
    assert_eq!(parents(&d)[..2], ["rack", "zone"]);
    // Re-registering with new labels moves a host.
    s.register(T0, info("far", Some("z1"), Some("r1")));
    let d = join(&mut s, T0, "child", &t, Have::NOTHING);
    let first_two: BTreeSet<String> = parents(&d)[..2].iter().cloned().collect();
    assert_eq!(first_two, BTreeSet::from(["rack".to_owned(), "far".to_owned()]));
}

#[test]
fn complete_first_then_more_pieces() {
    let mut s = sched(&["done", "most", "some", "child"]);
    let t = task(1);
    join(&mut s, T0, "some", &t, Have::partial(2, 10));
    join(&mut s, T0, "most", &t, Have::partial(8, 10));
    join(&mut s, T0, "done", &t, Have::complete(10));
    assert_eq!(parents(&join(&mut s, T0, "child", &t, Have::NOTHING)), ["done", "most", "some"]);
}

#[test]
fn more_free_upload_capacity_ranks_higher() {
    let mut s = sched(&["slow", "fast", "loaded", "child"]);
    let mut fast = info("fast", Some("z1"), Some("r1"));
    fast.upload_capacity = 1 << 30;
    s.register(T0, fast);
    let t = task(1);
    for n in ["slow", "fast", "loaded"] {
        join(&mut s, T0, n, &t, Have::complete(10));
    }
    // "loaded" has the default capacity but spends most of it.
    s.heartbeat(T0, &id("loaded"), Load { uploads: 3, upload_bps: 90 << 20, busy: false }).unwrap();
    assert_eq!(parents(&join(&mut s, T0, "child", &t, Have::NOTHING)), ["fast", "slow", "loaded"]);
}

#[test]
fn busy_and_full_hosts_are_not_offered() {
    let mut s = sched(&["busy", "full", "mute", "ok", "child"]);
    let mut mute = info("mute", Some("z1"), Some("r1"));
    mute.max_uploads = 0;
    s.register(T0, mute);
    let t = task(1);
    for n in ["busy", "full", "mute", "ok"] {
        join(&mut s, T0, n, &t, Have::complete(10));
    }
    s.heartbeat(T0, &id("busy"), Load { busy: true, ..Load::default() }).unwrap();
    s.heartbeat(T0, &id("full"), Load { uploads: 16, ..Load::default() }).unwrap();
    assert_eq!(parents(&join(&mut s, T0, "child", &t, Have::NOTHING)), ["ok"]);
}

#[test]
fn a_lagging_child_is_offered_parents_at_their_upload_cap() {
    let mut s = sched(&["full", "lead", "late", "close"]);
    let t = task(1);
    join(&mut s, T0, "full", &t, Have::complete(160));
    s.heartbeat(T0, &id("full"), Load { uploads: 16, ..Load::default() }).unwrap();
    join(&mut s, T0, "lead", &t, Have::partial(150, 160));
    s.heartbeat(T0, &id("lead"), Load { uploads: 16, ..Load::default() }).unwrap();
    // 5 pieces behind of 160: on time; 150 behind: lagging.
    assert!(join(&mut s, T0, "close", &t, Have::partial(155, 160)).parents.is_empty(), "every parent is at its cap");
    let late = parents(&join(&mut s, T0, "late", &t, Have::partial(10, 160)));
    assert!(late.contains(&"full".to_owned()) && late.contains(&"lead".to_owned()), "{late:?}");
}

#[test]
fn offers_count_as_uploads_until_the_next_heartbeat() {
    let mut s = sched(&["p", "a", "b", "c"]);
    let mut p = info("p", Some("z1"), Some("r1"));
    p.max_uploads = 2;
    s.register(T0, p);
    let t = task(1);
    join(&mut s, T0, "p", &t, Have::complete(10));
    assert_eq!(parents(&join(&mut s, T0, "a", &t, Have::NOTHING)), ["p"]);
    assert_eq!(parents(&join(&mut s, T0, "b", &t, Have::NOTHING)), ["p"]);
    let d = join(&mut s, T0, "c", &t, Have::NOTHING);
    assert!(d.parents.is_empty(), "p has two offers out and two slots");
    assert!(
        matches!(d.origin, OriginGrant::Wait { .. }),
        "a complete copy is in the swarm: c waits for a slot rather than asking the origin"
    );
    s.heartbeat(at(1), &id("p"), Load { uploads: 1, ..Load::default() }).unwrap();
    assert_eq!(parents(&join(&mut s, at(1), "c", &t, Have::NOTHING)), ["p"]);
}

#[test]
fn simultaneous_joiners_spread_over_equal_parents() {
    let parents_names = ["p0", "p1", "p2", "p3", "p4", "p5"];
    let children: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    let mut all: Vec<&str> = parents_names.to_vec();
    all.extend(children.iter().map(String::as_str));
    let mut s = sched(&all);
    let t = task(7);
    for p in parents_names {
        join(&mut s, T0, p, &t, Have::complete(10));
    }
    let firsts: BTreeSet<String> =
        children.iter().map(|c| parents(&join(&mut s, T0, c, &t, Have::NOTHING))[0].clone()).collect();
    assert!(firsts.len() >= 3, "first parents {firsts:?} should spread");
}

#[test]
fn a_joiner_is_never_its_own_parent() {
    let mut s = sched(&["a", "b"]);
    let t = task(1);
    join(&mut s, T0, "a", &t, Have::partial(5, 10));
    join(&mut s, T0, "b", &t, Have::partial(5, 10));
    assert_eq!(parents(&join(&mut s, T0, "a", &t, Have::partial(6, 10))), ["b"]);
}

#[test]
fn expiry_removes_a_host_from_every_task() {
    let mut s = sched(&["seed", "child"]);
    for n in 0..3 {
        join(&mut s, T0, "seed", &task(n), Have::complete(10));
    }
    s.heartbeat(at(29), &id("child"), Load::default()).unwrap();
    // Past its ttl the seed is no longer offered, even before the tick.
    let d = join(&mut s, at(30), "child", &task(0), Have::NOTHING);
    assert_eq!((d.parents.len(), d.origin), (0, OriginGrant::Granted));
    assert_eq!(s.tick(at(30)), vec![Expired::Host(id("seed"))]);
    assert_consistent(&s);
    assert_eq!(s.stats().hosts, 1);
    assert_eq!(s.stats().tasks, 1, "tasks 1 and 2 lost their only peer");
    assert_eq!(s.stats().peer_tasks, 1);
    assert_eq!(s.heartbeat(at(31), &id("seed"), Load::default()), Err(SchedError::UnknownHost(id("seed"))));
}

#[test]
fn any_report_keeps_a_host_alive() {
    let mut s = sched(&["a"]);
    join(&mut s, at(20), "a", &task(1), Have::NOTHING);
    progress(&mut s, at(40), "a", &task(1), Have::partial(1, 9));
    assert!(s.tick(at(60)).is_empty());
    assert!(s.tick(at(70)).contains(&Expired::Host(id("a"))));
}

#[test]
fn unknown_hosts_are_told_to_register() {
    let mut s = sched(&["a"]);
    let ghost = id("ghost");
    let unknown = Err(SchedError::UnknownHost(ghost.clone()));
    assert_eq!(s.heartbeat(T0, &ghost, Load::default()), unknown);
    assert_eq!(s.join(T0, &ghost, &task(1), Have::NOTHING, false), Err(SchedError::UnknownHost(ghost.clone())));
    assert_eq!(s.progress(T0, &ghost, &task(1), Have::NOTHING, None), unknown);
    assert_eq!(s.piece_failed(T0, &ghost, &task(1), &id("a"), 0, FailureKind::Corrupt), unknown);
    s.leave(T0, &ghost, &task(1));
    s.unregister(&ghost);
    assert_eq!(s.stats().tasks, 0);
}

#[test]
fn leave_and_unregister_free_grants_and_drop_empty_tasks() {
    let mut s = sched(&["a", "b"]);
    let t = task(1);
    join(&mut s, T0, "a", &t, Have::NOTHING);
    join(&mut s, T0, "b", &t, Have::NOTHING);
    s.leave(at(1), &id("a"), &t);
    assert_consistent(&s);
    assert_eq!(s.stats().grants, 0);
    assert_eq!(join(&mut s, at(1), "b", &t, Have::NOTHING).origin, OriginGrant::Granted);
    s.unregister(&id("b"));
    assert_consistent(&s);
    assert_eq!(
        s.stats(),
        crate::Stats {
            hosts: 1,
            tasks: 0,
            peer_tasks: 0,
            grants: 0,
            prewarm_jobs: 0,
            prewarm_active: 0,
            piece_maps: 0,
        }
    );
}

#[test]
fn a_restarted_scheduler_rebuilds_from_registers_and_joins() {
    let names = ["a", "b", "c", "d"];
    let t = task(1);
    let replay = |s: &mut Scheduler, now: Millis| {
        for n in names {
            s.register(now, info(n, Some("z1"), Some(if n < "c" { "r1" } else { "r2" })));
        }
        join(s, now, "a", &t, Have::complete(10));
        join(s, now, "b", &t, Have::partial(4, 10));
        progress(s, now, "c", &t, Have::partial(1, 10));
    };
    let mut before = Scheduler::new(SchedulerConfig::default());
    replay(&mut before, T0);
    let mut after = Scheduler::new(SchedulerConfig::default());
    replay(&mut after, at(100));
    assert_eq!(before.stats(), after.stats());
    let d1 = join(&mut before, T0, "d", &t, Have::NOTHING);
    let d2 = join(&mut after, at(100), "d", &t, Have::NOTHING);
    assert_eq!(d1, d2);
    // c shares d's rack: closeness outweighs b's extra pieces.
    assert_eq!(parents(&d1), ["a", "c", "b"]);
    // A re-register of a known host keeps its tasks.
    after.register(at(101), info("a", Some("z1"), Some("r1")));
    assert_eq!(after.stats().peer_tasks, 3 + 1);
}

#[test]
fn large_tasks_are_sampled_within_scan_limit() {
    let config = SchedulerConfig { scan_limit: 16, ..SchedulerConfig::default() };
    let names: Vec<String> = (0..500).map(|i| format!("h{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut s = sched_with(config, &refs);
    let t = task(1);
    for n in &names {
        join(&mut s, T0, n, &t, Have::partial(3, 10));
    }
    for n in &names[..50] {
        let d = join(&mut s, T0, n, &t, Have::partial(3, 10));
        assert_eq!(d.parents.len(), 4);
        assert!(d.parents.iter().all(|p| p.host.as_str() != n));
    }
}

#[test]
fn heap_usage_grows_with_entries() {
    let mut s = sched(&["a", "b"]);
    let empty = s.heap_usage();
    for n in 0..50 {
        join(&mut s, T0, "a", &task(n), Have::complete(1));
        join(&mut s, T0, "b", &task(n), Have::NOTHING);
    }
    let full = s.heap_usage();
    assert!(full.peer_tasks >= empty.peer_tasks + 100 * Scheduler::PEER_ENTRY_BYTES);
    assert!(full.total() > full.peer_tasks);
}

#[test]
fn a_complete_copy_vouches_for_itself_when_no_authority_is_known_but_a_relay_never_does() {
    let mut s = sched(&["old", "relay", "b", "c"]);
    let t = task(1);
    // A holder re-announced after a scheduler restart: complete, but no
    // authority and no final map is known. Its blob passed its digest, so
    // it is made the authority rather than the origin asked again.
    progress(&mut s, T0, "old", &t, Have::complete(10));
    let d = join(&mut s, T0, "b", &t, Have::NOTHING);
    assert!(matches!(d.origin, OriginGrant::Wait { .. }), "{:?}", d.origin);
    assert_eq!(d.authorities.iter().map(|a| a.host.clone()).collect::<Vec<_>>(), vec![id("old")]);
    // A peer still downloading is never made one: with only a relay, the
    // joiner fetches from the origin.
    let t2 = task(2);
    progress(&mut s, T0, "relay", &t2, Have::partial(9, 10));
    let d = join(&mut s, T0, "b", &t2, Have::NOTHING);
    assert!(d.authorities.is_empty());
    assert_eq!(d.origin, OriginGrant::Granted);
    // A complete copy that failed a child is not made an authority either.
    let t3 = task(3);
    progress(&mut s, T0, "old", &t3, Have::complete(10));
    s.piece_failed(T0, &id("b"), &t3, &id("old"), 0, FailureKind::Corrupt).unwrap();
    let d = join(&mut s, T0, "c", &t3, Have::NOTHING);
    assert!(d.authorities.is_empty());
    assert_eq!(d.origin, OriginGrant::Granted);
}

#[test]
fn an_authority_final_map_outlives_it_and_nobody_else_can_set_one() {
    let mut s = sched(&["a", "c", "b", "d"]);
    let t = task(1);
    assert_eq!(join(&mut s, T0, "a", &t, Have::NOTHING).origin, OriginGrant::Granted);
    // c is a child of a, not an authority: the map it reports is ignored.
    join(&mut s, T0, "c", &t, Have::NOTHING);
    s.progress(at(1), &id("c"), &t, Have::complete(4), Some(vec![[7; 32]; 4])).unwrap();
    assert_eq!(join(&mut s, at(1), "b", &t, Have::NOTHING).map, None, "a child cannot author the map");
    // A map of the wrong length from the authority is ignored too.
    s.progress(at(2), &id("a"), &t, Have::complete(4), Some(map_of(3))).unwrap();
    assert_eq!(join(&mut s, at(2), "b", &t, Have::NOTHING).map, None);
    s.progress(at(2), &id("a"), &t, Have::complete(4), Some(map_of(4))).unwrap();
    let d = join(&mut s, at(2), "b", &t, Have::NOTHING);
    assert_eq!(d.map, Some((id("a"), map_of(4))));
    assert_eq!(d.authorities.iter().map(|a| a.host.clone()).collect::<Vec<_>>(), vec![id("a")]);
    // Not sent unless asked for.
    assert_eq!(s.join(at(2), &id("b"), &t, Have::NOTHING, false).unwrap().map, None);
    // The authority leaves: its map stays, so c's copy can still be checked
    // and b waits for it instead of going to the origin.
    s.leave(at(3), &id("a"), &t);
    let d = join(&mut s, at(3), "b", &t, Have::NOTHING);
    assert_eq!(d.map, Some((id("a"), map_of(4))));
    assert!(matches!(d.origin, OriginGrant::Wait { .. }), "{:?}", d.origin);
    assert_eq!(parents(&d), vec!["c".to_owned()]);
    assert_eq!(s.stats().piece_maps, 1);
}

#[test]
fn a_bad_map_report_ends_the_authority_and_drops_its_map() {
    let mut s = sched(&["a", "b", "d"]);
    let t = task(1);
    authority_completes(&mut s, T0, "a", &t, 4);
    let d = join(&mut s, T0, "b", &t, Have::NOTHING);
    assert!(d.map.is_some() && matches!(d.origin, OriginGrant::Wait { .. }));
    s.piece_failed(at(1), &id("b"), &t, &id("a"), 0, FailureKind::BadMap).unwrap();
    assert_consistent(&s);
    let d = join(&mut s, at(1), "d", &t, Have::NOTHING);
    assert_eq!(d.map, None, "the map a vouched for is gone");
    assert!(d.authorities.is_empty());
    assert!(parents(&d).is_empty(), "a is excluded as a parent");
    assert_eq!(d.origin, OriginGrant::Granted, "the blob comes from the origin again");
    assert_eq!(s.stats().piece_maps, 0);
}

mod dead;
