//! Peer -> scheduler messages. Each request travels on its own
//! bidirectional QUIC stream (after the connection's [`crate::Hello`]) and
//! gets exactly one [`SchedulerResponse`]; streams are cheap and this keeps
//! a slow answer from blocking others.
//!
//! The scheduler holds soft state only: after it restarts, a peer's next
//! request gets `SchedErrorCode::UnknownHost`, and the peer registers and
//! re-joins its tasks.

use std::net::SocketAddr;

use shoal_core::{HostId, TaskId};

use crate::prewarm::{ImageProgress, NodeSelector, PrewarmAssignment, PrewarmJob, PrewarmSpec};

/// Where a host sits, for locality.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostLabels {
    /// Kubernetes node name.
    pub node: String,
    /// Zone (`topology.kubernetes.io/zone`).
    pub zone: Option<String>,
    /// Rack, if known.
    pub rack: Option<String>,
}

/// How loaded a host's uploads are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostLoad {
    /// Uploads in progress.
    pub uploads: u32,
    /// Recent upload rate, bytes/s.
    pub upload_bps: u64,
    /// The host refuses new uploads (at its cap or limit).
    pub busy: bool,
}

/// What a peer holds of a task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HaveState {
    /// Pieces verified and stored.
    pub pieces_done: u32,
    /// Total pieces, once the size is known.
    pub pieces_total: Option<u32>,
    /// The whole blob is verified and complete.
    pub complete: bool,
}

/// Why a piece from a parent failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FailureKind {
    /// The bytes did not match the piece's BLAKE3 hash.
    Corrupt,
    /// The parent did not answer or stalled past the deadline.
    Timeout,
    /// The connection failed or closed.
    Unreachable,
    /// The parent said it does not have the piece.
    Missing,
    /// The parent is an authority whose piece map was wrong: pieces that
    /// matched it did not make a blob with the right digest.
    BadMap,
}

/// A blob's piece map: the BLAKE3 of every piece, by index.
pub type PieceMap = Vec<[u8; 32]>;

/// A task's final piece map, as the scheduler keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FinalMap {
    /// The authority that reported it (blamed if it proves wrong).
    pub from: HostId,
    /// One hash per piece.
    pub hashes: PieceMap,
}

/// A request to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SchedulerRequest {
    /// Announce (or re-announce) this host.
    Register {
        /// The host.
        host: HostId,
        /// Where other peers reach its QUIC endpoint.
        addr: SocketAddr,
        /// Locality labels.
        labels: HostLabels,
        /// Upload capacity, bytes/s.
        upload_capacity: u64,
        /// Most concurrent uploads it accepts.
        max_uploads: u32,
    },
    /// Still alive; current load.
    Heartbeat {
        /// The host.
        host: HostId,
        /// Its load.
        load: HostLoad,
    },
    /// Download a blob: who can give pieces, and may I go to the origin?
    Join {
        /// The host.
        host: HostId,
        /// The task (registry and blob digest).
        task: TaskId,
        /// What it holds already.
        have: HaveState,
        /// Send the task's final piece map if the scheduler holds one (the
        /// joiner does not have it yet).
        want_map: bool,
    },
    /// Progress on a task (sent every few pieces and on completion).
    Progress {
        /// The host.
        host: HostId,
        /// The task.
        task: TaskId,
        /// What it holds now.
        have: HaveState,
        /// With `have.complete`, from a node that read the blob from the
        /// origin (an authority): its final piece map, which the scheduler
        /// keeps for later joiners. Ignored from anyone else.
        map: Option<PieceMap>,
    },
    /// A parent gave a bad piece or failed.
    PieceFailed {
        /// The reporting host.
        host: HostId,
        /// The task.
        task: TaskId,
        /// The parent that failed.
        parent: HostId,
        /// The piece.
        piece: u32,
        /// How.
        kind: FailureKind,
    },
    /// The host stopped working on a task (done with it, or gave up).
    Leave {
        /// The host.
        host: HostId,
        /// The task.
        task: TaskId,
    },
    /// Run a prewarm job on the nodes `selector` picks (sent to the
    /// replica that owns `job`, see [`crate::prewarm::job_route`]).
    SubmitPrewarm {
        /// The submitting host.
        host: HostId,
        /// A fresh job id, made by the submitter.
        job: String,
        /// What to warm.
        spec: PrewarmSpec,
        /// Where.
        selector: NodeSelector,
    },
    /// Which prewarm jobs should this host run? (Sent to every replica.)
    PollPrewarm {
        /// The host.
        host: HostId,
    },
    /// Progress of this host on a prewarm job.
    ReportPrewarm {
        /// The host.
        host: HostId,
        /// The job.
        job: String,
        /// Each image's progress.
        images: Vec<ImageProgress>,
        /// The host is done with the job (every image finished or failed).
        finished: bool,
    },
    /// Where a prewarm job stands.
    PrewarmStatus {
        /// The asking host.
        host: HostId,
        /// The job.
        job: String,
    },
    /// What the replica that owns `task` told `host` when it joined: sent
    /// to the other replicas (as `Progress`, `PieceFailed` and `Leave` are
    /// too), so that the replica that takes the task over when its owner
    /// dies knows who is downloading it and who fetches from the origin,
    /// and sends no one else there. Answered with `Ack`.
    Follow {
        /// The host.
        host: HostId,
        /// The task.
        task: TaskId,
        /// What it held when it joined.
        have: HaveState,
        /// The owner granted it the origin.
        granted: bool,
    },
}

/// A parent offered to a joining peer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParentInfo {
    /// Its host id (checked against its certificate on connect).
    pub host: HostId,
    /// Its QUIC endpoint.
    pub addr: SocketAddr,
    /// Pieces it had when last reported.
    pub pieces_done: u32,
    /// It holds the whole blob.
    pub complete: bool,
}

/// May the joiner fetch from the origin?
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OriginGrant {
    /// Yes: it is one of the task's (bounded) back-to-source peers.
    Granted,
    /// Not now; ask again after this many milliseconds if the parents do
    /// not suffice.
    Wait {
        /// Suggested delay.
        retry_after_ms: u64,
    },
}

/// Error codes a scheduler answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SchedErrorCode {
    /// The host is not registered (scheduler restarted or host expired):
    /// register and re-join.
    UnknownHost,
    /// The request is malformed or names another host than the
    /// connection's certificate.
    BadRequest,
    /// Anything else.
    Internal,
    /// The named prewarm job is not known (never submitted, expired, or
    /// its replica restarted).
    NotFound,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("scheduler: {code:?}: {message}")]
pub struct SchedError {
    /// What kind.
    pub code: SchedErrorCode,
    /// Human detail.
    pub message: String,
}

/// The scheduler's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SchedulerResponse {
    /// Registered; heartbeat at this interval.
    Registered {
        /// Heartbeat interval, ms.
        heartbeat_ms: u64,
    },
    /// Done.
    Ack,
    /// Answer to `Join`.
    Parents {
        /// Parents, best first.
        parents: Vec<ParentInfo>,
        /// Origin grant.
        origin: OriginGrant,
        /// Peers whose piece hashes the joiner may trust: they fetched (part
        /// of) the blob from the origin. Their availability streams carry
        /// the hashes of the pieces they hold.
        authorities: Vec<ParentInfo>,
        /// The task's final piece map, when the joiner asked for it and the
        /// scheduler holds it (an authority completed the blob).
        map: Option<FinalMap>,
    },
    /// The request failed.
    Error(SchedError),
    /// Answer to `SubmitPrewarm`: the nodes picked.
    PrewarmSubmitted {
        /// The nodes that will run the job.
        nodes: Vec<HostId>,
    },
    /// Answer to `PollPrewarm`.
    PrewarmAssignments {
        /// Jobs naming the host that it has not finished.
        jobs: Vec<PrewarmAssignment>,
    },
    /// Answer to `PrewarmStatus`.
    PrewarmJob(PrewarmJob),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameDecoder, encode};

    #[test]
    fn round_trips() {
        let task = TaskId::new("docker.io", shoal_core::Digest::sha256_of(b"t")).unwrap();
        let host: HostId = "n1".parse().unwrap();
        let reqs = vec![
            SchedulerRequest::Register {
                host: host.clone(),
                addr: "127.0.0.1:4000".parse().unwrap(),
                labels: HostLabels { node: "n1".into(), zone: Some("a".into()), rack: None },
                upload_capacity: 125_000_000,
                max_uploads: 16,
            },
            SchedulerRequest::Join {
                host: host.clone(),
                task: task.clone(),
                have: HaveState::default(),
                want_map: true,
            },
            SchedulerRequest::Progress {
                host: host.clone(),
                task: task.clone(),
                have: HaveState { pieces_done: 2, pieces_total: Some(2), complete: true },
                map: Some(vec![[1; 32], [2; 32]]),
            },
            SchedulerRequest::PieceFailed {
                host: host.clone(),
                task,
                parent: host,
                piece: 3,
                kind: FailureKind::Corrupt,
            },
            SchedulerRequest::Follow {
                host: "n2".parse().unwrap(),
                task: TaskId::new("docker.io", shoal_core::Digest::sha256_of(b"u")).unwrap(),
                have: HaveState { pieces_done: 1, pieces_total: Some(4), complete: false },
                granted: true,
            },
        ];
        for r in reqs {
            let mut d = FrameDecoder::default();
            d.push(&encode(&r).unwrap());
            assert_eq!(d.next::<SchedulerRequest>().unwrap(), Some(r));
        }
        let resp = SchedulerResponse::Parents {
            parents: vec![],
            origin: OriginGrant::Wait { retry_after_ms: 200 },
            authorities: vec![],
            map: Some(FinalMap { from: "n2".parse().unwrap(), hashes: vec![[5; 32]] }),
        };
        let mut d = FrameDecoder::default();
        d.push(&encode(&resp).unwrap());
        assert_eq!(d.next::<SchedulerResponse>().unwrap(), Some(resp));
    }
}
