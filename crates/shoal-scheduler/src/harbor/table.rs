//! The preheat jobs Harbor created on this replica: Harbor's integer ids,
//! each job's phase (resolving the image, running on the nodes, finished),
//! and the result Harbor renders, computed from the core's prewarm job.
//!
//! Ids: the first is the replica's start time in milliseconds times 1000,
//! then one more per job, so a restarted replica (whose core forgot every
//! job) gives no id an earlier process gave, and ids stay below 2^53.
//! A finished job is kept for `keep_finished`; at most `max_jobs` are held.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use shoal_core::HostId;
use shoal_proto::{NodeJobState, PrewarmJob};

use super::resolve::{ManifestUrl, Pinned};
use super::wire::{ClusterResult, FailureTask, JobResponse, JobResult, JobState, State, SuccessTask};

/// A job's phase.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// Fetching the manifests with Harbor's token.
    Resolving,
    /// The core's job `internal` runs on the nodes.
    Running {
        /// Each platform's image, in the job's order.
        images: Vec<Pinned>,
    },
    /// Done; the answer is fixed.
    Finished {
        /// SUCCESS or FAILURE.
        state: State,
        /// What Harbor renders.
        result: JobResult,
    },
}

/// One Harbor job.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// The core's job id (`harbor-<id>-<random>`, unique across replicas).
    pub(crate) internal: String,
    pub(crate) url: ManifestUrl,
    pub(crate) cluster_id: u64,
    pub(crate) created: SystemTime,
    pub(crate) updated: SystemTime,
    pub(crate) phase: Phase,
}

impl Record {
    /// The answer Harbor gets.
    pub(crate) fn response(&self, id: u64) -> JobResponse {
        let (state, result) = match &self.phase {
            Phase::Resolving | Phase::Running { .. } => (State::Pending, JobResult::default()),
            Phase::Finished { state, result } => (*state, result.clone()),
        };
        JobResponse {
            id,
            kind: "preheat",
            state,
            created_at: rfc3339(self.created),
            updated_at: rfc3339(self.updated),
            result,
        }
    }

    /// Fixes the outcome.
    pub(crate) fn finish(&mut self, now: SystemTime, state: State, result: JobResult) {
        self.phase = Phase::Finished { state, result };
        self.updated = now;
    }

    /// A failure with `error` and no node results.
    pub(crate) fn fail(&mut self, now: SystemTime, error: String) {
        let result = JobResult {
            job_states: vec![JobState {
                error,
                results: vec![ClusterResult { scheduler_cluster_id: self.cluster_id, ..ClusterResult::default() }],
            }],
        };
        self.finish(now, State::Failure, result);
    }
}

/// Why a job could not be recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this scheduler holds {0} unfinished Harbor preheat jobs, its limit: wait for some to finish")]
pub struct TooMany(pub usize);

/// Every Harbor job on this replica.
#[derive(Debug)]
pub(crate) struct Records {
    next: u64,
    jobs: BTreeMap<u64, Record>,
    keep_finished: Duration,
    max_jobs: usize,
}

impl Records {
    pub(crate) fn new(start: SystemTime, keep_finished: Duration, max_jobs: usize) -> Records {
        let ms = start.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        Records { next: ms.saturating_mul(1000), jobs: BTreeMap::new(), keep_finished, max_jobs: max_jobs.max(1) }
    }

    /// Records a new job; returns its id.
    pub(crate) fn insert(&mut self, now: SystemTime, make: impl FnOnce(u64) -> Record) -> Result<u64, TooMany> {
        self.prune(now);
        if self.jobs.len() >= self.max_jobs {
            let oldest = self
                .jobs
                .iter()
                .filter(|(_, r)| matches!(r.phase, Phase::Finished { .. }))
                .min_by_key(|(_, r)| r.updated)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    self.jobs.remove(&id);
                }
                None => return Err(TooMany(self.jobs.len())),
            }
        }
        self.next += 1;
        let id = self.next;
        self.jobs.insert(id, make(id));
        Ok(id)
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Record> {
        self.jobs.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Record> {
        self.jobs.get_mut(&id)
    }

    /// Drops finished jobs past `keep_finished`.
    pub(crate) fn prune(&mut self, now: SystemTime) {
        let keep = self.keep_finished;
        self.jobs.retain(|_, r| {
            !matches!(r.phase, Phase::Finished { .. }) || now.duration_since(r.updated).unwrap_or_default() < keep
        });
    }
}

/// The image reference a node warms for `image`: by digest, at the URL's
/// registry.
pub(crate) fn node_image(url: &ManifestUrl, image: &Pinned) -> String {
    format!("{}/{}@{}", url.registry, url.repo, image.manifest)
}

/// The outcome of a finished core job: SUCCESS when at least one node holds
/// every image (each blob it holds is a success task, each image a node
/// failed a failure task with the node's reason), FAILURE with every
/// node's reason when none does.
pub(crate) fn outcome(
    url: &ManifestUrl,
    images: &[Pinned],
    job: &PrewarmJob,
    cluster_id: u64,
    ip_of: impl Fn(&HostId) -> String,
) -> (State, JobResult) {
    let mut out = ClusterResult { scheduler_cluster_id: cluster_id, ..ClusterResult::default() };
    let mut reasons = Vec::new();
    for node in &job.nodes {
        let (hostname, ip) = (node.host.to_string(), ip_of(&node.host));
        let node_reason = match &node.state {
            NodeJobState::Failed { reason } => Some(reason.as_str()),
            _ => None,
        };
        if let Some(r) = node_reason {
            reasons.push(format!("node {hostname}: {r}"));
        }
        for image in images {
            let reference = node_image(url, image);
            let progress = node.images.iter().find(|p| p.image == reference);
            let done = node.state == NodeJobState::Done || progress.is_some_and(|p| p.finished && p.error.is_none());
            if done {
                for (blob, _) in &image.blobs {
                    out.success_tasks.push(SuccessTask {
                        url: url.at("blobs", blob),
                        hostname: hostname.clone(),
                        ip: ip.clone(),
                    });
                }
            } else {
                let description = progress
                    .and_then(|p| p.error.clone())
                    .or_else(|| node_reason.map(str::to_owned))
                    .unwrap_or_else(|| "the node did not finish this image".to_owned());
                out.failure_tasks.push(FailureTask {
                    url: url.at("manifests", &image.manifest),
                    hostname: hostname.clone(),
                    ip: ip.clone(),
                    description,
                });
            }
        }
    }
    let any_done = job.nodes.iter().any(|n| n.state == NodeJobState::Done);
    if any_done {
        (State::Success, JobResult { job_states: vec![JobState { error: String::new(), results: vec![out] }] })
    } else {
        let error = if reasons.is_empty() { "no node warmed the image".to_owned() } else { reasons.join("; ") };
        (State::Failure, JobResult { job_states: vec![JobState { error, results: vec![out] }] })
    }
}

/// `2026-12-07T05:16:54Z`: RFC 3339 as Go's `time.Time` reads it.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use shoal_core::Digest;
    use shoal_proto::{ImageProgress, NodeJob, PrewarmSpec};

    use super::*;
    use crate::harbor::resolve::parse_manifest_url;

    fn fixture() -> (ManifestUrl, Vec<Pinned>) {
        let url = parse_manifest_url("https://h.example/v2/p/app/manifests/v1").unwrap();
        let (m, a, b) = (Digest::sha256_of(b"m"), Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        (url, vec![Pinned { manifest: m, blobs: vec![(a, 1), (b, 2)] }])
    }

    fn node(host: &str, state: NodeJobState, images: Vec<ImageProgress>) -> NodeJob {
        NodeJob { host: host.parse().unwrap(), state, images, quiet_ms: 0 }
    }

    #[test]
    fn done_nodes_list_each_blob_and_failed_ones_their_reason() {
        let (url, images) = fixture();
        let reference = node_image(&url, &images[0]);
        assert_eq!(reference, format!("h.example/p/app@{}", images[0].manifest));
        let failed =
            ImageProgress { image: reference.clone(), error: Some("blob x: cut".into()), ..Default::default() };
        let job = PrewarmJob {
            job: "harbor-1".into(),
            spec: PrewarmSpec::default(),
            age_ms: 0,
            nodes: vec![
                node("n0", NodeJobState::Done, vec![]),
                node("n1", NodeJobState::Failed { reason: "blob x: cut".into() }, vec![failed]),
            ],
        };
        let (state, result) = outcome(&url, &images, &job, 3, |h| format!("10.0.0.{}", &h.to_string()[1..]));
        assert_eq!(state, State::Success);
        let r = &result.job_states[0].results[0];
        assert_eq!(r.scheduler_cluster_id, 3);
        assert_eq!(r.success_tasks.len(), 2);
        assert_eq!(r.success_tasks[0].url, format!("https://h.example/v2/p/app/blobs/{}", images[0].blobs[0].0));
        assert_eq!((r.success_tasks[0].hostname.as_str(), r.success_tasks[0].ip.as_str()), ("n0", "10.0.0.0"));
        assert_eq!(r.failure_tasks.len(), 1);
        assert_eq!(r.failure_tasks[0].description, "blob x: cut");
        assert_eq!(r.failure_tasks[0].ip, "10.0.0.1");

        let only_failed = PrewarmJob { nodes: job.nodes[1..].to_vec(), ..job };
        let (state, result) = outcome(&url, &images, &only_failed, 1, |_| String::new());
        assert_eq!(state, State::Failure);
        assert_eq!(result.job_states[0].error, "node n1: blob x: cut");
    }

    #[test]
    fn ids_grow_and_finished_jobs_expire() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut records = Records::new(t0, Duration::from_secs(60), 2);
        let (url, _) = fixture();
        let make = |id: u64| Record {
            internal: format!("harbor-{id}"),
            url: url.clone(),
            cluster_id: 1,
            created: t0,
            updated: t0,
            phase: Phase::Resolving,
        };
        let a = records.insert(t0, make).unwrap();
        assert_eq!(a, 1_700_000_000_000_001);
        let b = records.insert(t0, make).unwrap();
        assert_eq!(b, a + 1);
        assert_eq!(records.insert(t0, make), Err(TooMany(2)));
        records.get_mut(a).unwrap().fail(t0, "x".into());
        let c = records.insert(t0, make).unwrap();
        assert!(records.get(a).is_none() && records.get(c).is_some(), "the finished job made room");
        records.get_mut(b).unwrap().fail(t0, "y".into());
        records.prune(t0 + Duration::from_secs(61));
        assert!(records.get(b).is_none());
        assert_eq!(records.get(c).unwrap().response(c).created_at, "2023-11-14T22:13:20Z");
    }
}
