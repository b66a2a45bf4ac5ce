//! The fetch core: one task's download from the swarm as a pure state
//! machine.
//!
//! No sockets, tasks or clock: the caller passes time in and carries out
//! the [`Action`]s. The daemon's driver (`super`) does so with QUIC streams
//! and the scheduler link; the simulator (`shoal-sim`) with a virtual
//! network. Time is `tokio::time::Instant`, the daemon's one clock type,
//! only ever passed in.
//!
//! Loop: `handle(now, input)` for each input, then `poll(now, pace)` until
//! it returns `None`, then wait for the next input or until `deadline()`.
//!
//! A download goes in rounds. A round starts with a [`Action::Join`]: the
//! origin grant ends the swarm part ([`ToOrigin::Granted`]); parents that
//! are all excluded (or none) mean a pause (the scheduler's `retry_after`)
//! and another join; otherwise every parent and authority is followed.
//! Authorities' hashes (and the scheduler's final map) fill the
//! [`TrustedMap`]; other parents' hashes are only checked against it, and
//! only pieces with a trusted hash are asked for. While a round runs the
//! core asks the scheduler again (first after `first_refresh`, doubling up
//! to `refresh`) for parents that joined or gained pieces since, and takes
//! the grant when a refresh brings it. A round ends stuck when every
//! parent failed or left, or nothing arrived for `idle` with nothing in
//! flight (and the pace not holding requests back): every parent is
//! unfollowed, and after a pause that doubles while rounds make no
//! progress the core joins again. A parent that sends a bad piece,
//! contradicts the trusted map, times out or cannot be reached is
//! excluded for the whole download and reported.
//!
//! A dead parent costs seconds: one whose connection is lost
//! ([`Input::Lost`]), or that sent no byte for
//! [`SwarmTuning::stall_after`] (a multiple of its round trip, with a
//! floor) while requests of ours were outstanding there, is excluded and
//! reported, and its pieces in flight are asked of others at once. A
//! slow parent still sending bytes ([`Input::Heard`]) is kept; the piece
//! deadline still bounds it. Answers from a parent for pieces no longer
//! asked of it (it was dropped, the piece went elsewhere) are ignored:
//! the driver asks [`FetchCore::awaits`] before storing a piece.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use shoal_core::{HostId, PieceLayout};
use shoal_proto::{FailureKind, ParentInfo, PeerEvent};
use tokio::time::Instant;

use super::parents::Parent;
use super::rarity::Rarity;
use crate::swarm::Joined;
use crate::swarm::picker::{Outlook, Picker};
use crate::swarm::trust::TrustedMap;
use crate::swarm::tuning::SwarmTuning;

/// A parent as the core names it: unique within one core, never reused
/// (an input for a parent the core dropped is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParentId(pub u32);

/// Why a piece request failed, as the driver saw it (typed end to end:
/// the peer's refusal codes map onto these, never onto strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceError {
    /// The parent has no upload slot for us now.
    Busy,
    /// The parent just handed this piece to another child.
    Elsewhere,
    /// The parent does not hold the piece.
    Missing(String),
    /// Wrong length, wrong header hash, or bytes that fail the trusted hash.
    Corrupt(String),
    /// Past the piece deadline.
    Timeout(String),
    /// No connection, or it broke.
    Unreachable(String),
}

/// Something the driver saw.
#[derive(Debug, Clone)]
pub enum Input {
    /// The scheduler answered a [`Action::Join`].
    Joined(Joined),
    /// The scheduler could not be reached for a [`Action::Join`].
    JoinFailed(String),
    /// A parent's availability stream delivered an event.
    Avail(ParentId, PeerEvent),
    /// A parent's availability stream ended (`Some`: with this error).
    AvailEnded(ParentId, Option<String>),
    /// A requested piece arrived, matched its trusted hash and was handed
    /// to the sink.
    PieceArrived(ParentId, u32),
    /// A requested piece failed.
    PieceFailed(ParentId, u32, PieceError),
    /// Bytes of a requested piece are coming in from a parent, over a
    /// connection whose round trip is now this long: it is alive (see
    /// [`SwarmTuning::stall_floor`]). A driver sends this while a piece
    /// streams in, a few times a second at most.
    Heard(ParentId, Duration),
    /// The connection to a parent is gone (closed, reset, or its
    /// keep-alives went unanswered past the idle timeout): it is dropped
    /// and its pieces in flight are asked elsewhere at once.
    Lost(ParentId, String),
    /// The client reads from this piece on (a Range request into a cold
    /// blob): the window moves there.
    ReadAt(u32),
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask the scheduler to join the task (also a refresh while fetching);
    /// answer with [`Input::Joined`] or [`Input::JoinFailed`]. `held`
    /// pieces of the task are held now.
    Join {
        /// Ask for the final piece map.
        want_map: bool,
        /// Pieces held.
        held: u32,
    },
    /// Follow this parent's availability of the task.
    Follow(ParentId, ParentInfo),
    /// Stop following it (its stream, if any, is dropped).
    Unfollow(ParentId),
    /// Ask a parent for a piece; answer with [`Input::PieceArrived`] or
    /// [`Input::PieceFailed`]. The driver checks the bytes against
    /// `expected` (never the sender's own hash).
    Request {
        /// The parent.
        parent: ParentId,
        /// Where to reach it.
        peer: ParentInfo,
        /// The piece.
        piece: u32,
        /// Its length.
        len: u64,
        /// Its trusted BLAKE3.
        expected: [u8; 32],
    },
    /// Tell the scheduler about a parent's failure (and count it).
    Report(Failure),
    /// The download from the swarm is over; see [`End`]. After this, `poll`
    /// returns `None`.
    End(End),
}

/// A failure to report to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The parent.
    pub parent: HostId,
    /// The piece.
    pub piece: u32,
    /// How.
    pub kind: FailureKind,
}

/// How the swarm part of a download ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every piece is held.
    Complete,
    /// Fetch the missing pieces ([`FetchCore::missing`]) from the origin.
    Origin(ToOrigin),
}

/// Why the rest comes from the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToOrigin {
    /// The scheduler granted this node the origin (at the start or mid-fetch).
    Granted,
    /// The scheduler could not be reached.
    SchedulerUnreachable(String),
    /// The swarm delivered no piece for [`SwarmTuning::give_up_after`].
    GaveUp(Duration),
}

/// The node-wide downlink pace (see `downlink`): may a request for `n`
/// bytes go to a peer at `now`? `Err` says how long until one may.
pub trait Pace {
    /// Take `n` bytes of request credit, or say how long to wait.
    fn try_take(&mut self, now: Instant, n: u64) -> Result<(), Duration>;
}

/// No pacing: every request may go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpaced;

impl Pace for Unpaced {
    fn try_take(&mut self, _now: Instant, _n: u64) -> Result<(), Duration> {
        Ok(())
    }
}

/// Where the download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// A round's join is to be sent or answered.
    Joining,
    /// Paused until then before the next round's join.
    Paused(Instant),
    /// A round runs.
    Fetching,
    /// Over: the [`End`] was handed out.
    Ended,
}

/// `piece` is missing (neither held nor in flight) and its trusted hash is
/// known: it may be asked of a parent.
pub(super) fn wanted(picker: &Picker, trust: &TrustedMap, piece: u32) -> bool {
    !picker.holds(piece) && !picker.is_inflight(piece) && trust.get(piece).is_some()
}

/// How many stages [`FetchCore::warm`] has.
pub const WARM_STAGES: u32 = 5;

/// One task's download from the swarm. See the module docs.
///
/// Laid out by use (`repr(C)`): what an announcement and the poll after it
/// read (the phase, the parents and their index, the pending actions, the
/// counts and every clock of `deadline`) fills the first four cache lines,
/// the piece order, piece states and trusted hashes come next, then a
/// pick's buffers, and what only a round's start or a failure reads comes
/// last. When thousands of cores are polled in turn, each line is a cache
/// miss.
#[repr(C, align(64))]
pub struct FetchCore {
    pub(super) phase: Phase,
    /// By id: the index in `parents` of this round's parent with that id
    /// (current or earlier streams of the same parent: their piece answers
    /// still count), or [`NO_PARENT`]. Ids are dense, so a vector.
    pub(super) ids: Vec<usize>,
    /// The current round's parents.
    pub(super) parents: Vec<Parent>,
    /// Actions decided, not handed out yet.
    pub(super) out: VecDeque<Action>,
    /// Bumped whenever a parent may offer something it did not before (a
    /// parent's `barren` mark is good for one generation).
    pub(super) generation: u64,
    /// Requests in flight this round.
    pub(super) inflight: usize,
    pub(super) layout: PieceLayout,
    /// When the last piece arrived (or the round started). Only pieces
    /// count: parent lists, "busy" answers and announcements do not, or a
    /// scheduler that keeps naming a parent with nothing to give would keep
    /// the fetch alive forever.
    pub(super) progress_at: Instant,
    /// When the next refresh goes out (`refresh_every` after the last).
    pub(super) refresh_at: Instant,
    /// The pace holds requests back until then.
    pub(super) paced_until: Option<Instant>,
    /// The soonest any parent's cool-down or hold-back runs out: always
    /// the minimum of the parents' [`Parent::next_expiry`], kept so a poll
    /// need not scan every parent.
    pub(super) expiry: Option<Instant>,
    /// The soonest a parent counts as stalled: the minimum of the parents'
    /// [`Parent::stalls_at`], kept (by [`FetchCore::restall`]) so a poll
    /// need not read every parent.
    pub(super) stall_at: Option<Instant>,
    /// `tuning.idle`, beside the clocks every poll reads.
    pub(super) idle: Duration,
    /// Pieces held.
    pub(super) held: u32,
    /// Trusted hashes known at the last recheck of parents' hashes.
    pub(super) known: u32,
    /// Something changed since the last pick: pick again.
    pub(super) dirty: bool,
    /// A join (a round's or a refresh) is out, its answer not in yet.
    pub(super) join_out: bool,
    /// The client reads from this piece on.
    pub(super) read_at: u32,
    pub(super) next_id: u32,
    /// `picker.first_missing_from(read_at)` when known (`None`: to be
    /// computed), kept so a pick need not scan from the read position.
    pub(super) first_missing: Option<Option<u32>>,
    /// The wanted pieces the round's parents hold, rarest first.
    pub(super) rarity: Rarity,
    pub(super) picker: Picker,
    pub(super) trust: TrustedMap,
    /// Buffers a pick reuses (no allocation per poll).
    pub(super) scratch: Scratch,
    /// A pick's buffer of the pieces its free parents offer, with their
    /// places in the pick's order (apart from `scratch`, which then stays
    /// small enough to move without a `memmove` call).
    pub(super) order: Vec<(u16, u32, u32)>,
    /// Missing pieces when the round started.
    pub(super) missing_at_start: u32,
    /// When the last piece arrived (or the download started): the swarm
    /// is given up on after [`SwarmTuning::give_up_after`] without one.
    pub(super) delivered_at: Instant,
    /// The interval from one refresh to the next.
    pub(super) refresh_every: Duration,
    /// The pause after the last round that made no progress.
    pub(super) pause: Duration,
    pub(super) tuning: SwarmTuning,
    pub(super) me: HostId,
    /// Parents that failed this download: never asked again by it.
    pub(super) excluded: HashSet<HostId>,
    /// Pieces each parent sent that failed their trusted hash, this task:
    /// at [`SwarmTuning::corrupt_strikes`] it is excluded.
    pub(super) corrupt: HashMap<HostId, u32>,
}

// The hot fields of `FetchCore` (see its docs) stay in its first four lines.
const _: () = assert!(std::mem::offset_of!(FetchCore, join_out) < 256);
const _: () = assert!(std::mem::offset_of!(FetchCore, stall_at) + std::mem::size_of::<Option<Instant>>() <= 256);

/// `FetchCore::ids` entry of an id that names no parent of the round.
pub(super) const NO_PARENT: usize = usize::MAX;

/// A pick's working buffers, empty between picks.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// Parents still free, by index.
    pub(super) free: Vec<usize>,
    /// Requests picked for each of `free` so far.
    pub(super) pending: Vec<u32>,
    /// Each of `free` offered some piece considered.
    pub(super) found: Vec<bool>,
    /// Whether each parent free at the start of the pick holds every piece
    /// (indexed as `free` was then).
    pub(super) full: Vec<bool>,
    /// (parent index, piece) picked.
    pub(super) picks: Vec<(usize, u32)>,
}

impl FetchCore {
    /// A download of `layout`'s pieces, `held` already stored, by host `me`
    /// (whose `salt` spreads its piece choices from other nodes'). It
    /// starts by asking to join.
    pub fn new(
        now: Instant,
        tuning: &SwarmTuning,
        me: HostId,
        layout: PieceLayout,
        held: impl IntoIterator<Item = u32>,
        salt: u64,
    ) -> FetchCore {
        let count = layout.count();
        let mut picker = Picker::new(count, held);
        picker.salt = salt;
        let held = count - picker.missing().count() as u32;
        FetchCore {
            tuning: tuning.clone(),
            me,
            layout,
            picker,
            trust: TrustedMap::new(count),
            excluded: HashSet::new(),
            corrupt: HashMap::new(),
            phase: Phase::Joining,
            out: VecDeque::new(),
            join_out: false,
            pause: Duration::ZERO,
            parents: Vec::new(),
            ids: Vec::new(),
            next_id: 0,
            inflight: 0,
            progress_at: now,
            delivered_at: now,
            missing_at_start: count - held,
            refresh_at: now,
            refresh_every: tuning.first_refresh,
            paced_until: None,
            dirty: true,
            known: 0,
            read_at: 0,
            held,
            rarity: Rarity::new(count, salt),
            generation: 0,
            expiry: None,
            stall_at: None,
            first_missing: None,
            scratch: Scratch::default(),
            order: Vec::new(),
            idle: tuning.idle,
        }
    }

    /// Take in what the driver saw.
    pub fn handle(&mut self, now: Instant, input: Input) {
        if self.phase == Phase::Ended {
            return;
        }
        let was_dirty = std::mem::replace(&mut self.dirty, true);
        match input {
            Input::Joined(j) => self.joined(now, j),
            Input::JoinFailed(e) => {
                self.join_out = false;
                if self.phase == Phase::Joining {
                    tracing::warn!(error = %e, "scheduler unreachable; fetching the rest from the origin");
                    self.end(End::Origin(ToOrigin::SchedulerUnreachable(e)));
                }
                // A failed refresh changes nothing: the round goes on.
            }
            Input::Avail(id, ev) => {
                if let Some(i) = self.current(id) {
                    let (have, generation) = (matches!(ev, PeerEvent::Have { .. }), self.generation);
                    self.avail(i, ev);
                    // A piece announced by a parent that cannot take a
                    // request now changes no pick: every other parent
                    // offered all it could at the last pick (its wanted
                    // pieces went out, or it is marked barren), and this
                    // one is polled again when it can. Unless the
                    // announcement taught a trusted hash (a new generation):
                    // then anyone may offer something wanted.
                    if have && generation == self.generation && !self.parents[i].free(now, self.generation) {
                        self.dirty = was_dirty;
                    }
                }
            }
            Input::AvailEnded(id, error) => {
                if let Some(i) = self.current(id) {
                    self.avail_ended(i, error);
                }
            }
            Input::PieceArrived(id, piece) => self.arrived(now, id, piece),
            Input::PieceFailed(id, piece, error) => self.failed(now, id, piece, error),
            Input::Heard(id, rtt) => {
                if let Some(i) = self.index(id) {
                    let p = &mut self.parents[i];
                    let before = p.stalls_at();
                    p.pulse(now, rtt, &self.tuning);
                    self.restall(i, before);
                }
                // Nothing to pick anew: a parent's pulse frees no slot.
                self.dirty = was_dirty;
            }
            Input::Lost(id, why) => {
                if let Some(i) = self.index(id)
                    && !self.parents[i].excluded
                {
                    self.exclude(i, 0, FailureKind::Unreachable, &format!("connection lost: {why}"));
                }
            }
            Input::ReadAt(piece) => {
                self.read_at = piece.min(self.layout.count());
                self.first_missing = None;
            }
        }
    }

    /// The next action, if any; `None`: wait for an input or `deadline()`.
    pub fn poll(&mut self, now: Instant, pace: &mut dyn Pace) -> Option<Action> {
        if self.out.is_empty() {
            self.step(now, pace);
        }
        self.out.pop_front()
    }

    /// Keep [`FetchCore::stall_at`] (the soonest of the parents' stall
    /// clocks) after parent `i`'s moved from `before` (an answer, a pulse,
    /// a drop). Only when `i` held the soonest are all parents read again:
    /// otherwise the soonest of the others is the one kept, and a scan per
    /// answer reads every parent's entry, each a cache miss when many
    /// cores run.
    pub(super) fn restall(&mut self, i: usize, before: Option<Instant>) {
        let after = self.parents[i].stalls_at();
        self.stall_at = if before.is_some() && before == self.stall_at {
            self.soonest_stall()
        } else {
            [self.stall_at, after].into_iter().flatten().min()
        };
        debug_assert_eq!(self.stall_at, self.soonest_stall());
    }

    /// The soonest of the parents' stall clocks, read from every parent.
    fn soonest_stall(&self) -> Option<Instant> {
        self.parents.iter().filter_map(|p| p.stalls_at()).min()
    }

    /// When to poll again if no input comes first.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Ended | Phase::Joining => None,
            Phase::Paused(until) => Some(until),
            Phase::Fetching => {
                let idle = (self.inflight == 0 && self.paced_until.is_none()).then(|| self.progress_at + self.idle);
                let refresh = (!self.join_out).then_some(self.refresh_at);
                [idle, refresh, self.expiry, self.paced_until, self.stall_at].into_iter().flatten().min()
            }
        }
    }

    /// Read part of what [`FetchCore::handle`] reads for an announcement
    /// of `piece` by stream `id`, and return something made of it (for
    /// `std::hint::black_box`). It changes nothing: a driver that delivers
    /// one announcement to many cores (the simulator) reads them all this
    /// way first, so their cache misses overlap instead of queueing one
    /// behind another. Each of the [`WARM_STAGES`] stages reads what the
    /// one before found (the core's hot lines, the parent's index, then
    /// its entry, then its
    /// bitfield and the piece's state, then the piece's rank words): a
    /// driver runs a stage for every core before the next, so each stage's
    /// misses are in flight together.
    pub fn warm(&self, stage: u32, id: ParentId, piece: u32) -> u64 {
        if stage == 0 {
            // One field of each hot line (see the struct's docs), then the
            // trusted hashes' count that every poll reads.
            let hot = [self.ids.len(), self.inflight, usize::from(self.paced_until.is_some()), self.held as usize];
            return hot.iter().fold(u64::from(self.trust.known_count()), |acc, &x| acc.wrapping_add(x as u64));
        }
        let Some(i) = self.index(id) else { return 0 };
        let p = &self.parents[i];
        match stage {
            1 => i as u64,
            2 => p.have.len() as u64,
            3 => {
                let bits = [p.have.get(piece), self.picker.holds(piece), self.picker.is_inflight(piece)];
                let hash = self.trust.get(piece).map_or(0, |h| h[0]);
                bits.iter().fold(u64::from(hash) ^ self.rarity.warm(piece), |acc, &b| (acc << 1) | u64::from(b))
            }
            _ => self.rarity.warm_ranks(piece),
        }
    }

    /// Whether a request to stream `id` for `piece` is still outstanding:
    /// its answer counts. A driver stores a piece's bytes only if so (a
    /// dropped parent's late piece may be in flight elsewhere by now).
    pub fn awaits(&self, id: ParentId, piece: u32) -> bool {
        self.phase != Phase::Ended && self.index(id).is_some_and(|i| self.parents[i].pending.contains(&piece))
    }

    /// The streams of parents that sent nothing for
    /// [`SwarmTuning::stall_after`] while requests were outstanding there:
    /// the next poll at `now` drops them, unless an [`Input::Heard`] comes
    /// first. A simulator that knows which of them still deliver tells the
    /// core so here, as the daemon's driver does while bytes stream in.
    pub fn stalling(&self, now: Instant) -> Vec<ParentId> {
        self.parents.iter().filter(|p| p.stalls_at().is_some_and(|t| t <= now)).map(|p| p.id).collect()
    }

    /// Pieces neither held nor in flight.
    pub fn missing(&self) -> Vec<u32> {
        self.picker.missing().collect()
    }

    /// The pieces held and the picker's view of them.
    pub fn picker(&self) -> &Picker {
        &self.picker
    }

    /// The hashes pieces were checked against (for blame after a bad digest).
    pub fn trust(&self) -> &TrustedMap {
        &self.trust
    }

    /// What the round could ask for at `now` (for the driver's debug log).
    pub fn outlook(&self, now: Instant) -> Outlook {
        let trusted = self.trust.known();
        let views: Vec<_> = self.parents.iter().map(|p| p.view(now, trusted)).collect();
        self.picker.outlook(&views)
    }

    /// Pieces held.
    pub fn held(&self) -> u32 {
        self.held
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.inflight
    }

    /// Parents that failed this download (never asked again by it).
    pub fn excluded(&self) -> &HashSet<HostId> {
        &self.excluded
    }

    /// The download from the swarm is over (an [`End`] was handed out or
    /// is queued).
    pub fn is_over(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// [`SwarmTuning::per_parent`] as a parent's count of requests.
    pub(super) fn per_parent(&self) -> u32 {
        u32::try_from(self.tuning.per_parent).unwrap_or(u32::MAX)
    }

    /// The index of `id` if it is a current stream of this round's parent.
    fn current(&self, id: ParentId) -> Option<usize> {
        self.index(id).filter(|&i| self.parents[i].id == id)
    }

    /// The index of the round's parent with stream `id` (current or not).
    pub(super) fn index(&self, id: ParentId) -> Option<usize> {
        self.ids.get(id.0 as usize).copied().filter(|&i| i != NO_PARENT)
    }

    /// Stream `id` is parent `i`'s.
    pub(super) fn set_index(&mut self, id: ParentId, i: usize) {
        let at = id.0 as usize;
        if self.ids.len() <= at {
            self.ids.resize(at + 1, NO_PARENT);
        }
        self.ids[at] = i;
    }

    /// The first missing piece from the read position on (else before
    /// it): `picker.first_missing_from(read_at)`, cached.
    pub(super) fn first_missing(&mut self) -> Option<u32> {
        match self.first_missing {
            Some(first) => {
                debug_assert_eq!(first, self.picker.first_missing_from(self.read_at));
                first
            }
            None => {
                let first = self.picker.first_missing_from(self.read_at);
                self.first_missing = Some(first);
                first
            }
        }
    }

    /// A request for `piece` starts (it is no longer missing).
    pub(super) fn start(&mut self, piece: u32) {
        self.picker.started(piece);
        if self.first_missing == Some(Some(piece)) {
            // Nothing from the read position (or, wrapped, from 0) up to
            // `piece` is missing, so the scan may go on from after it.
            self.first_missing = Some(self.picker.first_missing_from(piece + 1));
        }
    }

    /// Some parent's cool-down or hold-back runs out at `t`.
    pub(super) fn expires_at(&mut self, t: Instant) {
        self.expiry = Some(self.expiry.map_or(t, |e| e.min(t)));
    }

    /// Recompute [`FetchCore::expiry`] after expiries were dropped.
    pub(super) fn recompute_expiry(&mut self) {
        self.expiry = self.parents.iter().filter_map(Parent::next_expiry).min();
    }

    /// Queue `end`: in-flight pieces count as missing from now on.
    pub(super) fn end(&mut self, end: End) {
        self.picker.abandon();
        self.first_missing = None;
        self.inflight = 0;
        self.phase = Phase::Ended;
        self.out.push_back(Action::End(end));
    }

    /// Ask the scheduler (a round's join or a refresh).
    pub(super) fn join(&mut self) {
        self.join_out = true;
        self.out.push_back(Action::Join { want_map: !self.trust.is_complete(), held: self.held });
    }
}
