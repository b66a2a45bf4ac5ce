//! Prewarm jobs: which nodes a job runs on, what each node is handed, and
//! where each stands. Pure like the rest of the core: time comes in as
//! [`Millis`], the live hosts as a slice.
//!
//! Unlike the swarm state, the job values (spec, per-image progress) are
//! opaque payloads that the core stores and hands back unchanged, so it
//! uses `shoal_proto`'s types for them rather than mirroring each one.
//!
//! Rules:
//! - a node is handed every job that names it and that it has not finished,
//!   at each poll, so a daemon that restarts mid-job runs it again (warming
//!   is idempotent: blobs already stored are not fetched);
//! - a node whose host expires before finishing is marked failed at the next
//!   tick; a report from it later still counts (it came back);
//! - a finished job is kept for `keep_finished`, an unfinished one for
//!   `max_age`; at most `max_jobs` are held, and a submit beyond that evicts
//!   the oldest finished job or is refused;
//! - a job's credential (see [`Jobs::attach_credential`]) goes only to the
//!   nodes the job names, with their assignment, and is dropped as soon as
//!   every node has finished.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_core::HostId;
use shoal_proto::{
    ImageProgress, JobCredential, NodeJob, NodeJobState, NodeSelector, PrewarmAssignment, PrewarmJob, PrewarmSpec,
};

use crate::time::{Millis, as_ms};
use crate::types::Labels;

#[cfg(test)]
mod tests;

/// Limits on the jobs a scheduler holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLimits {
    /// How long a finished job stays queryable.
    pub keep_finished: Duration,
    /// How long any job is kept, finished or not.
    pub max_age: Duration,
    /// Most jobs held at once.
    pub max_jobs: usize,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits { keep_finished: Duration::from_secs(3600), max_age: Duration::from_secs(24 * 3600), max_jobs: 1024 }
    }
}

/// A live host as job selection sees it.
#[derive(Debug, Clone, Copy)]
pub struct HostView<'a> {
    /// Its id.
    pub id: &'a HostId,
    /// Its labels.
    pub labels: &'a Labels,
}

/// Why a job was refused or not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// No live node matches the selector.
    #[error("{0}")]
    NoNodes(String),
    /// The selector cannot be used.
    #[error("{0}")]
    BadSelector(String),
    /// The spec names nothing to warm.
    #[error("the prewarm job names no images")]
    NoImages,
    /// A job with this id exists.
    #[error("a prewarm job with id {0} exists already")]
    Exists(String),
    /// Every slot holds an unfinished job.
    #[error("the scheduler holds {0} unfinished prewarm jobs, its limit: wait for some to finish")]
    TooMany(usize),
    /// No such job.
    #[error("no prewarm job {0} on this scheduler (it finished over an hour ago, or its replica restarted)")]
    NotFound(String),
}

#[derive(Debug)]
struct Node {
    host: HostId,
    state: NodeJobState,
    images: Vec<ImageProgress>,
    heard: Millis,
}

#[derive(Debug)]
struct Job {
    spec: PrewarmSpec,
    created: Millis,
    finished: Option<Millis>,
    nodes: Vec<Node>,
    /// Handed to the job's nodes with the job while any is unfinished.
    credential: Option<JobCredential>,
}

impl Job {
    fn update_finished(&mut self, now: Millis) {
        let all = self.nodes.iter().all(|n| n.state.is_finished());
        self.finished = match (all, self.finished) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(now),
            (false, _) => None,
        };
        if self.finished.is_some() {
            // No node will fetch for this job again: the secret has no use.
            self.credential = None;
        }
    }
}

/// Every prewarm job this scheduler owns.
#[derive(Debug, Default)]
pub struct Jobs {
    limits: JobLimits,
    jobs: BTreeMap<String, Job>,
}

impl Jobs {
    /// No jobs, with these limits.
    pub fn new(limits: JobLimits) -> Jobs {
        Jobs { limits, jobs: BTreeMap::new() }
    }

    /// Jobs held.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// No jobs held.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Jobs with a node still queued or running.
    pub fn active(&self) -> usize {
        self.jobs.values().filter(|j| j.finished.is_none()).count()
    }

    /// Starts job `id` on the nodes `selector` picks among `hosts` (the live
    /// ones) and returns them.
    pub fn submit(
        &mut self,
        now: Millis,
        id: String,
        spec: PrewarmSpec,
        selector: &NodeSelector,
        hosts: &[HostView<'_>],
    ) -> Result<Vec<HostId>, JobError> {
        if spec.images.is_empty() {
            return Err(JobError::NoImages);
        }
        if self.jobs.contains_key(&id) {
            return Err(JobError::Exists(id));
        }
        let picked = select_nodes(selector, hosts)?;
        if self.jobs.len() >= self.limits.max_jobs.max(1) {
            let oldest = self.jobs.iter().filter_map(|(k, j)| j.finished.map(|f| (f, k.clone()))).min();
            match oldest {
                Some((_, k)) => {
                    self.jobs.remove(&k);
                }
                None => return Err(JobError::TooMany(self.jobs.len())),
            }
        }
        let nodes = picked
            .iter()
            .map(|h| Node { host: h.clone(), state: NodeJobState::Queued, images: Vec::new(), heard: now })
            .collect();
        self.jobs.insert(id, Job { spec, created: now, finished: None, nodes, credential: None });
        Ok(picked)
    }

    /// Gives job `id`'s nodes `credential` for the job's registry requests
    /// (with each assignment, until every node has finished). Returns
    /// whether the job exists and is unfinished.
    pub fn attach_credential(&mut self, id: &str, credential: JobCredential) -> bool {
        match self.jobs.get_mut(id) {
            Some(job) if job.finished.is_none() => {
                job.credential = Some(credential);
                true
            }
            _ => false,
        }
    }

    /// The jobs `host` should run: those naming it that it has not finished.
    pub fn poll(&self, host: &HostId) -> Vec<PrewarmAssignment> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.nodes.iter().any(|n| &n.host == host && !n.state.is_finished()))
            .map(|(id, j)| PrewarmAssignment {
                job: id.clone(),
                spec: j.spec.clone(),
                credential: j.credential.clone(),
            })
            .collect()
    }

    /// Records `host`'s progress on job `id`. Reports for unknown jobs, or
    /// from hosts the job does not name, are ignored (the job expired or
    /// its replica restarted; the node finishes its work anyway).
    pub fn report(&mut self, now: Millis, host: &HostId, id: &str, images: Vec<ImageProgress>, finished: bool) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        let Some(node) = job.nodes.iter_mut().find(|n| &n.host == host) else {
            return;
        };
        node.state = if !finished {
            NodeJobState::Running
        } else {
            let failed: Vec<&str> = images.iter().filter_map(|i| i.error.as_deref()).collect();
            if failed.is_empty() { NodeJobState::Done } else { NodeJobState::Failed { reason: failed.join("; ") } }
        };
        node.images = images;
        node.heard = now;
        job.update_finished(now);
    }

    /// Where job `id` stands.
    pub fn status(&self, now: Millis, id: &str) -> Result<PrewarmJob, JobError> {
        let job = self.jobs.get(id).ok_or_else(|| JobError::NotFound(id.to_owned()))?;
        Ok(PrewarmJob {
            job: id.to_owned(),
            spec: job.spec.clone(),
            age_ms: as_ms(now.since(job.created)),
            nodes: job
                .nodes
                .iter()
                .map(|n| NodeJob {
                    host: n.host.clone(),
                    state: n.state.clone(),
                    images: n.images.clone(),
                    quiet_ms: as_ms(now.since(n.heard)),
                })
                .collect(),
        })
    }

    /// Fails the unfinished nodes whose host is no longer alive, and drops
    /// jobs past their keep time.
    pub fn tick(&mut self, now: Millis, alive: impl Fn(&HostId) -> bool) {
        for job in self.jobs.values_mut() {
            for node in job.nodes.iter_mut().filter(|n| !n.state.is_finished() && !alive(&n.host)) {
                node.state = NodeJobState::Failed {
                    reason: format!(
                        "node {} stopped heartbeating before finishing (daemon down or unreachable)",
                        node.host
                    ),
                };
            }
            job.update_finished(now);
        }
        let keep = as_ms(self.limits.keep_finished);
        let max_age = as_ms(self.limits.max_age);
        self.jobs.retain(|_, j| !now.reached(j.created, max_age) && j.finished.is_none_or(|f| !now.reached(f, keep)));
    }
}

/// The nodes `selector` picks among `hosts`, sorted by id (for `Count`,
/// in the round-robin order over zones that spread them).
pub fn select_nodes(selector: &NodeSelector, hosts: &[HostView<'_>]) -> Result<Vec<HostId>, JobError> {
    let mut hosts: Vec<HostView<'_>> = hosts.to_vec();
    hosts.sort_by(|a, b| a.id.cmp(b.id));
    if hosts.is_empty() {
        return Err(JobError::NoNodes(
            "no node is registered with the scheduler (are the daemons running with --swarm and this scheduler?)"
                .into(),
        ));
    }
    match selector {
        NodeSelector::All => Ok(hosts.iter().map(|h| h.id.clone()).collect()),
        NodeSelector::Count(0) => Err(JobError::BadSelector("--nodes must be at least 1".into())),
        NodeSelector::Count(n) => {
            let n = *n as usize;
            if n > hosts.len() {
                return Err(JobError::NoNodes(format!(
                    "{n} nodes were asked for but only {} are registered with the scheduler",
                    hosts.len()
                )));
            }
            Ok(spread_over_zones(&hosts).into_iter().take(n).collect())
        }
        NodeSelector::Labels(pairs) => {
            let keys = pairs.iter().map(|(k, v)| Ok((label_key(k)?, v.as_str()))).collect::<Result<Vec<_>, _>>()?;
            let picked: Vec<HostId> = hosts
                .iter()
                .filter(|h| keys.iter().all(|(k, v)| label(h.labels, *k) == Some(*v)))
                .map(|h| h.id.clone())
                .collect();
            if picked.is_empty() {
                let want = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
                let (key, _) = keys[0];
                let mut known: Vec<&str> = hosts.iter().filter_map(|h| label(h.labels, key)).collect();
                known.sort_unstable();
                known.dedup();
                let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
                return Err(JobError::NoNodes(format!(
                    "no registered node matches {want} (the nodes' {} values: {known})",
                    key.name()
                )));
            }
            Ok(picked)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Zone,
    Rack,
    Node,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Zone => "zone",
            Key::Rack => "rack",
            Key::Node => "node",
        }
    }
}

fn label_key(k: &str) -> Result<Key, JobError> {
    match k {
        "zone" | "topology.kubernetes.io/zone" => Ok(Key::Zone),
        "rack" => Ok(Key::Rack),
        "node" | "host" | "kubernetes.io/hostname" => Ok(Key::Node),
        other => Err(JobError::BadSelector(format!(
            "unknown selector key {other:?}: nodes are labelled with zone, rack and node ([swarm] zone/rack, the host id)"
        ))),
    }
}

fn label(l: &Labels, k: Key) -> Option<&str> {
    match k {
        Key::Zone => l.zone.as_deref(),
        Key::Rack => l.rack.as_deref(),
        Key::Node => Some(l.node.as_str()),
    }
}

/// Hosts (sorted by id) in round-robin order over their zones (sorted by
/// name, no zone last), so the first `n` spread over as many zones as they
/// can.
fn spread_over_zones(hosts: &[HostView<'_>]) -> Vec<HostId> {
    let mut zones: BTreeMap<(bool, &str), Vec<&HostId>> = BTreeMap::new();
    for h in hosts {
        let zone = h.labels.zone.as_deref();
        zones.entry((zone.is_none(), zone.unwrap_or(""))).or_default().push(h.id);
    }
    let mut columns: Vec<std::vec::IntoIter<&HostId>> = zones.into_values().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(hosts.len());
    while out.len() < hosts.len() {
        for c in columns.iter_mut() {
            if let Some(h) = c.next() {
                out.push(h.clone());
            }
        }
    }
    out
}
