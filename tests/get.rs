//! `shoal get`: any large file through the daemons and the swarm, from a
//! plain HTTP file server on loopback that counts what it sends.
//!
//! Four daemons fetch one file at once and the server sends it about once;
//! a wrong digest fails and leaves no file; an interrupted get (the CLI
//! killed) completes on the next run without the server sending the file
//! again; a file that changes at the origin mid-download fails; one fetched
//! with credentials is refused to a client without them, and the secret is
//! neither logged nor stored; URLs outside the daemon's allow-list and
//! requests a web page could forge are refused before the origin is asked.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::time::Instant;

use shoal_e2e::{Pki, SchedulerProcess as Scheduler, received_from_peers, swarm_toml};
use shoal_testkit::{FileServer, ShoalDaemon, random_bytes, sha256_digest, shoal_bin};

const MIB: usize = 1 << 20;

/// The size of the file four daemons fetch at once.
const SWARM_FILE: usize = 1024 * MIB;

/// A file server holding `size` random bytes.
async fn server(size: usize, seed: u64) -> (FileServer, Vec<u8>) {
    let data = random_bytes(size, seed);
    (FileServer::start(data.clone().into()).await.expect("start the file server"), data)
}

/// A daemon without a swarm, with extra config lines.
async fn daemon(extra: &str) -> ShoalDaemon {
    let mut b = ShoalDaemon::builder();
    if !extra.is_empty() {
        b = b.config_toml(extra);
    }
    b.start().await.expect("start shoal daemon")
}

/// `shoal get` as a process against `d`'s admin address.
fn get_cmd(d: &ShoalDaemon, url: &str, out: &Path, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(shoal_bin().unwrap());
    cmd.arg("get").arg(url).arg("-o").arg(out).args(["--admin", &d.metrics_url()]).args(extra);
    cmd.env_remove("SHOAL_METRICS_LISTEN").env_remove("SHOAL_MIRROR").kill_on_drop(true);
    cmd
}

/// Run `shoal get` to its end (at most `secs`).
async fn get(d: &ShoalDaemon, url: &str, out: &Path, extra: &[&str], secs: u64) -> Output {
    let run = get_cmd(d, url, out, extra).output();
    tokio::time::timeout(Duration::from_secs(secs), run).await.expect("shoal get hung").unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn part_of(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", out.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_daemons_get_one_file_and_the_origin_sends_it_about_once() {
    let t_setup = Instant::now();
    let data = distinct_mebibytes(SWARM_FILE, 11);
    let want = sha256_digest(&data);
    let files = FileServer::start(data.into()).await.expect("start the file server");
    let pki = Pki::new();
    let sched = Scheduler::start(&pki, "scheduler-0").await;
    let mut peers = Vec::new();
    for i in 0..4 {
        let toml = swarm_toml(&pki, &format!("node-{i}"), &[&sched], "");
        peers.push(ShoalDaemon::builder().config_toml(&toml).start().await.expect("start a swarm daemon"));
    }
    eprintln!("file and daemons ready in {:.1}s", t_setup.elapsed().as_secs_f64());
    let dir = tempfile::tempdir().unwrap();
    let url = files.url("model.safetensors");
    let t0 = Instant::now();
    let runs: Vec<_> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| get_cmd(p, &url, &dir.path().join(format!("copy-{i}")), &[]).output())
        .collect();
    for (i, run) in runs.into_iter().enumerate() {
        let o = tokio::time::timeout(Duration::from_secs(300), run).await.expect("shoal get hung").unwrap();
        assert!(o.status.success(), "node-{i}: {}\n{}", stderr(&o), peers[i].log_tail(3000));
    }
    eprintln!("4 daemons got {} MiB each in {:.1}s", SWARM_FILE / MIB, t0.elapsed().as_secs_f64());
    for i in 0..4 {
        let copy = dir.path().join(format!("copy-{i}"));
        assert_eq!(sha256_of_file(&copy, &want), want, "copy {i}");
        assert!(!part_of(&copy).exists());
    }
    let sent = files.body_bytes();
    eprintln!("the server sent {:.3}x the file", sent as f64 / SWARM_FILE as f64);
    assert!(sent as f64 <= 1.05 * SWARM_FILE as f64, "the server sent {sent} bytes of a {SWARM_FILE}-byte file");
    let mut shared = 0.0;
    for p in &peers {
        shared += received_from_peers(p).await;
    }
    assert!(shared >= 2.0 * SWARM_FILE as f64, "the daemons got only {shared} bytes from each other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_digest_fails_and_leaves_no_file() {
    let (files, data) = server(8 * MIB, 12).await;
    let d = daemon("").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("weights.bin");
    let wrong = sha256_digest(b"not these bytes");
    let o = get(&d, &files.url("weights.bin"), &out, &["--digest", &wrong], 60).await;
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains(&format!("not {wrong}")), "{e}");
    assert_eq!(e.trim().lines().filter(|l| l.starts_with("error:")).count(), 1, "{e}");
    assert!(!out.exists() && !part_of(&out).exists(), "a file was left behind");
    // The daemon does not fetch it again by itself (the digest is the
    // user's, not the origin's, mistake).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = files.body_bytes();
    assert!(sent as f64 <= 1.05 * data.len() as f64, "the server sent {sent} bytes of a {}-byte file", data.len());
    // The right digest is fetched and verified.
    let right = sha256_digest(&data);
    let o = get(&d, &files.url("weights.bin"), &out, &["--digest", &right], 60).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha256_digest(&std::fs::read(&out).unwrap()), right);
    // A run killed between the last byte and the rename left a whole
    // FILE.part: the next run has nothing to resume from, and starts over.
    std::fs::rename(&out, part_of(&out)).unwrap();
    std::fs::write(format!("{}.part.key", out.display()), &right).unwrap();
    let o = get(&d, &files.url("weights.bin"), &out, &["--digest", &right], 60).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not fit the file; starting over"), "{}", stderr(&o));
    assert_eq!(sha256_digest(&std::fs::read(&out).unwrap()), right);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_get_resumes_without_the_origin_sending_it_again() {
    let size = 64 * MIB;
    let (files, data) = server(size, 13).await;
    files.set_rate(Some(16 * MIB as u64));
    let d = daemon("").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("big.bin");
    let url = files.url("big.bin");
    let mut child = get_cmd(&d, &url, &out, &[]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(part_of(&out)).map(|m| m.len()).unwrap_or(0) < 16 * MIB as u64 {
        assert!(Instant::now() < deadline, "no progress in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.start_kill().unwrap(); // by PID
    let _ = child.wait().await;
    let had = std::fs::metadata(part_of(&out)).unwrap().len();
    assert!(had < size as u64, "the get finished before it was killed");
    files.set_rate(None);
    let o = get(&d, &url, &out, &[], 60).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("starting over"), "{}", stderr(&o));
    assert_eq!(sha256_digest(&std::fs::read(&out).unwrap()), sha256_digest(&data));
    let sent = files.body_bytes();
    assert!(sent as f64 <= 1.05 * size as f64, "the server sent {sent} bytes of a {size}-byte file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_changes_at_the_origin_mid_download_fails() {
    let (files, _) = server(32 * MIB, 14).await;
    files.set_rate(Some(32 * MIB as u64));
    files.change_during_next_body(8 * MIB as u64, random_bytes(32 * MIB, 15).into());
    let d = daemon("").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.bin");
    let o = get(&d, &files.url("f.bin"), &out, &[], 60).await;
    assert!(!o.status.success(), "the get succeeded across a change of the file");
    assert!(stderr(&o).contains("changed at the origin during the download"), "{}", stderr(&o));
    assert!(!out.exists() && !part_of(&out).exists(), "a file was left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_fetched_with_credentials_is_refused_to_a_client_without_them() {
    let secret = "Bearer s3cr3t-token-for-the-test";
    let (files, data) = server(4 * MIB, 16).await;
    files.require_authorization(Some(secret));
    let d = daemon("").await;
    let dir = tempfile::tempdir().unwrap();
    let url = files.url("private.bin");
    let with = dir.path().join("with");
    let o = get(&d, &url, &with, &["--header", &format!("Authorization: {secret}")], 60).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&with).unwrap(), data);
    // The daemon holds the file now; a client without the header still
    // gets nothing: the origin is asked with the client's own headers.
    let refused_before = files.refused();
    let without = dir.path().join("without");
    let o = get(&d, &url, &without, &[], 60).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("the origin refused"), "{}", stderr(&o));
    assert!(files.refused() > refused_before, "the origin was not asked");
    assert!(!without.exists() && !part_of(&without).exists());
    let wrong = dir.path().join("wrong");
    let o = get(&d, &url, &wrong, &["--header", "Authorization: Bearer guessed"], 60).await;
    assert!(!o.status.success() && !wrong.exists());
    // Nor does the mirror serve the stored bytes under the task's registry
    // name (it cannot reach an origin by that name).
    let h = &sha256_digest(url.as_bytes())["sha256:".len()..][..32];
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/get", d.metrics_url()))
        .json(&serde_json::json!({"url": url, "headers": [["Authorization", secret]]}))
        .send()
        .await
        .unwrap();
    let key = resp.headers()["x-shoal-key"].to_str().unwrap().to_owned();
    drop(resp);
    let mirror = format!("{}/v2/shoal/get/blobs/{key}?ns={h}.url.shoal.invalid", d.mirror_url());
    let resp = reqwest::get(&mirror).await.unwrap();
    assert_eq!(resp.status(), 503, "the mirror served a file fetched with credentials, or failed otherwise");
    // The secret is in neither the daemon's log nor its data directory.
    assert!(!d.log_tail(1 << 20).contains("s3cr3t"), "the daemon logged the credentials");
    let token = secret.as_bytes();
    for entry in walk(d.data_dir()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(!bytes.windows(token.len()).any(|w| w == token), "{} holds the credentials", entry.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_off_the_allow_list_and_forged_requests_are_refused_before_the_origin_is_asked() {
    let (files, _) = server(MIB, 17).await;
    let d = daemon("[get]\nallow_hosts = [\"files.example\", \"*.hf.example\"]\n").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let o = get(&d, &files.url("x"), &out, &[], 30).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not in this daemon's get.allow_hosts"), "{}", stderr(&o));
    let o = get(&d, "file:///etc/passwd", &out, &[], 30).await;
    assert!(!o.status.success() && stderr(&o).contains("only http:// and https://"), "{}", stderr(&o));
    // What a web page could send (no CORS preflight): not JSON, refused.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/get", d.metrics_url()))
        .header("Content-Type", "text/plain")
        .body(format!("{{\"url\": \"{}\"}}", files.url("x")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // Nor by a name other than an IP or localhost (DNS rebinding).
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/get", d.metrics_url()))
        .header("Host", "rebind.example")
        .json(&serde_json::json!({"url": files.url("x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let why = resp.text().await.unwrap();
    assert!(why.contains("DNS rebinding"), "{why}");
    assert_eq!(files.requests(), 0, "the origin was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_file_and_a_missing_daemon_fail_with_one_line() {
    let (files, _) = server(MIB, 18).await;
    let d = daemon("").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let o = get(&d, &files.url("missing.bin"), &out, &[], 30).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not found at the origin (404)"), "{}", stderr(&o));
    let mut cmd = tokio::process::Command::new(shoal_bin().unwrap());
    let port = shoal_testkit::free_port();
    cmd.arg("get").arg(files.url("x")).arg("-o").arg(&out).args(["--admin", &format!("127.0.0.1:{port}")]);
    let o = cmd.output().await.unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is `shoal daemon` running?"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_blob_url_comes_through_the_mirror() {
    let origin = shoal_e2e::Origin::start().await;
    let data = random_bytes(6 * MIB, 19);
    let d = shoal_testkit::push_blob(&origin.registry.url(), "e2e/blob", data.clone(), None).await.unwrap();
    let daemon = shoal_e2e::shoal_for(&origin.front, None, "").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("layer");
    let url = format!("{}/v2/e2e/blob/blobs/{d}", origin.front.url());
    let o = get(&daemon, &url, &out, &["--mirror", &daemon.mirror_url()], 60).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    assert_eq!(origin.front.blob_gets(&d), 1, "the blob did not come through the mirror once");
    // A digest the URL contradicts is refused before anything is asked.
    let other = sha256_digest(b"other");
    let o = get(&daemon, &url, &dir.path().join("x"), &["--digest", &other], 60).await;
    assert!(!o.status.success() && stderr(&o).contains("contradicts"), "{}", stderr(&o));
}

/// `size` bytes made of one random MiB repeated, each copy starting with
/// its own index, so every piece differs (a piece written at the wrong
/// offset changes the digest). Much faster than `random_bytes` in a debug
/// build, where 1 GiB of it takes over fifteen seconds.
fn distinct_mebibytes(size: usize, seed: u64) -> Vec<u8> {
    let block = random_bytes(MIB, seed);
    let mut out = Vec::with_capacity(size);
    for i in 0..size.div_ceil(MIB) {
        let n = (size - out.len()).min(MIB);
        let start = out.len();
        out.extend_from_slice(&block[..n]);
        let tag = (i as u64).to_le_bytes();
        let k = tag.len().min(n);
        out[start..start + k].copy_from_slice(&tag[..k]);
    }
    out
}

/// The sha256 digest of the file at `path` (read in pieces), as `like` is
/// written.
fn sha256_of_file(path: &Path, like: &str) -> String {
    use std::io::Read;
    let mut h = like.parse::<shoal_core::Digest>().unwrap().hasher();
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 4 * MIB];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return h.finish().to_string();
        }
        h.update(&buf[..n]);
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}
