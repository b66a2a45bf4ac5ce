//! The fetch core: one task's download from the swarm as a pure state
//! machine (API contract; the implementation lands with issue 16).
//!
//! No sockets, tasks or clock: the caller passes time in and carries out
//! the [`Action`]s. The daemon's driver (`super`) does so with QUIC streams
//! and the scheduler link; the simulator (`shoal-sim`) with a virtual
//! network. Time is `tokio::time::Instant`, the daemon's one clock type,
//! only ever passed in.
//!
//! Loop: `handle(now, input)` for each input, then `poll(now, pace)` until
//! it returns `None`, then wait for the next input or until `deadline()`.

use std::time::Duration;

use shoal_core::{HostId, PieceLayout};
use shoal_proto::{FailureKind, ParentInfo, PeerEvent};
use tokio::time::Instant;

use super::super::picker::Picker;
use super::super::trust::TrustedMap;
use super::super::tuning::SwarmTuning;
use crate::swarm::Joined;

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
    /// The swarm did not deliver within [`SwarmTuning::give_up_after`].
    GaveUp(Duration),
}

/// The node-wide downlink pace (see `downlink`): may a request for `n`
/// bytes go to a peer at `now`? `Err` says how long until one may.
pub trait Pace {
    /// Take `n` bytes of request credit, or say how long to wait.
    fn try_take(&mut self, now: Instant, n: u64) -> Result<(), Duration>;
}

/// One task's download from the swarm. See the module docs.
pub struct FetchCore {
    _private: (),
}

#[allow(unused_variables, clippy::new_ret_no_self)]
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
        unimplemented!("issue 16")
    }

    /// Take in what the driver saw.
    pub fn handle(&mut self, now: Instant, input: Input) {
        unimplemented!("issue 16")
    }

    /// The next action, if any; `None`: wait for an input or `deadline()`.
    pub fn poll(&mut self, now: Instant, pace: &mut dyn Pace) -> Option<Action> {
        unimplemented!("issue 16")
    }

    /// When to poll again if no input comes first.
    pub fn deadline(&self) -> Option<Instant> {
        unimplemented!("issue 16")
    }

    /// Pieces neither held nor in flight.
    pub fn missing(&self) -> Vec<u32> {
        unimplemented!("issue 16")
    }

    /// The pieces held and the picker's view of them.
    pub fn picker(&self) -> &Picker {
        unimplemented!("issue 16")
    }

    /// The hashes pieces were checked against (for blame after a bad digest).
    pub fn trust(&self) -> &TrustedMap {
        unimplemented!("issue 16")
    }
}
