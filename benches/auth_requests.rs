//! What the access checks cost the origin: requests per pull of a private
//! 10-layer image through shoal, by kind, for a cold pull, a warm pull
//! within `auth_ttl`, and a warm pull after it expired; and the same warm
//! pull with `auth_ttl = 0` (every request checked).
//!
//! Real parts: docker-registry with htpasswd behind the testkit's counting
//! front (the "origin"), the release `shoal daemon`, and a fresh containerd
//! (`ctr pull` with the user's credentials, hosts.toml pointing at shoal
//! first) for every pull, so the client has nothing cached.
//!
//! Run: `cargo build --release -p shoal && cargo bench -p shoal-benches --bench auth_requests`
//! (root: containerd). `auth_ttl` is set to 5 s here so the expiry case
//! runs quickly; the count does not depend on its length. Writes
//! `target/bench/auth-requests.json` and prints the table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_testkit::{Containerd, CountingFront, ImageSpec, Registry, ShoalDaemon, write_hosts_toml};

const USER: (&str, &str) = ("alice", "s3cret");
const TTL_SECS: u64 = 5;

fn release_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_BIN") {
        return p.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let bin = root.join("target/release/shoal");
    assert!(bin.exists(), "build it first: cargo build --release -p shoal (or set SHOAL_BIN)");
    bin
}

/// Origin requests since the last reset, by "METHOD kind".
fn counts(front: &CountingFront) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in front.requests() {
        let kind = if r.path.contains("/blobs/") {
            "blob"
        } else if r.path.contains("/manifests/") {
            "manifest"
        } else {
            "other"
        };
        *out.entry(format!("{} {kind}", r.method)).or_insert(0) += 1;
    }
    out
}

async fn pull(front: &CountingFront, shoal: &ShoalDaemon, reference: &str) -> BTreeMap<String, usize> {
    front.reset_counts();
    let hosts = tempfile::tempdir().expect("temp dir");
    write_hosts_toml(hosts.path(), &front.host(), &front.url(), Some(&shoal.mirror_url())).expect("hosts.toml");
    let c = Containerd::start().await.expect("start containerd");
    let user = format!("{}:{}", USER.0, USER.1);
    if let Err(e) = c.pull(reference, hosts.path(), Some(&user)).await {
        panic!("ctr pull {reference}: {e}\n{}", c.log_tail(3000));
    }
    counts(front)
}

async fn daemon(front: &CountingFront, ttl: &str) -> ShoalDaemon {
    ShoalDaemon::builder()
        .bin(release_bin())
        .default_registry(&front.host())
        .registry(&front.host(), &front.url())
        .config_toml(&format!("[access]\nauth_ttl = \"{ttl}\"\n[mirror]\nprefetch = true\n"))
        .start()
        .await
        .expect("start shoal")
}

fn total(c: &BTreeMap<String, usize>) -> usize {
    c.values().sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let registry = Registry::builder().htpasswd(&[USER]).start().await.expect("registry");
    let front = CountingFront::start(&registry.url()).await.expect("front");
    let spec = ImageSpec { layers: vec![256 << 10; 10], seed: 42 };
    let image = shoal_testkit::build_and_push(&spec, &registry.host(), "private/ten:v1", Some(USER))
        .await
        .expect("build and push");
    let reference = format!("{}/{}:{}", front.host(), image.repo, image.tag);

    let shoal = daemon(&front, &format!("{TTL_SECS}s")).await;
    let cold = pull(&front, &shoal, &reference).await;
    // Let the last blobs be recorded complete before the warm pull.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let warm = pull(&front, &shoal, &reference).await;
    tokio::time::sleep(Duration::from_secs(TTL_SECS + 1)).await;
    let expired = pull(&front, &shoal, &reference).await;
    drop(shoal);

    let strict = daemon(&front, "0s").await;
    pull(&front, &strict, &reference).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let every = pull(&front, &strict, &reference).await;

    let rows = [
        ("cold (empty store)", &cold),
        ("warm, within auth_ttl", &warm),
        ("warm, auth_ttl expired", &expired),
        ("warm, auth_ttl = 0", &every),
    ];
    println!("origin requests per pull of a private 10-layer image (1 manifest, 1 config, 10 layers):\n");
    println!("| pull | total | by kind |");
    println!("|---|---|---|");
    for (name, c) in &rows {
        let kinds: Vec<String> = c.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!("| {name} | {} | {} |", total(c), kinds.join(", "));
    }
    let json = serde_json::json!({
        "image_blobs": image.blob_digests().len(),
        "auth_ttl_secs": TTL_SECS,
        "cold": cold, "warm": warm, "expired": expired, "ttl0": every,
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(out.join("auth-requests.json"), serde_json::to_vec_pretty(&json).unwrap()).expect("write json");
}
