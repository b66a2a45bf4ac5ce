//! A [`SchedulerLink`] a test puts between a daemon and its scheduler: it
//! passes every request on, records each with its answer (how many joins
//! the daemon made, which failures it reported), and may rewrite the
//! parents of a join answer, to stand in for a scheduler that offers some
//! parent first or keeps offering one it was told failed (a replica that
//! restarted and forgot).

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use shoal_core::{Digest, HostId};
use shoal_peer::swarm::{LinkError, SchedulerLink};
use shoal_proto::{FailureKind, ParentInfo, SchedulerRequest, SchedulerResponse};
use tokio::time::Instant;

/// One request passed on, its answer, and when it was answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub request: SchedulerRequest,
    pub answer: SchedulerResponse,
}

/// Requests passed on so far, in order.
pub type Log = Vec<Call>;

/// A failure report: whom, how, when, and the scheduler's answer.
#[derive(Debug, Clone)]
pub struct Reported {
    pub parent: HostId,
    pub kind: FailureKind,
    pub at: Instant,
    pub answer: SchedulerResponse,
}

/// Rewrites the parents of a join answer, given the log before it.
pub type Rewrite = Box<dyn Fn(&Log, Vec<ParentInfo>) -> Vec<ParentInfo> + Send + Sync>;

/// See the module docs.
pub struct WatchedLink {
    inner: Arc<dyn SchedulerLink>,
    log: Mutex<Log>,
    rewrite: Mutex<Option<Rewrite>>,
}

impl WatchedLink {
    pub fn new(inner: Arc<dyn SchedulerLink>) -> Arc<WatchedLink> {
        Arc::new(WatchedLink { inner, log: Mutex::new(Vec::new()), rewrite: Mutex::new(None) })
    }

    /// From now on, join answers carry `rewrite(log, parents)` as parents.
    pub fn rewrite_parents(&self, rewrite: impl Fn(&Log, Vec<ParentInfo>) -> Vec<ParentInfo> + Send + Sync + 'static) {
        *self.rewrite.lock().unwrap() = Some(Box::new(rewrite));
    }

    /// Joins passed on so far.
    pub fn joins(&self) -> usize {
        self.joined().len()
    }

    /// The joins passed on so far.
    pub fn joined(&self) -> Vec<Call> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|c| matches!(c.request, SchedulerRequest::Join { .. })).cloned().collect()
    }

    /// Failure reports passed on so far.
    pub fn failures(&self) -> Vec<Reported> {
        failures(&self.log.lock().unwrap())
    }
}

/// The failure reports in `log`.
pub fn failures(log: &Log) -> Vec<Reported> {
    log.iter()
        .filter_map(|c| match &c.request {
            SchedulerRequest::PieceFailed { parent, kind, .. } => {
                Some(Reported { parent: parent.clone(), kind: *kind, at: c.at, answer: c.answer.clone() })
            }
            _ => None,
        })
        .collect()
}

impl SchedulerLink for WatchedLink {
    fn call<'a>(
        &'a self,
        task: Option<&'a Digest>,
        req: SchedulerRequest,
    ) -> BoxFuture<'a, Result<SchedulerResponse, LinkError>> {
        Box::pin(async move {
            let mut answer = self.inner.call(task, req.clone()).await?;
            if let (SchedulerRequest::Join { .. }, SchedulerResponse::Parents { parents, .. }) = (&req, &mut answer)
                && let Some(rewrite) = self.rewrite.lock().unwrap().as_ref()
            {
                let log = self.log.lock().unwrap();
                *parents = rewrite(&log, std::mem::take(parents));
            }
            self.log.lock().unwrap().push(Call { at: Instant::now(), request: req, answer: answer.clone() });
            Ok(answer)
        })
    }
}
