//! Wrong bytes from the origin: a blob whose bytes fail its digest is
//! fetched again by the daemon itself, a bounded number of times
//! (`DownloadConfig::corrupt_retries`, default 2). The response that
//! streamed the bad bytes is cut (it must never complete); the blob is
//! then stored from the new fetch without any client asking again, and
//! the next request gets it. An origin that corrupts every time costs a
//! bounded number of origin requests.

mod support;

use std::time::Duration;

use shoal_testkit::{Fault, random_bytes};
use support::{Daemon, Origin, get_all, sample};

const MIB: usize = 1 << 20;

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_corrupt_origin_byte_is_fetched_again_and_the_blob_is_stored() {
    let o = Origin::start().await;
    let data = random_bytes(6 * MIB, 11);
    let d = o.blob("corrupt/app", data.clone()).await;
    o.front.set_fault(&d, Fault::CorruptByte { offset: 5 * MIB as u64 }, 1);
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let url = daemon.blob_url("corrupt/app", &d);

    let got = get_all(&url, None).await;
    assert!(got.is_err(), "the response that streamed the bad byte must not complete");
    // No client asks again: the daemon fetches it again on its own.
    wait_for("the blob to be stored from the second fetch", async || {
        daemon.status().await["store"]["complete_blobs"] == 1
    })
    .await;
    assert_eq!(o.front.blob_gets(&d), 2, "one fetch again");
    let m = daemon.metrics().await;
    assert_eq!(sample(&m, "shoal_verification_failures_total{kind=\"blob\"}"), 1.0);

    let (code, _, body) = get_all(&url, None).await.unwrap();
    assert_eq!(code, 200);
    assert!(body == data, "the bytes match the digest");
    assert_eq!(o.front.blob_gets(&d), 2, "served from the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_origin_corrupting_every_time_costs_a_bounded_number_of_fetches() {
    let o = Origin::start().await;
    let data = random_bytes(3 * MIB, 12);
    let d = o.blob("corrupt/app", data).await;
    o.front.set_fault(&d, Fault::CorruptByte { offset: MIB as u64 }, 1000);
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let url = daemon.blob_url("corrupt/app", &d);

    let got = get_all(&url, None).await;
    assert!(got.is_err(), "a blob that never matches its digest is never served whole");
    // The first fetch and two more (the default), then the download ends.
    wait_for("the fetches to end", async || {
        o.front.blob_gets(&d) >= 3 && daemon.status().await["downloads"].as_array().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(o.front.blob_gets(&d), 3, "1 + corrupt_retries origin fetches, no more");
    let status = daemon.status().await;
    assert_eq!(status["store"]["complete_blobs"], 0);
    assert_eq!(status["store"]["partial_blobs"], 0, "nothing of the bad fetches is kept");
    let m = daemon.metrics().await;
    assert_eq!(sample(&m, "shoal_verification_failures_total{kind=\"blob\"}"), 3.0);
}
