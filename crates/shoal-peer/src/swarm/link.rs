//! How the node talks to its scheduler: in-process (embedded, one machine)
//! or over QUIC to replicas. The download path only sees [`SchedulerLink`].

use futures_util::future::BoxFuture;
use shoal_core::Digest;
use shoal_proto::{SchedulerRequest, SchedulerResponse};

/// Why a scheduler call failed (the caller falls back to the origin).
#[derive(Debug, Clone, thiserror::Error)]
#[error("scheduler unreachable: {0}")]
pub struct LinkError(pub String);

/// A way to reach a scheduler.
pub trait SchedulerLink: Send + Sync {
    /// Send one request about `task` (replicas are chosen per task; host-level
    /// requests pass `None`) and wait for the answer.
    fn call<'a>(
        &'a self,
        task: Option<&'a Digest>,
        req: SchedulerRequest,
    ) -> BoxFuture<'a, Result<SchedulerResponse, LinkError>>;

    /// Where pulls get their blobs while no scheduler answers, for
    /// `/readyz`.
    fn meanwhile(&self) -> &'static str {
        "pulls go to the origin until they answer"
    }
}
