//! The admin endpoint: `/metrics` for Prometheus, `/healthz`, `/readyz`,
//! `/api/v1/status` (what `shoal status` prints) and `/api/v1/prewarm`
//! (cluster prewarm jobs, in [`prewarm`]).
//!
//! It listens on its own addresses so the mirror can stay on loopback while
//! Prometheus scrapes from the network. What the network may ask is
//! decided in [`guard`]: `/api/v1/*` answers loopback connections only, and
//! `/metrics` and `/api/v1/*` answer only requests addressed to an IP,
//! `localhost` or a name in `admin_hosts` (no DNS rebinding).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use prometheus_client::registry::Registry;
use shoal_storage::{Store, StoreUsage};

use crate::exposition;
use crate::metrics::Metrics;
use crate::serve::ServeConfig;
use crate::swarm::Swarm;

pub mod guard;
pub mod prewarm;
use crate::task::{TaskManager, TaskSnapshot};

/// Admin endpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Host names (besides IP literals and `localhost`) that `/metrics` and
    /// `/api/v1/*` answer to, for scrapers that address nodes by name.
    pub hosts: Vec<String>,
    /// Connection limits of the admin listeners.
    pub http: ServeConfig,
}

impl Default for AdminConfig {
    /// No names; 64 connections (Prometheus keeps one, each probe opens
    /// one briefly).
    fn default() -> Self {
        AdminConfig { hosts: Vec::new(), http: ServeConfig { max_connections: 64, ..ServeConfig::default() } }
    }
}

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

/// One download in the status report: which blob, not which repository
/// (a repository name can say more about a workload than its digests).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DownloadReport {
    /// The blob digest.
    pub digest: String,
    /// The registry it comes from.
    pub registry: String,
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
            registry: t.registry,
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
    /// Names besides IP literals and `localhost` that requests may be
    /// addressed to.
    pub hosts: guard::AllowedHosts,
}

/// The admin router. Its requests need `ConnectInfo<SocketAddr>` (the
/// daemon's listeners add it).
pub fn router(admin: Admin) -> Router {
    let api = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/prewarm", post(prewarm::submit))
        .route("/api/v1/prewarm/{job}", get(prewarm::status))
        .route_layer(middleware::from_fn(guard::loopback_only));
    let named = Router::new()
        .route("/metrics", get(metrics_text))
        .merge(api)
        .route_layer(middleware::from_fn_with_state(admin.hosts.clone(), guard::known_host));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(named)
        .with_state(admin)
}

/// Refresh the store gauges from a usage reading.
pub fn record_usage(metrics: &Metrics, u: &StoreUsage) {
    metrics.store_bytes.set(i64::try_from(u.used_bytes).unwrap_or(i64::MAX));
    metrics.store_capacity.set(i64::try_from(u.capacity).unwrap_or(i64::MAX));
}

/// Read the store's usage (and refresh its gauges).
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

/// The store failed: logged in full, answered without the error (it names
/// the store's files).
fn store_failed(error: &str) -> Response {
    tracing::error!(%error, "reading the piece store's usage failed");
    prewarm::fail(StatusCode::INTERNAL_SERVER_ERROR, crate::mirror::errors::STORE_FAILED)
}

async fn metrics_text(State(a): State<Admin>, headers: http::HeaderMap) -> Response {
    let _ = usage(&a).await;
    exposition::scrape(&a.registry, &headers)
}

/// Longest a readiness probe waits for the store's write probe.
const STORE_PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

async fn readyz(State(a): State<Admin>) -> Response {
    if !a.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready (starting or draining)\n").into_response();
    }
    // A store that cannot write fails every cold pull: not ready, saying
    // why and what to do. (Complete blobs are still served meanwhile.)
    if let Err(why) = store_writable(&a.store).await {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response();
    }
    // The mirror serves without the swarm (from the origin): not
    // reaching the schedulers is said, not failed.
    let body = match &a.swarm {
        Some(s) if !s.registered.load(Ordering::Relaxed) => {
            format!("ready; the schedulers are not reachable yet: {}\n", s.link.meanwhile())
        }
        _ => "ready\n".to_owned(),
    };
    (StatusCode::OK, body).into_response()
}

/// Whether the store can take a download now; the reason when not, fit
/// for anyone who can reach `/readyz` (no path: the log has the details).
async fn store_writable(store: &Store) -> Result<(), String> {
    use shoal_storage::StoreError;
    let store = store.clone();
    let probe = tokio::task::spawn_blocking(move || store.check_writable());
    let e = match tokio::time::timeout(STORE_PROBE_WAIT, probe).await {
        Ok(Ok(Ok(()))) => return Ok(()),
        Ok(Ok(Err(e))) => e,
        Ok(Err(join)) => return Err(format!("the piece store's write probe failed ({join})")),
        Err(_) => {
            return Err(format!(
                "the piece store did not finish a small write within {STORE_PROBE_WAIT:?}; check the node's disk"
            ));
        }
    };
    tracing::warn!(error = %e, "the piece store cannot write");
    Err(match e {
        StoreError::FilesystemFull { .. } | StoreError::NoSpace { .. } => e.to_string(),
        e if e.is_no_space() => "the piece store's disk is full: new downloads fail until space is freed on it \
             (or the store's min_free is lowered)"
            .to_owned(),
        _ => "the piece store cannot write (the daemon log has the error): check the node's disk, that it is \
             not read-only and that the store directory is writable by the daemon's user"
            .to_owned(),
    })
}

async fn status(State(a): State<Admin>) -> Response {
    let u = match usage(&a).await {
        Ok(u) => u,
        Err(e) => return store_failed(&e),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_failure_is_answered_without_its_paths() {
        let e = shoal_storage::StoreError::Io {
            action: "read",
            path: "/var/lib/shoal/meta.redb".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let resp = store_failed(&e.to_string());
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], crate::mirror::errors::STORE_FAILED);
        assert!(!String::from_utf8_lossy(&body).contains("/var/lib/shoal"));
    }
}
