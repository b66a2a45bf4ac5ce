//! Schedulers over the network: replicas reached over QUIC, one chosen per
//! task by rendezvous hashing, with fail-over to the next (see
//! `shoal_scheduler::service::client`). A replica must hold a scheduler
//! certificate; one that does not gets no request, and the call's error
//! names the fix.

use std::time::Duration;

use futures_util::future::BoxFuture;
use shoal_core::{Digest, HostId};
use shoal_proto::{SchedulerRequest, SchedulerResponse};
use shoal_scheduler::service::client::SchedulerClient;
use shoal_transport::Endpoint;

use super::link::{LinkError, SchedulerLink};

/// Scheduler replicas reached over QUIC.
pub struct RemoteScheduler {
    client: SchedulerClient,
}

impl RemoteScheduler {
    /// Resolve `replicas` (`host:port` each; a DNS name such as a headless
    /// Service may stand for several, and is resolved again whenever every
    /// known replica fails). Only a malformed entry is an error: names that
    /// do not resolve yet are resolved at the next call. Each replica gets
    /// [`ATTEMPT`] before the next is tried, so one hung replica cannot eat
    /// a caller's whole deadline.
    pub async fn connect(endpoint: Endpoint, me: HostId, replicas: &[String]) -> Result<RemoteScheduler, LinkError> {
        let client = SchedulerClient::resolve_later(endpoint, me, replicas.to_vec(), ATTEMPT)
            .map_err(|e| LinkError(format!("schedulers {replicas:?}: {e}")))?;
        // A name that does not resolve yet (a scheduler Service with no
        // ready pods) is not fatal: every call resolves it again, the
        // heartbeat loop registers once it answers, and pulls meanwhile go
        // to the origin.
        if let Err(e) = client.refresh().await {
            tracing::warn!(
                error = %e,
                "the schedulers cannot be reached yet; the mirror serves from the origin and joins the swarm once they answer"
            );
        }
        Ok(RemoteScheduler { client })
    }
}

/// Time given to one replica before failing over to the next.
pub const ATTEMPT: Duration = Duration::from_millis(1500);

impl SchedulerLink for RemoteScheduler {
    fn call<'a>(
        &'a self,
        task: Option<&'a Digest>,
        req: SchedulerRequest,
    ) -> BoxFuture<'a, Result<SchedulerResponse, LinkError>> {
        Box::pin(async move { self.client.call(task, req).await.map_err(|e| LinkError(e.to_string())) })
    }
}
