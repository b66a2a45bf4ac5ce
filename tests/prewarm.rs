//! `shoal prewarm` against a real registry through a real daemon: every
//! blob lands in the store, a re-run fetches nothing from the origin, and
//! failures name the image and the cause.

use shoal_e2e::{Origin, shoal_for};
use shoal_testkit::{Registry, shoal_bin};

/// Run `shoal prewarm` as a process (async: the counting front serves on
/// this test's runtime meanwhile).
async fn prewarm(mirror: &str, images: &[&str], json: bool) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(shoal_bin().unwrap());
    cmd.arg("prewarm").args(["--mirror", mirror]).args(images);
    if json {
        cmd.args(["--output", "json"]);
    }
    let out = cmd.output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prewarm_fills_the_store_and_a_rerun_fetches_nothing() {
    let origin = Origin::start().await;
    let image = origin.push_image("e2e/warm:v1", &[2 << 20, 3 << 20], None).await;
    let shoal = shoal_for(&origin.front, None, "").await;
    let reference = format!("{}/e2e/warm:v1", origin.front.host());

    let (ok, stdout, stderr) = prewarm(&shoal.mirror_url(), &[&reference], true).await;
    assert!(ok, "prewarm failed: {stderr}");
    let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(reports[0]["ok"], true);
    assert_eq!(reports[0]["bytes"].as_u64().unwrap(), image.blob_bytes());
    for blob in image.blob_digests() {
        assert_eq!(origin.front.blob_gets(&blob), 1, "{blob} fetched once from the origin");
    }
    // The last blob is recorded complete right after its bytes are
    // verified (its fdatasync does not hold the response): allow a moment.
    let want = image.blob_digests().len() as u64;
    let stored = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let status: serde_json::Value =
                reqwest::get(format!("{}/api/v1/status", shoal.metrics_url())).await.unwrap().json().await.unwrap();
            if status["store"]["complete_blobs"].as_u64() == Some(want) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(stored.is_ok(), "the store never held all {want} blobs");

    let gets = origin.front.total_blob_gets();
    let (ok, _, stderr) = prewarm(&shoal.mirror_url(), &[&reference], false).await;
    assert!(ok, "re-run failed: {stderr}");
    assert_eq!(origin.front.total_blob_gets(), gets, "a finished prewarm fetches nothing from the origin again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_name_the_image_and_the_cause() {
    let registry = Registry::builder().htpasswd(&[("alice", "pw")]).start().await.unwrap();
    let origin = Origin::around(registry).await;
    origin.push_image("e2e/private:v1", &[1 << 20], Some(("alice", "pw"))).await;
    let shoal = shoal_for(&origin.front, None, "").await;
    let host = origin.front.host();

    let missing = format!("{host}/e2e/nothing:v9");
    let private = format!("{host}/e2e/private:v1");
    let (ok, _, stderr) = prewarm(&shoal.mirror_url(), &[&missing, &private], false).await;
    assert!(!ok, "prewarm must fail");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(lines.iter().any(|l| l.contains(&private) && l.contains("refused the credentials")), "{stderr}");
    assert!(lines.iter().any(|l| l.contains(&missing)), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_nodes_need_a_swarm() {
    let origin = Origin::start().await;
    origin.push_image("e2e/solo:v1", &[1 << 20], None).await;
    let shoal = shoal_for(&origin.front, None, "").await;
    let reference = format!("{}/e2e/solo:v1", origin.front.host());
    let out = tokio::process::Command::new(shoal_bin().unwrap())
        .args(["prewarm", "--mirror", &shoal.mirror_url(), "--admin", &shoal.metrics_url(), "--all-nodes", &reference])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("this daemon is not in a swarm"), "{stderr}");
    // --wait without a node option is a usage error.
    let out = tokio::process::Command::new(shoal_bin().unwrap())
        .args(["prewarm", "--mirror", &shoal.mirror_url(), "--wait", &reference])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--wait follows a job on other nodes"));
}
