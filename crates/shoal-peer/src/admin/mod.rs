//! The admin endpoint: `/metrics` for Prometheus, `/healthz`, `/readyz`,
//! `/api/v1/status` (what `shoal status` prints) and `/api/v1/prewarm`
//! (cluster prewarm jobs, in [`prewarm`]).
//!
//! It listens on its own address so the mirror can stay on loopback while
//! Prometheus scrapes from the network.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use prometheus_client::registry::Registry;
use shoal_storage::{Store, StoreUsage};

use crate::exposition;
use crate::metrics::Metrics;
use crate::swarm::Swarm;

pub mod prewarm;
use crate::task::{TaskManager, TaskSnapshot};

/// What the status endpoint reports.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StatusReport {
    /// Daemon version.
    pub version: String,
    /// Store usage.
    pub store: StoreReport,
    /// Downloads in progress.
    pub downloads: Vec<DownloadReport>,
}

/// Store usage in the status report.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StoreReport {
    /// Bytes held.
    pub used_bytes: u64,
    /// Quota.
    pub capacity_bytes: u64,
    /// Complete blobs.
    pub complete_blobs: u64,
    /// Partial blobs (in progress or resumable).
    pub partial_blobs: u64,
    /// Manifests.
    pub manifests: u64,
}

/// One download in the status report.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DownloadReport {
    /// The blob digest.
    pub digest: String,
    /// Registry and repository.
    pub source: String,
    /// Blob size, once known.
    pub size: Option<u64>,
    /// Bytes written so far.
    pub bytes_done: u64,
    /// Seconds since start.
    pub age_secs: u64,
}

impl From<TaskSnapshot> for DownloadReport {
    fn from(t: TaskSnapshot) -> Self {
        DownloadReport {
            digest: t.digest.to_string(),
            source: format!("{}/{}", t.registry, t.repo),
            size: t.size,
            bytes_done: t.bytes_done,
            age_secs: t.age_secs,
        }
    }
}

/// What the admin endpoints read.
#[derive(Clone)]
pub struct Admin {
    /// The metrics registry `/metrics` encodes.
    pub registry: Arc<Registry>,
    /// The store (usage for `/metrics` and the status report).
    pub store: Store,
    /// Downloads in progress.
    pub tasks: Arc<TaskManager>,
    /// The daemon's metrics (store gauges are refreshed on scrape).
    pub metrics: Metrics,
    /// Cleared while starting and draining (`/readyz`).
    pub ready: Arc<AtomicBool>,
    /// The swarm membership, if any (prewarm jobs).
    pub swarm: Option<Arc<Swarm>>,
}

/// The admin router.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/prewarm", post(prewarm::submit))
        .route("/api/v1/prewarm/{job}", get(prewarm::status))
        .with_state(admin)
}

/// Refresh the store gauges from a usage reading.
pub fn record_usage(metrics: &Metrics, u: &StoreUsage) {
    metrics.store_bytes.set(i64::try_from(u.used_bytes).unwrap_or(i64::MAX));
    metrics.store_capacity.set(i64::try_from(u.capacity).unwrap_or(i64::MAX));
}

async fn usage(a: &Admin) -> Result<StoreUsage, String> {
    let store = a.store.clone();
    match tokio::task::spawn_blocking(move || store.usage()).await {
        Ok(Ok(u)) => {
            record_usage(&a.metrics, &u);
            Ok(u)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn metrics_text(State(a): State<Admin>, headers: http::HeaderMap) -> Response {
    let _ = usage(&a).await;
    exposition::scrape(&a.registry, &headers)
}

async fn readyz(State(a): State<Admin>) -> Response {
    if a.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready (starting or draining)\n").into_response()
    }
}

async fn status(State(a): State<Admin>) -> Response {
    let u = match usage(&a).await {
        Ok(u) => u,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("store usage: {e}\n")).into_response(),
    };
    let report = StatusReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        store: StoreReport {
            used_bytes: u.used_bytes,
            capacity_bytes: u.capacity,
            complete_blobs: u.complete_blobs as u64,
            partial_blobs: u.partial_blobs as u64,
            manifests: u.manifests as u64,
        },
        downloads: a.tasks.snapshot().into_iter().map(DownloadReport::from).collect(),
    };
    axum::Json(report).into_response()
}
