//! A node passes on pieces of a blob it is still downloading: the seed
//! (granted the origin) while the origin is still sending, and a relay
//! (fed by the seed) before it holds the whole blob. That is what lets N
//! nodes pull in about the time of one; a node that served only complete
//! blobs would still give every client the right bytes, just later.
//!
//! The origin is paced slowly (1 MiB/s for a 24 MiB blob), so the seed's
//! download lasts long enough for the other nodes to join and trade with
//! it; the pace is lifted as soon as the test saw what it looks for, so a
//! passing run is short. The witness that a node uploaded before it held
//! the blob is its `peer_sent` counter read above zero while the origin
//! had not yet sent the whole blob (read after the counter): until it has,
//! no node can hold every piece. Every wait is bounded.

mod support;

use std::time::Duration;

use shoal_testkit::{random_bytes, sha256_digest};
use support::{Cluster, Daemon, Origin, get_all, sample};
use tokio::time::Instant;

const MIB: usize = 1 << 20;
const REPO: &str = "swarm/app";
/// Long enough that the origin is still sending when the others have
/// joined and traded, even on a loaded machine.
const SIZE: usize = 24 * MIB;
/// The origin's pace while the test watches: 24 s for the whole blob.
const SLOW: u64 = MIB as u64;
/// Bound on the waits for a pull's first pieces and for its end.
const LIMIT: Duration = Duration::from_secs(60);

const SENT: &str = "shoal_peer_sent_bytes_total";
const RECEIVED: &str = "shoal_peer_received_bytes_total";
const FROM_ORIGIN: &str = "shoal_origin_received_bytes_total";

type Pull = tokio::task::JoinHandle<Result<(u16, reqwest::header::HeaderMap, Vec<u8>), String>>;

/// A slow origin holding one random blob, and a cluster around it.
struct World {
    o: Origin,
    cluster: Cluster,
    data: Vec<u8>,
    d: String,
}

impl World {
    async fn new(seed: u64) -> World {
        let o = Origin::start().await;
        let data = random_bytes(SIZE, seed);
        let d = o.blob(REPO, data.clone()).await;
        o.front.set_rate_limit(Some(SLOW));
        World { o, cluster: Cluster::new(), data, d }
    }

    /// Starts `node`'s client pulling the blob through its mirror.
    fn pull(&self, node: &Daemon) -> Pull {
        let url = node.blob_url(REPO, &self.d);
        tokio::spawn(async move { get_all(&url, None).await })
    }

    /// Starts the seed's pull and waits until it holds the origin grant
    /// and the origin has begun sending to it.
    async fn seed(&self, seed: &Daemon) -> Pull {
        let pull = self.pull(seed);
        within("the seed takes the origin grant and the origin starts sending", || async {
            self.cluster.scheduler.stats().grants == 1 && self.o.front.blob_bytes(&self.d) > 0
        })
        .await;
        pull
    }

    /// Bytes the origin has sent for the blob, over all requests.
    fn origin_sent(&self) -> u64 {
        self.o.front.blob_bytes(&self.d)
    }

    /// Waits until `node` has uploaded a piece, and asserts the origin had
    /// not sent the whole blob by then: `node` uploaded before it (or any
    /// node) held the blob complete. Then lifts the origin's pace.
    async fn uploads_before_the_origin_is_done(&self, node: &Daemon, what: &str) {
        let deadline = Instant::now() + LIMIT;
        loop {
            // The counter first: the origin's count read after it is at
            // least what it was when the counter was read.
            let sent = sample(&node.metrics().await, SENT);
            let origin = self.origin_sent();
            assert!(
                origin < SIZE as u64,
                "the origin had sent the whole blob ({origin} bytes) before the {what} was seen uploading ({sent} \
                 bytes now): it does not serve pieces of a blob it is still downloading"
            );
            if sent > 0.0 {
                break;
            }
            assert!(Instant::now() < deadline, "the {what} uploaded nothing within {LIMIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.o.front.set_rate_limit(None);
    }

    /// Waits for `pull` and asserts its client got the blob.
    async fn got_the_blob(&self, pull: Pull, who: &str) {
        let (status, _, body) = tokio::time::timeout(LIMIT, pull)
            .await
            .unwrap_or_else(|_| panic!("the {who}'s pull did not end within {LIMIT:?}"))
            .unwrap()
            .unwrap_or_else(|e| panic!("the {who}'s pull was cut: {e}"));
        assert_eq!(status, 200, "the {who}'s pull");
        assert_eq!(sha256_digest(&body), self.d, "the {who}'s client got bytes that are not the blob");
        assert!(body == self.data);
    }

    /// The origin sent the blob once, all of it to the seed.
    fn origin_sent_once(&self) {
        assert_eq!(self.o.front.blob_gets(&self.d), 1, "the origin was asked for the blob more than once");
        assert_eq!(self.origin_sent(), SIZE as u64, "the origin sent the blob once");
    }
}

/// Polls `check` every 20 ms until it holds; panics after [`LIMIT`].
async fn within<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + LIMIT;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {LIMIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seed_serves_pieces_while_the_origin_is_still_sending_it_the_blob() {
    let w = World::new(41).await;
    let seed = Daemon::start_peer(&w.o.front, w.cluster.peer("node-seed")).await;
    let child = Daemon::start_peer(&w.o.front, w.cluster.peer("node-child")).await;
    let seed_pull = w.seed(&seed).await;
    let child_pull = w.pull(&child);

    w.uploads_before_the_origin_is_done(&seed, "seed").await;

    w.got_the_blob(child_pull, "child").await;
    w.got_the_blob(seed_pull, "seed").await;
    w.origin_sent_once();
    let m = child.metrics().await;
    assert_eq!(sample(&m, FROM_ORIGIN), 0.0, "the child went to the origin:\n{m}");
    assert_eq!(sample(&m, RECEIVED), SIZE as f64, "the child got the whole blob from the seed:\n{m}");
}

/// A relay (a node downloading the blob from the seed, never from the
/// origin) passes the pieces it holds on to a third node before it holds
/// the blob complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_serves_pieces_it_holds_before_it_holds_the_blob() {
    let w = World::new(42).await;
    let seed = Daemon::start_peer(&w.o.front, w.cluster.peer("node-seed")).await;
    let relay = Daemon::start_peer(&w.o.front, w.cluster.peer("node-relay")).await;
    let third = Daemon::start_peer(&w.o.front, w.cluster.peer("node-third")).await;
    let seed_pull = w.seed(&seed).await;
    let relay_pull = w.pull(&relay);
    within("the relay gets a piece from the seed", || async { sample(&relay.metrics().await, RECEIVED) > 0.0 }).await;
    assert!(
        w.origin_sent() < SIZE as u64,
        "the relay got its first piece only once the origin had sent the whole blob: the seed does not serve \
         pieces of a blob it is still downloading (and the relay cannot be watched mid-download)"
    );
    let third_pull = w.pull(&third);

    w.uploads_before_the_origin_is_done(&relay, "relay").await;

    w.got_the_blob(third_pull, "third node").await;
    w.got_the_blob(relay_pull, "relay").await;
    w.got_the_blob(seed_pull, "seed").await;
    w.origin_sent_once();
    // Only the seed read from the origin, and it took nothing from peers:
    // what the relay uploaded went to the third node.
    for (node, who) in [(&relay, "relay"), (&third, "third node")] {
        let m = node.metrics().await;
        assert_eq!(sample(&m, FROM_ORIGIN), 0.0, "the {who} went to the origin:\n{m}");
        assert_eq!(sample(&m, RECEIVED), SIZE as f64, "the {who} got the whole blob from peers:\n{m}");
    }
    let m = seed.metrics().await;
    assert_eq!(sample(&m, RECEIVED), 0.0, "the seed took pieces from peers:\n{m}");
}
