//! Schedulers over the network: replicas reached over QUIC, one chosen per
//! task by rendezvous hashing, with fail-over to the next (see
//! `shoal_scheduler::service::client`).

use std::net::SocketAddr;
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
    /// Resolve `replicas` (`host:port` each; a DNS name may stand for
    /// several) and build the client.
    pub async fn connect(endpoint: Endpoint, me: HostId, replicas: &[String]) -> Result<RemoteScheduler, LinkError> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for r in replicas {
            let found = tokio::net::lookup_host(r.as_str())
                .await
                .map_err(|e| LinkError(format!("resolving scheduler {r:?}: {e} (write host:port)")))?;
            addrs.extend(found);
        }
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(LinkError(format!("no scheduler address in {replicas:?}")));
        }
        Ok(RemoteScheduler { client: SchedulerClient::new(endpoint, me, addrs, Duration::from_secs(5)) })
    }
}

impl SchedulerLink for RemoteScheduler {
    fn call<'a>(
        &'a self,
        task: Option<&'a Digest>,
        req: SchedulerRequest,
    ) -> BoxFuture<'a, Result<SchedulerResponse, LinkError>> {
        Box::pin(async move { self.client.call(task, req).await.map_err(|e| LinkError(e.to_string())) })
    }
}
