//! [`Swarm`]: this node's membership in the swarm: identity, endpoint,
//! scheduler link, limits; registration and heartbeats.

use std::sync::Arc;
use std::time::Duration;

use shoal_core::{Digest, TaskId};
use shoal_proto::{
    FinalMap, HaveState, HostLoad, OriginGrant, ParentInfo, PieceMap, SchedErrorCode, SchedulerRequest,
    SchedulerResponse,
};
use shoal_storage::Store;
use shoal_transport::{Endpoint, RateLimiter, UploadSlots};
use tokio_util::sync::CancellationToken;

use super::config::SwarmConfig;
use super::link::{LinkError, SchedulerLink};

/// Most complete blobs announced after a (re-)registration.
pub const ANNOUNCE_LIMIT: usize = 512;

/// The node's swarm membership.
pub struct Swarm {
    /// Settings.
    pub config: SwarmConfig,
    /// Our QUIC endpoint.
    pub endpoint: Endpoint,
    /// The scheduler.
    pub link: Arc<dyn SchedulerLink>,
    /// Download byte rate from peers.
    pub download_limit: Arc<RateLimiter>,
    /// Upload byte rate to peers.
    pub upload_limit: Arc<RateLimiter>,
    /// Concurrent upload cap.
    pub slots: UploadSlots,
    /// What this node still expects from the origin and from peers.
    pub downlink: Arc<super::downlink::Downlink>,
    /// The schedulers know this host: registered, and the last heartbeat
    /// was answered (`/readyz` says so when not).
    pub registered: std::sync::atomic::AtomicBool,
}

/// The scheduler's answer to a join.
#[derive(Debug, Clone)]
pub struct Joined {
    /// Parents, best first.
    pub parents: Vec<ParentInfo>,
    /// Origin grant.
    pub origin: OriginGrant,
    /// Peers whose piece hashes may be trusted (they read the blob from the
    /// origin).
    pub authorities: Vec<ParentInfo>,
    /// The task's final piece map, when asked for and held.
    pub map: Option<FinalMap>,
}

impl Swarm {
    async fn call(&self, task: Option<&Digest>, req: SchedulerRequest) -> Result<SchedulerResponse, LinkError> {
        let d = self.config.tuning.scheduler_deadline;
        match tokio::time::timeout(d, self.link.call(task, req)).await {
            Ok(r) => r,
            Err(_) => Err(LinkError(format!("no answer within {d:?}"))),
        }
    }

    fn register_request(&self) -> SchedulerRequest {
        SchedulerRequest::Register {
            host: self.config.host.clone(),
            addr: self.config.advertise,
            labels: self.config.labels.clone(),
            upload_capacity: self.config.upload_capacity,
            max_uploads: self.config.tuning.max_uploads,
        }
    }

    /// `call`, registering first and asking again if the scheduler answers
    /// `UnknownHost` (it restarted, or this node has not registered yet).
    pub(crate) async fn call_registered(
        &self,
        route: Option<&Digest>,
        req: SchedulerRequest,
    ) -> Result<SchedulerResponse, LinkError> {
        let answer = self.call(route, req.clone()).await?;
        match answer {
            SchedulerResponse::Error(e) if e.code == SchedErrorCode::UnknownHost => {
                self.register().await?;
                self.call(route, req).await
            }
            other => Ok(other),
        }
    }

    /// Register (again).
    pub async fn register(&self) -> Result<(), LinkError> {
        match self.call(None, self.register_request()).await? {
            SchedulerResponse::Registered { .. } | SchedulerResponse::Ack => Ok(()),
            other => Err(LinkError(format!("unexpected answer to register: {other:?}"))),
        }
    }

    /// Ask for parents (and maybe the origin grant) for `task`, and for its
    /// final piece map with `want_map`. Registers first when the scheduler
    /// does not know us (it restarted).
    pub async fn join(&self, task: &TaskId, have: HaveState, want_map: bool) -> Result<Joined, LinkError> {
        let req = SchedulerRequest::Join { host: self.config.host.clone(), task: task.clone(), have, want_map };
        match self.call_registered(Some(task.digest()), req).await? {
            SchedulerResponse::Parents { parents, origin, authorities, map } => {
                Ok(Joined { parents, origin, authorities, map })
            }
            SchedulerResponse::Error(e) if e.code == SchedErrorCode::UnknownHost => {
                Err(LinkError("the scheduler keeps forgetting this host".into()))
            }
            other => Err(LinkError(format!("unexpected answer to join: {other:?}"))),
        }
    }

    /// Report progress on `task` (errors are logged: progress is advisory),
    /// with the final piece map when this node read the blob from the
    /// origin and completed it.
    pub async fn progress(&self, task: &TaskId, have: HaveState, map: Option<PieceMap>) {
        let route = Some(task.digest());
        let req = SchedulerRequest::Progress { host: self.config.host.clone(), task: task.clone(), have, map };
        match self.call(route, req).await {
            Ok(SchedulerResponse::Error(e)) if e.code == SchedErrorCode::UnknownHost => {
                let _ = self.call(route, self.register_request()).await;
                let host = self.config.host.clone();
                let req = SchedulerRequest::Join { host, task: task.clone(), have, want_map: false };
                let _ = self.call(route, req).await;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%task, error = %e, "progress report failed"),
        }
    }

    /// Stop working on `task` (failed or cancelled).
    pub async fn leave(&self, task: &TaskId) {
        let req = SchedulerRequest::Leave { host: self.config.host.clone(), task: task.clone() };
        let _ = self.call(Some(task.digest()), req).await;
    }

    /// Report a parent's failure.
    pub async fn piece_failed(&self, task: &TaskId, f: &super::fetch::Failure) {
        let req = SchedulerRequest::PieceFailed {
            host: self.config.host.clone(),
            task: task.clone(),
            parent: f.parent.clone(),
            piece: f.piece,
            kind: f.kind,
        };
        if let Err(e) = self.call(Some(task.digest()), req).await {
            tracing::debug!(%task, error = %e, "failure report failed");
        }
    }

    /// Tell the scheduler about the complete blobs we hold (the most
    /// recently used first, at most [`ANNOUNCE_LIMIT`]), once per registry
    /// the bytes are known to come from, so a scheduler that restarted, or a
    /// node that restarted, offers them as parents again. (A joiner still
    /// needs trusted piece hashes to use them: the scheduler's final map,
    /// or an authority.)
    pub async fn announce(&self, store: &Store) {
        let s = store.clone();
        let blobs = match tokio::task::spawn_blocking(move || s.list_blobs()).await {
            Ok(Ok(b)) => b,
            _ => return,
        };
        let mut complete: Vec<_> = blobs.into_iter().filter(|b| b.complete).collect();
        complete.sort_by_key(|b| std::cmp::Reverse(b.last_access));
        let n = complete.len().min(ANNOUNCE_LIMIT);
        for b in complete.into_iter().take(ANNOUNCE_LIMIT) {
            let pieces = b.layout.count();
            let have = HaveState { pieces_done: pieces, pieces_total: Some(pieces), complete: true };
            for registry in &b.sources {
                if let Ok(task) = TaskId::new(registry, b.digest.clone()) {
                    self.progress(&task, have, None).await;
                }
            }
        }
        if n > 0 {
            tracing::info!(blobs = n, "announced complete blobs to the scheduler");
        }
    }

    /// Register, then heartbeat every `interval` until `stop`; re-register
    /// (and re-announce what we hold) whenever the scheduler has forgotten us.
    pub async fn heartbeats(self: Arc<Self>, store: Store, interval: Duration, stop: CancellationToken) {
        let mut registered = false;
        loop {
            if !registered {
                match self.register().await {
                    Ok(()) => {
                        registered = true;
                        self.registered.store(true, std::sync::atomic::Ordering::Relaxed);
                        self.announce(&store).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "could not register with the scheduler; retrying"),
                }
            } else {
                let load = HostLoad {
                    uploads: self.slots.in_use() as u32,
                    upload_bps: 0,
                    busy: self.slots.in_use() >= self.config.tuning.max_uploads as usize,
                };
                let req = SchedulerRequest::Heartbeat { host: self.config.host.clone(), load };
                match self.call(None, req).await {
                    Ok(SchedulerResponse::Error(e)) if e.code == SchedErrorCode::UnknownHost => {
                        registered = false;
                        self.registered.store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => self.registered.store(true, std::sync::atomic::Ordering::Relaxed),
                    Err(e) => {
                        self.registered.store(false, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(error = %e, "heartbeat failed");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(if registered { interval } else { Duration::from_millis(500) }) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
