//! [`SwarmTuning`]: every setting of how this node fetches pieces from and
//! serves pieces to other peers, in one place.
//!
//! The daemon reads it from the config file (`[swarm.tuning]`), and the
//! demo, the tests and the simulator start from the same [`Default`]: what
//! is measured is what runs in production. A field's comment says what it
//! trades; the reasons behind each default are in
//! docs/design/swarm-lessons.md. [`SwarmTuning::check`] refuses
//! settings that break the invariants the comments state.

use std::time::Duration;

/// How this node trades pieces. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmTuning {
    /// Piece requests in flight per parent. One: a parent then serves each
    /// of its children one piece at a time, so a fresh piece is not shared
    /// with queued relays on its uplink; a child still keeps every parent
    /// busy, and a round trip inside a cluster is far shorter than a piece.
    pub per_parent: usize,
    /// Parents one download follows and asks at once (authorities, which
    /// it follows for their hashes, and parents that failed it do not
    /// count). Each refresh may name new ones, and every piece a node gets
    /// is announced to every node following it, so without a bound a node
    /// of a large swarm follows hundreds of peers and each piece costs as
    /// many messages; BitTorrent clients keep a few dozen.
    pub max_parents: usize,
    /// Pieces just ahead of the client's read position fetched in order
    /// (the rest rarest first).
    pub window: u32,
    /// Deadline for one piece, request to last byte.
    pub piece_deadline: Duration,
    /// A parent that sent no byte for `stall_rtts` round trips, and at
    /// least this long, while requests of ours were outstanding there is
    /// dead or stalled: it is dropped (reported, excluded for the task)
    /// and its pieces are asked elsewhere at once. The floor keeps a
    /// parent whose first byte is a disk read and a scheduling delay away
    /// from counting as dead inside a cluster, where round trips are far
    /// shorter; a slow parent still sends bytes and is kept. Before this,
    /// a killed parent held its children's pieces until the QUIC idle
    /// timeout (30 s).
    pub stall_floor: Duration,
    /// How many round trips of silence under outstanding requests count
    /// as a stall (above [`SwarmTuning::stall_floor`]).
    pub stall_rtts: u32,
    /// Pieces failing their trusted hash a parent may send one download
    /// before it is excluded from the task (at least 1). Each is asked
    /// again elsewhere; a parent that lies costs each child this many
    /// pieces, one corrupted in transit costs only itself.
    pub corrupt_strikes: u32,
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
    /// How long a download may go without a piece from the swarm before
    /// it fetches the rest from the origin regardless of grants (checked
    /// when a round ends; a download still receiving pieces goes on).
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
            max_parents: 16,
            window: 2,
            piece_deadline: Duration::from_secs(30),
            stall_floor: Duration::from_millis(1500),
            stall_rtts: 10,
            corrupt_strikes: 2,
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

/// A setting that breaks an invariant of [`SwarmTuning`]: the field, and
/// what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct TuningError {
    /// The field (and config key) at fault.
    pub field: &'static str,
    /// What is wrong and the fix.
    pub problem: String,
}

impl SwarmTuning {
    /// How long a parent may send nothing while requests of ours are
    /// outstanding there, on a connection with round trip `rtt` (zero:
    /// not known): `stall_rtts` round trips, at least `stall_floor`.
    pub fn stall_after(&self, rtt: Duration) -> Duration {
        (rtt * self.stall_rtts).max(self.stall_floor)
    }

    /// Refuses settings under which the swarm would stall or spin: a zero
    /// that a field's loop cannot move past, or two fields out of order.
    pub fn check(&self) -> Result<(), TuningError> {
        let d = SwarmTuning::default();
        let bad = |field, problem: String| Err(TuningError { field, problem });
        if self.max_parents == 0 {
            return bad("max_parents", "must be at least 1: a download with no parent never uses the swarm".into());
        }
        if self.per_parent == 0 {
            return bad("per_parent", "must be at least 1: a parent asked for nothing serves nothing".into());
        }
        if self.corrupt_strikes == 0 {
            return bad("corrupt_strikes", format!("must be at least 1 (default {})", d.corrupt_strikes));
        }
        if self.stall_rtts == 0 {
            return bad("stall_rtts", format!("must be at least 1 (default {})", d.stall_rtts));
        }
        if self.per_child == 0 {
            return bad("per_child", "must be at least 1: a source would refuse every child".into());
        }
        if self.pace_floor == 0 {
            return bad("pace_floor", format!("must be above zero bytes/s (default {})", d.pace_floor));
        }
        // Zero here is a deadline met before it starts, or a loop that
        // re-checks without waiting.
        for (field, value, default) in [
            ("piece_deadline", self.piece_deadline, d.piece_deadline),
            ("stall_floor", self.stall_floor, d.stall_floor),
            ("connect_timeout", self.connect_timeout, d.connect_timeout),
            ("idle", self.idle, d.idle),
            ("first_refresh", self.first_refresh, d.first_refresh),
            ("give_up_after", self.give_up_after, d.give_up_after),
            ("scheduler_deadline", self.scheduler_deadline, d.scheduler_deadline),
            ("pace_sample", self.pace_sample, d.pace_sample),
        ] {
            if value.is_zero() {
                return bad(field, format!("must be longer than zero (default {default:?})"));
            }
        }
        if self.refresh < self.first_refresh {
            return bad(
                "refresh",
                format!(
                    "({:?}) must be at least first_refresh ({:?}): the interval doubles from first_refresh up to refresh",
                    self.refresh, self.first_refresh
                ),
            );
        }
        let (low, high) = self.stuck_backoff;
        if low.is_zero() {
            return bad("stuck_backoff", format!("must start above zero (default {:?})", d.stuck_backoff));
        }
        if low > high {
            return bad(
                "stuck_backoff",
                format!("is [shortest, longest]: the shortest ({low:?}) is longer than the longest ({high:?})"),
            );
        }
        if self.elsewhere_wait <= self.handout_grace {
            return bad(
                "elsewhere_wait",
                format!(
                    "({:?}) must be longer than handout_grace ({:?}): a child must not ask again for a piece the source still refuses",
                    self.elsewhere_wait, self.handout_grace
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_each_broken_invariant_names_its_field() {
        assert_eq!(SwarmTuning::default().check(), Ok(()));
        let d = SwarmTuning::default;
        for (tuning, field) in [
            (SwarmTuning { per_parent: 0, ..d() }, "per_parent"),
            (SwarmTuning { max_parents: 0, ..d() }, "max_parents"),
            (SwarmTuning { per_child: 0, ..d() }, "per_child"),
            (SwarmTuning { stall_rtts: 0, ..d() }, "stall_rtts"),
            (SwarmTuning { stall_floor: Duration::ZERO, ..d() }, "stall_floor"),
            (SwarmTuning { pace_floor: 0, ..d() }, "pace_floor"),
            (SwarmTuning { idle: Duration::ZERO, ..d() }, "idle"),
            (SwarmTuning { pace_sample: Duration::ZERO, ..d() }, "pace_sample"),
            (SwarmTuning { refresh: Duration::from_millis(100), ..d() }, "refresh"),
            (SwarmTuning { stuck_backoff: (Duration::from_secs(3), Duration::from_secs(2)), ..d() }, "stuck_backoff"),
            (SwarmTuning { stuck_backoff: (Duration::ZERO, Duration::from_secs(2)), ..d() }, "stuck_backoff"),
            (SwarmTuning { elsewhere_wait: d().handout_grace, ..d() }, "elsewhere_wait"),
        ] {
            assert_eq!(tuning.check().map_err(|e| e.field), Err(field));
        }
    }
}
