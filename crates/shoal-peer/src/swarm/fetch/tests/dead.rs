//! A dead parent costs seconds: a lost connection or a silence under
//! outstanding requests drops the parent and asks its pieces elsewhere at
//! once, while a slow parent that still sends bytes is kept.

use super::*;

/// Parents "a" (holding every piece) and "b" (holding every piece), two
/// requests each; returns the core, both ids and the first requests.
fn two_parents() -> (H, ParentId, ParentId, Vec<(ParentId, u32)>) {
    let mut h = H::new(SwarmTuning { per_parent: 2, ..SwarmTuning::default() });
    let out = h.start(joined(&["a", "b"], &[], true));
    let (ia, ib) = (id_of(&out, "a"), id_of(&out, "b"));
    let mut asked = requests(&h.feed(Input::Avail(ia, bitfield(&all(), hash))));
    asked.extend(requests(&h.feed(Input::Avail(ib, bitfield(&all(), hash)))));
    assert_eq!(asked.iter().filter(|&&(p, _)| p == ia).count(), 2, "{asked:?}");
    assert_eq!(asked.iter().filter(|&&(p, _)| p == ib).count(), 2, "{asked:?}");
    (h, ia, ib, asked)
}

fn of(asked: &[(ParentId, u32)], id: ParentId) -> Vec<u32> {
    asked.iter().filter(|&&(p, _)| p == id).map(|&(_, i)| i).collect()
}

#[test]
fn a_lost_connection_drops_the_parent_and_asks_its_pieces_elsewhere_at_once() {
    let (mut h, ia, ib, asked) = two_parents();
    let on_a = of(&asked, ia);
    assert_eq!(on_a, vec![0, 1], "a got the window's pieces: {asked:?}");
    let out = h.feed(Input::Lost(ia, "timed out".into()));
    assert_eq!(reports(&out), vec![report("a", 0, FailureKind::Unreachable)]);
    assert!(h.core.excluded().contains(&host("a")));
    // No wait for a's requests to fail: its pieces are missing again now,
    // and the next free slot (b's, once it delivers) takes one of them.
    assert!(on_a.iter().all(|i| h.core.missing().contains(i)), "{:?}", h.core.missing());
    assert!(on_a.iter().all(|&i| !h.core.awaits(ia, i)), "a's answers no longer count");
    assert_eq!(h.core.inflight(), 2, "only b's requests are in flight");
    let b0 = of(&asked, ib)[0];
    let again = requests(&h.feed(Input::PieceArrived(ib, b0)));
    assert_eq!(again, vec![(ib, 0)], "a's first piece asked of b");
    // a's late answer changes nothing (the piece is b's to deliver now).
    assert!(h.feed(Input::PieceArrived(ia, 0)).is_empty());
    assert!(h.core.awaits(ib, 0));
    assert_eq!(h.core.held(), 1);
}

#[test]
fn a_parent_silent_under_outstanding_requests_is_dropped_within_two_seconds() {
    let (mut h, ia, ib, asked) = two_parents();
    let on_a = of(&asked, ia);
    let floor = SwarmTuning::default().stall_floor;
    assert!(floor <= Duration::from_secs(2));
    // b keeps delivering; a sends nothing at all.
    let mut t = Duration::ZERO;
    let mut dropped_at = None;
    let mut on_b = of(&asked, ib);
    while t < Duration::from_secs(3) {
        t += ms(100);
        let mut out = h.at(t);
        if let Some(&piece) = on_b.first() {
            out.extend(h.feed(Input::Heard(ib, ms(1))));
            if t.as_millis().is_multiple_of(500) {
                on_b.remove(0);
                out.extend(h.feed(Input::PieceArrived(ib, piece)));
            }
        }
        on_b.extend(of(&requests(&out), ib));
        if reports(&out).contains(&report("a", on_a[0], FailureKind::Timeout)) {
            dropped_at = Some(t);
            // Its pieces are asked of b at once, as b's slots allow.
            assert!(on_a.iter().all(|&i| !h.core.awaits(ia, i)));
            break;
        }
    }
    let at = dropped_at.expect("a was never dropped");
    assert!(at >= floor && at <= floor + ms(100), "dropped at {at:?}, floor {floor:?}");
    assert_eq!(h.core.deadline().map(|d| d > h.now), Some(true));
    assert!(h.core.excluded().contains(&host("a")) && !h.core.excluded().contains(&host("b")));
}

#[test]
fn the_stall_clock_scales_with_the_round_trip() {
    let (mut h, ia, _, _) = two_parents();
    // A far parent: 400 ms round trips, so 10 of them (4 s) before it counts
    // as stalled, not the 1.5 s floor.
    h.now = h.t0 + ms(100);
    h.feed(Input::Heard(ia, ms(400)));
    let out = h.at(ms(100) + ms(3900));
    assert!(reports(&out).iter().all(|r| r.parent != host("a")), "{out:?}");
    let out = h.at(ms(100) + ms(4000));
    assert!(reports(&out).iter().any(|r| r.parent == host("a") && r.kind == FailureKind::Timeout), "{out:?}");
}

#[test]
fn a_slow_parent_still_sending_bytes_is_kept() {
    let (mut h, ia, ib, asked) = two_parents();
    // Both take 10 s per piece, bytes trickling in all along.
    let mut t = Duration::ZERO;
    while t < Duration::from_secs(10) {
        t += ms(500);
        let out = h.at(t);
        assert!(reports(&out).is_empty(), "at {t:?}: {out:?}");
        h.feed(Input::Heard(ia, ms(1)));
        h.feed(Input::Heard(ib, ms(1)));
    }
    let (p, i) = asked[0];
    h.feed(Input::PieceArrived(p, i));
    assert!(h.core.excluded().is_empty());
    assert_eq!(h.core.held(), 1);
    // With nothing outstanding there, a silent parent is not stalled.
    let mut h = H::new(SwarmTuning::default());
    let out = h.start(joined(&["a"], &[], true));
    let ia = id_of(&out, "a");
    h.feed(Input::Avail(ia, bitfield(&[], hash)));
    let out = h.at(Duration::from_secs(5));
    assert!(reports(&out).is_empty(), "{out:?}");
}
