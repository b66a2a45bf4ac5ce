//! A warm shoal does not hand a private image to a containerd without
//! credentials: after an authorised `ctr pull` has cached the image in
//! shoal, a fresh containerd pulling it by digest (what a pod spec pinned
//! to a digest does) with no credentials fails, and a recording front
//! before shoal shows that shoal answered no manifest or blob request with
//! content. (The CRI path, with pull secrets, is in `cri.rs`.)

use shoal_e2e::{Origin, assert_has_image, hosts_dir, pull_fresh, served_bytes, shoal_for};
use shoal_testkit::client::basic_auth_value;
use shoal_testkit::{Containerd, CountingFront, Registry, RequestRecord};

const USER: &str = "alice";
const PASS: &str = "s3cret";

fn is_content(r: &RequestRecord) -> bool {
    r.path.contains("/manifests/") || r.path.contains("/blobs/")
}

fn show(records: &[RequestRecord]) -> String {
    let line = |r: &RequestRecord| {
        let auth = if r.authorization.is_some() { "with credentials" } else { "anonymous" };
        format!("\n  {} {} -> {} ({auth}, {} body bytes)", r.method, r.path, r.status, r.body_bytes)
    };
    records.iter().map(line).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cached_private_image_pulled_by_digest_needs_credentials() {
    let registry = Registry::builder().htpasswd(&[(USER, PASS)]).start().await.unwrap();
    let origin = Origin::around(registry).await;
    let image = origin.push_image("private/app:v1", &[1 << 20, 256 << 10], Some((USER, PASS))).await;
    let shoal = shoal_for(&origin.front, None, "").await;
    // containerd's mirror: records each request and forwards it to shoal.
    let at_shoal = CountingFront::start(&shoal.mirror_url()).await.unwrap();
    let hosts = hosts_dir(&origin.front, Some(&at_shoal.url()));

    let by_tag = format!("{}/private/app:v1", origin.front.host());
    let warm = pull_fresh(&by_tag, hosts.path(), Some(&format!("{USER}:{PASS}"))).await;
    assert_has_image(&warm, &image).await;
    let alice = basic_auth_value(USER, PASS).to_str().unwrap().to_owned();
    for d in image.blob_digests() {
        let served = at_shoal.requests().into_iter().any(|r| {
            r.method == "GET" && r.path.ends_with(&d) && r.status == 200 && r.authorization.as_deref() == Some(&alice)
        });
        assert!(served, "shoal served {d} to alice and holds it:{}", show(&at_shoal.requests()));
    }
    drop(warm);
    let served_before = served_bytes(&shoal.metrics_url()).await;
    at_shoal.reset_counts();

    let by_digest = format!("{}/private/app@{}", origin.front.host(), image.manifest_digest);
    let cold = Containerd::start().await.expect("start containerd");
    let pulled = cold.pull(&by_digest, hosts.path(), None).await;
    assert!(pulled.is_err(), "a containerd without credentials pulled the private image by digest");
    let have = cold.content_digests().await.expect("ctr content ls");
    for d in image.blob_digests().iter().chain([&image.manifest_digest]) {
        assert!(!have.contains(d), "containerd got {d} without credentials");
    }
    let asked = at_shoal.requests();
    assert!(asked.iter().any(is_content), "containerd asked shoal first:{}", show(&asked));
    for r in asked.iter().filter(|r| is_content(r)) {
        assert!(r.authorization.is_none(), "containerd had no credentials to send: {r:?}");
        assert_eq!(r.status, 401, "shoal passes on the origin's refusal:{}", show(&asked));
    }
    assert_eq!(served_bytes(&shoal.metrics_url()).await, served_before, "shoal served no blob bytes");
}
