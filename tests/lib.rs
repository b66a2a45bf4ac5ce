//! End-to-end tests of shoal: the `shoal` binary as a process, Debian's
//! docker-registry as the origin (behind a counting front that measures
//! what the origin really sent), and Debian's containerd pulling through
//! the mirror via `hosts.toml`.
//!
//! The helpers here assemble those parts; each test file is one scenario.

pub mod k8s;

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_testkit::{
    ChildGuard, Containerd, CountingFront, ImageSpec, PushedImage, Registry, ShoalDaemon, free_port, shoal_bin,
    wait_http_status, write_hosts_toml,
};

/// An origin registry, a front counting its traffic, and a pushed image.
pub struct Origin {
    /// The registry process.
    pub registry: Registry,
    /// What shoal and containerd talk to.
    pub front: CountingFront,
}

impl Origin {
    /// A plain registry with a front.
    pub async fn start() -> Origin {
        let registry = Registry::start().await.expect("start docker-registry");
        Origin::around(registry).await
    }

    /// A front around an already started registry.
    pub async fn around(registry: Registry) -> Origin {
        let front = CountingFront::start(&registry.url()).await.expect("start the counting front");
        Origin { registry, front }
    }

    /// Build an image of `layers` (bytes each) with umoci and push it with
    /// skopeo as `repo:tag`.
    pub async fn push_image(&self, repo_tag: &str, layers: &[u64], creds: Option<(&str, &str)>) -> PushedImage {
        let spec = ImageSpec { layers: layers.to_vec(), seed: 7 };
        shoal_testkit::build_and_push(&spec, &self.registry.host(), repo_tag, creds)
            .await
            .expect("build and push an image")
    }
}

/// A shoal daemon whose upstream for the front's host is the front.
pub async fn shoal_for(origin: &CountingFront, data_dir: Option<&Path>, extra: &str) -> ShoalDaemon {
    let mut b = ShoalDaemon::builder().default_registry(&origin.host()).registry(&origin.host(), &origin.url());
    if let Some(d) = data_dir {
        b = b.data_dir(d);
    }
    if !extra.is_empty() {
        b = b.config_toml(extra);
    }
    b.start().await.expect("start shoal daemon")
}

/// A hosts dir sending pulls of the front's registry to `mirror` first.
pub fn hosts_dir(origin: &CountingFront, mirror: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write_hosts_toml(dir.path(), &origin.host(), &origin.url(), mirror).expect("write hosts.toml");
    dir
}

/// Pull `reference` with a fresh containerd and return it (for content checks).
pub async fn pull_fresh(reference: &str, hosts: &Path, user: Option<&str>) -> Containerd {
    let c = Containerd::start().await.expect("start containerd");
    if let Err(e) = c.pull(reference, hosts, user).await {
        panic!("ctr pull {reference} failed: {e}\ncontainerd log:\n{}", c.log_tail(4000));
    }
    c
}

/// Assert containerd holds every blob of `image` (config and layers).
pub async fn assert_has_image(c: &Containerd, image: &PushedImage) {
    let have = c.content_digests().await.expect("ctr content ls");
    for d in image.blob_digests() {
        assert!(have.contains(&d), "containerd lacks {d}; it has {have:?}");
    }
    assert!(have.contains(&image.manifest_digest), "containerd lacks the manifest {}", image.manifest_digest);
}

/// Where a daemon keeps its data, for restarts.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("temp dir");
    let p = t.path().join("data");
    (t, p)
}

/// The cluster CA and a certificate directory per host.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: shoal_transport::CaBundle,
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Pki {
    /// A fresh CA in a temp dir.
    pub fn new() -> Pki {
        Pki { dir: tempfile::tempdir().unwrap(), ca: shoal_transport::new_ca("e2e cluster").unwrap() }
    }

    /// Issue node `host`'s certificate into its own directory.
    pub fn certs(&self, host: &str) -> PathBuf {
        self.issue(shoal_transport::Role::Node, host)
    }

    /// Issue scheduler `host`'s certificate (the scheduler role) into its
    /// own directory.
    pub fn scheduler_certs(&self, host: &str) -> PathBuf {
        self.issue(shoal_transport::Role::Scheduler, host)
    }

    fn issue(&self, role: shoal_transport::Role, host: &str) -> PathBuf {
        let dir = self.dir.path().join(host);
        let cert = shoal_transport::issue_role(&self.ca, role, host, &[]).unwrap();
        shoal_transport::write_node(&dir, host, &cert, &self.ca.cert_pem, shoal_transport::NodeLayout::KubernetesTls)
            .unwrap();
        if role == shoal_transport::Role::Node {
            // As `shoal certs node` writes it: the discovery DHT's key.
            let key = shoal_discovery::ClusterKey::derive(self.ca.key_pem.as_bytes());
            std::fs::write(dir.join("cluster.key"), key.to_hex()).unwrap();
        }
        dir
    }
}

/// A `shoal scheduler` process on free loopback ports.
pub struct SchedulerProcess {
    /// The process.
    pub child: ChildGuard,
    /// Its QUIC address.
    pub quic: String,
    _logs: tempfile::TempDir,
}

impl SchedulerProcess {
    /// Start one with a scheduler certificate for `name`.
    pub async fn start(pki: &Pki, name: &str) -> SchedulerProcess {
        Self::start_at(pki, name, &format!("127.0.0.1:{}", free_port())).await
    }

    /// [`SchedulerProcess::start`] on QUIC address `quic` (a daemon may
    /// have been told it before the scheduler started).
    pub async fn start_at(pki: &Pki, name: &str, quic: &str) -> SchedulerProcess {
        let quic = quic.to_owned();
        let metrics = format!("127.0.0.1:{}", free_port());
        let logs = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(shoal_bin().unwrap());
        cmd.args(["scheduler", "--listen", &quic, "--metrics-listen", &metrics, "--certs-dir"])
            .arg(pki.scheduler_certs(name))
            .env("RUST_LOG", "info");
        let mut child = ChildGuard::spawn(name, cmd, logs.path()).unwrap();
        wait_http_status(&format!("http://{metrics}/readyz"), Duration::from_secs(20), |s| s == 200, Some(&mut child))
            .await
            .unwrap();
        SchedulerProcess { child, quic, _logs: logs }
    }
}

/// The `[swarm]` section of a daemon `host` that uses `schedulers`, with
/// extra lines (`zone = "a"`).
pub fn swarm_toml(pki: &Pki, host: &str, schedulers: &[&SchedulerProcess], swarm_extra: &str) -> String {
    let addrs: Vec<&str> = schedulers.iter().map(|s| s.quic.as_str()).collect();
    swarm_toml_at(pki, host, &addrs, swarm_extra)
}

/// [`swarm_toml`] with the schedulers given by address.
pub fn swarm_toml_at(pki: &Pki, host: &str, schedulers: &[&str], swarm_extra: &str) -> String {
    let list: Vec<String> = schedulers.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "[swarm]\nenabled = true\nhost = {host:?}\nlisten = \"127.0.0.1:0\"\ncerts_dir = {:?}\nschedulers = [{}]\n{swarm_extra}\n",
        pki.certs(host).display().to_string(),
        list.join(", ")
    )
}

/// A `shoal daemon --swarm` as `host`, pulling from `origin`, with extra
/// lines for its `[swarm]` section (`zone = "a"`).
pub async fn swarm_peer(
    origin: &Origin,
    pki: &Pki,
    host: &str,
    schedulers: &[&SchedulerProcess],
    swarm_extra: &str,
) -> ShoalDaemon {
    ShoalDaemon::builder()
        .default_registry(&origin.front.host())
        .registry(&origin.front.host(), &origin.front.url())
        .config_toml(&swarm_toml(pki, host, schedulers, swarm_extra))
        .start()
        .await
        .unwrap_or_else(|e| panic!("start {host}: {e}"))
}

/// Blob bytes the daemon at `metrics_url` has served, from downloads in
/// flight and from its store together (prefetch may finish a blob before a
/// client asks, so which source served it depends on timing).
pub async fn served_bytes(metrics_url: &str) -> f64 {
    let metrics = reqwest::get(format!("{metrics_url}/metrics")).await.unwrap().text().await.unwrap();
    metrics
        .lines()
        .filter(|l| l.starts_with("shoal_served_bytes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Bytes daemon `p` received from peers (`shoal_peer_received_bytes_total`).
pub async fn received_from_peers(p: &ShoalDaemon) -> f64 {
    let text = reqwest::get(format!("{}/metrics", p.metrics_url())).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("shoal_peer_received_bytes_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Every daemon in `peers` GETs blob `digest` of repository `e2e/blob` at
/// once, each answer a 200; the handle yields the bodies, in order.
pub fn spawn_blob_pulls(peers: &[ShoalDaemon], digest: &str) -> tokio::task::JoinHandle<Vec<Vec<u8>>> {
    let urls: Vec<String> = peers.iter().map(|p| format!("{}/v2/e2e/blob/blobs/{digest}", p.mirror_url())).collect();
    tokio::spawn(async move {
        let jobs: Vec<_> = urls
            .into_iter()
            .map(|url| {
                tokio::spawn(async move {
                    let resp = reqwest::get(&url).await.unwrap();
                    assert_eq!(resp.status(), 200, "{url}");
                    resp.bytes().await.unwrap().to_vec()
                })
            })
            .collect();
        let mut out = Vec::new();
        for j in jobs {
            out.push(j.await.unwrap());
        }
        out
    })
}

/// [`spawn_blob_pulls`], waited for (at most 120 s), every body checked to
/// be `data` with `digest`.
pub async fn pull_blob_everywhere(peers: &[ShoalDaemon], digest: &str, data: &[u8]) {
    let pulls = spawn_blob_pulls(peers, digest);
    let bodies = tokio::time::timeout(Duration::from_secs(120), pulls).await.expect("pulls hung").unwrap();
    check_bodies(&bodies, data, digest);
}

/// Each of `bodies` is `data`, whose digest is `digest`.
pub fn check_bodies(bodies: &[Vec<u8>], data: &[u8], digest: &str) {
    for b in bodies {
        assert_eq!(shoal_testkit::sha256_digest(b), digest);
        assert!(b == data);
    }
}

/// Complete blobs in `node`'s store (waits until it reaches `want`, or
/// 10 s: the last blob's record lands just after its bytes are served).
pub async fn complete_blobs(node: &ShoalDaemon, want: u64) -> u64 {
    let url = format!("{}/api/v1/status", node.metrics_url());
    let mut n = 0;
    for _ in 0..200 {
        let status: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        n = status["store"]["complete_blobs"].as_u64().unwrap();
        if n >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    n
}
