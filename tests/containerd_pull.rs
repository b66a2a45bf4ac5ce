//! containerd pulls an image through shoal: layers match the origin's
//! digests, a second containerd (fresh root) costs the origin no blob GETs,
//! and skopeo pulls through the default registry (no `ns`).

use shoal_e2e::{Origin, assert_has_image, hosts_dir, pull_fresh, shoal_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containerd_pulls_through_shoal_and_the_second_pull_costs_the_origin_nothing() {
    let origin = Origin::start().await;
    let image = origin.push_image("e2e/app:v1", &[3 << 20, 5 << 20], None).await;
    let shoal = shoal_for(&origin.front, None, "").await;
    let hosts = hosts_dir(&origin.front, Some(&shoal.mirror_url()));
    let reference = format!("{}/e2e/app:v1", origin.front.host());

    let first = pull_fresh(&reference, hosts.path(), None).await;
    assert_has_image(&first, &image).await;
    for blob in image.blob_digests() {
        assert_eq!(origin.front.blob_gets(&blob), 1, "{blob} should come from the origin exactly once");
    }
    let origin_blob_bytes = origin.front.total_blob_bytes();
    assert_eq!(origin_blob_bytes, image.blob_bytes(), "the origin sent each blob once, whole");
    // containerd went through the mirror: the mirror's metrics saw the blobs.
    let served = shoal_e2e::served_bytes(&shoal.metrics_url()).await;
    assert!(served >= image.blob_bytes() as f64, "shoal served {served} bytes, the image has {}", image.blob_bytes());

    let gets_before = origin.front.total_blob_gets();
    let second = pull_fresh(&reference, hosts.path(), None).await;
    assert_has_image(&second, &image).await;
    assert_eq!(origin.front.total_blob_gets(), gets_before, "the second pull must make zero blob GETs at the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skopeo_copies_through_the_default_registry() {
    let origin = Origin::start().await;
    let image = origin.push_image("e2e/tool:v2", &[1 << 20], None).await;
    let shoal = shoal_for(&origin.front, None, "").await;
    let out = tempfile::tempdir().unwrap();
    let status = tokio::process::Command::new(shoal_testkit::require_tool("skopeo").unwrap())
        .args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{}/e2e/tool:v2", shoal.mirror_host()),
            &format!("dir:{}", out.path().display()),
        ])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "skopeo copy through the mirror failed");
    for blob in image.blob_digests() {
        let hex = blob.strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(out.path().join(hex)).unwrap_or_else(|e| panic!("skopeo did not write {blob}: {e}"));
        assert_eq!(shoal_testkit::sha256_digest(&bytes), blob);
    }
}
