//! Prewarm jobs: `shoal prewarm --all-nodes | --nodes N | --selector k=v`
//! asks a scheduler to have nodes fetch images ahead of a rollout.
//!
//! The flow (requests in [`crate::SchedulerRequest`]):
//! 1. a daemon submits a job (`SubmitPrewarm`) with an id it made up; the
//!    job lives on the replica that owns the id ([`job_route`]), which picks
//!    the nodes from the hosts registered with it and answers with them (a
//!    job a scheduler makes itself, for Harbor, lives on that scheduler);
//! 2. every daemon polls every replica (`PollPrewarm`, with its heartbeat)
//!    and gets the jobs that name it and that it has not finished;
//! 3. the daemon warms the images through its own mirror (so through the
//!    swarm: the origin sends each blob about once for the whole job) and
//!    reports progress (`ReportPrewarm`, to every replica: only the one
//!    holding the job records it) every few seconds and at the end;
//! 4. whoever submitted asks for the job's state (`PrewarmStatus`) until
//!    every node has finished.
//!
//! Jobs are soft state like everything else on a scheduler: a replica that
//! restarts forgets its jobs, and a status query for one answers
//! `NotFound`.

use shoal_core::{Digest, HostId};

/// What to warm.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrewarmSpec {
    /// Image references as a user writes them (`nginx:1.27`,
    /// `ghcr.io/org/app@sha256:...`).
    pub images: Vec<String>,
    /// Platforms to take from an image index (`linux/amd64`); empty: each
    /// node's own.
    pub platforms: Vec<String>,
}

/// Which nodes a job runs on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeSelector {
    /// Every live registered node.
    All,
    /// This many live nodes, spread over zones.
    Count(u32),
    /// Live nodes whose labels match every `key=value` pair. Keys: `zone`
    /// (or `topology.kubernetes.io/zone`), `rack`, `node` (or
    /// `kubernetes.io/hostname`).
    Labels(Vec<(String, String)>),
}

/// One image's progress on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageProgress {
    /// The reference as submitted.
    pub image: String,
    /// Bytes fetched so far.
    pub bytes_done: u64,
    /// Bytes of all its blobs, once resolved (0 before).
    pub bytes_total: u64,
    /// Blobs fetched so far.
    pub blobs_done: u32,
    /// Blobs to fetch, once resolved (0 before).
    pub blobs_total: u32,
    /// Every blob is in the node's store.
    pub finished: bool,
    /// Why it failed, if it did (one line naming the image and the cause).
    pub error: Option<String>,
}

/// A job handed to a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrewarmAssignment {
    /// The job id.
    pub job: String,
    /// What to warm.
    pub spec: PrewarmSpec,
    /// Credentials for this job's registry requests, when whoever submitted
    /// the job brought some (a Harbor preheat's short-lived token); `None`:
    /// the node's own, as for `shoal prewarm`.
    pub credential: Option<JobCredential>,
}

/// An `Authorization` header value that a job's nodes send with that
/// job's registry requests (through their own mirror, so the access checks
/// apply to it as to any client's). It travels only in `PollPrewarm`
/// answers, over the mutually authenticated scheduler channel, to the
/// nodes the job names; it is never part of a [`PrewarmSpec`] (which
/// status answers repeat), and its `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct JobCredential(String);

impl JobCredential {
    /// Wraps a header value (`Bearer ...`).
    pub fn new(header: impl Into<String>) -> JobCredential {
        JobCredential(header.into())
    }

    /// The header value, to put on a request (and nowhere else).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for JobCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobCredential(<redacted>)")
    }
}

/// Where one node stands in a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeJobState {
    /// Not picked up yet (the node polls with its heartbeat).
    Queued,
    /// Fetching.
    Running,
    /// Every image is in its store.
    Done,
    /// Finished with at least one image failed, or the node left.
    Failed {
        /// Why (per image in `images`, or the node's fate).
        reason: String,
    },
}

impl NodeJobState {
    /// Done or failed.
    pub fn is_finished(&self) -> bool {
        matches!(self, NodeJobState::Done | NodeJobState::Failed { .. })
    }
}

/// One node's part of a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeJob {
    /// The node.
    pub host: HostId,
    /// Where it stands.
    pub state: NodeJobState,
    /// Its images, as last reported (empty before the first report).
    pub images: Vec<ImageProgress>,
    /// Milliseconds since it last reported (or since the job was made).
    pub quiet_ms: u64,
}

/// A job as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrewarmJob {
    /// The job id.
    pub job: String,
    /// What it warms.
    pub spec: PrewarmSpec,
    /// Milliseconds since it was submitted.
    pub age_ms: u64,
    /// Every node it runs on.
    pub nodes: Vec<NodeJob>,
}

impl PrewarmJob {
    /// Every node finished.
    pub fn is_finished(&self) -> bool {
        self.nodes.iter().all(|n| n.state.is_finished())
    }
}

/// The digest a job's requests are routed by (to the replica that owns
/// it), as if it were a task: SHA-256 of the job id.
pub fn job_route(job: &str) -> Digest {
    Digest::sha256_of(job.as_bytes())
}

/// Parses `key=value[,key=value...]` selector text.
pub fn parse_selector(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok((k.trim().to_owned(), v.trim().to_owned()))
            }
            _ => Err(format!("selector {pair:?} is not key=value (e.g. zone=eu-west-1a)")),
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|pairs| if pairs.is_empty() { Err("the selector is empty".to_owned()) } else { Ok(pairs) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        assert_eq!(parse_selector("zone=a").unwrap(), vec![("zone".into(), "a".into())]);
        assert_eq!(
            parse_selector("zone=a, rack=r1").unwrap(),
            vec![("zone".into(), "a".into()), ("rack".into(), "r1".into())]
        );
        assert!(parse_selector("zone").unwrap_err().contains("not key=value"));
        assert!(parse_selector("=a").is_err());
        assert!(parse_selector("").unwrap_err().contains("empty"));
    }

    #[test]
    fn a_credential_never_shows_in_debug_output() {
        let a = PrewarmAssignment {
            job: "j".into(),
            spec: PrewarmSpec::default(),
            credential: Some(JobCredential::new("Bearer s3cret-token")),
        };
        let shown = format!("{a:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(a.credential.as_ref().map(JobCredential::expose), Some("Bearer s3cret-token"));
    }

    #[test]
    fn routes_are_stable() {
        assert_eq!(job_route("pw-1"), job_route("pw-1"));
        assert_ne!(job_route("pw-1"), job_route("pw-2"));
    }
}
