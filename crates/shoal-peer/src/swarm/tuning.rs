//! [`SwarmTuning`]: every setting of how this node fetches pieces from and
//! serves pieces to other peers, in one place.
//!
//! The daemon reads it from the config file (`[swarm.tuning]`), and the
//! demo, the tests and the simulator start from the same [`Default`]: what
//! is measured is what runs in production. A field's comment says what it
//! trades; the reasons behind each default are in
//! docs/design/swarm-tuning-history.md.

use std::time::Duration;

/// How this node trades pieces. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmTuning {
    /// Piece requests in flight per parent. One: a parent then serves each
    /// of its children one piece at a time, so a fresh piece is not shared
    /// with queued relays on its uplink; a child still keeps every parent
    /// busy, and a round trip inside a cluster is far shorter than a piece.
    pub per_parent: usize,
    /// Pieces just ahead of the client's read position fetched in order
    /// (the rest rarest first).
    pub window: u32,
    /// Deadline for one piece, request to last byte.
    pub piece_deadline: Duration,
    /// Longest wait for a connection to a parent.
    pub connect_timeout: Duration,
    /// A round of fetching gives up on its parents when no piece arrived
    /// for this long (and asks the scheduler again).
    pub idle: Duration,
    /// How long a parent that answered "busy" is left alone.
    pub busy_cooldown: Duration,
    /// How long a piece a parent just handed to another child is not asked
    /// of it (longer than [`SwarmTuning::handout_grace`]).
    pub elsewhere_wait: Duration,
    /// When a running fetch first asks the scheduler for more parents;
    /// the interval then doubles up to [`SwarmTuning::refresh`].
    pub first_refresh: Duration,
    /// How often a running fetch asks for more parents once past the start.
    pub refresh: Duration,
    /// Shortest and longest pause before asking the scheduler again after
    /// a round that made no progress (doubling in between).
    pub stuck_backoff: (Duration, Duration),
    /// How long a download keeps asking the swarm before it fetches the
    /// rest from the origin regardless of grants.
    pub give_up_after: Duration,
    /// Deadline of one scheduler call (room for three replicas' attempts).
    pub scheduler_deadline: Duration,
    /// Progress reports to the scheduler, at most this often.
    pub progress_every: Duration,
    /// Concurrent uploads this node accepts. Few at a time finish pieces
    /// that can be traded on; many slow ones finish late together.
    pub max_uploads: u32,
    /// Uploads a source (a node reading from the origin, or holding the
    /// blob complete) sends one child at once.
    pub per_child: u32,
    /// How long after an upload of a piece ends a source still refuses it
    /// to other children: time for the recipient to announce it.
    pub handout_grace: Duration,
    /// Slowest pace for peer requests while origin bytes are owed
    /// (bytes/s): an origin that stalls does not stall the peers outright.
    pub pace_floor: u64,
    /// How often the origin's rate is re-estimated for the pace.
    pub pace_sample: Duration,
    /// Most request credit saved up while no request was made (bytes).
    pub pace_burst: u64,
}

impl Default for SwarmTuning {
    fn default() -> Self {
        SwarmTuning {
            per_parent: 1,
            window: 2,
            piece_deadline: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            idle: Duration::from_secs(10),
            busy_cooldown: Duration::from_millis(300),
            elsewhere_wait: Duration::from_millis(1000),
            first_refresh: Duration::from_millis(250),
            refresh: Duration::from_secs(2),
            stuck_backoff: (Duration::from_millis(200), Duration::from_secs(2)),
            give_up_after: Duration::from_secs(120),
            scheduler_deadline: Duration::from_secs(5),
            progress_every: Duration::from_millis(200),
            max_uploads: 16,
            per_child: 2,
            handout_grace: Duration::from_millis(500),
            pace_floor: 1 << 20,
            pace_sample: Duration::from_millis(250),
            pace_burst: 2 << 20,
        }
    }
}
