//! [`FallbackLink`]: the scheduler replicas first, the DHT when they do not
//! answer; this node's DHT announcements kept in step with its tasks.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use shoal_core::{Digest, HostId, TaskId};
use shoal_discovery::{Discovery, DiscoveryError, Provider, ProviderState};
use shoal_proto::{FailureKind, HaveState, OriginGrant, SchedulerRequest, SchedulerResponse};
use tokio::time::Instant;

use super::decide::{self, Rules, TaskView};
use crate::swarm::link::{LinkError, SchedulerLink};

/// How long a `find` may take before the join is answered with what was
/// found so far.
const FIND_TIMEOUT: Duration = Duration::from_millis(1500);
/// After the schedulers failed a call, task requests go straight to the DHT
/// for this long (a heartbeat that reaches them ends it sooner).
const PRIMARY_DOWN_FOR: Duration = Duration::from_secs(5);
/// Longest a task request waits for the schedulers before the DHT answers
/// (the swarm's `scheduler_deadline` bounds the whole call).
const PRIMARY_WAIT: Duration = Duration::from_millis(2500);
/// The heartbeat interval announced when there is no scheduler at all.
const LOCAL_HEARTBEAT_MS: u64 = 5_000;

/// The scheduler replicas (if any) with the discovery DHT behind them.
pub struct FallbackLink {
    primary: Option<Arc<dyn SchedulerLink>>,
    dht: Arc<Discovery>,
    me: HostId,
    addr: SocketAddr,
    rules: Rules,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Tasks this node is downloading (a complete one needs no view).
    tasks: HashMap<TaskId, TaskView>,
    /// What this node last announced per task.
    announced: HashMap<TaskId, ProviderState>,
    /// Complete tasks in the order they were announced so, the oldest
    /// first: withdrawn to make room when the DHT's `max_provided` is
    /// reached.
    complete_order: VecDeque<TaskId>,
    /// Task requests skip the schedulers until then.
    primary_down_until: Option<Instant>,
}

impl FallbackLink {
    /// `primary`: the scheduler replicas, or `None` for a cluster without
    /// a scheduler. `addr`: this node's QUIC piece address, as announced.
    pub fn new(primary: Option<Arc<dyn SchedulerLink>>, dht: Arc<Discovery>, me: HostId, addr: SocketAddr) -> Self {
        FallbackLink { primary, dht, me, addr, rules: Rules::default(), state: Mutex::new(State::default()) }
    }

    /// Replaces the rules of the local join answer.
    pub fn with_rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Announces `state` for `task` unless it already is. At the DHT's
    /// bound on announcements, the oldest complete one makes way.
    async fn announce(&self, task: &TaskId, state: ProviderState) {
        if self.lock().announced.get(task) == Some(&state) {
            return;
        }
        let provider = Provider { host: self.me.clone(), addr: self.addr, state };
        let mut result = self.dht.provide(task, provider.clone()).await;
        if matches!(result, Err(DiscoveryError::TooManyProvided(_))) {
            let oldest = self.lock().complete_order.pop_front();
            if let Some(oldest) = oldest {
                self.forget(&oldest).await;
                result = self.dht.provide(task, provider).await;
            }
        }
        match result {
            Ok(()) => {
                let mut st = self.lock();
                st.announced.insert(task.clone(), state);
                if state == ProviderState::Complete {
                    st.tasks.remove(task);
                    st.complete_order.retain(|t| t != task);
                    st.complete_order.push_back(task.clone());
                }
            }
            Err(e) => tracing::debug!(%task, error = %e, "announcing a blob in the DHT failed"),
        }
    }

    async fn forget(&self, task: &TaskId) {
        let known = {
            let mut state = self.lock();
            state.tasks.remove(task);
            state.complete_order.retain(|t| t != task);
            state.announced.remove(task).is_some()
        };
        if known && let Err(e) = self.dht.unprovide(task).await {
            tracing::debug!(%task, error = %e, "withdrawing a blob from the DHT failed");
        }
    }

    /// What this node is for `task` given `have`: complete, the seed, or
    /// downloading.
    fn state_for(&self, task: &TaskId, have: &HaveState) -> ProviderState {
        if have.complete {
            ProviderState::Complete
        } else if self.lock().tasks.get(task).is_some_and(|v| v.seeding) {
            ProviderState::Origin
        } else {
            ProviderState::Downloading
        }
    }

    /// The schedulers' answer to a task request, unless they are held
    /// down, or fail or stay silent for [`PRIMARY_WAIT`] (then they are
    /// held down for [`PRIMARY_DOWN_FOR`]).
    async fn ask_primary(&self, digest: Option<&Digest>, req: &SchedulerRequest) -> Option<SchedulerResponse> {
        let primary = self.primary.as_ref()?;
        if self.lock().primary_down_until.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        let answer = tokio::time::timeout(PRIMARY_WAIT, primary.call(digest, req.clone()))
            .await
            .unwrap_or_else(|_| Err(LinkError(format!("no answer within {PRIMARY_WAIT:?}"))));
        match answer {
            Ok(resp) => {
                self.lock().primary_down_until = None;
                Some(resp)
            }
            Err(e) => {
                tracing::debug!(error = %e, "no scheduler answered; the DHT answers task requests for now");
                self.lock().primary_down_until = Some(Instant::now() + PRIMARY_DOWN_FOR);
                None
            }
        }
    }

    async fn join(
        &self,
        digest: Option<&Digest>,
        task: TaskId,
        have: HaveState,
        req: SchedulerRequest,
    ) -> Result<SchedulerResponse, LinkError> {
        self.lock().tasks.entry(task.clone()).or_insert_with(|| TaskView::new(Instant::now()));
        if !have.complete {
            let state = self.state_for(&task, &have);
            self.announce(&task, state).await;
        }
        if let Some(resp) = self.ask_primary(digest, &req).await {
            if let SchedulerResponse::Parents { origin, .. } = &resp {
                let seeding = *origin == OriginGrant::Granted;
                if let Some(view) = self.lock().tasks.get_mut(&task) {
                    view.seeding = seeding;
                }
                if seeding {
                    self.announce(&task, ProviderState::Origin).await;
                }
            }
            return Ok(resp);
        }
        let found = self
            .dht
            .find(&task, FIND_TIMEOUT)
            .await
            .map_err(|e| LinkError(format!("no scheduler answered and the DHT failed: {e}")))?;
        let resp = {
            let mut state = self.lock();
            let view = state.tasks.entry(task.clone()).or_insert_with(|| TaskView::new(Instant::now()));
            decide::answer(Instant::now(), &self.me, &task, have, &found, view, &self.rules)
        };
        if matches!(resp, SchedulerResponse::Parents { origin: OriginGrant::Granted, .. }) {
            tracing::info!(%task, "no scheduler: this node fetches the blob from the origin for the swarm");
            self.announce(&task, ProviderState::Origin).await;
        }
        Ok(resp)
    }

    /// Progress, failures and leaving: kept in the DHT, passed to the
    /// schedulers, and acknowledged here when they do not answer.
    async fn report(&self, digest: Option<&Digest>, req: SchedulerRequest) -> Result<SchedulerResponse, LinkError> {
        match &req {
            SchedulerRequest::Progress { task, have, .. } => {
                let state = self.state_for(task, have);
                if have.complete
                    && let Some(view) = self.lock().tasks.get_mut(task)
                {
                    view.seeding = false;
                }
                self.announce(task, state).await;
            }
            SchedulerRequest::PieceFailed {
                task,
                parent,
                kind: FailureKind::Timeout | FailureKind::Unreachable | FailureKind::Missing,
                ..
            } => {
                if let Some(view) = self.lock().tasks.get_mut(task) {
                    view.failed(Instant::now(), parent.clone());
                }
            }
            SchedulerRequest::Leave { task, .. } => self.forget(task).await,
            _ => {}
        }
        Ok(self.ask_primary(digest, &req).await.unwrap_or(SchedulerResponse::Ack))
    }

    /// Host-level requests belong to the schedulers; with none configured
    /// they are answered here.
    async fn host_level(&self, req: SchedulerRequest) -> Result<SchedulerResponse, LinkError> {
        let Some(primary) = &self.primary else {
            return match req {
                SchedulerRequest::Register { .. } => {
                    Ok(SchedulerResponse::Registered { heartbeat_ms: LOCAL_HEARTBEAT_MS })
                }
                SchedulerRequest::Heartbeat { .. } => Ok(SchedulerResponse::Ack),
                SchedulerRequest::PollPrewarm { .. } => Ok(SchedulerResponse::PrewarmAssignments { jobs: Vec::new() }),
                _ => Err(LinkError("prewarm jobs need a scheduler; this cluster runs without one".into())),
            };
        };
        let resp = primary.call(None, req).await?;
        self.lock().primary_down_until = None;
        Ok(resp)
    }
}

impl SchedulerLink for FallbackLink {
    fn meanwhile(&self) -> &'static str {
        "pulls find their blobs' holders through the discovery DHT until they answer"
    }

    fn call<'a>(
        &'a self,
        task: Option<&'a Digest>,
        req: SchedulerRequest,
    ) -> BoxFuture<'a, Result<SchedulerResponse, LinkError>> {
        Box::pin(async move {
            match req {
                SchedulerRequest::Join { task: ref t, have, .. } => self.join(task, t.clone(), have, req).await,
                SchedulerRequest::Progress { .. }
                | SchedulerRequest::PieceFailed { .. }
                | SchedulerRequest::Leave { .. } => self.report(task, req).await,
                _ if task.is_none() => self.host_level(req).await,
                // Prewarm job requests routed by job: the schedulers' only.
                _ => match &self.primary {
                    Some(primary) => primary.call(task, req).await,
                    None => Err(LinkError("prewarm jobs need a scheduler; this cluster runs without one".into())),
                },
            }
        })
    }
}

#[cfg(test)]
#[path = "fallback_tests.rs"]
mod tests;
