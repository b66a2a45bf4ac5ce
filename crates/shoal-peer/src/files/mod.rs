//! `POST /api/v1/get`: any large file through the swarm, for `shoal get`.
//!
//! - [`key`]: what a file download is keyed and trusted by, and which URLs
//!   may be fetched;
//! - [`serve`]: the endpoint: check the URL, ask the origin with the
//!   caller's headers, join or start the download, stream it back;
//! - `body`: the streamed response, following the download.
//!
//! The endpoint sits on the admin listener behind its guards: it answers
//! loopback connections only and requests addressed to an IP or
//! `localhost`, and it takes JSON only (a web page cannot send that to
//! another origin without a CORS preflight, which the daemon never
//! answers), so the daemon is no open proxy for the network or for web
//! pages the node's browser opens.

mod body;
pub mod key;
pub mod serve;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::middleware;
use axum::routing::post;
use shoal_origin::RegistryConfig;

use crate::admin::guard;
use crate::task::TaskManager;

/// `[get]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetConfig {
    /// Hosts whose URLs may be fetched: exact names, or `*.example.com`
    /// for its subdomains. Empty: any host.
    pub allow_hosts: Vec<String>,
    /// How files' origins are reached (timeouts, retries, CA bundle).
    pub origin: RegistryConfig,
}

/// What the endpoint needs.
#[derive(Clone)]
pub struct Files {
    tasks: Arc<TaskManager>,
    config: Arc<GetConfig>,
    origin_wait: Duration,
    stall: Duration,
    failures: serve::Failures,
}

impl Files {
    /// The endpoint's state: downloads go through `tasks` (shared with the
    /// mirror); `origin_wait` bounds the wait for the origin's first
    /// answer and `stall` cuts a response with no new bytes that long
    /// (the mirror's settings of the same names).
    pub fn new(tasks: Arc<TaskManager>, config: GetConfig, origin_wait: Duration, stall: Duration) -> Files {
        Files { tasks, config: Arc::new(config), origin_wait, stall, failures: Arc::new(Mutex::new(HashMap::new())) }
    }
}

/// The `/api/v1/get` route behind the admin guards (loopback peers,
/// `Host` an IP, `localhost` or a name in `allowed`).
pub fn router(files: Files, allowed: guard::AllowedHosts) -> Router {
    Router::new()
        .route("/api/v1/get", post(serve::get))
        .route_layer(middleware::from_fn(guard::loopback_only))
        .route_layer(middleware::from_fn_with_state(allowed, guard::known_host))
        .with_state(files)
}
