//! Authorization, tried as an attacker would: private content cached in
//! shoal by an authorised pull is asked for without credentials, with
//! wrong ones, under another repository, while it is still downloading,
//! from a resumed partial, while the origin is down, through a registry
//! that answers yes to everything (on one node and across a swarm), and
//! with node credentials that are not shared. Each refusal is checked next
//! to the good path it contrasts with, and the cache of the origin's
//! answers is checked by what the origin was asked.

mod support;

use std::time::Duration;

use shoal_testkit::{random_bytes, sha256_digest};
use support::fake_registry::FakeRegistry;
use support::private::{PASS, USER, alice, ask, asked, basic, pull, push_image, shown, until_complete};
use support::{Cluster, Daemon, Origin, sample};
use tokio::time::Instant;

const MIB: usize = 1 << 20;

/// The challenge the registry sends a request without credentials.
async fn origin_challenge(o: &Origin, repo: &str, digest: &str) -> String {
    let resp = reqwest::get(format!("{}/v2/{repo}/blobs/{digest}", o.registry.url())).await.unwrap();
    assert_eq!(resp.status(), 401, "the registry is private");
    resp.headers()["www-authenticate"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_private_content_goes_only_to_credentials_the_origin_accepts() {
    let o = Origin::private(&[(USER, PASS)]).await;
    let image = push_image(&o.registry, "private/app", "v1", Some((USER, PASS)), 300_000, 1).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    pull(&daemon.mirror, &image, Some(&alice())).await;
    until_complete(&daemon, 2).await;
    let (layer, layer_bytes) = image.layer();
    let challenge = origin_challenge(&o, "private/app", layer).await;

    let (m, repo) = (&daemon.mirror, &image.repo);
    let (config, config_bytes) = (&image.blobs[0].0, &image.blobs[0].1);
    let blob = format!("{m}/v2/{repo}/blobs/{layer}");
    let config_url = format!("{m}/v2/{repo}/blobs/{config}");
    let by_digest = format!("{m}/v2/{repo}/manifests/{}", image.digest);
    let by_tag = format!("{m}/v2/{repo}/manifests/{}", image.tag);
    let cases: [(&str, &str, &[u8], &str); 7] = [
        ("GET", &blob, layer_bytes, layer),
        ("HEAD", &blob, layer_bytes, layer),
        ("GET", &config_url, config_bytes, config),
        ("GET", &by_digest, &image.manifest, &image.digest),
        ("HEAD", &by_digest, &image.manifest, &image.digest),
        ("GET", &by_tag, &image.manifest, &image.digest),
        ("HEAD", &by_tag, &image.manifest, &image.digest),
    ];
    let wrong = basic(USER, "not-her-password");
    for (method, url, content, digest) in cases {
        for (who, auth) in [("no credentials", None), ("wrong credentials", Some(wrong.as_str()))] {
            let a = ask(method, url, auth).await;
            assert_eq!(a.status, 401, "{method} {url} with {who}: {a:?}");
            assert_eq!(a.header("www-authenticate"), challenge, "{method} {url} with {who}: the origin's challenge");
            assert!(!a.leaks(content), "{method} {url} with {who}: content in the refusal");
            assert_eq!(a.header("docker-content-digest"), "", "{method} {url} with {who}");
        }
        let a = ask(method, url, Some(&alice())).await;
        assert_eq!(a.status, 200, "{method} {url} with alice's credentials: {a:?}");
        assert_eq!(a.header("docker-content-digest"), digest, "{method} {url}");
        assert_eq!(a.header("content-length"), content.len().to_string(), "{method} {url}");
        if method == "GET" {
            assert!(a.body == content, "{method} {url}: alice gets the right bytes");
        }
    }
    let metrics = daemon.metrics().await;
    assert!(sample(&metrics, "shoal_access_checks_total{result=\"refused\"}") >= 6.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repository_that_does_not_hold_the_digest_gets_404() {
    let o = Origin::private(&[(USER, PASS)]).await;
    let image = push_image(&o.registry, "private/app", "v1", Some((USER, PASS)), 300_000, 2).await;
    // Another repository alice can read, holding other content.
    let other = push_image(&o.registry, "other/repo", "v1", Some((USER, PASS)), 1000, 3).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    pull(&daemon.mirror, &image, Some(&alice())).await;
    pull(&daemon.mirror, &other, Some(&alice())).await;
    until_complete(&daemon, 4).await;
    let (layer, layer_bytes) = image.layer();

    for repo in ["other/repo", "nobody/here"] {
        let m = &daemon.mirror;
        let cases: [(&str, String, &[u8], &str); 4] = [
            ("GET", format!("{m}/v2/{repo}/blobs/{layer}"), layer_bytes, "BLOB_UNKNOWN"),
            ("HEAD", format!("{m}/v2/{repo}/blobs/{layer}"), layer_bytes, ""),
            ("GET", format!("{m}/v2/{repo}/manifests/{}", image.digest), &image.manifest, "MANIFEST_UNKNOWN"),
            ("HEAD", format!("{m}/v2/{repo}/manifests/{}", image.digest), &image.manifest, ""),
        ];
        for (method, url, content, code) in cases {
            let a = ask(method, &url, Some(&alice())).await;
            assert_eq!(a.status, 404, "{method} {url}: {a:?}");
            assert!(!a.leaks(content), "{method} {url}: content in the refusal");
            if !code.is_empty() {
                assert_eq!(a.code(), code, "{method} {url}");
            }
        }
    }
    // The origin was asked about each, in that repository.
    assert!(asked(&o.front, "HEAD", &format!("other/repo/blobs/{layer}")) >= 1, "{}", shown(&o.front));
    // The repository that does hold it still serves alice.
    let a = ask("GET", &daemon.blob_url(&image.repo, layer), Some(&alice())).await;
    assert!(a.status == 200 && a.body == layer_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_in_flight_is_not_shared_with_a_client_the_origin_refuses() {
    let o = Origin::private(&[(USER, PASS)]).await;
    let data = random_bytes(8 * MIB, 4);
    let d = o.blob_as("private/big", data.clone(), Some((USER, PASS))).await;
    o.front.set_rate_limit(Some(2 * MIB as u64));
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let url = daemon.blob_url("private/big", &d);

    let mut first =
        reqwest::Client::new().get(&url).header("Authorization", alice()).send().await.expect("alice's request");
    assert_eq!(first.status(), 200);
    let mut got = Vec::new();
    while got.len() < MIB {
        got.extend_from_slice(&first.chunk().await.unwrap().expect("more of the body"));
    }
    for (who, auth) in [("no credentials", None), ("wrong credentials", Some(basic(USER, "nope")))] {
        let started = Instant::now();
        let a = ask("GET", &url, auth.as_deref()).await;
        assert_eq!(a.status, 401, "{who}: {a:?}");
        assert!(!a.leaks(&data[..got.len()]), "{who}: bytes of the download in flight");
        assert!(started.elapsed() < Duration::from_secs(2), "{who} is refused at once, not after the download");
    }
    assert!(o.front.blob_bytes(&d) < data.len() as u64, "the refusals came while alice's download was streaming");
    o.front.set_rate_limit(None);
    while let Some(c) = first.chunk().await.unwrap() {
        got.extend_from_slice(&c);
    }
    assert!(got == data, "alice gets the right bytes");
    assert_eq!(o.front.blob_gets(&d), 1, "one download, alice's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_partial_is_not_served_without_credentials() {
    let o = Origin::private(&[(USER, PASS)]).await;
    let data = random_bytes(8 * MIB, 5);
    let d = o.blob_as("private/big", data.clone(), Some((USER, PASS))).await;
    o.front.set_rate_limit(Some(2 * MIB as u64));
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let url = daemon.blob_url("private/big", &d);
    let mut first = reqwest::Client::new().get(&url).header("Authorization", alice()).send().await.unwrap();
    let mut got = 0;
    while got < 3 * MIB {
        got += first.chunk().await.unwrap().expect("more of the body").len();
    }
    drop(first);
    let dir = daemon.stop().await;
    o.front.set_rate_limit(None);
    let daemon = Daemon::start_in(dir, &o.front, |_, _| {}).await;
    assert_eq!(daemon.status().await["store"]["partial_blobs"], 1, "a partial survived the restart");
    o.front.reset_counts();

    let url = daemon.blob_url("private/big", &d);
    for (who, auth) in [("no credentials", None), ("wrong credentials", Some(basic(USER, "nope")))] {
        for method in ["GET", "HEAD"] {
            let a = ask(method, &url, auth.as_deref()).await;
            assert_eq!(a.status, 401, "{method} with {who}: {a:?}");
            assert!(!a.leaks(&data[..3 * MIB]), "{method} with {who}: bytes of the partial");
        }
    }
    assert_eq!(o.front.blob_gets(&d), 0, "the refusals started no download:{}", shown(&o.front));
    let a = ask("GET", &url, Some(&alice())).await;
    assert!(a.status == 200 && a.body == data, "alice gets the blob: {} {} bytes", a.status, a.body.len());
    let gets: Vec<_> = o.front.requests().into_iter().filter(|r| r.method == "GET" && r.path.ends_with(&d)).collect();
    let resumed_at = gets[0].range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.split('-').next());
    assert!(resumed_at.is_some_and(|s| s != "0"), "alice's download resumed the partial: {gets:?}");
}

/// How long an anonymous client may wait for the 503 of a private
/// repository while the origin refuses connections or fails with 5xx: the
/// defaults retry 3 times with backoffs of at most 0.2 + 0.4 + 0.8 s. Far
/// under containerd's patience (it waits as long as the connection lives).
const REFUSED_QUICKLY: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_origin_down_private_content_goes_only_to_recently_confirmed_credentials() {
    let o = Origin::private(&[(USER, PASS)]).await;
    let image = push_image(&o.registry, "private/app", "v1", Some((USER, PASS)), 300_000, 6).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    pull(&daemon.mirror, &image, Some(&alice())).await;
    // The tag by GET too: a stale tag is answered from the stored manifest.
    let by_tag = format!("{}/v2/{}/manifests/{}", daemon.mirror, image.repo, image.tag);
    assert_eq!(ask("GET", &by_tag, Some(&alice())).await.status, 200);
    until_complete(&daemon, 2).await;
    let Origin { registry, front } = o;
    drop(registry); // the front answers 502 to everything now

    let (layer, layer_bytes) = image.layer();
    let blob = daemon.blob_url(&image.repo, layer);
    let by_digest = format!("{}/v2/{}/manifests/{}", daemon.mirror, image.repo, image.digest);
    let wrong = basic(USER, "nope");
    for (method, url, content) in [
        ("GET", &by_tag, &image.manifest[..]),
        ("HEAD", &by_tag, &image.manifest[..]),
        ("GET", &blob, layer_bytes),
        ("HEAD", &blob, layer_bytes),
        ("GET", &by_digest, &image.manifest[..]),
    ] {
        for (who, auth) in [("no credentials", None), ("wrong credentials", Some(wrong.as_str()))] {
            let started = Instant::now();
            let a = ask(method, url, auth).await;
            let took = started.elapsed();
            assert_eq!(a.status, 503, "{method} {url} with {who}: {a:?}");
            if method == "GET" {
                assert_eq!(a.code(), "UNAVAILABLE", "{method} {url} with {who}");
            }
            assert!(!a.leaks(content), "{method} {url} with {who}: content in the refusal");
            assert!(took < REFUSED_QUICKLY, "{method} {url} with {who} took {took:?}");
        }
    }
    let metrics = daemon.metrics().await;
    assert_eq!(sample(&metrics, "shoal_stale_tag_resolutions_total"), 0.0, "no stale tag went to a stranger");
    assert!(sample(&metrics, "shoal_access_checks_total{result=\"unavailable\"}") >= 6.0, "{metrics}");

    // Alice was confirmed minutes ago at most: she gets the stale tag and
    // the cached content.
    let a = ask("GET", &by_tag, Some(&alice())).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("docker-content-digest"), image.digest);
    assert!(a.body == image.manifest);
    assert_eq!(ask("HEAD", &by_tag, Some(&alice())).await.status, 200);
    let a = ask("GET", &by_digest, Some(&alice())).await;
    assert!(a.status == 200 && a.body == image.manifest, "{a:?}");
    for (d, bytes) in &image.blobs {
        let a = ask("GET", &daemon.blob_url(&image.repo, d), Some(&alice())).await;
        assert!(a.status == 200 && a.body == *bytes, "alice gets {d}: {}", a.status);
    }
    let metrics = daemon.metrics().await;
    assert_eq!(sample(&metrics, "shoal_stale_tag_resolutions_total"), 2.0, "{metrics}");
    assert_eq!(sample(&metrics, "shoal_access_checks_total{result=\"public_stale\"}"), 0.0, "{metrics}");
    drop(front);
}

/// A listener on 127.0.0.1 that accepts connections and never answers;
/// its URL. Stops (closing them) when the handle is dropped.
async fn black_hole() -> (String, AbortOnDrop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    (url, AbortOnDrop(task))
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An origin that accepts connections and never answers costs an anonymous
/// client of a private repository at most `auth_wait` before its 503, for a
/// cached blob and for a tag alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_origin_hanging_a_stranger_is_refused_within_auth_wait() {
    let o = Origin::private(&[(USER, PASS)]).await;
    let image = push_image(&o.registry, "private/app", "v1", Some((USER, PASS)), 300_000, 18).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    pull(&daemon.mirror, &image, Some(&alice())).await;
    let tag_path = format!("/v2/{}/manifests/{}", image.repo, image.tag);
    assert_eq!(ask("GET", &format!("{}{tag_path}", daemon.mirror), Some(&alice())).await.status, 200);
    until_complete(&daemon, 2).await;
    let dir = daemon.stop().await;
    let (hole, _hole) = black_hole().await;
    let wait = Duration::from_secs(2);
    let daemon = Daemon::start_in(dir, &o.front, |c, reg| {
        c.access.auth_wait = wait;
        reg.url = Some(hole.parse().unwrap());
    })
    .await;

    let (layer, layer_bytes) = image.layer();
    let blob = daemon.blob_url(&image.repo, layer);
    let by_tag = format!("{}{tag_path}", daemon.mirror);
    for (url, content) in [(&blob, layer_bytes), (&by_tag, &image.manifest[..])] {
        let started = Instant::now();
        let a = ask("GET", url, None).await;
        let took = started.elapsed();
        assert_eq!((a.status, a.code().as_str()), (503, "UNAVAILABLE"), "{url}: {a:?}");
        assert!(!a.leaks(content), "{url}: content in the refusal");
        assert!(took < wait + Duration::from_secs(1), "{url}: the 503 took {took:?}, auth_wait is {wait:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_origin_down_public_content_stays_available_after_auth_ttl() {
    let o = Origin::start().await;
    let image = push_image(&o.registry, "public/app", "v1", None, 300_000, 7).await;
    // Content the origin confirmed only for a client with credentials is
    // not known to be public.
    let held = random_bytes(200_000, 8);
    let held_d = o.blob("public/app", held.clone()).await;
    let ttl = Duration::from_millis(800);
    let daemon = Daemon::start(&o.front, |c, _| c.access.auth_ttl = ttl).await;
    pull(&daemon.mirror, &image, None).await;
    let by_tag = format!("{}/v2/{}/manifests/{}", daemon.mirror, image.repo, image.tag);
    assert_eq!(ask("GET", &by_tag, None).await.status, 200);
    let someone = basic("someone", "anything");
    let a = ask("GET", &daemon.blob_url("public/app", &held_d), Some(&someone)).await;
    assert!(a.status == 200 && a.body == held);
    until_complete(&daemon, 3).await;
    let Origin { registry, front } = o;
    drop(registry);
    tokio::time::sleep(ttl + Duration::from_millis(400)).await;

    let a = ask("GET", &by_tag, None).await;
    assert_eq!(a.status, 200, "the stale tag of public content: {a:?}");
    assert!(a.body == image.manifest);
    let a = ask("GET", &format!("{}/v2/{}/manifests/{}", daemon.mirror, image.repo, image.digest), None).await;
    assert!(a.status == 200 && a.body == image.manifest, "{a:?}");
    for (d, bytes) in &image.blobs {
        let a = ask("GET", &daemon.blob_url(&image.repo, d), None).await;
        assert!(a.status == 200 && a.body == *bytes, "public {d} during the outage: {}", a.status);
    }
    for auth in [None, Some(someone.as_str())] {
        let a = ask("GET", &daemon.blob_url("public/app", &held_d), auth).await;
        assert_eq!(a.status, 503, "{auth:?}: never confirmed for anonymous clients, and past auth_ttl: {a:?}");
        assert!(!a.leaks(&held));
    }
    let metrics = daemon.metrics().await;
    assert!(sample(&metrics, "shoal_access_checks_total{result=\"public_stale\"}") >= 3.0, "{metrics}");
    assert_eq!(sample(&metrics, "shoal_access_checks_total{result=\"unavailable\"}"), 2.0, "{metrics}");
    assert_eq!(sample(&metrics, "shoal_stale_tag_resolutions_total"), 1.0, "{metrics}");
    drop(front);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_that_says_yes_cannot_unlock_another_registrys_blob() {
    let o = Origin::start().await;
    let data = random_bytes(2 * MIB, 9);
    let d = o.blob("real/app", data.clone()).await;
    let slow = random_bytes(8 * MIB, 10);
    let slow_d = o.blob("real/app", slow.clone()).await;
    let image = push_image(&o.registry, "real/app", "v1", None, 1000, 11).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let a = ask("GET", &daemon.blob_url("real/app", &d), None).await;
    assert!(a.status == 200 && a.body == data);
    pull(&daemon.mirror, &image, None).await;
    until_complete(&daemon, 3).await;
    let fake = FakeRegistry::start(slow.len() as u64).await;
    let ns = format!("?ns={}", fake.host());

    // Stored: the fake registry is asked for a slice and fails the proof.
    for method in ["GET", "HEAD"] {
        let a = ask(method, &format!("{}{ns}", daemon.blob_url("any/repo", &d)), None).await;
        assert_eq!(a.status, 404, "{method}: {a:?}");
        assert!(!a.leaks(&data), "{method}: the real bytes");
        if method == "GET" {
            assert_eq!(a.code(), "BLOB_UNKNOWN");
            assert!(String::from_utf8_lossy(&a.body).contains(&fake.host()), "the refusal names the registry");
        }
    }
    assert!(fake.asked("GET", &d) >= 2, "the fake registry was asked for bytes: {:?}", fake.seen());
    // A manifest held from the real registry is fetched from the fake one,
    // and what it sends does not match the digest.
    let a = ask("GET", &format!("{}/v2/any/repo/manifests/{}{ns}", daemon.mirror, image.digest), None).await;
    assert_ne!(a.status, 200, "{a:?}");
    assert!(!a.leaks(&image.manifest));

    // In flight: the proof is against the pieces verified so far.
    o.front.set_rate_limit(Some(2 * MIB as u64));
    let mut first = reqwest::Client::new().get(daemon.blob_url("real/app", &slow_d)).send().await.unwrap();
    let mut got = Vec::new();
    while got.len() < MIB {
        got.extend_from_slice(&first.chunk().await.unwrap().expect("more of the body"));
    }
    let a = ask("GET", &format!("{}{ns}", daemon.blob_url("any/repo", &slow_d)), None).await;
    assert_eq!(a.status, 404, "in flight: {a:?}");
    assert!(!a.leaks(&slow[..got.len()]), "in flight: the real bytes");
    o.front.set_rate_limit(None);
    drop(first);

    let metrics = daemon.metrics().await;
    assert_eq!(sample(&metrics, "shoal_provenance_proofs_total{result=\"mismatch\"}"), 3.0, "{metrics}");
    assert_eq!(sample(&metrics, "shoal_provenance_proofs_total{result=\"held\"}"), 0.0, "{metrics}");
    // The real registry still serves it.
    let a = ask("GET", &daemon.blob_url("real/app", &d), None).await;
    assert!(a.status == 200 && a.body == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn across_nodes_a_registry_that_says_yes_gets_no_bytes_from_a_peer() {
    let o = Origin::start().await;
    let data = random_bytes(4 * MIB, 12);
    let d = o.blob("real/app", data.clone()).await;
    let cluster = Cluster::new();
    let a = Daemon::start_peer(&o.front, cluster.peer("node-a")).await;
    let b = Daemon::start_peer(&o.front, cluster.peer("node-b")).await;
    let got = ask("GET", &a.blob_url("real/app", &d), None).await;
    assert!(got.status == 200 && got.body == data);
    until_complete(&a, 1).await;
    // Let A's completion reach the scheduler.
    tokio::time::timeout(Duration::from_secs(10), async {
        while cluster.scheduler.stats().peer_tasks == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("A reported the blob");
    let fake = FakeRegistry::start(data.len() as u64).await;

    let url = format!("{}?ns={}", b.blob_url("any/repo", &d), fake.host());
    let got = tokio::time::timeout(Duration::from_secs(30), ask("GET", &url, None)).await.expect("B answers");
    assert!(!got.leaks(&data), "B served the real bytes under the fake registry's name: {} {}", got.status, got.cut);
    assert!(got.status != 200 || got.cut, "B must not complete a response: {got:?}");
    assert!(fake.asked("GET", &d) >= 1, "B went to the registry it was asked for: {:?}", fake.seen());
    let (ma, mb) = (a.metrics().await, b.metrics().await);
    assert_eq!(sample(&ma, "shoal_peer_sent_bytes_total"), 0.0, "A uploaded for the fake registry's task:\n{ma}");
    assert_eq!(sample(&mb, "shoal_peer_received_bytes_total"), 0.0, "B received pieces:\n{mb}");
    // The lie costs the real registry's clients nothing: B still gets
    // them the bytes.
    let got = ask("GET", &b.blob_url("real/app", &d), None).await;
    assert!(
        got.status == 200 && got.body == data,
        "after the fake registry's download failed, B refuses the real one: {} {}\nB: {}",
        got.status,
        String::from_utf8_lossy(&got.body[..got.body.len().min(400)]),
        b.status().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lying_registrys_download_in_flight_does_not_cost_the_honest_one_its_blob() {
    let o = Origin::start().await;
    let data = random_bytes(4 * MIB, 13);
    let d = o.blob("real/app", data.clone()).await;
    // About 1.5 s of junk under the real blob's digest.
    let fake = FakeRegistry::start_paced(data.len() as u64, Some(Duration::from_millis(25))).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let lie = format!("{}?ns={}", daemon.blob_url("any/repo", &d), fake.host());
    let liar = tokio::spawn(async move { ask("GET", &lie, None).await });
    // The lying download is under way and has stored some of its junk.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.asked("GET", &d) == 0 || sample(&daemon.metrics().await, "shoal_active_downloads") == 0.0 {
        assert!(Instant::now() < deadline, "the fake registry's download never started: {:?}", fake.seen());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The honest registry's client gets the real bytes: the junk in flight
    // proves nothing against it (it is checked against nothing until the
    // digest at its end, where it fails).
    let got = ask("GET", &daemon.blob_url("real/app", &d), None).await;
    assert!(
        got.status == 200 && got.body == data,
        "the honest registry's client was refused: {} {}",
        got.status,
        String::from_utf8_lossy(&got.body[..got.body.len().min(400)])
    );
    assert_eq!(o.front.blob_gets(&d), 1, "fetched once from the real registry");
    let lied = liar.await.unwrap();
    assert!(!lied.leaks(&data), "the real bytes went out under the fake registry's name");
    assert!(lied.status != 200 || lied.cut, "the junk must not complete a response: {lied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_credentials_answer_for_anonymous_clients_only_where_shared() {
    let o = Origin::private(&[(USER, PASS)]).await;
    let image = push_image(&o.registry, "private/app", "v1", Some((USER, PASS)), 300_000, 13).await;
    let own = |share: bool| {
        move |_: &mut shoal_peer::DaemonConfig, reg: &mut shoal_origin::RegistryConfig| {
            reg.username = Some(USER.to_owned());
            reg.password = Some(PASS.to_owned());
            reg.share_credentials = share;
        }
    };
    let private = Daemon::start(&o.front, own(false)).await;
    let shared = Daemon::start(&o.front, own(true)).await;
    // The private daemon holds the image (pulled by alice).
    pull(&private.mirror, &image, Some(&alice())).await;
    until_complete(&private, 2).await;
    let (layer, layer_bytes) = image.layer();

    for (method, path, content) in [
        ("GET", format!("/v2/{}/manifests/{}", image.repo, image.tag), &image.manifest[..]),
        ("GET", format!("/v2/{}/manifests/{}", image.repo, image.digest), &image.manifest[..]),
        ("GET", format!("/v2/{}/blobs/{layer}", image.repo), layer_bytes),
        ("HEAD", format!("/v2/{}/blobs/{layer}", image.repo), layer_bytes),
    ] {
        let a = ask(method, &format!("{}{path}", private.mirror), None).await;
        assert_eq!(a.status, 401, "{method} {path} at a daemon that keeps its credentials: {a:?}");
        assert!(!a.leaks(content));
    }
    pull(&shared.mirror, &image, None).await;
    let a = ask("GET", &format!("{}/v2/{}/manifests/{}", shared.mirror, image.repo, image.tag), None).await;
    assert!(a.status == 200 && a.body == image.manifest, "{a:?}");
}

/// Pull `image` with `auth`, then wait until both blobs are stored.
async fn pull_and_store(daemon: &Daemon, image: &support::private::Image, auth: &str) {
    pull(&daemon.mirror, image, Some(auth)).await;
    until_complete(daemon, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_vouches_for_its_blobs_for_the_same_credentials_within_auth_ttl() {
    let o = Origin::private(&[(USER, PASS), ("bob", "pw2")]).await;
    let image = push_image(&o.registry, "private/app", "v1", Some((USER, PASS)), 300_000, 14).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    pull_and_store(&daemon, &image, &alice()).await;
    for (d, _) in &image.blobs {
        assert_eq!(asked(&o.front, "HEAD", d), 0, "{d}: the manifest listed it:{}", shown(&o.front));
    }
    o.front.reset_counts();
    pull(&daemon.mirror, &image, Some(&alice())).await;
    let tag = format!("/v2/{}/manifests/{}", image.repo, image.tag);
    let seen: Vec<_> = o.front.requests().into_iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(seen, vec![("HEAD".to_owned(), tag)], "the second pull asks only for the tag");

    // Other credentials are asked about on their own.
    let bob = basic("bob", "pw2");
    let (layer, layer_bytes) = image.layer();
    for round in 1..=2 {
        let a = ask("GET", &daemon.blob_url(&image.repo, layer), Some(&bob)).await;
        assert!(a.status == 200 && a.body == layer_bytes);
        let heads: Vec<_> =
            o.front.requests().into_iter().filter(|r| r.method == "HEAD" && r.path.ends_with(layer)).collect();
        assert_eq!(heads.len(), 1, "round {round}: one check for bob, then cached:{}", shown(&o.front));
        assert_eq!(heads[0].authorization.as_deref(), Some(bob.as_str()), "with bob's own credentials");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_auth_ttl_zero_every_request_is_checked() {
    let o = Origin::private(&[(USER, PASS)]).await;
    let image = push_image(&o.registry, "private/app", "v1", Some((USER, PASS)), 300_000, 15).await;
    let daemon = Daemon::start(&o.front, |c, _| c.access.auth_ttl = Duration::ZERO).await;
    pull_and_store(&daemon, &image, &alice()).await;
    for (d, _) in &image.blobs {
        assert_eq!(asked(&o.front, "HEAD", &format!("/blobs/{d}")), 1, "{d}:{}", shown(&o.front));
    }
    o.front.reset_counts();
    pull(&daemon.mirror, &image, Some(&alice())).await;
    for (d, _) in &image.blobs {
        assert_eq!(asked(&o.front, "HEAD", &format!("/blobs/{d}")), 1, "{d}:{}", shown(&o.front));
    }
    assert_eq!(asked(&o.front, "HEAD", &format!("/manifests/{}", image.digest)), 1, "{}", shown(&o.front));
    assert_eq!(o.front.total_blob_gets(), 0, "the bytes came from the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_confirmation_is_asked_for_again() {
    let o = Origin::private(&[(USER, PASS)]).await;
    let image = push_image(&o.registry, "private/app", "v1", Some((USER, PASS)), 300_000, 16).await;
    // Long enough for the pull to finish inside it on a busy machine.
    let ttl = Duration::from_secs(2);
    let daemon = Daemon::start(&o.front, |c, _| c.access.auth_ttl = ttl).await;
    pull_and_store(&daemon, &image, &alice()).await;
    let (layer, layer_bytes) = image.layer();
    let head = format!("/blobs/{layer}");
    assert_eq!(asked(&o.front, "HEAD", &head), 0);
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    for _ in 0..2 {
        let a = ask("GET", &daemon.blob_url(&image.repo, layer), Some(&alice())).await;
        assert!(a.status == 200 && a.body == layer_bytes);
        assert_eq!(asked(&o.front, "HEAD", &head), 1, "checked once after expiry:{}", shown(&o.front));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusal_is_kept_only_for_refusal_ttl() {
    let o = Origin::private(&[(USER, PASS)]).await;
    let refusal_ttl = Duration::from_secs(2);
    let daemon = Daemon::start(&o.front, |c, _| c.access.refusal_ttl = refusal_ttl).await;
    let data = random_bytes(100_000, 17);
    let d = sha256_digest(&data);
    let url = daemon.blob_url("private/late", &d);
    let head = format!("/blobs/{d}");
    for _ in 0..2 {
        let a = ask("GET", &url, Some(&alice())).await;
        assert_eq!((a.status, a.code().as_str()), (404, "BLOB_UNKNOWN"), "not pushed yet: {a:?}");
    }
    assert_eq!(asked(&o.front, "HEAD", &head), 1, "the refusal was kept:{}", shown(&o.front));
    assert_eq!(o.blob_as("private/late", data.clone(), Some((USER, PASS))).await, d);
    tokio::time::sleep(refusal_ttl + Duration::from_millis(200)).await;
    let a = ask("GET", &url, Some(&alice())).await;
    assert!(a.status == 200 && a.body == data, "pushed, and refusal_ttl passed: {} {:?}", a.status, a.code());
    assert_eq!(asked(&o.front, "HEAD", &head), 2);
}
