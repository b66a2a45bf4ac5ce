//! The values that go in and out of the [`crate::Scheduler`]: what a host
//! tells it, what it answers, and what it reports when time runs out.
//!
//! They mirror the wire messages of `shoal-proto` field for field, but this
//! crate does not depend on the wire format: the service maps one onto the
//! other.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_core::{HostId, TaskId};

/// Where a host sits, for locality. A rack is only "the same rack" within
/// the same zone; a missing zone or rack never matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Labels {
    /// Kubernetes node name.
    pub node: String,
    /// Zone (`topology.kubernetes.io/zone`), if known.
    pub zone: Option<String>,
    /// Rack, if known.
    pub rack: Option<String>,
}

/// What a host registers with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostInfo {
    /// Its identity (the CN of its certificate).
    pub id: HostId,
    /// Where other peers reach its QUIC endpoint.
    pub addr: SocketAddr,
    /// Locality labels.
    pub labels: Labels,
    /// Upload capacity, bytes/s; 0 means unknown and ranks as slowest.
    pub upload_capacity: u64,
    /// Most concurrent uploads it accepts; 0 means it serves no one.
    pub max_uploads: u32,
}

/// A host's upload load, as its last heartbeat reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Load {
    /// Uploads in progress.
    pub uploads: u32,
    /// Recent upload rate, bytes/s.
    pub upload_bps: u64,
    /// The host refuses new uploads.
    pub busy: bool,
}

/// What a peer holds of a task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Have {
    /// Pieces verified and stored.
    pub pieces_done: u32,
    /// Total pieces, once the blob size is known.
    pub pieces_total: Option<u32>,
    /// The whole blob is verified and complete.
    pub complete: bool,
}

impl Have {
    /// Nothing yet.
    pub const NOTHING: Have = Have { pieces_done: 0, pieces_total: None, complete: false };

    /// The whole blob of `pieces` pieces.
    pub fn complete(pieces: u32) -> Have {
        Have { pieces_done: pieces, pieces_total: Some(pieces), complete: true }
    }

    /// `done` of `total` pieces, still downloading.
    pub fn partial(done: u32, total: u32) -> Have {
        Have { pieces_done: done, pieces_total: Some(total), complete: false }
    }
}

/// A parent offered to a joining peer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Parent {
    /// Its host id (the child checks it against the certificate on connect).
    pub host: HostId,
    /// Its QUIC endpoint.
    pub addr: SocketAddr,
    /// Pieces it had when it last reported.
    pub pieces_done: u32,
    /// It holds the whole blob.
    pub complete: bool,
}

/// May the joiner fetch from the origin?
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OriginGrant {
    /// Yes: it holds one of the task's bounded origin grants until it
    /// completes, leaves, expires or stalls.
    Granted,
    /// Not now: fetch from the parents, and join again after `retry_after`
    /// if they do not suffice (short when there were no parents to give).
    Wait {
        /// Suggested delay before asking again.
        retry_after: Duration,
    },
}

/// The answer to a join.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinDecision {
    /// Parents, best first; at most `parents_per_join`.
    pub parents: Vec<Parent>,
    /// Whether it may go to the origin.
    pub origin: OriginGrant,
    /// Peers whose piece hashes the joiner may trust (they read the blob
    /// from the origin), best first.
    pub authorities: Vec<Parent>,
    /// The task's final piece map, when asked for and held, and the
    /// authority that reported it.
    pub map: Option<(HostId, Vec<[u8; 32]>)>,
}

/// Something [`crate::Scheduler::tick`] changed that the service may want to
/// tell a peer about (or log, or count).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Expired {
    /// The host sent nothing for `host_ttl`: it was removed from every task
    /// and its grants were freed. Its next request gets `UnknownHost`.
    Host(HostId),
    /// The host lost its origin grant on this task (it stalled, or a joiner
    /// took over a grant it held while dead or stalled).
    GrantRevoked {
        /// The task.
        task: TaskId,
        /// The former holder.
        host: HostId,
    },
    /// A free grant (freed by the above, or never taken) went to this
    /// waiting peer. It learns on its next join anyway; the service may tell
    /// it sooner.
    GrantGiven {
        /// The task.
        task: TaskId,
        /// The new holder.
        host: HostId,
    },
}

/// Sizes, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Registered hosts (expired ones go at the next tick).
    pub hosts: usize,
    /// Tasks with at least one peer.
    pub tasks: usize,
    /// (peer, task) entries.
    pub peer_tasks: usize,
    /// Origin grants held.
    pub grants: usize,
    /// Prewarm jobs held (finished ones for an hour).
    pub prewarm_jobs: usize,
    /// Prewarm jobs with a node still queued or running.
    pub prewarm_active: usize,
    /// Final piece maps held for joiners (see `map_budget`).
    pub piece_maps: usize,
}

/// Approximate heap bytes the scheduler holds, by what they are for.
/// Computed from capacities and element sizes, not measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapUsage {
    /// Host records, ids, labels, the id index and the label interner.
    pub hosts: usize,
    /// Task records, the task index and the final piece maps.
    pub tasks: usize,
    /// Everything that grows with (peer, task) entries: the per-task peer
    /// vectors, the (task, host) index, each host's task list, failure logs.
    pub peer_tasks: usize,
}

impl HeapUsage {
    /// All of it.
    pub fn total(&self) -> usize {
        self.hosts + self.tasks + self.peer_tasks
    }
}

/// Why the scheduler refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// The host is not registered (the scheduler restarted, or the host
    /// expired): it should register and re-join its tasks.
    #[error("host {0} is not registered: register and re-join")]
    UnknownHost(HostId),
    /// A prewarm job was refused or is not known.
    #[error(transparent)]
    Job(#[from] crate::jobs::JobError),
}
