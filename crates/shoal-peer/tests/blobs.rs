//! Blobs through the mirror against a real docker-registry: streaming,
//! caching, single flight, ranges and boundary sizes.

mod support;

use std::time::Duration;

use shoal_testkit::{random_bytes, sha256_digest};
use support::{Daemon, Origin, get_all, sample};

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cold_blob_streams_then_is_served_from_the_store() {
    let o = Origin::start().await;
    let data = random_bytes(9 * MIB + 123, 1);
    let d = o.blob("demo/app", data.clone()).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;

    let (status, headers, body) = get_all(&daemon.blob_url("demo/app", &d), None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["docker-content-digest"], d.as_str());
    assert_eq!(headers["content-length"], data.len().to_string().as_str());
    assert_eq!(sha256_digest(&body), d);
    assert_eq!(o.front.blob_gets(&d), 1);
    // The last byte goes out before the blob is made durable and recorded
    // complete; until then a GET joins the download instead of the store.
    support::private::until_complete(&daemon, 1).await;

    let (status, _, body) = get_all(&daemon.blob_url("demo/app", &d), None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, data);
    assert_eq!(o.front.blob_gets(&d), 1, "the second GET must not reach the origin");

    let head = reqwest::Client::new().head(daemon.blob_url("demo/app", &d)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], data.len().to_string().as_str());

    let m = daemon.metrics().await;
    assert_eq!(sample(&m, "shoal_served_bytes_total{source=\"store\"}"), data.len() as f64);
    assert_eq!(sample(&m, "shoal_served_bytes_total{source=\"origin\"}"), data.len() as f64);
    assert_eq!(
        sample(&m, "shoal_mirror_requests_total{kind=\"blob\",method=\"GET\",status=\"200\",result=\"hit\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_clients_cause_one_origin_download() {
    let o = Origin::start().await;
    let data = random_bytes(12 * MIB, 2);
    let d = o.blob("demo/app", data.clone()).await;
    // Slow the origin so all sixteen requests overlap one download.
    o.front.set_rate_limit(Some(24 * MIB as u64));
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let url = daemon.blob_url("demo/app", &d);
    let clients: Vec<_> = (0..16).map(|_| tokio::spawn(get_all_owned(url.clone()))).collect();
    for c in clients {
        let (status, _, body) = c.await.unwrap().unwrap();
        assert_eq!(status, 200);
        assert!(body == data, "a client received different bytes");
    }
    assert_eq!(o.front.blob_gets(&d), 1);
    assert_eq!(o.front.blob_bytes(&d), data.len() as u64);
}

async fn get_all_owned(url: String) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), String> {
    get_all(&url, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranges_cold_and_warm() {
    let o = Origin::start().await;
    let data = random_bytes(5 * MIB + 7, 3);
    let d = o.blob("demo/app", data.clone()).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let url = daemon.blob_url("demo/app", &d);

    // Cold: a range request starts the whole download and gets its slice.
    let (status, headers, body) = get_all(&url, Some("bytes=1000-")).await.unwrap();
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], format!("bytes 1000-{}/{}", data.len() - 1, data.len()).as_str());
    assert_eq!(body, &data[1000..]);

    // Wait for the download to finish, then warm ranges.
    tokio::time::timeout(Duration::from_secs(10), async {
        while get_all(&url, Some("bytes=0-0")).await.unwrap().0 != 206 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let (status, headers, body) = get_all(&url, Some("bytes=10-19")).await.unwrap();
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], format!("bytes 10-19/{}", data.len()).as_str());
    assert_eq!(body, &data[10..20]);
    let (status, _, body) = get_all(&url, Some("bytes=-5")).await.unwrap();
    assert_eq!((status, body.as_slice()), (206, &data[data.len() - 5..]));

    let (status, headers, body) = get_all(&url, Some(&format!("bytes={}-", data.len()))).await.unwrap();
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], format!("bytes */{}", data.len()).as_str());
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errors"][0]["code"], "SIZE_INVALID");
    assert_eq!(o.front.blob_gets(&d), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn piece_boundary_sizes() {
    let o = Origin::start().await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let piece = shoal_core::piece::MIN_PIECE_SIZE as usize;
    for (i, size) in [0, 1, piece - 1, piece, piece + 1, 2 * piece + 3].into_iter().enumerate() {
        let data = random_bytes(size, 10 + i as u64);
        let d = o.blob("sizes/x", data.clone()).await;
        for round in 0..2 {
            let (status, _, body) = get_all(&daemon.blob_url("sizes/x", &d), None).await.unwrap();
            assert_eq!(status, 200, "size {size} round {round}");
            assert!(body == data, "size {size} round {round}: bytes differ");
        }
        assert_eq!(o.front.blob_gets(&d), 1, "size {size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_blob_is_a_404_from_the_origin() {
    let o = Origin::start().await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let d = sha256_digest(b"never pushed");
    let (status, _, body) = get_all(&daemon.blob_url("demo/app", &d), None).await.unwrap();
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
}
