//! The swarm when no scheduler answers: `shoal daemon --swarm` processes
//! with `[swarm.discovery]` find each other's downloads through the
//! cluster-only DHT, agree on one node to fetch each blob from the origin,
//! and trade pieces over QUIC as they do with a scheduler. With every
//! scheduler replica killed before the pull, and in a cluster that runs no
//! scheduler at all, every digest is right and the origin sends each blob
//! about once. (That a node without the cluster key can neither publish nor
//! read records is tested in `crates/shoal-discovery/tests/strangers.rs`.)

use std::time::Duration;

use shoal_e2e::{Origin, Pki, SchedulerProcess as Scheduler, pull_blob_everywhere, received_from_peers, swarm_toml_at};
use shoal_testkit::{ShoalDaemon, free_port, random_bytes};

const MIB: usize = 1 << 20;

/// `count` daemons using `schedulers` (none: a cluster without one), each
/// with discovery on; the first is every other's bootstrap (returned).
async fn daemons(origin: &Origin, pki: &Pki, schedulers: &[&str], count: usize) -> (Vec<ShoalDaemon>, String) {
    let first = format!("127.0.0.1:{}", free_port());
    let mut out = Vec::new();
    for i in 0..count {
        out.push(daemon(origin, pki, schedulers, i, &first).await);
    }
    (out, first)
}

/// Daemon `node-{i}`; node-0 listens on `first`, the others bootstrap from it.
async fn daemon(origin: &Origin, pki: &Pki, schedulers: &[&str], i: usize, first: &str) -> ShoalDaemon {
    let host = format!("node-{i}");
    let (listen, bootstrap) = match i {
        0 => (first.to_owned(), String::new()),
        _ => (format!("127.0.0.1:{}", free_port()), format!("{first:?}")),
    };
    let toml = format!(
        "{}\n[swarm.discovery]\nenabled = true\nlisten = {listen:?}\nbootstrap = [{bootstrap}]\n",
        swarm_toml_at(pki, &host, schedulers, "")
    );
    ShoalDaemon::builder()
        .default_registry(&origin.front.host())
        .registry(&origin.front.host(), &origin.front.url())
        .config_toml(&toml)
        .start()
        .await
        .unwrap_or_else(|e| panic!("start {host}: {e}"))
}

async fn readyz(p: &ShoalDaemon) -> String {
    reqwest::get(format!("{}/readyz", p.metrics_url())).await.unwrap().text().await.unwrap()
}

/// Checks the origin sent `digest` at most `limit` times its size, and that
/// the peers traded at least `shared` copies' worth.
async fn check_egress(origin: &Origin, peers: &[ShoalDaemon], digest: &str, size: usize, limit: f64, shared: f64) {
    let sent = origin.front.blob_bytes(digest) as f64;
    let mut traded = 0.0;
    for p in peers {
        traded += received_from_peers(p).await;
    }
    eprintln!("origin egress {:.3}x the blob; peers traded {:.2}x", sent / size as f64, traded / size as f64);
    assert!(sent <= limit * size as f64, "origin sent {sent} bytes for {size} to {} peers", peers.len());
    assert!(traded >= shared * size as f64, "peers traded only {traded} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_every_scheduler_replica_killed_before_the_pull_daemons_share_through_the_dht() {
    let origin = Origin::start().await;
    let data = random_bytes(24 * MIB, 21);
    let d = shoal_testkit::push_blob(&origin.registry.url(), "e2e/blob", data.clone(), None).await.unwrap();
    origin.front.set_rate_limit(Some(8 * MIB as u64));
    let pki = Pki::new();
    let mut a = Scheduler::start(&pki, "scheduler-a").await;
    let mut b = Scheduler::start(&pki, "scheduler-b").await;
    let (peers, _) = daemons(&origin, &pki, &[&a.quic, &b.quic], 8).await;
    for p in &peers {
        for _ in 0..50 {
            if readyz(p).await == "ready\n" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    a.child.kill_now().unwrap();
    b.child.kill_now().unwrap();
    pull_blob_everywhere(&peers, &d, &data).await;
    check_egress(&origin, &peers, &d, data.len(), 1.2, 4.0).await;
    // Readiness says where pulls go meanwhile, once a heartbeat failed.
    let mut text = String::new();
    for _ in 0..100 {
        text = readyz(&peers[0]).await;
        if text != "ready\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("through the discovery DHT"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_without_a_scheduler_shares_blobs_through_the_dht() {
    let origin = Origin::start().await;
    let data = random_bytes(16 * MIB, 22);
    let d = shoal_testkit::push_blob(&origin.registry.url(), "e2e/blob", data.clone(), None).await.unwrap();
    origin.front.set_rate_limit(Some(8 * MIB as u64));
    let pki = Pki::new();
    let (peers, first) = daemons(&origin, &pki, &[], 4).await;
    assert_eq!(readyz(&peers[0]).await, "ready\n");
    pull_blob_everywhere(&peers, &d, &data).await;
    check_egress(&origin, &peers, &d, data.len(), 1.2, 2.0).await;
    // A daemon that joins later gets the blob from the others alone.
    let late = daemon(&origin, &pki, &[], 4, &first).await;
    let before = origin.front.blob_bytes(&d);
    pull_blob_everywhere(std::slice::from_ref(&late), &d, &data).await;
    assert_eq!(origin.front.blob_bytes(&d), before, "the late daemon went to the origin");
    assert!(received_from_peers(&late).await >= data.len() as f64);
}
