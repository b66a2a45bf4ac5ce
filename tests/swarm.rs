//! The swarm as operators run it: `shoal scheduler` processes and
//! `shoal daemon --swarm` processes with certificates from the cluster CA,
//! pulling from Debian's docker-registry behind a counting front. Origin
//! bytes are measured at the origin. The scheduler is killed mid-pull, one
//! of two replicas dies, and the replica that owns the blob's task is
//! killed mid-pull: every pull still ends with the right bytes, and the
//! origin still sends the blob about once.

use std::time::Duration;

use std::net::SocketAddr;

use shoal_e2e::{
    Origin, Pki, SchedulerProcess as Scheduler, check_bodies, pull_blob_everywhere, received_from_peers,
    spawn_blob_pulls, swarm_peer, swarm_toml_at,
};
use shoal_testkit::random_bytes;

const MIB: usize = 1 << 20;

async fn setup(size: usize, seed: u64) -> (Origin, Vec<u8>, String, Pki) {
    let origin = Origin::start().await;
    let data = random_bytes(size, seed);
    let d = shoal_testkit::push_blob(&origin.registry.url(), "e2e/blob", data.clone(), None).await.unwrap();
    (origin, data, d, Pki::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemons_share_a_blob_through_a_scheduler_process() {
    let (origin, data, d, pki) = setup(24 * MIB, 1).await;
    origin.front.set_rate_limit(Some(24 * MIB as u64));
    let sched = Scheduler::start(&pki, "scheduler-0").await;
    let mut peers = Vec::new();
    for i in 0..3 {
        peers.push(swarm_peer(&origin, &pki, &format!("node-{i}"), &[&sched], "").await);
    }
    pull_blob_everywhere(&peers, &d, &data).await;
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
        peers.push(swarm_peer(&origin, &pki, &format!("node-{i}"), &[&sched], "").await);
    }
    let pulls = spawn_blob_pulls(&peers, &d);
    tokio::time::sleep(Duration::from_millis(600)).await;
    sched.child.kill_now().unwrap();
    origin.front.set_rate_limit(Some(64 * MIB as u64));
    let bodies = tokio::time::timeout(Duration::from_secs(120), pulls).await.expect("pulls hung").unwrap();
    check_bodies(&bodies, &data, &d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_two_scheduler_replicas_dies() {
    let (origin, data, d, pki) = setup(16 * MIB, 3).await;
    origin.front.set_rate_limit(Some(24 * MIB as u64));
    let a = Scheduler::start(&pki, "scheduler-a").await;
    let mut b = Scheduler::start(&pki, "scheduler-b").await;
    let mut peers = Vec::new();
    for i in 0..3 {
        peers.push(swarm_peer(&origin, &pki, &format!("node-{i}"), &[&a, &b], "").await);
    }
    b.child.kill_now().unwrap();
    pull_blob_everywhere(&peers, &d, &data).await;
    // The surviving replica coordinated: the origin still sent the blob about once.
    let sent = origin.front.blob_bytes(&d);
    assert!(sent as f64 <= 1.1 * data.len() as f64, "origin sent {sent} bytes for {} to 3 peers", data.len());
}

/// The replica the daemons send `digest`'s task requests to first.
fn owner<'a>(replicas: [&'a mut Scheduler; 2], digest: &str) -> (&'a mut Scheduler, &'a mut Scheduler) {
    let addrs: Vec<SocketAddr> = replicas.iter().map(|r| r.quic.parse().unwrap()).collect();
    let first = shoal_scheduler::rendezvous(&addrs, digest.as_bytes())[0];
    let [a, b] = replicas;
    if first == addrs[0] { (a, b) } else { (b, a) }
}

/// A rollout in two waves across the death of the replica that owns the
/// blob's task (picked by rendezvous hashing, as the daemons pick it): the
/// second wave joins at the surviving replica, which must know the first
/// wave's seed rather than grant the origin again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_replica_that_owns_the_task_mid_pull_sends_nobody_else_to_the_origin() {
    let (origin, data, d, pki) = setup(24 * MIB, 4).await;
    // About three seconds from the origin: the kill lands in the first quarter.
    origin.front.set_rate_limit(Some(8 * MIB as u64));
    let mut a = Scheduler::start(&pki, "scheduler-a").await;
    let mut b = Scheduler::start(&pki, "scheduler-b").await;
    let mut peers = Vec::new();
    for i in 0..8 {
        peers.push(swarm_peer(&origin, &pki, &format!("node-{i}"), &[&a, &b], "").await);
    }
    let (owning, _survivor) = owner([&mut a, &mut b], &d);
    let first = spawn_blob_pulls(&peers[..4], &d);
    tokio::time::sleep(Duration::from_millis(700)).await;
    owning.child.kill_now().unwrap();
    let second = spawn_blob_pulls(&peers[4..], &d);
    for wave in [first, second] {
        let bodies = tokio::time::timeout(Duration::from_secs(120), wave).await.expect("pulls hung").unwrap();
        check_bodies(&bodies, &data, &d);
    }
    let sent = origin.front.blob_bytes(&d);
    eprintln!("origin egress after the owning replica died: {:.3}x the blob", sent as f64 / data.len() as f64);
    assert!(
        sent as f64 <= 1.1 * data.len() as f64,
        "origin sent {sent} bytes for {} to 8 peers after the owning replica died",
        data.len()
    );
}

/// A daemon whose scheduler is not up yet serves its mirror at once (from
/// the origin) and joins the swarm when the scheduler appears: a second
/// daemon then gets the blob from it, not from the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_started_before_its_scheduler_serves_at_once_and_joins_when_it_appears() {
    let (origin, data, d, pki) = setup(8 * MIB, 5).await;
    let quic = format!("127.0.0.1:{}", shoal_testkit::free_port());
    let started = tokio::time::Instant::now();
    let early = shoal_testkit::ShoalDaemon::builder()
        .default_registry(&origin.front.host())
        .registry(&origin.front.host(), &origin.front.url())
        .config_toml(&swarm_toml_at(&pki, "node-early", &[&quic], ""))
        .start()
        .await
        .unwrap();
    let v2 = reqwest::get(format!("{}/v2/", early.mirror_url())).await.unwrap();
    assert_eq!(v2.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5), "/v2/ answered after {:?}", started.elapsed());
    let readyz = format!("{}/readyz", early.metrics_url());
    let text = reqwest::get(&readyz).await.unwrap().text().await.unwrap();
    assert!(text.contains("schedulers are not reachable"), "{text}");
    pull_blob_everywhere(std::slice::from_ref(&early), &d, &data).await;
    assert_eq!(origin.front.blob_gets(&d), 1);

    let sched = Scheduler::start_at(&pki, "scheduler-0", &quic).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = reqwest::get(&readyz).await.unwrap().text().await.unwrap();
        if text == "ready\n" {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "never joined the scheduler: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let late = swarm_peer(&origin, &pki, "node-late", &[&sched], "").await;
    pull_blob_everywhere(std::slice::from_ref(&late), &d, &data).await;
    assert_eq!(origin.front.blob_gets(&d), 1, "the second daemon went to the origin, not to the first");
    assert!(received_from_peers(&late).await >= data.len() as f64);
}
