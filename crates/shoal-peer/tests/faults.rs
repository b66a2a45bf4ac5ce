//! A misbehaving origin: wrong bytes, short and long bodies, ignored
//! ranges, 5xx, resets and stalls. Each is retried within bounds or ends in
//! a clear client error, and nothing corrupt is ever stored or completed.

mod support;

use std::time::Duration;

use shoal_testkit::{Fault, random_bytes};
use support::{Daemon, Origin, get_all, sample};

const MIB: usize = 1 << 20;

async fn setup(size: usize, seed: u64) -> (Origin, Vec<u8>, String) {
    let o = Origin::start().await;
    let data = random_bytes(size, seed);
    let d = o.blob("faulty/app", data.clone()).await;
    (o, data, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_bytes_cut_the_response_and_nothing_is_kept() {
    let (o, data, d) = setup(6 * MIB, 1).await;
    o.front.set_fault(&d, Fault::CorruptByte { offset: 5 * MIB as u64 }, 1);
    // No fetch again on its own (tests/corrupt_origin.rs covers that).
    let daemon = Daemon::start(&o.front, |c, _| c.download.corrupt_retries = 0).await;
    let url = daemon.blob_url("faulty/app", &d);

    let got = get_all(&url, None).await;
    assert!(got.is_err(), "a corrupt blob must not complete: {:?}", got.map(|g| g.2.len()));
    let m = daemon.metrics().await;
    assert_eq!(sample(&m, "shoal_verification_failures_total{kind=\"blob\"}"), 1.0);
    let status = daemon.status().await;
    assert_eq!(status["store"]["complete_blobs"], 0);
    assert_eq!(status["store"]["partial_blobs"], 0, "nothing of the bad download is kept");

    // The next request fetches again (nothing was kept) and now succeeds.
    let (code, _, body) = get_all(&url, None).await.unwrap();
    assert_eq!(code, 200);
    assert!(body == data);
    assert_eq!(o.front.blob_gets(&d), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_body_is_resumed_at_the_exact_offset() {
    let (o, data, d) = setup(7 * MIB, 2).await;
    let cut = 3 * MIB as u64 + 17;
    o.front.set_fault(&d, Fault::Truncate { after: cut }, 1);
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let (code, _, body) = get_all(&daemon.blob_url("faulty/app", &d), None).await.unwrap();
    assert_eq!(code, 200);
    assert!(body == data);
    let gets: Vec<_> = o.front.requests().into_iter().filter(|r| r.method == "GET" && r.path.ends_with(&d)).collect();
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1].range.as_deref(), Some(format!("bytes={cut}-").as_str()));
    assert_eq!(o.front.blob_bytes(&d), data.len() as u64, "no byte fetched twice");
    assert_eq!(sample(&daemon.metrics().await, "shoal_origin_retries_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn origin_ignoring_range_on_a_retry_still_gives_exact_bytes() {
    let (o, data, d) = setup(5 * MIB, 3).await;
    o.front.set_fault(&d, Fault::Truncate { after: MIB as u64 }, 1);
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    // The retry's Range is dropped by the front: the origin answers 200.
    let url = daemon.blob_url("faulty/app", &d);
    o.front.set_rate_limit(Some(4 * MIB as u64));
    let waiter = tokio::spawn(async move { get_all(&url, None).await });
    // Once the first (truncated) GET is under way, arm the second fault.
    tokio::time::timeout(Duration::from_secs(10), async {
        while o.front.blob_gets(&d) < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    o.front.set_fault(&d, Fault::IgnoreRange, 1);
    let (code, _, body) = waiter.await.unwrap().unwrap();
    assert_eq!(code, 200);
    assert!(body == data);
    let gets: Vec<_> = o.front.requests().into_iter().filter(|r| r.method == "GET" && r.path.ends_with(&d)).collect();
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1].range.as_deref(), Some(format!("bytes={}-", MIB).as_str()));
    assert_eq!(gets[1].status, 200, "the origin must have ignored the range");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resets_stalls_and_5xx_are_retried() {
    let o = Origin::start().await;
    let daemon = Daemon::start(&o.front, |_, reg| {
        reg.read_timeout = shoal_core::HumanDuration(Duration::from_millis(500));
    })
    .await;
    let faults = [
        (Fault::Status(503), 2),
        (Fault::ResetAfter { bytes: 2 * MIB as u64 }, 1),
        (Fault::StallAfter { bytes: MIB as u64, for_: Duration::from_secs(3) }, 1),
    ];
    for (seed, (fault, times)) in faults.into_iter().enumerate() {
        let data = random_bytes(5 * MIB, 40 + seed as u64);
        let d = o.blob("faulty/app", data.clone()).await;
        o.front.set_fault(&d, fault.clone(), times);
        let url = daemon.blob_url("faulty/app", &d);
        let (code, _, body) = get_all(&url, None).await.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(code, 200, "{fault:?}");
        assert!(body == data, "{fault:?}: bytes differ");
        assert!(o.front.blob_gets(&d) >= 2, "{fault:?} was not retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_longer_body_than_the_digest_is_rejected() {
    let (o, _data, d) = setup(MIB, 5).await;
    o.front.set_fault(&d, Fault::ExtraBytes { count: 100 }, 10);
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let got = get_all(&daemon.blob_url("faulty/app", &d), None).await;
    match got {
        Err(_) => {}
        Ok((code, _, body)) => {
            assert_ne!(code, 200, "a blob with extra bytes must not be served as good");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["errors"][0]["code"], "DIGEST_INVALID");
        }
    }
    let status = daemon.status().await;
    assert_eq!(status["store"]["complete_blobs"], 0);
    assert_eq!(status["store"]["partial_blobs"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_origin_that_keeps_failing_gives_a_clear_502() {
    let (o, _data, d) = setup(MIB, 6).await;
    o.front.set_fault(&d, Fault::Status(503), 100);
    let daemon = Daemon::start(&o.front, |cfg, reg| {
        cfg.download.retries = 2;
        reg.retries = 0;
    })
    .await;
    let (code, _, body) = get_all(&daemon.blob_url("faulty/app", &d), None).await.unwrap();
    assert_eq!(code, 502);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE");
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("503") && msg.contains(&o.front.host()), "{msg}");
    assert_eq!(o.front.blob_gets(&d), 3, "one try plus two retries");
}
