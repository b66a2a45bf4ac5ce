//! Rounds: joins, refreshes, backoff, the origin grant, giving up, idle
//! ends, the pace, completion.

use super::*;

#[test]
fn every_parent_gone_backs_off_then_joins_again() {
    let mut h = H::new(SwarmTuning::default());
    let a = h.start(joined(&["a", "b"], &[], true));
    let (ia, ib) = (id_of(&a, "a"), id_of(&a, "b"));
    assert!(h.feed(Input::Avail(ia, PeerEvent::Gone)).is_empty());
    let out = h.feed(Input::AvailEnded(ib, None));
    assert_eq!(out, vec![Action::Unfollow(ia), Action::Unfollow(ib)], "stuck: both unfollowed");
    assert!(reports(&out).is_empty(), "left, not failed");
    assert_eq!(h.core.deadline(), Some(h.t0 + ms(200)), "the shortest stuck backoff");
    assert!(h.at(ms(199)).is_empty());
    assert!(matches!(h.at(ms(200)).as_slice(), [Action::Join { .. }]));
    // The next round makes no progress either: the pause doubles.
    let out = h.feed(Input::Joined(joined(&["a"], &[], false)));
    let ia = id_of(&out, "a");
    h.feed(Input::AvailEnded(ia, None));
    assert_eq!(h.core.deadline(), Some(h.t0 + ms(600)));
    // A round that makes progress resets it.
    assert!(matches!(h.at(ms(600)).as_slice(), [Action::Join { .. }]));
    let out = h.feed(Input::Joined(joined(&["b"], &[], false)));
    let ib = id_of(&out, "b");
    assert_eq!(requests(&h.feed(Input::Avail(ib, bitfield(&[0], hash)))), vec![(ib, 0)]);
    h.feed(Input::PieceArrived(ib, 0));
    h.feed(Input::Avail(ib, PeerEvent::Gone));
    let out = h.feed(Input::AvailEnded(ib, None));
    assert_eq!(out, vec![], "it announced a piece: kept until the idle end");
    let out = h.at(ms(600) + SwarmTuning::default().idle);
    assert_eq!(out, vec![Action::Unfollow(ib), Action::Join { want_map: false, held: 1 }], "no pause after progress");
}

#[test]
fn a_late_parent_list_starts_requests() {
    let mut h = H::new(SwarmTuning::default());
    let out = h.start(Joined { parents: vec![], ..joined(&[], &[], true) });
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.core.deadline(), Some(h.t0 + ms(500)), "the scheduler's retry_after");
    assert!(matches!(h.at(ms(500)).as_slice(), [Action::Join { .. }]));
    let out = h.feed(Input::Joined(joined(&["a"], &[], false)));
    let ia = id_of(&out, "a");
    assert_eq!(requests(&h.feed(Input::Avail(ia, bitfield(&[0, 1], hash)))), vec![(ia, 0)]);
    // A refresh brings another parent mid-round: it is asked too.
    let out = h.at(ms(500) + SwarmTuning::default().first_refresh);
    assert!(matches!(out.as_slice(), [Action::Join { .. }]), "the first refresh: {out:?}");
    let out = h.feed(Input::Joined(joined(&["a", "b"], &[], false)));
    let ib = id_of(&out, "b");
    assert_eq!(requests(&h.feed(Input::Avail(ib, bitfield(&[1], hash)))), vec![(ib, 1)]);
}

#[test]
fn refreshes_start_early_and_double_up_to_the_interval() {
    // The parent takes its time with the piece (it is not dropped).
    let t = SwarmTuning { stall_floor: Duration::from_secs(60), ..SwarmTuning::default() };
    let (mut h, _, _) = one_parent_with(t.clone());
    let mut at = Duration::ZERO;
    for wait in [t.first_refresh, t.first_refresh * 2, t.first_refresh * 4, t.first_refresh * 8, t.refresh] {
        at += wait;
        assert!(h.at(at - ms(1)).is_empty(), "before {at:?}");
        let out = h.at(at);
        assert!(matches!(out.as_slice(), [Action::Join { .. }]), "{at:?}: {out:?}");
        assert!(h.feed(Input::JoinFailed("down".into())).is_empty(), "a failed refresh changes nothing");
    }
}

#[test]
fn the_origin_grant_mid_fetch_ends_with_in_flight_pieces_missing() {
    let (mut h, a, reqs) = one_parent(2);
    assert_eq!(requests(&reqs), vec![(a, 0), (a, 1)]);
    h.feed(Input::PieceArrived(a, 0));
    assert!(matches!(h.at(SwarmTuning::default().first_refresh).as_slice(), [Action::Join { .. }]));
    let out = h.feed(Input::Joined(Joined { origin: OriginGrant::Granted, ..joined(&["a"], &[], false) }));
    assert_eq!(out, vec![Action::End(End::Origin(ToOrigin::Granted))]);
    assert_eq!(h.core.missing(), (1..PIECES).collect::<Vec<_>>(), "pieces in flight count as missing");
    assert!(h.feed(Input::PieceArrived(a, 1)).is_empty(), "nothing after the end");
}

#[test]
fn the_grant_at_the_start_or_no_scheduler_ends_at_once() {
    let mut h = H::new(SwarmTuning::default());
    let out = h.start(Joined { origin: OriginGrant::Granted, ..joined(&["a"], &[], false) });
    assert_eq!(out, vec![Action::End(End::Origin(ToOrigin::Granted))]);
    assert_eq!(h.core.missing(), all());
    let mut h = H::new(SwarmTuning::default());
    h.drain();
    let out = h.feed(Input::JoinFailed("no answer within 5s".into()));
    assert_eq!(out, vec![Action::End(End::Origin(ToOrigin::SchedulerUnreachable("no answer within 5s".into())))]);
    let mut h = H::held(SwarmTuning::default(), all());
    assert_eq!(h.drain(), vec![Action::End(End::Complete)], "nothing to fetch");
}

#[test]
fn the_swarm_is_given_up_after_its_time() {
    let t = SwarmTuning::default();
    let mut h = H::new(t.clone());
    let out = h.start(Joined { parents: vec![], ..joined(&[], &[], true) });
    assert!(out.is_empty());
    h.at(t.give_up_after);
    let out = h.feed(Input::Joined(joined(&["a"], &[], false)));
    assert!(follows(&out).len() == 1, "not past it yet: {out:?}");
    let mut h = H::new(t.clone());
    h.start(Joined { parents: vec![], ..joined(&[], &[], true) });
    h.at(t.give_up_after + ms(1));
    let out = h.feed(Input::Joined(joined(&["a"], &[], false)));
    assert_eq!(out, vec![Action::End(End::Origin(ToOrigin::GaveUp(t.give_up_after)))]);
}

#[test]
fn idle_without_trusted_hashes_ends_the_round_and_reports_the_unheard() {
    let t = SwarmTuning::default();
    let mut h = H::new(t.clone());
    let a = h.start(joined(&["a", "b"], &[], false));
    let (ia, _ib) = (id_of(&a, "a"), id_of(&a, "b"));
    let out = h.feed(Input::Avail(ia, bitfield(&all(), hash)));
    assert!(requests(&out).is_empty(), "no trusted hash: nothing asked: {out:?}");
    // Refreshes (answered with nothing new) do not keep the round alive.
    let mut at = Duration::ZERO;
    while at + t.refresh < t.idle {
        at = h.core.deadline().unwrap() - h.t0;
        if matches!(h.at(at).as_slice(), [Action::Join { .. }]) {
            h.feed(Input::Joined(joined(&["a", "b"], &[], false)));
        }
    }
    assert_eq!(h.core.deadline(), Some(h.t0 + t.idle));
    let out = h.at(t.idle);
    assert_eq!(reports(&out), vec![report("b", 0, FailureKind::Unreachable)], "b never spoke");
    assert!(out.contains(&Action::Unfollow(ia)), "{out:?}");
}

#[test]
fn the_pace_holds_requests_back_without_an_idle_end() {
    let t = SwarmTuning::default();
    let mut h = H::new(t.clone());
    let a = h.start(joined(&["a"], &[], true));
    let ia = id_of(&a, "a");
    h.core.handle(h.now, Input::Avail(ia, bitfield(&all(), hash)));
    let open = h.t0 + t.idle + ms(500);
    let mut pace = Until(open);
    assert!(h.drain_paced(&mut pace).is_empty());
    assert!(h.core.deadline().is_some_and(|t| t <= open), "wake by the time the pace allows");
    h.now = h.t0 + t.idle + ms(1);
    let out = h.drain_paced(&mut pace);
    assert!(out.iter().all(|a| matches!(a, Action::Join { .. })), "past idle but paced: the round goes on: {out:?}");
    h.now = open;
    assert_eq!(requests(&h.drain_paced(&mut pace)), vec![(ia, 0)]);
}

#[test]
fn a_complete_download_ends() {
    let (mut h, a, _) = one_parent(8);
    for i in 0..PIECES - 1 {
        assert!(h.feed(Input::PieceArrived(a, i)).is_empty());
    }
    assert_eq!(h.feed(Input::PieceArrived(a, PIECES - 1)), vec![Action::End(End::Complete)]);
    assert_eq!(h.core.held(), PIECES);
    assert!(h.core.missing().is_empty());
}

#[test]
fn a_download_still_receiving_pieces_is_not_given_up() {
    // Its one piece takes nearly give_up_after, bytes coming all along.
    let t = SwarmTuning { stall_floor: SwarmTuning::default().give_up_after, ..SwarmTuning::default() };
    let mut h = H::new(t.clone());
    let out = h.start(joined(&["a"], &[], true));
    let ia = id_of(&out, "a");
    // A piece arrives just before the give-up time: the clock starts anew.
    let asked = requests(&h.feed(Input::Avail(ia, bitfield(&[0], hash))));
    assert_eq!(asked, vec![(ia, 0)]);
    h.at(t.give_up_after - ms(1));
    h.feed(Input::PieceArrived(ia, 0));
    // The round ends (a has nothing more) and a new one is answered past
    // give_up_after from the start: the download goes on.
    h.at(t.give_up_after + t.idle);
    let out = h.feed(Input::Joined(joined(&["b"], &[], false)));
    assert_eq!(follows(&out).len(), 1, "a piece came {:?} ago: {out:?}", t.idle);
    // Nothing more: the first round answered give_up_after past the last
    // piece gives up.
    let mut at = t.give_up_after + t.idle;
    let out = loop {
        at += ms(100);
        assert!(at < t.give_up_after * 4, "never gave up");
        if !h.at(at).iter().any(|a| matches!(a, Action::Join { .. })) {
            continue;
        }
        let out = h.feed(Input::Joined(joined(&["c"], &[], false)));
        if out.iter().any(|a| matches!(a, Action::End(_))) {
            break out;
        }
    };
    assert!(at > t.give_up_after * 2, "gave up {at:?} after the start; the last piece came at {:?}", t.give_up_after);
    assert_eq!(out, vec![Action::End(End::Origin(ToOrigin::GaveUp(t.give_up_after)))]);
}
