//! Per-parent policy: busy, dead, stalled and lying parents, bad pieces,
//! geometry, authorities, the parent cap.

use super::*;

#[test]
fn a_busy_parent_cools_down_then_is_asked_again() {
    let (mut h, a, reqs) = one_parent(1);
    assert_eq!(requests(&reqs), vec![(a, 0)], "the window's first piece, one request per parent");
    let out = h.feed(Input::PieceFailed(a, 0, PieceError::Busy));
    assert!(requests(&out).is_empty() && reports(&out).is_empty(), "busy is not a failure, and cools down: {out:?}");
    assert!(requests(&h.at(ms(299))).is_empty(), "still cooling down");
    assert_eq!(requests(&h.at(ms(300))), vec![(a, 0)], "asked again after the cool-down");
}

#[test]
fn busy_with_requests_in_flight_shrinks_the_cap_and_success_probes_back() {
    let (mut h, a, reqs) = one_parent(3);
    let asked = requests(&reqs);
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert_eq!(asked[..2], [(a, 0), (a, 1)], "the window first");
    let out = h.feed(Input::PieceFailed(a, asked[2].1, PieceError::Busy));
    assert!(requests(&out).is_empty(), "two in flight: the cap is two now, no cool-down: {out:?}");
    let out = h.feed(Input::PieceArrived(a, 0));
    assert_eq!(requests(&out).len(), 2, "one freed, one more by the probe (cap 3): {out:?}");
    assert_eq!(h.core.inflight(), 3);
}

#[test]
fn a_dead_parent_is_reported_and_its_pieces_asked_elsewhere() {
    let mut h = H::new(SwarmTuning { per_parent: 2, ..SwarmTuning::default() });
    let a = h.start(joined(&["a", "b", "c"], &[], true));
    let (ia, ib, ic) = (id_of(&a, "a"), id_of(&a, "b"), id_of(&a, "c"));
    // c never gets through: its stream ends with an error before any piece.
    let out = h.feed(Input::AvailEnded(ic, Some("connection refused".into())));
    assert_eq!(reports(&out), vec![report("c", 0, FailureKind::Unreachable)]);
    let out = h.feed(Input::Avail(ia, bitfield(&[0], hash)));
    assert_eq!(requests(&out), vec![(ia, 0)]);
    // a's connection breaks: its stream ends, then its request fails.
    assert!(
        h.feed(Input::AvailEnded(ia, Some("reset".into()))).is_empty(),
        "it announced pieces: kept until a request fails"
    );
    h.feed(Input::Avail(ib, bitfield(&[0, 1], hash)));
    let out = h.feed(Input::PieceFailed(ia, 0, PieceError::Unreachable("reset".into())));
    assert_eq!(reports(&out), vec![report("a", 0, FailureKind::Unreachable)]);
    assert!(requests(&out).contains(&(ib, 0)), "piece 0 asked of b: {out:?}");
    assert!(h.core.excluded().contains(&host("a")) && h.core.excluded().contains(&host("c")));
}

#[test]
fn a_download_follows_at_most_max_parents_and_a_failed_one_frees_a_place() {
    let mut h = H::new(SwarmTuning { max_parents: 2, ..SwarmTuning::default() });
    let out = h.start(joined(&["a", "b", "c"], &["seed"], true));
    let names: Vec<String> = follows(&out).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, vec!["seed", "a", "b"], "the authority always, then two parents: {out:?}");
    let ia = id_of(&out, "a");
    // A refresh names another: no place for it.
    let out = h.at(SwarmTuning::default().first_refresh);
    assert!(matches!(out.as_slice(), [Action::Join { .. }]), "{out:?}");
    let out = h.feed(Input::Joined(joined(&["d"], &[], false)));
    assert!(follows(&out).is_empty(), "d is not followed: {out:?}");
    // a fails this download: its place goes to the next parent named (a
    // dead parent sends the core to the scheduler at once).
    let out = h.feed(Input::AvailEnded(ia, Some("connection refused".into())));
    assert!(matches!(out.as_slice(), [Action::Report(_), Action::Join { .. }]), "{out:?}");
    let out = h.feed(Input::Joined(joined(&["d"], &[], false)));
    assert_eq!(follows(&out).into_iter().map(|(_, n)| n).collect::<Vec<_>>(), vec!["d".to_string()]);
}

#[test]
fn a_stalled_parent_is_excluded_and_the_piece_asked_of_another() {
    let mut h = H::new(SwarmTuning { per_parent: 2, ..SwarmTuning::default() });
    let a = h.start(joined(&["a", "b"], &[], true));
    let (ia, ib) = (id_of(&a, "a"), id_of(&a, "b"));
    let out = h.feed(Input::Avail(ia, bitfield(&[0], hash)));
    assert_eq!(requests(&out), vec![(ia, 0)]);
    h.feed(Input::Avail(ib, bitfield(&[0, 1], hash)));
    let out = h.feed(Input::PieceFailed(ia, 0, PieceError::Timeout("30s".into())));
    assert_eq!(reports(&out), vec![report("a", 0, FailureKind::Timeout)]);
    assert!(requests(&out).contains(&(ib, 0)), "{out:?}");
    // a announces more: never asked again.
    let out = h.feed(Input::Avail(ia, PeerEvent::Have { index: 2, blake3: hash(2) }));
    assert!(requests(&out).iter().all(|&(p, _)| p != ia), "{out:?}");
}

#[test]
fn a_bad_piece_is_asked_again_elsewhere_and_costs_its_parent_nothing_more() {
    let mut h = H::new(SwarmTuning::default());
    let a = h.start(joined(&["a", "b"], &[], true));
    let (ia, ib) = (id_of(&a, "a"), id_of(&a, "b"));
    assert_eq!(requests(&h.feed(Input::Avail(ia, bitfield(&all(), hash)))), vec![(ia, 0)]);
    assert_eq!(requests(&h.feed(Input::Avail(ib, bitfield(&all(), hash)))), vec![(ib, 1)]);
    let out = h.feed(Input::PieceFailed(ia, 0, PieceError::Corrupt("bytes do not match".into())));
    assert_eq!(reports(&out), vec![report("a", 0, FailureKind::Corrupt)]);
    assert!(!out.contains(&Action::Unfollow(ia)), "one bad piece excluded its parent: {out:?}");
    let asked = requests(&out);
    assert!(matches!(asked.as_slice(), [(p, k)] if *p == ia && *k > 1), "a serves on, another piece: {out:?}");
    // The bad piece goes to the next parent free to take it.
    assert_eq!(requests(&h.feed(Input::PieceArrived(ib, 1))), vec![(ib, 0)]);
}

#[test]
fn a_second_bad_piece_excludes_its_parent_for_the_whole_download() {
    let mut h = H::new(SwarmTuning::default());
    let a = h.start(joined(&["a"], &[], true));
    let ia = id_of(&a, "a");
    h.feed(Input::Avail(ia, bitfield(&all(), hash)));
    let out = h.feed(Input::PieceFailed(ia, 0, PieceError::Corrupt("bytes do not match".into())));
    assert_eq!(reports(&out), vec![report("a", 0, FailureKind::Corrupt)]);
    let next = requests(&out);
    assert!(matches!(next.as_slice(), [(p, _)] if *p == ia), "{out:?}");
    let out = h.feed(Input::PieceFailed(ia, next[0].1, PieceError::Corrupt("bytes do not match".into())));
    assert_eq!(reports(&out), vec![report("a", next[0].1, FailureKind::Corrupt)]);
    // The round is stuck (its one parent failed): unfollow, pause, join.
    assert!(out.contains(&Action::Unfollow(ia)), "{out:?}");
    let out = h.at(ms(200));
    assert!(matches!(out.as_slice(), [Action::Join { .. }]), "{out:?}");
    // The scheduler names a again, with b: only b is followed.
    let out = h.feed(Input::Joined(joined(&["a", "b"], &[], false)));
    assert_eq!(follows(&out).into_iter().map(|(_, h)| h).collect::<Vec<_>>(), vec!["b".to_string()]);
    // Named alone, it does not start a round: wait the retry, join again.
    let mut h2 = H::new(SwarmTuning::default());
    let a = h2.start(joined(&["a"], &[], true));
    let ia = id_of(&a, "a");
    h2.feed(Input::Avail(ia, bitfield(&all(), hash)));
    let next = requests(&h2.feed(Input::PieceFailed(ia, 0, PieceError::Corrupt("bad".into()))));
    h2.feed(Input::PieceFailed(ia, next[0].1, PieceError::Corrupt("bad".into())));
    h2.at(ms(200));
    let out = h2.feed(Input::Joined(joined(&["a"], &[], false)));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h2.core.deadline(), Some(h2.t0 + ms(700)), "retry_after (500 ms) from the answer");
}

#[test]
fn a_relays_hash_contradicting_the_authoritys_excludes_it() {
    let mut h = H::new(SwarmTuning::default());
    let a = h.start(joined(&["relay", "seed"], &["seed"], false));
    let (relay, seed) = (id_of(&a, "relay"), id_of(&a, "seed"));
    // The relay speaks first: its hashes cannot be checked yet.
    let out = h.feed(Input::Avail(relay, bitfield(&all(), |i| if i == 3 { [0xee; 32] } else { hash(i) })));
    assert!(out.is_empty(), "{out:?}");
    // The authority's bitfield fills the trusted map: piece 3 contradicts.
    let out = h.feed(Input::Avail(seed, bitfield(&all(), hash)));
    assert_eq!(reports(&out), vec![report("relay", 3, FailureKind::Corrupt)]);
    assert!(requests(&out).iter().all(|&(p, _)| p == seed), "{out:?}");
    assert_eq!(h.core.trust().get(3), Some(hash(3)), "the authority's hash is trusted");
    // A relay whose bitfield contradicts what is trusted already is
    // excluded at once.
    let out = h.at(SwarmTuning::default().first_refresh);
    assert!(matches!(out.as_slice(), [Action::Join { .. }]));
    let out = h.feed(Input::Joined(joined(&["liar"], &[], false)));
    let liar = id_of(&out, "liar");
    let out = h.feed(Input::Avail(liar, bitfield(&[5], |_| [0; 32])));
    assert_eq!(reports(&out), vec![report("liar", 0, FailureKind::Corrupt)]);
}

#[test]
fn a_parent_named_authority_later_is_followed_again() {
    let mut h = H::new(SwarmTuning::default());
    let a = h.start(joined(&["a"], &[], false));
    let old = id_of(&a, "a");
    h.at(SwarmTuning::default().first_refresh);
    let out = h.feed(Input::Joined(joined(&["a"], &["a"], false)));
    let new = id_of(&out, "a");
    assert_eq!(out, vec![Action::Unfollow(old), Action::Follow(new, info("a"))]);
    assert!(h.feed(Input::Avail(old, bitfield(&all(), hash))).is_empty(), "the old stream is ignored");
    let out = h.feed(Input::Avail(new, bitfield(&all(), hash)));
    assert_eq!(requests(&out), vec![(new, 0)], "its hashes are trusted now");
}

#[test]
fn another_geometry_is_reported_missing_but_not_excluded_for_good() {
    let mut h = H::new(SwarmTuning::default());
    let a = h.start(joined(&["a"], &[], true));
    let ia = id_of(&a, "a");
    let ev = PeerEvent::Bitfield {
        size: PIECES as u64 * PIECE,
        piece_size: 2 * PIECE,
        have: Bitfield::new(4),
        hashes: vec![],
    };
    let out = h.feed(Input::Avail(ia, ev));
    assert_eq!(reports(&out), vec![report("a", 0, FailureKind::Missing)]);
    assert!(out.contains(&Action::Unfollow(ia)), "its only parent is out: stuck: {out:?}");
    assert!(!h.core.excluded().contains(&host("a")));
    h.at(ms(200));
    let out = h.feed(Input::Joined(joined(&["a"], &[], false)));
    assert_eq!(follows(&out).len(), 1, "followed again next round: {out:?}");
}

#[test]
fn a_malformed_bitfield_excludes_its_parent() {
    let mut h = H::new(SwarmTuning::default());
    let a = h.start(joined(&["a", "b"], &[], true));
    let ia = id_of(&a, "a");
    let mut have = Bitfield::new(PIECES);
    have.set(0);
    let ev = PeerEvent::Bitfield { size: PIECES as u64 * PIECE, piece_size: PIECE, have, hashes: vec![] };
    assert_eq!(reports(&h.feed(Input::Avail(ia, ev))), vec![report("a", 0, FailureKind::Corrupt)]);
    assert!(h.core.excluded().contains(&host("a")));
}

#[test]
fn missing_and_elsewhere_answers() {
    let t = SwarmTuning::default();
    let mut h = H::new(t.clone());
    let a = h.start(joined(&["a", "b"], &[], true));
    let (ia, ib) = (id_of(&a, "a"), id_of(&a, "b"));
    assert_eq!(requests(&h.feed(Input::Avail(ia, bitfield(&[0, 1], hash)))), vec![(ia, 0)]);
    // a lacks piece 0 after all: reported, forgotten there, not excluded.
    let out = h.feed(Input::PieceFailed(ia, 0, PieceError::Missing("no such piece".into())));
    assert_eq!(reports(&out), vec![report("a", 0, FailureKind::Missing)]);
    assert_eq!(requests(&out), vec![(ia, 1)]);
    h.feed(Input::PieceArrived(ia, 1));
    // b holds 2 and 3 and handed 2 elsewhere: 3 is asked, 2 held back.
    assert_eq!(requests(&h.feed(Input::Avail(ib, bitfield(&[2, 3], hash)))), vec![(ib, 2)]);
    assert_eq!(requests(&h.feed(Input::PieceFailed(ib, 2, PieceError::Elsewhere))), vec![(ib, 3)]);
    h.feed(Input::PieceArrived(ib, 3));
    assert!(requests(&h.drain()).is_empty(), "2 is held back at b");
    assert_eq!(requests(&h.at(t.elsewhere_wait)), vec![(ib, 2)], "asked again after the wait");
}
