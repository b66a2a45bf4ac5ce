//! The scheduler calls behind prewarm jobs: submitting one, polling for the
//! ones this node should run, reporting progress, and asking where one
//! stands (see `shoal_proto::prewarm` for the flow).

use shoal_proto::prewarm::job_route;
use shoal_proto::{
    ImageProgress, NodeSelector, PrewarmAssignment, PrewarmJob, PrewarmSpec, SchedErrorCode, SchedulerRequest,
    SchedulerResponse,
};

use super::link::LinkError;
use super::node::Swarm;
use shoal_core::HostId;

/// Why a prewarm call failed.
#[derive(Debug, thiserror::Error)]
pub enum PrewarmCallError {
    /// No scheduler answered.
    #[error(transparent)]
    Unreachable(#[from] LinkError),
    /// The scheduler refused the request; its message says why.
    #[error("{0}")]
    Refused(String),
    /// The scheduler does not know the job.
    #[error("{0}")]
    NotFound(String),
    /// The scheduler answered something else.
    #[error("unexpected answer from the scheduler: {0}")]
    Unexpected(String),
}

impl Swarm {
    /// Asks the scheduler to run job `job` on the nodes `selector` picks;
    /// returns them. Registers first if the scheduler forgot this host.
    pub async fn submit_prewarm(
        &self,
        job: &str,
        spec: PrewarmSpec,
        selector: NodeSelector,
    ) -> Result<Vec<HostId>, PrewarmCallError> {
        let route = job_route(job);
        let req =
            SchedulerRequest::SubmitPrewarm { host: self.config.host.clone(), job: job.to_owned(), spec, selector };
        match self.call_registered(Some(&route), req).await? {
            SchedulerResponse::PrewarmSubmitted { nodes } => Ok(nodes),
            other => Err(refusal(other)),
        }
    }

    /// The prewarm jobs this node should run now (from every replica).
    pub async fn poll_prewarm(&self) -> Result<Vec<PrewarmAssignment>, PrewarmCallError> {
        let req = SchedulerRequest::PollPrewarm { host: self.config.host.clone() };
        match self.call_registered(None, req).await? {
            SchedulerResponse::PrewarmAssignments { jobs } => Ok(jobs),
            other => Err(refusal(other)),
        }
    }

    /// Reports this node's progress on `job`, to every replica: the job
    /// lives on the one it was submitted to, which is the job id's
    /// rendezvous owner for `shoal prewarm` but the replica Harbor reached
    /// for a Harbor preheat; the others ignore the report.
    pub async fn report_prewarm(
        &self,
        job: &str,
        images: Vec<ImageProgress>,
        finished: bool,
    ) -> Result<(), PrewarmCallError> {
        let req =
            SchedulerRequest::ReportPrewarm { host: self.config.host.clone(), job: job.to_owned(), images, finished };
        match self.call_registered(None, req).await? {
            SchedulerResponse::Ack => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// Where `job` stands on every node.
    pub async fn prewarm_status(&self, job: &str) -> Result<PrewarmJob, PrewarmCallError> {
        let route = job_route(job);
        let req = SchedulerRequest::PrewarmStatus { host: self.config.host.clone(), job: job.to_owned() };
        match self.call_registered(Some(&route), req).await? {
            SchedulerResponse::PrewarmJob(job) => Ok(job),
            other => Err(refusal(other)),
        }
    }
}

fn refusal(answer: SchedulerResponse) -> PrewarmCallError {
    match answer {
        SchedulerResponse::Error(e) if e.code == SchedErrorCode::NotFound => PrewarmCallError::NotFound(e.message),
        SchedulerResponse::Error(e) => PrewarmCallError::Refused(e.message),
        other => PrewarmCallError::Unexpected(format!("{other:?}")),
    }
}
