//! Clients that send credentials only after a challenge (skopeo with
//! `--src-creds`, podman, Docker) first ask `GET /v2/`. The mirror answers it
//! as the origin does, challenge included, so they authenticate and then pull
//! a private image through shoal.

use std::time::Duration;

use shoal_e2e::{Origin, shoal_for};
use shoal_testkit::{Registry, require_tool, sha256_digest};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skopeo_with_src_creds_pulls_a_private_image_through_shoal() {
    let registry = Registry::builder().htpasswd(&[("alice", "s3cret")]).start().await.unwrap();
    let origin = Origin::around(registry).await;
    let image = origin.push_image("private/skopeo:v1", &[1 << 20, 300 << 10], Some(("alice", "s3cret"))).await;
    let shoal = shoal_for(&origin.front, None, "").await;
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("image");

    let mut cmd = tokio::process::Command::new(require_tool("skopeo").unwrap());
    cmd.args(["--insecure-policy", "copy", "--src-creds", "alice:s3cret", "--src-tls-verify=false"])
        .arg(format!("docker://{}/private/skopeo:v1", shoal.mirror_host()))
        .arg(format!("dir:{}", dest.display()));
    if let Err(e) = shoal_testkit::command::run(cmd, Duration::from_secs(120)).await {
        panic!("skopeo copy through shoal failed: {e}\nshoal log:\n{}", shoal.log_tail(4000));
    }

    // Every blob and the manifest arrived with the bytes their digests name.
    let manifest = std::fs::read(dest.join("manifest.json")).unwrap();
    assert_eq!(sha256_digest(&manifest), image.manifest_digest);
    for d in image.blob_digests() {
        let hex = d.strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(dest.join(hex)).unwrap_or_else(|e| panic!("skopeo did not write {d}: {e}"));
        assert_eq!(sha256_digest(&bytes), d);
    }
    // They came through the mirror, not around it.
    let metrics = reqwest::get(format!("{}/metrics", shoal.metrics_url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kind=\"base\",method=\"GET\",status=\"401\""), "the ping was challenged:\n{metrics}");
    assert!(metrics.contains("kind=\"blob\",method=\"GET\",status=\"200\""), "{metrics}");
    for d in image.blob_digests() {
        assert!(origin.front.blob_gets(&d) >= 1, "{d} reached the origin through shoal");
    }
}
