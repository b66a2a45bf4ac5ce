//! `shoal scheduler`: one scheduler replica. It serves peers over QUIC
//! (mutual TLS from the cluster CA) and Prometheus, health and readiness
//! over HTTP, until SIGTERM or Ctrl-C; then it stops taking requests,
//! finishes the ones in flight, closes its connections (peers fail over to
//! another replica at once) and exits.
//!
//! Several replicas share the tasks by rendezvous hashing on the peers'
//! side; they share no state. Run them as a Deployment behind a headless
//! Service (`clusterIP: None`): its DNS name resolves to every ready
//! replica, which is what the daemons' scheduler setting wants.
//!
//! ```text
//! shoal scheduler --certs-dir /etc/shoal/certs      # ca.crt, tls.crt, tls.key
//! ```
//! With `--harbor-listen` it also serves Harbor's preheat API (the
//! Dragonfly provider's endpoints, `shoal_scheduler::harbor`; flags in
//! `harbor_args`).
//!
//! The certificate must be a scheduler certificate (`shoal certs
//! scheduler`): peers send scheduler requests to no other, so a node
//! certificate here is refused at start rather than at every peer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use prometheus_client::registry::Registry;
use shoal_core::HostId;
use shoal_peer::exposition;
use shoal_scheduler::{SchedulerConfig, SchedulerMetrics, SchedulerService};
use shoal_transport::{Endpoint, Identity, IdentityFiles, Role, SCHEDULER_ROLE_NAME, TransportTuning};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::LogFormat;
use crate::harbor_args::HarborArgs;

/// How long requests in flight may take to finish after a shutdown signal
/// (each is bounded by the 5 s stream deadline anyway).
const DRAIN: Duration = Duration::from_secs(6);
/// How long closed connections get to say goodbye to peers.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// `shoal scheduler` flags.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchedulerArgs {
    /// QUIC (UDP) address peers reach the scheduler on.
    #[arg(long, env = "SHOAL_SCHEDULER_LISTEN", default_value = "0.0.0.0:65004")]
    pub(crate) listen: SocketAddr,
    /// HTTP address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SHOAL_SCHEDULER_METRICS_LISTEN", default_value = "0.0.0.0:65005")]
    pub(crate) metrics_listen: SocketAddr,
    /// Directory with ca.crt, tls.crt and tls.key (a Kubernetes TLS Secret
    /// plus the CA, as `shoal certs scheduler` writes it).
    #[arg(long, env = "SHOAL_CERTS_DIR", default_value = "/etc/shoal/certs")]
    pub(crate) certs_dir: PathBuf,
    /// Most peers per task fetching from the origin at once.
    #[arg(long, env = "SHOAL_MAX_ORIGIN_GRANTS", default_value_t = 1)]
    pub(crate) max_origin_grants: usize,
    /// Most parents one join answer names.
    #[arg(long, env = "SHOAL_PARENTS_PER_JOIN", default_value_t = 4)]
    pub(crate) parents_per_join: usize,
    /// Log format.
    #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum, default_value = "human")]
    pub(crate) log_format: LogFormat,
    /// Harbor's preheat API.
    #[command(flatten)]
    pub(crate) harbor: HarborArgs,
}

/// Entry point of `shoal scheduler`.
pub(crate) fn main(args: SchedulerArgs) -> anyhow::Result<()> {
    crate::logging::init(args.log_format);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(run(args, shutdown_signal()))
}

/// Serves until `shutdown` resolves, then drains.
async fn run(args: SchedulerArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let harbor = args.harbor.config()?;
    let dir = &args.certs_dir;
    let identity = Identity::load_files(&IdentityFiles::kubernetes(dir)).with_context(|| {
        format!(
            "loading the scheduler's certificate from {} (make one with `shoal certs scheduler --ca CA_DIR --out {}`, \
             or set --certs-dir)",
            dir.display(),
            dir.display()
        )
    })?;
    if identity.role() != Role::Scheduler {
        anyhow::bail!(
            "the certificate in {} is a node certificate, and peers send scheduler requests only to a certificate \
             with the scheduler role (DNS name {SCHEDULER_ROLE_NAME}): issue one with `shoal certs scheduler --ca \
             CA_DIR --out {}`",
            dir.display(),
            dir.display()
        );
    }
    let me = scheduler_host(&identity)?;
    let endpoint = Endpoint::bind(args.listen, &identity, &TransportTuning::default())
        .with_context(|| format!("binding the scheduler's QUIC endpoint on UDP {} (set --listen)", args.listen))?;
    let http = TcpListener::bind(args.metrics_listen).await.with_context(|| {
        format!("binding the metrics endpoint on {} (in use? set --metrics-listen)", args.metrics_listen)
    })?;

    let mut registry = Registry::default();
    let metrics = SchedulerMetrics::register(&mut registry);
    if args.parents_per_join == 0 {
        anyhow::bail!("--parents-per-join must be at least 1 (peers would get no parents)");
    }
    let config = SchedulerConfig {
        max_origin_grants: args.max_origin_grants,
        parents_per_join: args.parents_per_join,
        ..SchedulerConfig::default()
    };
    let service = SchedulerService::new(me.clone(), config, metrics);
    let stop = CancellationToken::new();
    let ready = Arc::new(AtomicBool::new(true));

    let harbor = match harbor {
        Some(config) => {
            let listener = TcpListener::bind(config.listen).await.with_context(|| {
                format!("binding the Harbor preheat API on {} (in use? set --harbor-listen)", config.listen)
            })?;
            if config.clear_text_off_loopback() {
                tracing::warn!(
                    listen = %config.listen,
                    "Harbor preheat API serves plain HTTP off loopback: Harbor's credentials and registry pull \
                     tokens cross the network in clear unless a TLS proxy sits in front (set --harbor-tls-cert \
                     and --harbor-tls-key)"
                );
            }
            let tls = config.tls.is_some();
            tracing::info!(listen = %config.listen, auth = ?config.auth, tls, "Harbor preheat API serving");
            let api = shoal_scheduler::harbor::HarborApi::new(config, service.clone())?;
            Some(tokio::spawn(api.serve(listener, stop.clone())))
        }
        None => None,
    };
    let serving = tokio::spawn(service.clone().serve(endpoint.clone(), stop.clone()));
    let app = router(Arc::new(registry), service, ready.clone());
    let admin =
        tokio::spawn(axum::serve(http, app).with_graceful_shutdown(stop.clone().cancelled_owned()).into_future());
    tracing::info!(
        host = %me,
        listen = %args.listen,
        metrics = %args.metrics_listen,
        max_origin_grants = args.max_origin_grants,
        "shoal scheduler serving"
    );

    shutdown.await;
    ready.store(false, Ordering::SeqCst);
    stop.cancel();
    if tokio::time::timeout(DRAIN, serving).await.is_err() {
        tracing::warn!(after = ?DRAIN, "requests still in flight after the drain period; closing anyway");
    }
    endpoint.close(CLOSE_GRACE).await;
    if let Some(h) = harbor
        && let Ok(Err(e)) = h.await
    {
        tracing::warn!(error = %e, "Harbor preheat API failed");
    }
    match admin.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics endpoint failed"),
        Err(e) => tracing::warn!(error = %e, "metrics endpoint task failed"),
    }
    tracing::info!("shoal scheduler stopped");
    Ok(())
}

/// The scheduler's host id, from its certificate (it says who it is in
/// every hello).
fn scheduler_host(identity: &Identity) -> anyhow::Result<HostId> {
    let name = identity.host().context(
        "the scheduler's certificate names no host (no CN or DNS name): reissue it with `shoal certs scheduler`",
    )?;
    name.parse().with_context(|| format!("the scheduler's certificate names {name:?}, which is not a valid host id"))
}

/// What the HTTP handlers share.
#[derive(Clone)]
struct Admin {
    registry: Arc<Registry>,
    service: SchedulerService,
    ready: Arc<AtomicBool>,
}

fn router(registry: Arc<Registry>, service: SchedulerService, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Admin { registry, service, ready })
}

async fn metrics_text(State(a): State<Admin>, headers: HeaderMap) -> Response {
    a.service.refresh_metrics();
    exposition::scrape(&a.registry, &headers)
}

async fn readyz(State(a): State<Admin>) -> Response {
    if a.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received; draining"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SchedulerArgs,
    }

    #[test]
    fn flags_have_the_documented_defaults() {
        let args = Cli::try_parse_from(["shoal"]).unwrap().args;
        assert_eq!(args.listen, "0.0.0.0:65004".parse().unwrap());
        assert_eq!(args.metrics_listen, "0.0.0.0:65005".parse().unwrap());
        assert_eq!(args.certs_dir, PathBuf::from("/etc/shoal/certs"));
        assert_eq!(args.max_origin_grants, 1);
        assert_eq!(args.parents_per_join, 4);
        let args = Cli::try_parse_from(["shoal", "--max-origin-grants", "3", "--log-format", "json"]).unwrap().args;
        assert_eq!((args.max_origin_grants, args.log_format), (3, LogFormat::Json));
    }

    /// A scheduler on free ports with certificates in `dir`.
    fn args_in(dir: &std::path::Path) -> SchedulerArgs {
        SchedulerArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            certs_dir: dir.to_path_buf(),
            max_origin_grants: 1,
            parents_per_join: 4,
            log_format: LogFormat::Human,
            harbor: HarborArgs::default(),
        }
    }

    #[test]
    fn a_missing_certificate_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let args = args_in(dir.path());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = runtime.block_on(run(args, std::future::pending())).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("ca.crt") && msg.contains("shoal certs"), "{msg}");
    }

    #[test]
    fn a_node_certificate_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca = shoal_transport::new_ca("cluster").unwrap();
        let node = shoal_transport::issue(&ca, "shoal-scheduler", &[]).unwrap();
        shoal_transport::write_node(dir.path(), "x", &node, &ca.cert_pem, shoal_transport::NodeLayout::KubernetesTls)
            .unwrap();
        let args = args_in(dir.path());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let run = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), run(args, std::future::pending())).await });
        let msg = format!("{:#}", run.expect("refused at start, not served").unwrap_err());
        assert!(msg.contains("node certificate") && msg.contains("shoal certs scheduler"), "{msg}");
    }

    /// A free loopback port (bound and released: good enough for a test).
    fn free_port(udp: bool) -> SocketAddr {
        if udp {
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
        } else {
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
        }
    }

    #[test]
    fn serves_peers_and_metrics_then_drains() {
        let dir = tempfile::tempdir().unwrap();
        let ca = shoal_transport::new_ca("cluster").unwrap();
        let sched = shoal_transport::issue_scheduler(&ca, "shoal-scheduler", &[]).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.crt"), &sched.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &sched.key_pem).unwrap();
        let args = SchedulerArgs {
            listen: free_port(true),
            metrics_listen: free_port(false),
            certs_dir: dir.path().to_path_buf(),
            max_origin_grants: 1,
            parents_per_join: 4,
            log_format: LogFormat::Human,
            harbor: HarborArgs::default(),
        };
        let (quic, http) = (args.listen, args.metrics_listen);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let (fire, shutdown) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(run(args, async move {
                let _ = shutdown.await;
            }));

            let node = shoal_transport::issue(&ca, "node-a", &[]).unwrap();
            let identity = Identity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).unwrap();
            let endpoint =
                Endpoint::bind("127.0.0.1:0".parse().unwrap(), &identity, &TransportTuning::default()).unwrap();
            let me: HostId = "node-a".parse().unwrap();
            let client =
                shoal_scheduler::SchedulerClient::new(endpoint, me.clone(), vec![quic], Duration::from_secs(2));
            let register = shoal_proto::SchedulerRequest::Register {
                host: me,
                addr: "127.0.0.1:1".parse().unwrap(),
                labels: shoal_proto::HostLabels::default(),
                upload_capacity: 1,
                max_uploads: 1,
            };
            let mut answer = None;
            for _ in 0..50 {
                if let Ok(a) = client.call(None, register.clone()).await {
                    answer = Some(a);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(matches!(answer, Some(shoal_proto::SchedulerResponse::Registered { .. })), "{answer:?}");

            let base = format!("http://{http}");
            let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
            assert!(metrics.contains("shoal_scheduler_hosts 1"), "{metrics}");
            assert!(metrics.contains("shoal_scheduler_requests_total{kind=\"register\",result=\"ok\"} 1"), "{metrics}");
            assert_eq!(reqwest::get(format!("{base}/healthz")).await.unwrap().status(), 200);
            assert_eq!(reqwest::get(format!("{base}/readyz")).await.unwrap().status(), 200);

            fire.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(15), server).await.expect("drains").unwrap().unwrap();
        });
    }
}
