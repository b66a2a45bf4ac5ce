//! In-process harness: a real docker-registry behind a counting,
//! fault-injecting front (the "origin"), and a shoal daemon serving on
//! free loopback ports with a temp store. Everything stops on drop.
#![allow(dead_code, unreachable_pub)]

pub mod fake_peer;
pub mod fake_registry;
pub mod private;
pub mod watched_link;

use std::time::Duration;

use prometheus_client::registry::Registry as PromRegistry;
use shoal_origin::{RegistryConfig, Upstreams, UpstreamsConfig};
use shoal_peer::DaemonConfig;
use shoal_storage::{Store, StoreConfig};
use shoal_testkit::{CountingFront, Registry};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A daemon in this process.
pub struct Daemon {
    pub mirror: String,
    pub admin: String,
    /// The QUIC endpoint, when the daemon is a swarm peer.
    pub quic: Option<std::net::SocketAddr>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    job: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Daemon {
    /// Start one whose default registry is `origin` (a front's host/URL).
    pub async fn start(origin: &CountingFront, tweak: impl FnOnce(&mut DaemonConfig, &mut RegistryConfig)) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Daemon::start_in(dir, origin, tweak).await
    }

    /// Start one over an existing store dir (restart).
    pub async fn start_in(
        dir: tempfile::TempDir,
        origin: &CountingFront,
        tweak: impl FnOnce(&mut DaemonConfig, &mut RegistryConfig),
    ) -> Daemon {
        Daemon::start_full(dir, origin, tweak, None).await
    }

    /// Start one that is a peer of a swarm.
    pub async fn start_peer(origin: &CountingFront, peer: PeerSpec) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Daemon::start_full(dir, origin, |_, _| {}, Some(peer)).await
    }

    /// Start one over the store `store` describes (its own root, room
    /// settings) rather than one in a temp dir.
    pub async fn start_with_store(store: StoreConfig, origin: &CountingFront) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Daemon::start_store(dir, store, origin, |_, _| {}, None).await
    }

    async fn start_full(
        dir: tempfile::TempDir,
        origin: &CountingFront,
        tweak: impl FnOnce(&mut DaemonConfig, &mut RegistryConfig),
        peer: Option<PeerSpec>,
    ) -> Daemon {
        let store = StoreConfig::new(dir.path().join("store"));
        Daemon::start_store(dir, store, origin, tweak, peer).await
    }

    async fn start_store(
        dir: tempfile::TempDir,
        store: StoreConfig,
        origin: &CountingFront,
        tweak: impl FnOnce(&mut DaemonConfig, &mut RegistryConfig),
        peer: Option<PeerSpec>,
    ) -> Daemon {
        let mut config = DaemonConfig::default();
        config.download.backoff = Duration::from_millis(20);
        config.mirror.origin_wait = Duration::from_secs(20);
        config.mirror.body_stall = Duration::from_secs(20);
        config.shutdown_grace = Duration::from_secs(2);
        let mut reg = RegistryConfig { url: Some(origin.url().parse().unwrap()), ..RegistryConfig::default() };
        reg.read_timeout = shoal_core::HumanDuration(Duration::from_secs(2));
        reg.timeout = shoal_core::HumanDuration(Duration::from_secs(5));
        tweak(&mut config, &mut reg);
        let upstreams = UpstreamsConfig {
            default_registry: origin.host(),
            registries: [(origin.host(), reg)].into_iter().collect(),
            ..UpstreamsConfig::default()
        };
        let store = open_store(store).await;
        let upstreams = Upstreams::new(upstreams).unwrap();
        let mirror_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mirror = format!("http://{}", mirror_l.local_addr().unwrap());
        let admin = format!("http://{}", admin_l.local_addr().unwrap());
        let swarm = peer.map(|p| p.setup());
        let quic = swarm.as_ref().map(|s| s.config.advertise);
        let (tx, rx) = oneshot::channel();
        let job = tokio::spawn(shoal_peer::run(
            config,
            store,
            upstreams,
            PromRegistry::default(),
            mirror_l,
            admin_l,
            swarm,
            async move {
                let _ = rx.await;
            },
        ));
        Daemon { mirror, admin, quic, dir, stop: Some(tx), job: Some(job) }
    }

    /// Shut down gracefully and hand back the store dir.
    ///
    /// `run` returns before every task it spawned has dropped its store
    /// handle (a download finishing its last record), so a daemon started
    /// on the same dir at once may find the store still locked for a
    /// moment: [`open_store`] waits that out.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown().await;
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    async fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(job) = self.job.take() {
            job.await.unwrap().unwrap();
        }
    }

    pub fn blob_url(&self, repo: &str, digest: &str) -> String {
        format!("{}/v2/{repo}/blobs/{digest}", self.mirror)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin)).await.unwrap().text().await.unwrap()
    }

    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(format!("{}/api/v1/status", self.admin)).await.unwrap().json().await.unwrap()
    }

    /// `/readyz`: its status and body.
    pub async fn readyz(&self) -> (u16, String) {
        let resp = reqwest::get(format!("{}/readyz", self.admin)).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(job) = self.job.take() {
            job.abort();
        }
    }
}

/// Open the store under `dir`, waiting up to 5 s for a daemon stopped on
/// it just before to release it.
async fn open_store(config: StoreConfig) -> Store {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Store::open(config.clone()) {
            Err(shoal_storage::StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other.unwrap(),
        }
    }
}

/// A registry with a counting front before it.
pub struct Origin {
    pub registry: Registry,
    pub front: CountingFront,
}

impl Origin {
    pub async fn start() -> Origin {
        let registry = Registry::start().await.unwrap();
        let front = CountingFront::start(&registry.url()).await.unwrap();
        Origin { registry, front }
    }

    /// A registry that wants HTTP Basic credentials of one of `users`,
    /// with a counting front.
    pub async fn private(users: &[(&str, &str)]) -> Origin {
        let registry = Registry::builder().htpasswd(users).start().await.unwrap();
        let front = CountingFront::start(&registry.url()).await.unwrap();
        Origin { registry, front }
    }

    /// Push `bytes` as a blob of `repo`; the digest.
    pub async fn blob(&self, repo: &str, bytes: Vec<u8>) -> String {
        self.blob_as(repo, bytes, None).await
    }

    /// Push `bytes` as a blob of `repo` with `creds`; the digest.
    pub async fn blob_as(&self, repo: &str, bytes: Vec<u8>, creds: Option<(&str, &str)>) -> String {
        shoal_testkit::push_blob(&self.registry.url(), repo, bytes, creds).await.unwrap()
    }
}

/// The value of one sample line in Prometheus text, 0 when absent.
pub fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// GET a URL fully; Err if the body was cut.
pub async fn get_all(url: &str, range: Option<&str>) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), String> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
    Ok((status, headers, body.to_vec()))
}

/// A cluster CA for in-process swarms.
pub struct Cluster {
    pub ca: shoal_transport::CaBundle,
    pub scheduler: shoal_peer::swarm::EmbeddedScheduler,
}

impl Cluster {
    pub fn new() -> Cluster {
        if let Ok(filter) = std::env::var("SHOAL_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let config = shoal_scheduler::SchedulerConfig {
            grant_stall: Duration::from_secs(3),
            host_ttl: Duration::from_secs(5),
            ..Default::default()
        };
        let scheduler = shoal_peer::swarm::EmbeddedScheduler::new(config);
        let ticker = scheduler.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                ticker.tick();
            }
        });
        Cluster { ca: shoal_transport::new_ca("shoal test cluster").unwrap(), scheduler }
    }

    /// The identity of `host`, issued by this cluster's CA.
    pub fn identity(&self, host: &str) -> shoal_transport::Identity {
        let cert = shoal_transport::issue(&self.ca, host, &["127.0.0.1".to_string()]).unwrap();
        shoal_transport::Identity::from_pem(&self.ca.cert_pem, &cert.cert_pem, &cert.key_pem).unwrap()
    }

    /// A peer spec for `host` using the shared embedded scheduler.
    pub fn peer(&self, host: &str) -> PeerSpec {
        PeerSpec {
            host: host.to_string(),
            identity: self.identity(host),
            link: std::sync::Arc::new(self.scheduler.clone()),
        }
    }
}

/// How a test daemon joins the swarm.
pub struct PeerSpec {
    pub host: String,
    pub identity: shoal_transport::Identity,
    pub link: std::sync::Arc<dyn shoal_peer::swarm::SchedulerLink>,
}

impl PeerSpec {
    fn setup(self) -> shoal_peer::SwarmSetup {
        let endpoint = shoal_transport::Endpoint::bind(
            "127.0.0.1:0".parse().unwrap(),
            &self.identity,
            &shoal_transport::TransportTuning::default(),
        )
        .unwrap();
        let advertise = endpoint.local_addr().unwrap();
        let config = shoal_peer::swarm::SwarmConfig {
            host: self.host.parse().unwrap(),
            advertise,
            labels: shoal_proto::HostLabels { node: self.host.clone(), zone: None, rack: None },
            upload_capacity: 1 << 30,
            tuning: shoal_peer::swarm::SwarmTuning::default(),
        };
        shoal_peer::SwarmSetup {
            config,
            endpoint,
            link: self.link,
            upload_rate: 0,
            download_rate: 0,
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// `promtool check metrics` accepts `metrics` (a scrape's text).
pub fn promtool_accepts(metrics: &str) {
    let promtool = shoal_testkit::require_tool("promtool").unwrap();
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
