//! Manifests through the mirror: tags resolve at the origin every time,
//! digests come from the store once verified, and a tag falls back to the
//! last digest seen when the origin is down.

mod support;

use shoal_testkit::{random_bytes, sha256_digest};
use support::{Daemon, Origin, get_all, sample};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Push a one-layer OCI image manifest under `repo:tag`; its digest.
async fn push_manifest(o: &Origin, repo: &str, tag: &str) -> (String, Vec<u8>) {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let layer = random_bytes(1000, 9);
    let cd = o.blob(repo, config.clone()).await;
    let ld = o.blob(repo, layer.clone()).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let resp = reqwest::Client::new()
        .put(format!("{}/v2/{repo}/manifests/{tag}", o.registry.url()))
        .header("Content-Type", OCI_MANIFEST)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    (sha256_digest(&body), body)
}

fn get_manifest(url: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().get(url).header("Accept", OCI_MANIFEST)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tags_resolve_at_the_origin_and_digests_come_from_the_store() {
    let o = Origin::start().await;
    let (digest, body) = push_manifest(&o, "demo/app", "v1").await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let by_tag = format!("{}/v2/demo/app/manifests/v1", daemon.mirror);

    for round in 1..=2 {
        let resp = get_manifest(&by_tag).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(resp.bytes().await.unwrap().to_vec(), body);
        assert_eq!(o.front.manifest_requests(), round, "every tag lookup asks the origin");
    }
    let head = reqwest::Client::new().head(&by_tag).header("Accept", OCI_MANIFEST).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(head.headers()["content-length"], body.len().to_string().as_str());
    let asked = o.front.manifest_requests();

    let by_digest = format!("{}/v2/demo/app/manifests/{digest}", daemon.mirror);
    let resp = get_manifest(&by_digest).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), body);
    assert_eq!(o.front.manifest_requests(), asked, "a digest already verified is served from the store");

    let missing = format!("{}/v2/demo/app/manifests/nope", daemon.mirror);
    let (status, _, err) = get_all(&missing, None).await.unwrap();
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_slice(&err).unwrap();
    assert_eq!(v["errors"][0]["code"], "MANIFEST_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tag_falls_back_to_the_last_digest_seen_when_the_origin_is_down() {
    let o = Origin::start().await;
    let (digest, body) = push_manifest(&o, "demo/app", "v1").await;
    let daemon = Daemon::start(&o.front, |_, reg| reg.retries = 0).await;
    let strict = Daemon::start(&o.front, |cfg, reg| {
        cfg.mirror.stale_tags = false;
        reg.retries = 0;
    })
    .await;
    for d in [&daemon, &strict] {
        let resp = get_manifest(&format!("{}/v2/demo/app/manifests/v1", d.mirror)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    drop(o); // the origin is gone: connections are refused

    let resp = get_manifest(&format!("{}/v2/demo/app/manifests/v1", daemon.mirror)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(resp.bytes().await.unwrap().to_vec(), body);
    let m = daemon.metrics().await;
    assert_eq!(sample(&m, "shoal_stale_tag_resolutions_total"), 1.0);

    let (status, _, err) = get_all(&format!("{}/v2/demo/app/manifests/v1", strict.mirror), None).await.unwrap();
    assert_eq!(status, 502);
    let v: serde_json::Value = serde_json::from_slice(&err).unwrap();
    assert_eq!(v["errors"][0]["code"], "UNAVAILABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_are_oci_bodies() {
    let o = Origin::start().await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let cases = [
        ("PUT", "/v2/demo/app/manifests/v1", 405, "UNSUPPORTED"),
        ("POST", "/v2/demo/app/blobs/uploads/", 405, "UNSUPPORTED"),
        (
            "DELETE",
            "/v2/demo/app/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            405,
            "UNSUPPORTED",
        ),
        ("GET", "/v2/_catalog", 405, "UNSUPPORTED"),
        ("GET", "/v2/Bad/manifests/v1", 400, "NAME_INVALID"),
        ("GET", "/v2/demo/app/blobs/sha256:1234", 400, "DIGEST_INVALID"),
        ("GET", "/v2/demo/app/manifests/-bad", 400, "MANIFEST_INVALID"),
    ];
    for (method, path, status, code) in cases {
        let resp = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", daemon.mirror))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["errors"][0]["code"], code, "{method} {path}");
    }
    let resp = reqwest::get(format!("{}/v2/", daemon.mirror)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["docker-distribution-api-version"], "registry/2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_pass_promtool() {
    let o = Origin::start().await;
    let d = o.blob("demo/app", random_bytes(1000, 1)).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    get_all(&daemon.blob_url("demo/app", &d), None).await.unwrap();
    get_all(&daemon.blob_url("demo/app", &d), None).await.unwrap();
    get_all(&format!("{}/v2/demo/app/manifests/none", daemon.mirror), None).await.unwrap();
    let text = daemon.metrics().await;
    for name in [
        "shoal_mirror_requests_total",
        "shoal_mirror_request_duration_seconds",
        "shoal_served_bytes_total",
        "shoal_origin_request_duration_seconds",
        "shoal_active_downloads",
        "shoal_store_bytes",
        "shoal_store_capacity_bytes",
        "shoal_store_evictions_total",
        "shoal_verification_failures_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing from\n{text}");
    }
    support::promtool_accepts(&text);
    let om = reqwest::Client::new()
        .get(format!("{}/metrics", daemon.admin))
        .header("Accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(om.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    assert!(om.text().await.unwrap().ends_with("# EOF\n"));
}

/// The config and layer digests of `body`.
fn blob_digests(body: &[u8]) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(body).unwrap();
    std::iter::once(&m["config"])
        .chain(m["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the store holds `n` complete blobs (10 s at most).
async fn complete_blobs(daemon: &Daemon, n: u64) -> u64 {
    let mut have = 0;
    for _ in 0..200 {
        have = daemon.status().await["store"]["complete_blobs"].as_u64().unwrap();
        if have >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    have
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serving_an_image_manifest_starts_its_blobs() {
    let o = Origin::start().await;
    let (_, body) = push_manifest(&o, "demo/pre", "v1").await;
    let blobs = blob_digests(&body);
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let resp = get_manifest(&format!("{}/v2/demo/pre/manifests/v1", daemon.mirror)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // No blob was asked for, yet every one lands in the store, once.
    assert_eq!(complete_blobs(&daemon, blobs.len() as u64).await, blobs.len() as u64);
    for d in &blobs {
        assert_eq!(o.front.blob_gets(d), 1, "{d}");
    }
    // The client's own requests are then served from the store.
    for d in &blobs {
        let (status, _, bytes) = get_all(&daemon.blob_url("demo/pre", d), None).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(&sha256_digest(&bytes), d);
        assert_eq!(o.front.blob_gets(d), 1, "{d} fetched again");
    }
    // A HEAD starts nothing.
    let daemon2 = Daemon::start(&o.front, |_, _| {}).await;
    let head = reqwest::Client::new()
        .head(format!("{}/v2/demo/pre/manifests/v1", daemon2.mirror))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(daemon2.status().await["store"]["complete_blobs"].as_u64(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefetch_can_be_turned_off() {
    let o = Origin::start().await;
    push_manifest(&o, "demo/nopre", "v1").await;
    let daemon = Daemon::start(&o.front, |c, _| c.mirror.prefetch = false).await;
    let resp = get_manifest(&format!("{}/v2/demo/nopre/manifests/v1", daemon.mirror)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(o.front.total_blob_gets(), 0);
}
