//! The shoal node daemon: a pull-through registry mirror over a verified
//! piece store.
//!
//! # Layout
//! - [`mirror`]: the registry endpoint containerd pulls through.
//! - [`access`]: the origin's confirmation, per client, before content is
//!   served (and what may be served while the origin is down).
//! - [`task`]: blob downloads shared by every request for a digest, with
//!   retries, piece hashing and whole-blob verification.
//! - [`admin`]: `/metrics`, health, `/api/v1/status` and `/api/v1/prewarm`.
//! - [`files`]: `/api/v1/get`, any large file through the swarm (`shoal get`).
//! - [`prewarm_jobs`]: running the prewarm jobs the scheduler hands out.
//! - [`exposition`]: OpenMetrics or classic Prometheus text for `/metrics`.
//! - [`gc`]: the periodic store garbage collection loop.
//! - [`metrics`]: the daemon's Prometheus metrics.
//! - [`oci_error`]: OCI error bodies.
//! - [`serve`]: HTTP serving of both listeners: connection limits and the
//!   drain.
//! - [`swarm`]: piece exchange with other peers.
//!
//! [`run`] wires them on listeners the caller binds, until a shutdown future
//! the caller owns resolves; then it drains within a deadline.
#![warn(missing_docs)]

pub mod access;
pub mod admin;
pub mod exposition;
pub mod files;
pub mod gc;
pub mod metrics;
pub mod mirror;
pub mod oci_error;
pub mod prewarm_jobs;
pub mod serve;
mod spare;
pub mod swarm;
pub mod task;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use shoal_origin::Upstreams;
use shoal_storage::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use access::AccessConfig;
pub use admin::AdminConfig;
pub use metrics::Metrics;
pub use mirror::MirrorConfig;
pub use serve::ServeConfig;
pub use task::DownloadConfig;

/// Daemon behaviour beyond the store and the upstreams.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Mirror behaviour.
    pub mirror: MirrorConfig,
    /// Admin endpoint behaviour.
    pub admin: AdminConfig,
    /// Download retries.
    pub download: DownloadConfig,
    /// How the origin's authorization answers are kept and waited for.
    pub access: AccessConfig,
    /// Where to write the token of the daemon's own mirror requests, for
    /// `shoal prewarm` on this node (`None`: nowhere).
    pub node_token_file: Option<std::path::PathBuf>,
    /// How often GC runs.
    pub gc_interval: Duration,
    /// How long in-flight responses may take to finish after a shutdown
    /// signal before they are cut.
    pub shutdown_grace: Duration,
    /// Which files `shoal get` may fetch (`/api/v1/get`).
    pub get: files::GetConfig,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            mirror: MirrorConfig::default(),
            admin: AdminConfig::default(),
            download: DownloadConfig::default(),
            access: AccessConfig::default(),
            node_token_file: None,
            gc_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(20),
            get: files::GetConfig::default(),
        }
    }
}

/// The admin endpoint's listeners: usually loopback (for `shoal status` and
/// `shoal prewarm` on the node) and the node's IP (for Prometheus and the
/// kubelet), rather than every address of the node.
pub struct AdminListeners(pub Vec<TcpListener>);

impl From<TcpListener> for AdminListeners {
    fn from(l: TcpListener) -> Self {
        AdminListeners(vec![l])
    }
}

impl From<Vec<TcpListener>> for AdminListeners {
    fn from(l: Vec<TcpListener>) -> Self {
        AdminListeners(l)
    }
}

/// How the daemon joins a swarm (absent: a standalone mirror).
pub struct SwarmSetup {
    /// Swarm settings.
    pub config: swarm::SwarmConfig,
    /// The QUIC endpoint, already bound with the node's identity.
    pub endpoint: shoal_transport::Endpoint,
    /// The scheduler.
    pub link: Arc<dyn swarm::SchedulerLink>,
    /// Upload byte rate to peers (0 = unlimited).
    pub upload_rate: u64,
    /// Download byte rate from peers (0 = unlimited).
    pub download_rate: u64,
    /// Heartbeat interval.
    pub heartbeat: Duration,
}

/// Serve the mirror on `mirror` and the admin API on `admin` until
/// `shutdown` resolves, then drain: stop accepting, let responses finish
/// for up to `shutdown_grace`, stop downloads (their verified pieces stay
/// for a resume) and return.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: DaemonConfig,
    store: Store,
    upstreams: Upstreams,
    mut registry: Registry,
    mirror: TcpListener,
    admin: impl Into<AdminListeners>,
    swarm_setup: Option<SwarmSetup>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admin = admin.into().0;
    let metrics = Metrics::register(&mut registry);
    let serve_metrics = serve::ServeMetrics::register(&mut registry);
    if let Ok(u) = store.usage() {
        admin::record_usage(&metrics, &u);
    }
    let ready = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    let swarm = swarm_setup.map(|s| {
        let max_uploads = s.config.tuning.max_uploads as usize;
        let limiter = |rate: u64| {
            Arc::new(if rate == 0 {
                shoal_transport::RateLimiter::unlimited()
            } else {
                shoal_transport::RateLimiter::per_second(rate)
            })
        };
        let node = Arc::new(swarm::Swarm {
            endpoint: s.endpoint,
            link: s.link,
            download_limit: limiter(s.download_rate),
            upload_limit: limiter(s.upload_rate),
            slots: shoal_transport::UploadSlots::new(max_uploads),
            downlink: Arc::new(swarm::downlink::Downlink::new(&s.config.tuning)),
            registered: std::sync::atomic::AtomicBool::new(false),
            config: s.config,
        });
        (node, s.heartbeat)
    });
    let tasks = task::TaskManager::new(
        store.clone(),
        metrics.clone(),
        config.download.clone(),
        swarm.as_ref().map(|s| s.0.clone()),
    );
    let mut swarm_jobs = Vec::new();
    if let Some((node, heartbeat)) = &swarm {
        let server = swarm::server::PieceServer {
            host: node.config.host.clone(),
            downloads: tasks.clone(),
            store: store.clone(),
            slots: node.slots.clone(),
            limit: node.upload_limit.clone(),
            deadline: node.config.tuning.piece_deadline,
            metrics: metrics.clone(),
            swarm: node.clone(),
            handouts: Arc::new(std::sync::Mutex::new(swarm::handout::Handouts::new(&node.config.tuning))),
            // As many buffers as uploads may be in flight, at the usual
            // piece size.
            spares: spare::Spares::new(
                node.config.tuning.max_uploads as usize * shoal_core::piece::MIN_PIECE_SIZE as usize,
            ),
        };
        swarm_jobs.push(tokio::spawn(server.run(node.endpoint.clone(), stop.clone())));
        swarm_jobs.push(tokio::spawn(node.clone().heartbeats(store.clone(), *heartbeat, stop.clone())));
        tracing::info!(host = %node.config.host, quic = ?node.endpoint.local_addr().ok(), "joined the swarm");
    }

    let node_token = Arc::new(access::NodeToken::new());
    if let Some(path) = &config.node_token_file
        && let Err(e) = node_token.write_to(path)
    {
        tracing::warn!(error = %e, "could not write the node token; `shoal prewarm` on this node will pull as an anonymous client");
    }
    let mirror_state = mirror::Mirror {
        store: store.clone(),
        upstreams: Arc::new(upstreams),
        tasks: tasks.clone(),
        metrics: metrics.clone(),
        config: config.mirror.clone(),
        access: Arc::new(access::Gate::new(config.access.clone(), store.clone(), metrics.clone())),
        node_token: node_token.clone(),
    };
    let admin_router = admin::router(admin::Admin {
        registry: Arc::new(registry),
        store: store.clone(),
        tasks: tasks.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
        swarm: swarm.as_ref().map(|s| s.0.clone()),
        hosts: admin::guard::AllowedHosts::new(&config.admin.hosts),
    })
    .merge(files::router(
        files::Files::new(tasks.clone(), config.get.clone(), config.mirror.origin_wait, config.mirror.body_stall),
        admin::guard::AllowedHosts::new(&config.admin.hosts),
    ));
    if let Some((node, _)) = &swarm {
        let url = loopback_url(mirror.local_addr()?);
        swarm_jobs.push(tokio::spawn(prewarm_jobs::run(node.clone(), url, node_token.header(), stop.clone())));
    }
    let admin_addrs = admin.iter().map(|l| l.local_addr()).collect::<std::io::Result<Vec<_>>>()?;
    tracing::info!(mirror = %mirror.local_addr()?, admin = ?admin_addrs, "shoal daemon listening");

    let grace = config.shutdown_grace;
    let mirror_srv = tokio::spawn(serve::serve(
        mirror,
        mirror_state.router(),
        config.mirror.http.clone(),
        serve::Listener::mirror,
        serve_metrics.clone(),
        stop.clone(),
        grace,
    ));
    let admin_srvs: Vec<_> = admin
        .into_iter()
        .map(|l| {
            tokio::spawn(serve::serve(
                l,
                admin_router.clone(),
                config.admin.http.clone(),
                serve::Listener::admin,
                serve_metrics.clone(),
                stop.clone(),
                grace,
            ))
        })
        .collect();
    let gc_job = tokio::spawn(gc::run(store.clone(), metrics.clone(), config.gc_interval, stop.clone()));
    ready.store(true, Ordering::SeqCst);

    shutdown.await;
    tracing::info!(grace = ?config.shutdown_grace, "shutting down: draining in-flight responses");
    ready.store(false, Ordering::SeqCst);
    stop.cancel();
    // The listeners stop accepting at once; responses in flight get
    // `shutdown_grace` to finish, then the serving loop cuts them.
    let _ = mirror_srv.await;
    tasks.cancel_all();
    // Give download tasks a moment to drop their writers (pieces recorded).
    for _ in 0..50 {
        if tasks.snapshot().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for srv in admin_srvs {
        let _ = srv.await;
    }
    let _ = gc_job.await;
    for job in swarm_jobs {
        let _ = job.await;
    }
    if let Some((node, _)) = &swarm {
        node.endpoint.close(Duration::from_millis(500)).await;
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// How this process reaches its own mirror: a wildcard listen address is
/// dialled on loopback.
fn loopback_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}
