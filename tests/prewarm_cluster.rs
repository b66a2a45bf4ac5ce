//! `shoal prewarm --all-nodes | --nodes N | --selector` with real
//! processes: a `shoal scheduler`, three `shoal daemon --swarm` nodes in two
//! zones, Debian's docker-registry behind a counting front. The job runs on
//! the nodes the scheduler picks, every picked node ends up holding every
//! blob, the origin sends each blob about once for the whole job, and a
//! node that cannot reach the origin fails with its name and the cause.

use std::time::Duration;

use shoal_e2e::{Origin, Pki, SchedulerProcess, complete_blobs, swarm_peer, swarm_toml};
use shoal_testkit::{ShoalDaemon, free_port, shoal_bin};

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `shoal prewarm ARGS` against `node`'s mirror and admin API.
async fn prewarm(node: &ShoalDaemon, args: &[&str]) -> Run {
    let admin = node.metrics_url();
    let mut cmd = tokio::process::Command::new(shoal_bin().unwrap());
    cmd.arg("prewarm").args(["--mirror", &node.mirror_url(), "--admin", &admin, "--timeout", "120s"]).args(args);
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output()).await.expect("prewarm hung").unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn states(json: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let state = match &n["state"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.as_object().unwrap().keys().next().unwrap().clone(),
            };
            (n["host"].as_str().unwrap().to_owned(), state)
        })
        .collect();
    v.sort();
    v
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_nodes_are_warmed_through_the_swarm_and_a_rerun_fetches_nothing() {
    let origin = Origin::start().await;
    let image = origin.push_image("e2e/fleet:v1", &[6 << 20, 4 << 20], None).await;
    let pki = Pki::new();
    let sched = SchedulerProcess::start(&pki, "scheduler-0").await;
    let mut nodes = Vec::new();
    for (i, zone) in ["a", "a", "b"].iter().enumerate() {
        nodes.push(swarm_peer(&origin, &pki, &format!("node-{i}"), &[&sched], &format!("zone = {zone:?}")).await);
    }
    let reference = format!("{}/e2e/fleet:v1", origin.front.host());
    let blobs = image.blob_digests();

    let run = prewarm(&nodes[0], &[&reference, "--all-nodes", "--wait", "--output", "json"]).await;
    assert!(run.ok, "prewarm failed: {}", run.stderr);
    let job: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(states(&job), pairs(&[("node-0", "done"), ("node-1", "done"), ("node-2", "done")]), "{job:#}");
    for node in &job["nodes"].as_array().unwrap()[..] {
        let image_progress = &node["images"][0];
        assert_eq!(image_progress["bytes_done"].as_u64(), Some(image.blob_bytes()), "{node:#}");
        assert_eq!(image_progress["blobs_done"].as_u64(), Some(blobs.len() as u64), "{node:#}");
    }
    for node in &nodes {
        assert_eq!(complete_blobs(node, blobs.len() as u64).await, blobs.len() as u64);
    }
    // The origin sent about one copy for three nodes.
    let sent = origin.front.total_blob_bytes();
    assert!(
        sent as f64 <= 1.1 * image.blob_bytes() as f64,
        "origin sent {sent} bytes for a {}-byte image warmed on 3 nodes",
        image.blob_bytes()
    );

    // A re-run finds everything in place.
    let gets = origin.front.total_blob_gets();
    let run = prewarm(&nodes[1], &[&reference, "--all-nodes", "--wait"]).await;
    assert!(run.ok, "re-run failed: {}", run.stderr);
    assert!(run.stderr.contains("3 of 3 nodes done, 0 failed"), "{}", run.stderr);
    assert_eq!(origin.front.total_blob_gets(), gets, "a finished prewarm fetches nothing from the origin again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn selectors_pick_nodes_and_failures_name_the_node_and_the_cause() {
    let origin = Origin::start().await;
    let image = origin.push_image("e2e/zoned:v1", &[3 << 20], None).await;
    let pki = Pki::new();
    let sched = SchedulerProcess::start(&pki, "scheduler-0").await;
    let a0 = swarm_peer(&origin, &pki, "node-a0", &[&sched], "zone = \"a\"").await;
    let a1 = swarm_peer(&origin, &pki, "node-a1", &[&sched], "zone = \"a\"").await;
    // Zone b's node has a dead origin: nothing listens on its upstream port.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let b0 = ShoalDaemon::builder()
        .default_registry(&origin.front.host())
        .registry(&origin.front.host(), &dead)
        .config_toml(&swarm_toml(&pki, "node-b0", &[&sched], "zone = \"b\""))
        .start()
        .await
        .unwrap();
    let reference = format!("{}/e2e/zoned:v1", origin.front.host());
    let blobs = image.blob_digests().len() as u64;

    // --nodes 1 takes one node; zone a sorts first. Submitted from node-a1,
    // which checks the image but must not fetch it itself.
    let run = prewarm(&a1, &[&reference, "--nodes", "1", "--wait", "--output", "json"]).await;
    assert!(run.ok, "{}", run.stderr);
    let job: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(states(&job), pairs(&[("node-a0", "done")]));
    assert_eq!(complete_blobs(&a0, blobs).await, blobs);
    let status: serde_json::Value =
        reqwest::get(format!("{}/api/v1/status", a1.metrics_url())).await.unwrap().json().await.unwrap();
    assert_eq!(status["store"]["complete_blobs"], 0, "the submitting node fetched the image: {status}");
    assert_eq!(status["store"]["partial_blobs"], 0, "the submitting node fetched the image: {status}");

    // A selector takes exactly the matching nodes.
    let run = prewarm(&a0, &[&reference, "--selector", "zone=a", "--wait", "--output", "json"]).await;
    assert!(run.ok, "{}", run.stderr);
    let job: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(states(&job), pairs(&[("node-a0", "done"), ("node-a1", "done")]));
    assert_eq!(complete_blobs(&a1, blobs).await, blobs);
    assert_eq!(complete_blobs(&b0, 0).await, 0, "zone b was not asked");

    // No match: the scheduler says what exists.
    let run = prewarm(&a0, &[&reference, "--selector", "zone=c"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("no registered node matches zone=c (the nodes' zone values: a, b)"), "{}", run.stderr);

    // A node that fails: the command exits non-zero naming it and the cause.
    let run = prewarm(&a0, &[&reference, "--selector", "zone=b", "--wait"]).await;
    assert!(!run.ok, "a failed node must fail the command");
    let line = run.stderr.lines().find(|l| l.starts_with("error: node node-b0:")).unwrap_or_else(|| {
        panic!("no error line for node-b0 in:\n{}", run.stderr);
    });
    assert!(line.contains(&reference), "{line}");
    assert!(run.stderr.contains("prewarm failed on node-b0"), "{}", run.stderr);

    // A bad image fails before any node is asked, with the local one-liner.
    let missing = format!("{}/e2e/nothing:v9", origin.front.host());
    let run = prewarm(&a0, &[&missing, "--all-nodes", "--wait"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains(&format!("{missing}: not found at")), "{}", run.stderr);
    assert!(!run.stderr.contains("prewarm job"), "no job should be submitted: {}", run.stderr);
}
