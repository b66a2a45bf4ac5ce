//! The swarm as operators run it: `shoal scheduler` processes and
//! `shoal daemon --swarm` processes with certificates from the cluster CA,
//! pulling from Debian's docker-registry behind a counting front. Origin
//! bytes are measured at the origin. The scheduler is killed mid-pull, and
//! one of two replicas dies: every pull still ends with the right bytes.

use std::path::PathBuf;
use std::time::Duration;

use shoal_e2e::Origin;
use shoal_testkit::{ChildGuard, ShoalDaemon, free_port, random_bytes, sha256_digest, shoal_bin, wait_http_status};

const MIB: usize = 1 << 20;

/// The cluster CA and a certificate directory per host.
struct Pki {
    dir: tempfile::TempDir,
    ca: shoal_transport::CaBundle,
}

impl Pki {
    fn new() -> Pki {
        Pki { dir: tempfile::tempdir().unwrap(), ca: shoal_transport::new_ca("e2e cluster").unwrap() }
    }

    fn certs(&self, host: &str) -> PathBuf {
        let dir = self.dir.path().join(host);
        let node = shoal_transport::issue(&self.ca, host, &[]).unwrap();
        shoal_transport::write_node(&dir, host, &node, &self.ca.cert_pem, shoal_transport::NodeLayout::KubernetesTls)
            .unwrap();
        dir
    }
}

/// A `shoal scheduler` process on free loopback ports.
struct Scheduler {
    child: ChildGuard,
    quic: String,
    _logs: tempfile::TempDir,
}

impl Scheduler {
    async fn start(pki: &Pki, name: &str) -> Scheduler {
        let quic = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let logs = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(shoal_bin().unwrap());
        cmd.args(["scheduler", "--listen", &quic, "--metrics-listen", &metrics, "--certs-dir"])
            .arg(pki.certs(name))
            .env("RUST_LOG", "info");
        let mut child = ChildGuard::spawn(name, cmd, logs.path()).unwrap();
        wait_http_status(&format!("http://{metrics}/readyz"), Duration::from_secs(20), |s| s == 200, Some(&mut child))
            .await
            .unwrap();
        Scheduler { child, quic, _logs: logs }
    }
}

async fn peer(origin: &Origin, pki: &Pki, host: &str, schedulers: &[&Scheduler]) -> ShoalDaemon {
    let list: Vec<String> = schedulers.iter().map(|s| format!("{:?}", s.quic)).collect();
    let swarm = format!(
        "[swarm]\nenabled = true\nhost = {host:?}\nlisten = \"127.0.0.1:0\"\ncerts_dir = {:?}\nschedulers = [{}]\n",
        pki.certs(host).display().to_string(),
        list.join(", ")
    );
    ShoalDaemon::builder()
        .default_registry(&origin.front.host())
        .registry(&origin.front.host(), &origin.front.url())
        .config_toml(&swarm)
        .start()
        .await
        .unwrap_or_else(|e| panic!("start {host}: {e}"))
}

async fn pull_all(peers: &[ShoalDaemon], digest: &str) -> Vec<Vec<u8>> {
    let jobs: Vec<_> = peers
        .iter()
        .map(|p| {
            let url = format!("{}/v2/e2e/blob/blobs/{digest}", p.mirror_url());
            tokio::spawn(async move {
                let resp = reqwest::get(&url).await.unwrap();
                assert_eq!(resp.status(), 200, "{url}");
                resp.bytes().await.unwrap().to_vec()
            })
        })
        .collect();
    let mut out = Vec::new();
    for j in jobs {
        out.push(tokio::time::timeout(Duration::from_secs(120), j).await.expect("pull timed out").unwrap());
    }
    out
}

async fn received_from_peers(p: &ShoalDaemon) -> f64 {
    let text = reqwest::get(format!("{}/metrics", p.metrics_url())).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("shoal_peer_received_bytes_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn setup(size: usize, seed: u64) -> (Origin, Vec<u8>, String, Pki) {
    let origin = Origin::start().await;
    let data = random_bytes(size, seed);
    let d = shoal_testkit::push_blob(&origin.registry.url(), "e2e/blob", data.clone(), None).await.unwrap();
    (origin, data, d, Pki::new())
}

fn check(bodies: &[Vec<u8>], data: &[u8], digest: &str) {
    for b in bodies {
        assert_eq!(sha256_digest(b), digest);
        assert!(b == data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemons_share_a_blob_through_a_scheduler_process() {
    let (origin, data, d, pki) = setup(24 * MIB, 1).await;
    origin.front.set_rate_limit(Some(24 * MIB as u64));
    let sched = Scheduler::start(&pki, "scheduler-0").await;
    let mut peers = Vec::new();
    for i in 0..3 {
        peers.push(peer(&origin, &pki, &format!("node-{i}"), &[&sched]).await);
    }
    let bodies = pull_all(&peers, &d).await;
    check(&bodies, &data, &d);
    let sent = origin.front.blob_bytes(&d);
    assert!(sent as f64 <= 1.1 * data.len() as f64, "origin sent {sent} bytes for {} to 3 peers", data.len());
    let mut shared = 0.0;
    for p in &peers {
        shared += received_from_peers(p).await;
    }
    assert!(shared >= data.len() as f64, "peers exchanged only {shared} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_scheduler_mid_pull_still_ends_with_correct_blobs() {
    let (origin, data, d, pki) = setup(24 * MIB, 2).await;
    origin.front.set_rate_limit(Some(16 * MIB as u64));
    let mut sched = Scheduler::start(&pki, "scheduler-0").await;
    let mut peers = Vec::new();
    for i in 0..3 {
        peers.push(peer(&origin, &pki, &format!("node-{i}"), &[&sched]).await);
    }
    let pulls = tokio::spawn({
        let urls: Vec<String> = peers.iter().map(|p| format!("{}/v2/e2e/blob/blobs/{d}", p.mirror_url())).collect();
        async move {
            let mut out = Vec::new();
            let jobs: Vec<_> = urls.into_iter().map(|u| tokio::spawn(async move { reqwest::get(&u).await })).collect();
            for j in jobs {
                let resp = j.await.unwrap().unwrap();
                assert_eq!(resp.status(), 200);
                out.push(resp.bytes().await.unwrap().to_vec());
            }
            out
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    sched.child.kill_now().unwrap();
    origin.front.set_rate_limit(Some(64 * MIB as u64));
    let bodies = tokio::time::timeout(Duration::from_secs(120), pulls).await.expect("pulls hung").unwrap();
    check(&bodies, &data, &d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_two_scheduler_replicas_dies() {
    let (origin, data, d, pki) = setup(16 * MIB, 3).await;
    origin.front.set_rate_limit(Some(24 * MIB as u64));
    let a = Scheduler::start(&pki, "scheduler-a").await;
    let mut b = Scheduler::start(&pki, "scheduler-b").await;
    let mut peers = Vec::new();
    for i in 0..3 {
        peers.push(peer(&origin, &pki, &format!("node-{i}"), &[&a, &b]).await);
    }
    b.child.kill_now().unwrap();
    let bodies = pull_all(&peers, &d).await;
    check(&bodies, &data, &d);
    // The surviving replica coordinated: the origin still sent the blob about once.
    let sent = origin.front.blob_bytes(&d);
    assert!(sent as f64 <= 1.1 * data.len() as f64, "origin sent {sent} bytes for {} to 3 peers", data.len());
}
