//! CountingFront: counting and every fault variant, against a real registry.

use std::time::Duration;

use shoal_testkit::{CountingFront, Fault, Registry, push_blob, random_bytes, sha256_digest};
use tokio::time::Instant;

use crate::support::fetch;

const LEN: usize = 1 << 20;

struct Setup {
    _registry: Registry,
    front: CountingFront,
    data: Vec<u8>,
    digest: String,
    url: String,
}

async fn setup(seed: u64) -> Setup {
    let registry = Registry::start().await.unwrap();
    let front = CountingFront::start(&registry.url()).await.unwrap();
    let data = random_bytes(LEN, seed);
    // Push through the front: checks request bodies stream upstream and the
    // upload Location points back at the front.
    let digest = push_blob(&front.url(), "test/blob", data.clone(), None).await.unwrap();
    assert_eq!(digest, sha256_digest(&data));
    let records = front.requests();
    assert_eq!(records.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(), ["POST", "PUT"], "{records:?}");
    assert_eq!(records[1].status, 201);
    front.reset_counts();
    let url = format!("{}/v2/test/blob/blobs/{digest}", front.url());
    Setup { _registry: registry, front, data, digest, url }
}

#[tokio::test]
async fn counts_gets_and_bytes() {
    let s = setup(1).await;
    let got = fetch(&s.url, None).await;
    assert_eq!(got.status, 200);
    assert_eq!(sha256_digest(&got.body), s.digest);
    assert_eq!(s.front.blob_gets(&s.digest), 1);
    assert_eq!(s.front.blob_bytes(&s.digest), LEN as u64);
    let got = fetch(&s.url, Some("bytes=100-199")).await;
    assert_eq!(got.status, 206);
    assert!(got.body == s.data[100..200]);
    assert_eq!(s.front.blob_gets(&s.digest), 2);
    assert_eq!(s.front.total_blob_gets(), 2);
    assert_eq!(s.front.total_blob_bytes(), LEN as u64 + 100);
    let recs = s.front.requests();
    assert_eq!(recs[1].range.as_deref(), Some("bytes=100-199"));
    assert_eq!(recs[1].status, 206);
    assert_eq!(s.front.blob_gets("sha256:00"), 0);
    assert_eq!(s.front.manifest_requests(), 0);
    let resp = shoal_testkit::tools::http_client().head(&s.url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(s.front.total_blob_gets(), 2, "HEAD is not a GET");
    s.front.reset_counts();
    assert!(s.front.requests().is_empty());
}

#[tokio::test]
async fn corrupt_truncate_extra() {
    let s = setup(2).await;

    s.front.set_fault(&s.digest, Fault::CorruptByte { offset: 1000 }, 1);
    let got = fetch(&s.url, None).await;
    assert_eq!(got.body.len(), LEN);
    assert_ne!(sha256_digest(&got.body), s.digest);
    let diffs: Vec<usize> = (0..LEN).filter(|&i| got.body[i] != s.data[i]).collect();
    assert_eq!(diffs, [1000]);
    // Absolute offsets: a ranged response is corrupted at the blob offset.
    s.front.set_fault(&s.digest, Fault::CorruptByte { offset: 600_000 }, 1);
    let got = fetch(&s.url, Some("bytes=500000-")).await;
    assert_eq!(got.status, 206);
    let diffs: Vec<usize> = (0..got.body.len()).filter(|&i| got.body[i] != s.data[500_000 + i]).collect();
    assert_eq!(diffs, [100_000]);
    // The fault was for one GET only.
    assert_eq!(sha256_digest(&fetch(&s.url, None).await.body), s.digest);

    s.front.set_fault(&s.digest, Fault::Truncate { after: 4096 }, 1);
    let got = fetch(&s.url, None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.content_length, Some(LEN as u64));
    assert_eq!(got.body.len(), 4096, "{:?}", got.error);
    assert!(got.body == s.data[..4096]);
    let err = got.error.expect("a cut body must be an error for the client");
    assert!(err.contains("IncompleteBody"), "closed, not reset: {err}");
    assert_eq!(s.front.requests().last().unwrap().body_bytes, 4096);

    s.front.set_fault(&s.digest, Fault::ExtraBytes { count: 10 }, 1);
    let got = fetch(&s.url, None).await;
    assert_eq!(got.content_length, Some(LEN as u64 + 10));
    assert_eq!(got.body.len(), LEN + 10);
    assert!(got.body[..LEN] == s.data[..]);
    assert_ne!(sha256_digest(&got.body), s.digest);
}

#[tokio::test]
async fn ignore_range_status_and_times() {
    let s = setup(3).await;

    s.front.set_fault(&s.digest, Fault::IgnoreRange, 1);
    let got = fetch(&s.url, Some("bytes=0-99")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), LEN);
    let got = fetch(&s.url, Some("bytes=0-99")).await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body.len(), 100);

    s.front.set_fault(&s.digest, Fault::Status(503), 2);
    for _ in 0..2 {
        let got = fetch(&s.url, None).await;
        assert_eq!(got.status, 503);
        assert!(got.body.is_empty());
    }
    assert_eq!(fetch(&s.url, None).await.status, 200);
    let statuses: Vec<u16> = s.front.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 206, 503, 503, 200]);

    s.front.set_fault(&s.digest, Fault::Status(500), 5);
    s.front.clear_faults();
    assert_eq!(fetch(&s.url, None).await.status, 200);
}

#[tokio::test]
async fn reset_stall_and_rate_limit() {
    let s = setup(4).await;

    s.front.set_fault(&s.digest, Fault::ResetAfter { bytes: 5000 }, 1);
    let got = fetch(&s.url, None).await;
    assert_eq!(got.body.len(), 5000, "{:?}", got.error);
    assert!(got.body == s.data[..5000]);
    let err = got.error.expect("reset must surface as an error");
    assert!(err.contains("ConnectionReset"), "a real TCP reset: {err}");

    s.front.set_fault(&s.digest, Fault::StallAfter { bytes: 1000, for_: Duration::from_millis(800) }, 1);
    let start = Instant::now();
    let got = fetch(&s.url, None).await;
    assert!(start.elapsed() >= Duration::from_millis(800));
    assert_eq!(sha256_digest(&got.body), s.digest, "a stall delivers everything");

    s.front.set_rate_limit(Some(2 * LEN as u64));
    let start = Instant::now();
    let got = fetch(&s.url, None).await;
    let took = start.elapsed();
    assert_eq!(sha256_digest(&got.body), s.digest);
    assert!(took >= Duration::from_millis(400), "paced body took {took:?}");
    s.front.set_rate_limit(None);
    let start = Instant::now();
    fetch(&s.url, None).await;
    assert!(start.elapsed() < took);
}

#[tokio::test]
async fn streams_a_large_blob() {
    const BIG: usize = 256 << 20;
    let registry = Registry::start().await.unwrap();
    let data = random_bytes(BIG, 9);
    let digest = push_blob(&registry.url(), "big/blob", data.clone(), None).await.unwrap();
    drop(data);
    let front = CountingFront::start(&registry.url()).await.unwrap();
    let resp = shoal_testkit::tools::http_client()
        .get(format!("{}/v2/big/blob/blobs/{digest}", front.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    use futures_util::StreamExt;
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut n = 0u64;
    let mut stream = resp.bytes_stream();
    let mut max_seen_by_front = 0;
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        n += c.len() as u64;
        hasher.update(&c);
        // The front never runs far ahead of the client: it streams.
        if max_seen_by_front == 0 && n >= 1 << 20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            max_seen_by_front = front.blob_bytes(&digest);
        }
    }
    assert_eq!(n, BIG as u64);
    assert_eq!(format!("sha256:{}", hex::encode(hasher.finalize())), digest);
    assert_eq!(front.blob_bytes(&digest), BIG as u64);
    assert!(max_seen_by_front < BIG as u64 / 2, "{max_seen_by_front}");
}
