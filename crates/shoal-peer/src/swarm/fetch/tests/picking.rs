//! Which piece goes to which parent: the window, rarest first, salts,
//! load, seeds, parents that may not be asked.

use super::*;

#[test]
fn read_at_moves_the_window() {
    let mut h = H::new(SwarmTuning { per_parent: 2, ..SwarmTuning::default() });
    let a = h.start(joined(&["a"], &[], true));
    let ia = id_of(&a, "a");
    h.core.handle(h.now, Input::ReadAt(6));
    let out = h.feed(Input::Avail(ia, bitfield(&all(), hash)));
    assert_eq!(requests(&out), vec![(ia, 6), (ia, 7)], "the client reads from piece 6");
    h.feed(Input::ReadAt(2));
    let out = h.feed(Input::PieceArrived(ia, 6));
    assert_eq!(requests(&out), vec![(ia, 2)], "then from piece 2");
}

#[test]
fn rarest_first_beyond_the_window_and_a_parent_with_nothing_is_asked_once_it_gains() {
    let mut h = H::new(SwarmTuning { window: 0, ..SwarmTuning::default() });
    let a = h.start(joined(&["a", "b", "c"], &[], true));
    let (ia, ib, ic) = (id_of(&a, "a"), id_of(&a, "b"), id_of(&a, "c"));
    assert!(h.feed(Input::Avail(ic, bitfield(&[], hash))).is_empty(), "c holds nothing");
    // Piece 3 is held by a alone; every other by a and b.
    let out = h.feed(Input::Avail(ib, bitfield(&[0, 1, 2, 4, 5, 6, 7], hash)));
    let b_first = requests(&out);
    assert_eq!(b_first.len(), 1);
    let out = h.feed(Input::Avail(ia, bitfield(&all(), hash)));
    assert_eq!(requests(&out), vec![(ia, 3)], "the rarest piece first");
    // c gains a piece nobody was asked for: it is asked at once.
    let k = (0..PIECES).find(|&k| k != 3 && k != b_first[0].1).unwrap();
    let out = h.feed(Input::Avail(ic, PeerEvent::Have { index: k, blake3: hash(k) }));
    assert_eq!(requests(&out), vec![(ic, k)]);
}

#[test]
fn the_window_comes_first_in_order_then_the_rarest() {
    let mut h = H::new(SwarmTuning { per_parent: 3, ..SwarmTuning::default() });
    let a = h.start(joined(&["a", "b"], &[], true));
    let (ia, ib) = (id_of(&a, "a"), id_of(&a, "b"));
    // Piece 5 is held by a alone, the window's pieces (0 and 1) by both.
    h.core.handle(h.now, Input::Avail(ia, bitfield(&all(), hash)));
    h.core.handle(h.now, Input::Avail(ib, bitfield(&[0, 1, 2, 3, 4, 6, 7], hash)));
    let asked: Vec<u32> = requests(&h.drain()).into_iter().map(|(_, piece)| piece).collect();
    assert_eq!(asked.len(), 6, "three requests to each parent: {asked:?}");
    assert_eq!(asked[..3], [0, 1, 5], "the window in order, then the rarest piece");
}

#[test]
fn a_piece_handed_elsewhere_is_asked_of_another_holder_or_waits() {
    let mut h = H::new(SwarmTuning { per_parent: 4, ..SwarmTuning::default() });
    let a = h.start(joined(&["seed", "child"], &[], true));
    let (seed, child) = (id_of(&a, "seed"), id_of(&a, "child"));
    let out = h.feed(Input::Avail(seed, bitfield(&all(), hash)));
    assert_eq!(requests(&out)[..2], [(seed, 0), (seed, 1)], "{out:?}");
    // With no other holder, piece 0 waits; the seed's free slot takes
    // another piece.
    let out = requests(&h.feed(Input::PieceFailed(seed, 0, PieceError::Elsewhere)));
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].0 == seed && out[0].1 != 0, "piece 0 is not asked of the seed again: {out:?}");
    // A child announces piece 0: it is asked of the child.
    assert_eq!(requests(&h.feed(Input::Avail(child, bitfield(&[0], hash)))), vec![(child, 0)]);
}

#[test]
fn nodes_with_different_salts_ask_for_different_pieces() {
    // 64 pieces, one parent holding them all, no window: eight nodes
    // starting together must not all ask for the same pieces, or they
    // have nothing to trade and all wait on the seed.
    const N: u32 = 64;
    let t = SwarmTuning { per_parent: 8, window: 0, ..SwarmTuning::default() };
    let layout = PieceLayout::with_piece_size(N as u64 * PIECE, PIECE);
    let mut have = Bitfield::new(N);
    (0..N).for_each(|i| have.set(i));
    let hashes: Vec<[u8; 32]> = (0..N).map(|i| [i as u8; 32]).collect();
    let firsts: std::collections::HashSet<Vec<u32>> = (0..8u64)
        .map(|salt| {
            let now = Instant::now();
            let mut core = FetchCore::new(now, &t, host("me"), layout, [], salt);
            assert!(matches!(core.poll(now, &mut Unpaced), Some(Action::Join { .. })));
            let map = FinalMap { from: host("seed"), hashes: hashes.clone() };
            core.handle(now, Input::Joined(Joined { map: Some(map), ..joined(&["seed"], &[], false) }));
            let Some(Action::Follow(seed, _)) = core.poll(now, &mut Unpaced) else { panic!("seed not followed") };
            let ev = PeerEvent::Bitfield {
                size: N as u64 * PIECE,
                piece_size: PIECE,
                have: have.clone(),
                hashes: hashes.clone(),
            };
            core.handle(now, Input::Avail(seed, ev));
            let out: Vec<Action> = std::iter::from_fn(|| core.poll(now, &mut Unpaced)).collect();
            let mut asked: Vec<u32> = requests(&out).into_iter().map(|(_, piece)| piece).collect();
            assert_eq!(asked.len(), 8, "salt {salt}: {out:?}");
            asked.sort_unstable();
            asked
        })
        .collect();
    assert_eq!(firsts.len(), 8, "eight nodes, eight different sets of first pieces: {firsts:?}");
}

#[test]
fn load_spreads_across_parents() {
    for salt in 0..16 {
        let mut h = H::salted(SwarmTuning { per_parent: 8, ..SwarmTuning::default() }, [], salt);
        let a = h.start(joined(&["a", "b"], &[], true));
        let (ia, ib) = (id_of(&a, "a"), id_of(&a, "b"));
        h.core.handle(h.now, Input::Avail(ia, bitfield(&all(), hash)));
        h.core.handle(h.now, Input::Avail(ib, bitfield(&all(), hash)));
        let asked = requests(&h.drain());
        assert_eq!(asked.len(), PIECES as usize, "{asked:?}");
        let at = |p| asked.iter().filter(|&&(q, _)| q == p).count();
        assert_eq!((at(ia), at(ib)), (4, 4), "salt {salt}: each takes half though either could take all: {asked:?}");
    }
}

#[test]
fn children_are_preferred_over_a_seed_for_pieces_both_hold() {
    // Piece 0 is missing; the seed (everything) and a child both hold it.
    for salt in 0..32 {
        let mut h = H::salted(SwarmTuning { per_parent: 4, ..SwarmTuning::default() }, 1..PIECES, salt);
        let a = h.start(joined(&["seed", "child"], &[], true));
        let (seed, child) = (id_of(&a, "seed"), id_of(&a, "child"));
        h.core.handle(h.now, Input::Avail(seed, bitfield(&all(), hash)));
        h.core.handle(h.now, Input::Avail(child, bitfield(&[0], hash)));
        assert_eq!(requests(&h.drain()), vec![(child, 0)], "salt {salt}: the child, not the seed");
    }
}

#[test]
fn excluded_cooling_and_full_parents_get_nothing() {
    // One bad piece excludes a parent here, to have an excluded one.
    let t = SwarmTuning { per_parent: 1, corrupt_strikes: 1, ..SwarmTuning::default() };
    let mut h = H::new(t.clone());
    let a = h.start(joined(&["a", "b", "c"], &[], true));
    let (ia, ib, ic) = (id_of(&a, "a"), id_of(&a, "b"), id_of(&a, "c"));
    assert_eq!(requests(&h.feed(Input::Avail(ia, bitfield(&all(), hash)))), vec![(ia, 0)]);
    assert_eq!(requests(&h.feed(Input::Avail(ib, bitfield(&all(), hash)))), vec![(ib, 1)]);
    let out = requests(&h.feed(Input::Avail(ic, bitfield(&all(), hash))));
    assert!(matches!(out.as_slice(), [(p, k)] if *p == ic && *k > 1), "{out:?}");
    let c_piece = out[0].1;
    // a sends a bad piece: excluded. b and c are at their cap.
    let out = h.feed(Input::PieceFailed(ia, 0, PieceError::Corrupt("bad".into())));
    assert_eq!(reports(&out), vec![report("a", 0, FailureKind::Corrupt)]);
    assert!(requests(&out).is_empty(), "a excluded, b and c full: {out:?}");
    // b is busy with nothing of ours in flight: it cools down.
    assert!(requests(&h.feed(Input::PieceFailed(ib, 1, PieceError::Busy))).is_empty(), "b cools down");
    let out = h.feed(Input::Avail(ia, PeerEvent::Have { index: 0, blake3: hash(0) }));
    assert!(requests(&out).is_empty(), "a is never asked again: {out:?}");
    // c has a free slot again: the window's first piece goes to it.
    assert_eq!(requests(&h.feed(Input::PieceArrived(ic, c_piece))), vec![(ic, 0)]);
    assert_eq!(requests(&h.at(t.busy_cooldown)), vec![(ib, 1)], "b after its cool-down");
}

#[test]
fn held_and_inflight_pieces_are_not_asked_for() {
    let mut h = H::held(SwarmTuning { per_parent: 8, ..SwarmTuning::default() }, [0, 5]);
    let a = h.start(joined(&["a", "b"], &[], true));
    let (ia, ib) = (id_of(&a, "a"), id_of(&a, "b"));
    h.core.handle(h.now, Input::Avail(ia, bitfield(&all(), hash)));
    h.core.handle(h.now, Input::Avail(ib, bitfield(&all(), hash)));
    let asked = requests(&h.drain());
    let mut pieces: Vec<u32> = asked.iter().map(|&(_, piece)| piece).collect();
    pieces.sort_unstable();
    assert_eq!(pieces, vec![1, 2, 3, 4, 6, 7], "each missing piece once, none held");
    // The parent asked for piece 3 lacks it: only piece 3 is asked again
    // (of the other), nothing in flight is.
    let (p3, _) = *asked.iter().find(|&&(_, piece)| piece == 3).unwrap();
    let other = if p3 == ia { ib } else { ia };
    let out = h.feed(Input::PieceFailed(p3, 3, PieceError::Missing("gone".into())));
    assert_eq!(requests(&out), vec![(other, 3)]);
}

#[test]
fn an_announcement_from_a_busy_parent_is_picked_up_when_it_frees_or_at_once_when_it_taught_a_hash() {
    let mut h = H::new(SwarmTuning { per_parent: 1, window: 0, ..SwarmTuning::default() });
    // No map: only the authority s's announcements make hashes trusted.
    let a = h.start(joined(&["s", "b"], &["s"], false));
    let (is, ib) = (id_of(&a, "s"), id_of(&a, "b"));
    assert!(h.feed(Input::Avail(ib, bitfield(&[1], hash))).is_empty(), "piece 1's hash is not trusted yet");
    let out = h.feed(Input::Avail(is, bitfield(&[0], hash)));
    assert_eq!(requests(&out), vec![(is, 0)]);
    // s is busy: its announcement of piece 2 asks nothing now, and b
    // still offers nothing trusted.
    let out = h.feed(Input::Avail(is, PeerEvent::Have { index: 2, blake3: hash(2) }));
    assert_eq!(requests(&out), vec![]);
    // s announces piece 1: its hash is trusted now, and b (free) holds it.
    let out = h.feed(Input::Avail(is, PeerEvent::Have { index: 1, blake3: hash(1) }));
    assert_eq!(requests(&out), vec![(ib, 1)], "b is asked at once");
    // s's slot frees: it is asked for what it announced while busy.
    let out = h.feed(Input::PieceArrived(is, 0));
    assert_eq!(requests(&out), vec![(is, 2)]);
}
