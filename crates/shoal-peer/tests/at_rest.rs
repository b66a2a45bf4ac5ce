//! Damage at rest: a byte flipped in a complete blob's file in the store is
//! never served. The response that meets it goes on with the right bytes
//! from a fresh download (the origin sees one more blob GET), the damage is
//! counted once, and later requests are served from the store again.

mod support;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Duration;

use shoal_testkit::{random_bytes, sha256_digest};
use support::{Cluster, Daemon, Origin, get_all, promtool_accepts, sample};

const MIB: usize = 1 << 20;
/// The store's piece size for the blobs here (under 256 MiB).
const PIECE: usize = 256 << 10;
const STORED: &str = "shoal_verification_failures_total{kind=\"stored\"}";

/// The complete blob file of `digest` in `daemon`'s store.
fn blob_file(daemon: &Daemon, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    daemon.dir.path().join("store/blobs/sha256").join(hex)
}

/// Flips every bit of the byte at `offset` of the stored blob, in place.
fn flip(daemon: &Daemon, digest: &str, offset: usize) {
    let f = OpenOptions::new().read(true).write(true).open(blob_file(daemon, digest)).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset as u64).unwrap();
    f.write_all_at(&[!b[0]], offset as u64).unwrap();
}

/// Waits until the store holds `digest` complete (10 s at most).
async fn stored(daemon: &Daemon, digest: &str) {
    for _ in 0..200 {
        if daemon.status().await["store"]["complete_blobs"].as_u64() == Some(1) && blob_file(daemon, digest).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{digest} never became complete in the store");
}

/// A daemon holding `data` (pushed to the origin as a blob of `rot/app`)
/// complete in its store, fetched from the origin once.
async fn warm(o: &Origin, data: &[u8]) -> (Daemon, String) {
    let d = o.blob("rot/app", data.to_vec()).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let (code, _, body) = get_all(&daemon.blob_url("rot/app", &d), None).await.unwrap();
    assert_eq!(code, 200);
    assert!(body == data);
    stored(&daemon, &d).await;
    assert_eq!(o.front.blob_gets(&d), 1);
    (daemon, d)
}

/// After the damage was mended: the store serves the blob again, whole and
/// right, without asking the origin.
async fn served_from_store_again(o: &Origin, daemon: &Daemon, d: &str, data: &[u8]) {
    stored(daemon, d).await;
    let (code, _, body) = get_all(&daemon.blob_url("rot/app", d), None).await.unwrap();
    assert_eq!(code, 200);
    assert!(body == data, "the fresh copy serves the blob's bytes");
    assert_eq!(o.front.blob_gets(d), 2, "the fresh copy is served from the store");
    assert_eq!(sample(&daemon.metrics().await, STORED), 1.0, "nothing else failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_get_of_a_damaged_blob_gets_the_right_bytes() {
    let o = Origin::start().await;
    let data = random_bytes(3 * MIB, 1);
    let (daemon, d) = warm(&o, &data).await;
    flip(&daemon, &d, 5 * PIECE + 123);

    let (code, headers, body) = get_all(&daemon.blob_url("rot/app", &d), None).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(headers["content-length"], data.len().to_string().as_str());
    assert_eq!(sha256_digest(&body), d, "the body hashes to the digest");
    assert_eq!(o.front.blob_gets(&d), 2, "the blob was fetched again");
    let m = daemon.metrics().await;
    assert_eq!(sample(&m, STORED), 1.0);
    promtool_accepts(&m);

    served_from_store_again(&o, &daemon, &d, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_range_inside_a_damaged_piece_gets_the_right_bytes() {
    let o = Origin::start().await;
    let data = random_bytes(3 * MIB, 2);
    let (daemon, d) = warm(&o, &data).await;
    let bad = 7 * PIECE + 1000;
    flip(&daemon, &d, bad);

    let (start, end) = (bad - 10, bad + 10);
    let range = format!("bytes={start}-{end}");
    let (code, headers, body) = get_all(&daemon.blob_url("rot/app", &d), Some(&range)).await.unwrap();
    assert_eq!(code, 206);
    assert_eq!(headers["content-range"], format!("bytes {start}-{end}/{}", data.len()).as_str());
    assert!(body == data[start..=end], "the range holds the blob's bytes");
    assert_eq!(o.front.blob_gets(&d), 2, "the blob was fetched again");
    assert_eq!(sample(&daemon.metrics().await, STORED), 1.0);

    served_from_store_again(&o, &daemon, &d, &data).await;
}

/// The damage lies far into the blob: the response has sent its first
/// pieces from the store before it meets it, and still ends with every
/// byte right.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn damage_met_after_the_response_started_is_mended_in_flight() {
    let o = Origin::start().await;
    let data = random_bytes(32 * MIB, 3);
    let (daemon, d) = warm(&o, &data).await;
    flip(&daemon, &d, 30 * MIB + 5);

    let mut resp = reqwest::get(daemon.blob_url("rot/app", &d)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = Vec::new();
    while body.len() < MIB {
        body.extend_from_slice(&resp.chunk().await.unwrap().expect("more body"));
    }
    // The body reads at most socket buffers ahead of the client: nowhere
    // near the damage yet.
    assert_eq!(o.front.blob_gets(&d), 1, "the first megabyte came from the store");
    assert_eq!(sample(&daemon.metrics().await, STORED), 0.0);
    while let Some(chunk) = resp.chunk().await.expect("the body is not cut") {
        body.extend_from_slice(&chunk);
    }
    assert_eq!(body.len(), data.len());
    assert_eq!(sha256_digest(&body), d, "the whole body hashes to the digest");
    assert_eq!(o.front.blob_gets(&d), 2);
    assert_eq!(sample(&daemon.metrics().await, STORED), 1.0);

    served_from_store_again(&o, &daemon, &d, &data).await;
}

/// A peer asking for a damaged piece is refused (`Corrupt`, counted as a
/// corrupt piece on its side) and gets the blob right elsewhere; the holder
/// drops its copy at once and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parent_refuses_a_damaged_piece_and_drops_its_copy() {
    let o = Origin::start().await;
    let data = random_bytes(2 * MIB, 4);
    let d = o.blob("rot/app", data.clone()).await;
    let cluster = Cluster::new();
    let holder = Daemon::start_peer(&o.front, cluster.peer("node-a")).await;
    let (code, _, _) = get_all(&holder.blob_url("rot/app", &d), None).await.unwrap();
    assert_eq!(code, 200);
    stored(&holder, &d).await;
    // Every piece is damaged, so whichever the child asks for first is.
    for i in 0..data.len() / PIECE {
        flip(&holder, &d, i * PIECE + 17);
    }

    let child = Daemon::start_peer(&o.front, cluster.peer("node-b")).await;
    let (code, _, body) = get_all(&child.blob_url("rot/app", &d), None).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(sha256_digest(&body), d);
    assert!(sample(&child.metrics().await, "shoal_piece_failures_total{kind=\"corrupt\"}") >= 1.0);
    assert_eq!(sample(&holder.metrics().await, STORED), 1.0, "the holder counts its damaged copy once");
    assert!(!blob_file(&holder, &d).exists(), "the damaged copy is gone from the holder's store");
    assert_eq!(holder.status().await["store"]["complete_blobs"], 0);
}
