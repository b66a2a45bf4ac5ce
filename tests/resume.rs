//! A daemon killed with SIGKILL mid-blob resumes from its verified pieces
//! after a restart; a daemon stopped with SIGTERM drains and its store stays
//! consistent.

use std::time::Duration;

use shoal_e2e::{Origin, data_dir, shoal_for};
use shoal_testkit::{random_bytes, sha256_digest};
use tokio::time::Instant;

const MIB: u64 = 1 << 20;
/// Bytes the origin may have sent that were still in socket buffers when
/// the daemon was killed (loopback, 8 MiB/s).
const IN_FLIGHT: u64 = MIB;

async fn wait_until(what: &str, deadline: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_blob_resumes_from_verified_pieces() {
    let origin = Origin::start().await;
    let size = 24 * MIB;
    let piece = shoal_core::PieceLayout::for_blob(size).piece_size;
    let data = random_bytes(size as usize, 11);
    let d = shoal_testkit::push_blob(&origin.registry.url(), "e2e/big", data.clone(), None).await.unwrap();
    origin.front.set_rate_limit(Some(8 * MIB));
    let (_keep, dir) = data_dir();
    let mut shoal = shoal_for(&origin.front, Some(&dir), "").await;
    let url = format!("{}/v2/e2e/big/blobs/{d}", shoal.mirror_url());

    // A client starts the download; kill -9 the daemon half-way.
    let client = tokio::spawn({
        let url = url.clone();
        async move { reqwest::get(&url).await.map(|_| ()) }
    });
    wait_until("half the blob at the origin", Duration::from_secs(30), || origin.front.blob_bytes(&d) >= 10 * MIB)
        .await;
    shoal.kill9().unwrap();
    let sent_before_kill = origin.front.blob_bytes(&d);
    let _ = client.await;

    origin.front.set_rate_limit(None);
    shoal.restart().await.unwrap();
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_digest(&body), d);
    assert!(body == data);

    let gets: Vec<_> =
        origin.front.requests().into_iter().filter(|r| r.method == "GET" && r.path.ends_with(&d)).collect();
    assert_eq!(gets.len(), 2, "one GET before the kill, one to resume: {gets:?}");
    let resumed_at: u64 = gets[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the resume must be a Range request, got {:?}", gets[1].range));
    assert_eq!(resumed_at % piece, 0, "resume starts on a piece boundary");
    assert!(
        resumed_at >= 4 * MIB,
        "verified pieces were kept (resumed at {resumed_at}, {sent_before_kill} sent before the kill)"
    );
    // What the origin sends twice is what the daemon had not recorded at
    // the kill: the piece it was writing, and what sat in the two sockets'
    // kernel buffers (the front counts bytes when it writes them). Forgetting
    // any recorded piece costs far more: 10 MiB had arrived by then.
    let total = origin.front.blob_bytes(&d);
    let limit = size + piece + IN_FLIGHT;
    assert!(
        total <= limit,
        "the origin sent {total} bytes for a {size}-byte blob (limit: size + one {piece}-byte piece + {IN_FLIGHT} in flight)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_and_the_store_stays_consistent() {
    let origin = Origin::start().await;
    let size = 12 * MIB;
    let data = random_bytes(size as usize, 12);
    let d = shoal_testkit::push_blob(&origin.registry.url(), "e2e/big", data.clone(), None).await.unwrap();
    origin.front.set_rate_limit(Some(8 * MIB));
    let (_keep, dir) = data_dir();
    let mut shoal = shoal_for(&origin.front, Some(&dir), "shutdown_grace = \"1s\"\n").await;
    let url = format!("{}/v2/e2e/big/blobs/{d}", shoal.mirror_url());
    let client = tokio::spawn({
        let url = url.clone();
        async move { reqwest::get(&url).await.unwrap().bytes().await }
    });
    wait_until("the download to start", Duration::from_secs(30), || origin.front.blob_bytes(&d) >= 2 * MIB).await;
    let t0 = Instant::now();
    shoal.terminate().await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "SIGTERM took {:?}", t0.elapsed());
    // The response was cut, not completed with missing bytes.
    assert!(client.await.unwrap().is_err(), "a response cut by shutdown must not look complete");

    origin.front.set_rate_limit(None);
    shoal.restart().await.unwrap();
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert!(body == data, "after restart the blob is served whole and correct");
}
