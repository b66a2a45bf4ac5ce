//! Unit tests of the fetch core: each situation the daemon's fetch loop
//! meets, driven with `handle`/`poll` and virtual time.

use std::time::Duration;

use shoal_core::{HostId, PieceLayout};
use shoal_proto::{Bitfield, FailureKind, FinalMap, OriginGrant, ParentInfo, PeerEvent};
use tokio::time::Instant;

use super::core::{Action, End, Failure, FetchCore, Input, Pace, ParentId, PieceError, ToOrigin, Unpaced};
use crate::swarm::Joined;
use crate::swarm::tuning::SwarmTuning;

const PIECES: u32 = 8;
const PIECE: u64 = 1024;

fn host(n: &str) -> HostId {
    n.parse().unwrap()
}

fn info(n: &str) -> ParentInfo {
    ParentInfo { host: host(n), addr: "127.0.0.1:9".parse().unwrap(), pieces_done: 0, complete: false }
}

fn hash(i: u32) -> [u8; 32] {
    [i as u8 + 1; 32]
}

fn joined(parents: &[&str], authorities: &[&str], map: bool) -> Joined {
    Joined {
        parents: parents.iter().map(|n| info(n)).collect(),
        origin: OriginGrant::Wait { retry_after_ms: 500 },
        authorities: authorities.iter().map(|n| info(n)).collect(),
        map: map.then(|| FinalMap { from: host("seed"), hashes: (0..PIECES).map(hash).collect() }),
    }
}

fn bitfield(pieces: &[u32], hash: impl Fn(u32) -> [u8; 32]) -> PeerEvent {
    let mut have = Bitfield::new(PIECES);
    pieces.iter().for_each(|&i| have.set(i));
    PeerEvent::Bitfield {
        size: PIECES as u64 * PIECE,
        piece_size: PIECE,
        have,
        hashes: pieces.iter().map(|&i| hash(i)).collect(),
    }
}

fn all() -> Vec<u32> {
    (0..PIECES).collect()
}

/// A pace that refuses until `until`.
struct Until(Instant);

impl Pace for Until {
    fn try_take(&mut self, now: Instant, _n: u64) -> Result<(), Duration> {
        if now >= self.0 { Ok(()) } else { Err(self.0 - now) }
    }
}

/// A core, its clock, and what it asked for.
struct H {
    core: FetchCore,
    now: Instant,
    t0: Instant,
}

impl H {
    fn new(tuning: SwarmTuning) -> H {
        H::held(tuning, [])
    }

    fn held(tuning: SwarmTuning, held: impl IntoIterator<Item = u32>) -> H {
        H::salted(tuning, held, 7)
    }

    /// A node whose piece choices are spread by `salt`.
    fn salted(tuning: SwarmTuning, held: impl IntoIterator<Item = u32>, salt: u64) -> H {
        let now = Instant::now();
        let layout = PieceLayout::with_piece_size(PIECES as u64 * PIECE, PIECE);
        H { core: FetchCore::new(now, &tuning, host("me"), layout, held, salt), now, t0: now }
    }

    fn drain(&mut self) -> Vec<Action> {
        self.drain_paced(&mut Unpaced)
    }

    fn drain_paced(&mut self, pace: &mut dyn Pace) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = self.core.poll(self.now, pace) {
            out.push(a);
            assert!(out.len() < 1000, "poll never settles: {out:?}");
        }
        out
    }

    fn feed(&mut self, input: Input) -> Vec<Action> {
        self.core.handle(self.now, input);
        self.drain()
    }

    fn at(&mut self, after_start: Duration) -> Vec<Action> {
        self.now = self.t0 + after_start;
        self.drain()
    }

    /// Start: the first join goes out; answer it with `j`.
    fn start(&mut self, j: Joined) -> Vec<Action> {
        let first = self.drain();
        assert!(matches!(first.as_slice(), [Action::Join { want_map: true, held: _ }]), "{first:?}");
        self.feed(Input::Joined(j))
    }
}

fn follows(actions: &[Action]) -> Vec<(ParentId, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Follow(id, p) => Some((*id, p.host.to_string())),
            _ => None,
        })
        .collect()
}

fn id_of(actions: &[Action], name: &str) -> ParentId {
    follows(actions)
        .into_iter()
        .find(|(_, h)| h == name)
        .unwrap_or_else(|| panic!("{name} not followed: {actions:?}"))
        .0
}

fn requests(actions: &[Action]) -> Vec<(ParentId, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Request { parent, piece, .. } => Some((*parent, *piece)),
            _ => None,
        })
        .collect()
}

fn reports(actions: &[Action]) -> Vec<Failure> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Report(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

fn report(name: &str, piece: u32, kind: FailureKind) -> Failure {
    Failure { parent: host(name), piece, kind }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One parent "a" holding everything, the map from the scheduler,
/// `per_parent` requests each.
fn one_parent(per_parent: usize) -> (H, ParentId, Vec<Action>) {
    let mut h = H::new(SwarmTuning { per_parent, ..SwarmTuning::default() });
    let a = h.start(joined(&["a"], &[], true));
    let id = id_of(&a, "a");
    let reqs = h.feed(Input::Avail(id, bitfield(&all(), hash)));
    (h, id, reqs)
}

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
    // a fails this download: its place goes to the next parent named.
    h.feed(Input::AvailEnded(ia, Some("connection refused".into())));
    let out = h.at(SwarmTuning::default().first_refresh * 3);
    assert!(matches!(out.as_slice(), [Action::Join { .. }]), "{out:?}");
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
fn a_bad_piece_excludes_its_parent_for_the_whole_download() {
    let mut h = H::new(SwarmTuning::default());
    let a = h.start(joined(&["a"], &[], true));
    let ia = id_of(&a, "a");
    h.feed(Input::Avail(ia, bitfield(&all(), hash)));
    let out = h.feed(Input::PieceFailed(ia, 0, PieceError::Corrupt("bytes do not match".into())));
    assert_eq!(reports(&out), vec![report("a", 0, FailureKind::Corrupt)]);
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
    h2.feed(Input::PieceFailed(ia, 0, PieceError::Corrupt("bad".into())));
    h2.at(ms(200));
    let out = h2.feed(Input::Joined(joined(&["a"], &[], false)));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h2.core.deadline(), Some(h2.t0 + ms(700)), "retry_after (500 ms) from the answer");
}

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
    let (mut h, _, _) = one_parent(1);
    let t = SwarmTuning::default();
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
    let t = SwarmTuning { per_parent: 1, ..SwarmTuning::default() };
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

mod random {
    //! Random inputs, checked against what must always hold.

    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    const NAMES: [&str; 4] = ["a", "b", "c", "d"];

    proptest! {
        #[test]
        fn requests_stay_valid_under_any_inputs(ops in proptest::collection::vec((0u8..9, 0u8..8, 0u8..8), 1..160)) {
            let t = SwarmTuning { per_parent: 2, ..SwarmTuning::default() };
            let mut h = H::new(t.clone());
            let mut hosts: HashMap<ParentId, String> = HashMap::new();
            let mut current: Vec<ParentId> = Vec::new();
            let mut out: Vec<(ParentId, u32)> = Vec::new();
            let mut held = std::collections::HashSet::new();
            let mut ended = false;
            for (op, x, y) in ops {
                let actions = if ended {
                    h.drain()
                } else {
                    let parent = current.get(x as usize % current.len().max(1)).copied();
                    let piece = u32::from(y) % PIECES;
                    let input = match (op, parent) {
                        (0, _) => {
                            let ps: Vec<&str> = NAMES.iter().copied().filter(|_| y & 1 == 1 || x % 2 == 0).collect();
                            let mut j = joined(&ps, &NAMES[..(x as usize % 2)], y % 3 == 0);
                            if y % 7 == 6 {
                                j.origin = OriginGrant::Granted;
                            }
                            Some(Input::Joined(j))
                        }
                        (1, Some(p)) => {
                            let have: Vec<u32> = (0..PIECES).filter(|i| (x >> (i % 8)) & 1 == 1).collect();
                            Some(Input::Avail(p, bitfield(&have, hash)))
                        }
                        (2, Some(p)) => Some(Input::Avail(p, PeerEvent::Have { index: piece, blake3: hash(piece) })),
                        (3, _) if !out.is_empty() => {
                            let (p, i) = out.remove(x as usize % out.len());
                            held.insert(i);
                            Some(Input::PieceArrived(p, i))
                        }
                        (4, _) if !out.is_empty() => {
                            let (p, i) = out.remove(x as usize % out.len());
                            let e = match y % 6 {
                                0 => PieceError::Busy,
                                1 => PieceError::Elsewhere,
                                2 => PieceError::Missing("m".into()),
                                3 => PieceError::Corrupt("c".into()),
                                4 => PieceError::Timeout("t".into()),
                                _ => PieceError::Unreachable("u".into()),
                            };
                            Some(Input::PieceFailed(p, i, e))
                        }
                        (5, Some(p)) => Some(Input::AvailEnded(p, (y % 2 == 0).then(|| "e".to_string()))),
                        (6, Some(p)) => Some(Input::Avail(p, PeerEvent::Gone)),
                        (7, _) => Some(Input::ReadAt(piece)),
                        (8, _) if x == 0 => Some(Input::JoinFailed("down".into())),
                        _ => None,
                    };
                    match input {
                        Some(i) => h.feed(i),
                        None => {
                            h.now += Duration::from_millis(u64::from(y) * 50);
                            h.drain()
                        }
                    }
                };
                for a in actions {
                    prop_assert!(!ended, "an action after the end: {a:?}");
                    match a {
                        Action::Follow(id, info) => {
                            prop_assert!(!h.core.excluded().contains(&info.host), "an excluded parent followed");
                            hosts.insert(id, info.host.to_string());
                            current.push(id);
                        }
                        Action::Unfollow(id) => current.retain(|&c| c != id),
                        Action::Request { parent, piece, expected, len, .. } => {
                            prop_assert_eq!(expected, hash(piece), "only trusted hashes");
                            prop_assert_eq!(len, PIECE);
                            prop_assert!(!held.contains(&piece), "a held piece asked for");
                            prop_assert!(out.iter().all(|&(_, i)| i != piece), "piece {} asked twice", piece);
                            let host = &hosts[&parent];
                            prop_assert!(!h.core.excluded().iter().any(|e| e.as_str() == host), "asked an excluded parent");
                            out.push((parent, piece));
                            let at_parent = out.iter().filter(|&&(p, _)| hosts[&p] == *host).count();
                            prop_assert!(at_parent <= t.per_parent, "more than per_parent at {}", host);
                        }
                        Action::End(End::Complete) => {
                            prop_assert_eq!(held.len() as u32, PIECES);
                            ended = true;
                        }
                        Action::End(End::Origin(_)) => {
                            let mut expect: Vec<u32> = (0..PIECES).filter(|i| !held.contains(i)).collect();
                            expect.sort_unstable();
                            prop_assert_eq!(h.core.missing(), expect, "everything not held is missing at the end");
                            ended = true;
                        }
                        Action::Join { .. } | Action::Report(_) => {}
                    }
                }
                if !ended {
                    prop_assert_eq!(h.core.inflight(), out.len());
                    prop_assert_eq!(h.core.held() as usize, held.len());
                }
            }
        }
    }
}
