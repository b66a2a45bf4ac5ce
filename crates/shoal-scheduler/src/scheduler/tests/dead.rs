//! A grant holder its children report dead moves its grant in about a
//! second; a report against a holder still making progress moves nothing.

use super::*;

fn ms(n: u64) -> Millis {
    T0 + Duration::from_millis(n)
}

/// "a" holds the grant of `t` and reports 10 of 100 pieces at 500 ms;
/// "b" and "c" wait for it.
fn seeding() -> (Scheduler, TaskId) {
    let mut s = sched(&["a", "b", "c"]);
    let t = task(1);
    assert_eq!(join(&mut s, T0, "a", &t, Have::NOTHING).origin, OriginGrant::Granted);
    join(&mut s, ms(10), "b", &t, Have::NOTHING);
    join(&mut s, ms(20), "c", &t, Have::NOTHING);
    progress(&mut s, ms(500), "a", &t, Have::partial(10, 100));
    progress(&mut s, ms(500), "b", &t, Have::partial(4, 100));
    progress(&mut s, ms(500), "c", &t, Have::partial(5, 100));
    (s, t)
}

fn failed(s: &mut Scheduler, now: Millis, who: &str, t: &TaskId, parent: &str, kind: FailureKind) {
    s.piece_failed(now, &id(who), t, &id(parent), 3, kind).unwrap();
    assert_consistent(s);
}

#[test]
fn a_holder_reported_dead_and_quiet_loses_its_grant_within_two_seconds() {
    let (mut s, t) = seeding();
    // a dies just after 500 ms; c drops it 1.5 s later (nothing under its
    // requests) and says so.
    failed(&mut s, ms(2_000), "c", &t, "a", FailureKind::Timeout);
    let holders = s.grant_holders(&t);
    assert_eq!(holders.len(), 1);
    assert_ne!(holders, vec![id("a")], "the grant stayed with the dead holder");
    let next = holders[0].to_string();
    let changes = s.tick(ms(2_100));
    assert!(changes.contains(&Expired::GrantRevoked { task: t.clone(), host: id("a") }), "{changes:?}");
    // The new holder hears it at its next join (a refresh, within 2 s).
    assert_eq!(join(&mut s, ms(2_200), &next, &t, Have::partial(6, 100)).origin, OriginGrant::Granted);
    assert_ne!(join(&mut s, ms(2_300), "a", &t, Have::partial(10, 100)).origin, OriginGrant::Granted);
}

#[test]
fn a_report_before_the_holder_is_quiet_moves_the_grant_once_it_is() {
    let (mut s, t) = seeding();
    // Reported 200 ms after its last progress: not quiet yet.
    failed(&mut s, ms(700), "b", &t, "a", FailureKind::Unreachable);
    assert_eq!(s.grant_holders(&t), vec![id("a")]);
    // Nothing more from it: the tick after holder_quiet moves the grant.
    assert!(s.tick(ms(1_400)).is_empty());
    let changes = s.tick(ms(1_500));
    assert!(changes.contains(&Expired::GrantRevoked { task: t.clone(), host: id("a") }), "{changes:?}");
    assert!(!s.holds_grant(&id("a"), &t));
}

#[test]
fn one_childs_report_against_a_progressing_holder_does_not_move_the_grant() {
    let (mut s, t) = seeding();
    // c says a is dead, again and again, while a keeps reporting pieces.
    for k in 1..=20u32 {
        let now = ms(500 + u64::from(k) * 200);
        progress(&mut s, now, "a", &t, Have::partial(10 + k, 100));
        failed(&mut s, now + Duration::from_millis(100), "c", &t, "a", FailureKind::Timeout);
        assert!(s.tick(now + Duration::from_millis(150)).is_empty(), "at {k}: the grant moved");
        assert_eq!(s.grant_holders(&t), vec![id("a")], "at {k}");
        assert_ne!(join(&mut s, now + Duration::from_millis(160), "c", &t, Have::NOTHING).origin, OriginGrant::Granted);
    }
    // Reports of bad bytes say nothing about life: a quiet holder keeps its
    // grant until grant_stall.
    let (mut s, t) = seeding();
    failed(&mut s, ms(10_000), "c", &t, "a", FailureKind::Corrupt);
    failed(&mut s, ms(10_000), "b", &t, "a", FailureKind::Missing);
    assert!(s.tick(ms(10_100)).is_empty());
    assert_eq!(s.grant_holders(&t), vec![id("a")]);
}
