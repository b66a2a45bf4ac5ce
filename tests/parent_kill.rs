//! A dead parent costs seconds: four `shoal daemon --swarm` processes and a
//! `shoal scheduler` pull one blob from a throttled origin, and the daemon
//! holding the origin grant is killed with SIGKILL (by its PID) at about a
//! quarter of the pull. The survivors must finish within twice the time
//! the same four daemons took for a blob of the same size with no kill,
//! measured in the same test, with every byte right.

use std::time::Duration;

use tokio::time::Instant;

use shoal_e2e::{Origin, Pki, SchedulerProcess as Scheduler, swarm_peer};
use shoal_testkit::{ShoalDaemon, random_bytes, sha256_digest};

const MIB: usize = 1 << 20;
/// The blob: 32 MiB, read from the origin at 8 MiB/s, so a pull takes
/// about 4 s and a 20-30 s wait on a dead parent cannot hide in it.
const SIZE: usize = 32 * MIB;
const ORIGIN_RATE: u64 = 8 * MIB as u64;

/// Start pulls of `digest` at every daemon in `peers`; each ends with the
/// body, or `None` if the pull failed (the killed daemon's).
fn start_pulls(peers: &[ShoalDaemon], digest: &str) -> Vec<tokio::task::JoinHandle<Option<Vec<u8>>>> {
    peers
        .iter()
        .map(|p| {
            let url = format!("{}/v2/e2e/blob/blobs/{digest}", p.mirror_url());
            tokio::spawn(async move {
                let resp = reqwest::get(&url).await.ok()?;
                if resp.status() != 200 {
                    return None;
                }
                resp.bytes().await.ok().map(|b| b.to_vec())
            })
        })
        .collect()
}

/// Bytes `p` has read from the origin (`shoal_origin_received_bytes_total`),
/// 0 if it does not answer.
async fn origin_bytes(p: &ShoalDaemon) -> f64 {
    let Ok(resp) = reqwest::get(format!("{}/metrics", p.metrics_url())).await else { return 0.0 };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("shoal_origin_received_bytes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn push(origin: &Origin, seed: u64) -> (Vec<u8>, String) {
    let data = random_bytes(SIZE, seed);
    let d = shoal_testkit::push_blob(&origin.registry.url(), "e2e/blob", data.clone(), None).await.unwrap();
    (data, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_origin_grant_holder_costs_seconds() {
    let origin = Origin::start().await;
    let pki = Pki::new();
    let (first, first_digest) = push(&origin, 11).await;
    let (second, second_digest) = push(&origin, 12).await;
    origin.front.set_rate_limit(Some(ORIGIN_RATE));
    let sched = Scheduler::start(&pki, "scheduler-0").await;
    let mut peers = Vec::new();
    for i in 0..4 {
        peers.push(swarm_peer(&origin, &pki, &format!("node-{i}"), &[&sched], "").await);
    }

    // No kill: how long these four daemons take for this size.
    let started = Instant::now();
    for pull in start_pulls(&peers, &first_digest) {
        let body = tokio::time::timeout(Duration::from_secs(120), pull).await.expect("pull hung").unwrap();
        let body = body.expect("a pull without a kill failed");
        assert_eq!(sha256_digest(&body), first_digest);
    }
    let baseline = started.elapsed();
    assert!(first.len() == SIZE);

    // Kill the daemon reading the second blob from the origin once it has
    // read a quarter of it (the origin is throttled, so the pull is far
    // from over).
    let before: Vec<f64> = origin_bytes_all(&peers).await;
    let started = Instant::now();
    let pulls = start_pulls(&peers, &second_digest);
    let holder = loop {
        assert!(started.elapsed() < Duration::from_secs(60), "no daemon read a quarter of the blob from the origin");
        let now = origin_bytes_all(&peers).await;
        if let Some(i) = (0..peers.len()).find(|&i| now[i] - before[i] >= (SIZE / 4) as f64) {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let killed_at = started.elapsed();
    peers[holder].kill9().unwrap();
    let mut survivors_done = Duration::ZERO;
    for (i, pull) in pulls.into_iter().enumerate() {
        let body = tokio::time::timeout(Duration::from_secs(120), pull).await.expect("pull hung").unwrap();
        if i == holder {
            continue;
        }
        let body = body.unwrap_or_else(|| panic!("node-{i}'s pull failed after node-{holder} was killed"));
        assert_eq!(sha256_digest(&body), second_digest, "node-{i} served wrong bytes");
        assert!(body == second);
        survivors_done = started.elapsed();
    }
    eprintln!("no kill: {baseline:?}; node-{holder} killed at {killed_at:?}, survivors done at {survivors_done:?}");
    if survivors_done > baseline * 2 {
        for (i, p) in peers.iter().enumerate().filter(|&(i, _)| i != holder) {
            let log = p.log_tail(200_000);
            let lines: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("INFO")).collect();
            eprintln!("node-{i}:\n{}", lines[lines.len().saturating_sub(30)..].join("\n"));
        }
    }
    assert!(
        survivors_done <= baseline * 2,
        "the survivors took {survivors_done:?} after node-{holder} (the origin grant holder) was killed at \
         {killed_at:?}, against {baseline:?} with no kill"
    );
}

/// Every daemon's origin bytes, in order.
async fn origin_bytes_all(peers: &[ShoalDaemon]) -> Vec<f64> {
    let mut out = Vec::with_capacity(peers.len());
    for p in peers {
        out.push(origin_bytes(p).await);
    }
    out
}
