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
    one_parent_with(SwarmTuning { per_parent, ..SwarmTuning::default() })
}

/// [`one_parent`] under `tuning`.
fn one_parent_with(tuning: SwarmTuning) -> (H, ParentId, Vec<Action>) {
    let mut h = H::new(tuning);
    let a = h.start(joined(&["a"], &[], true));
    let id = id_of(&a, "a");
    let reqs = h.feed(Input::Avail(id, bitfield(&all(), hash)));
    (h, id, reqs)
}

mod dead;
mod parents;
mod picking;
mod random;
mod rounds;
