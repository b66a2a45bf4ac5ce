//! The scheduler on the network, around the pure core: the async layer.
//!
//! - [`server`]: [`SchedulerService`], serving peers over QUIC and ticking
//!   the core.
//! - `admission`: what a connection may ask, from its certificate (host,
//!   role, IP SANs) and the address it connects from.
//! - [`client`]: [`SchedulerClient`], a peer's way to the replicas
//!   (rendezvous order per task, failover, DNS names).
//! - [`metrics`]: [`SchedulerMetrics`], registered in the caller's registry.

mod admission;
pub mod client;
pub mod metrics;
pub mod server;

pub use client::{AttemptError, ClientError, ReplicaFailure, SchedulerClient};
pub use metrics::SchedulerMetrics;
pub use server::{SchedulerService, ServiceConfig};
