//! Daemon memory under load, one fresh release daemon per scenario, on
//! loopback against Debian's docker-registry:
//!
//! - `cold4`: 4 clients (curl) pull one cold blob through the daemon at once;
//! - `seed8`: the daemon holds the blob and 8 other daemons fetch it over
//!   the swarm (a `shoal scheduler` process coordinates them);
//! - `gets256-warm` / `gets256-cold`: 256 connections GET the blob at once
//!   (stored, or not yet fetched), each reads its first `SHOAL_MEM_HOLD_MIB`
//!   (default 4) and then stops reading for two seconds, as slow clients
//!   do, before it hangs up;
//! - `cold1-cpu`: one client pulls a cold `SHOAL_MEM_CPU_MIB` blob (default
//!   512); the row adds the daemon's CPU seconds (user + system, from
//!   `/proc/<pid>/stat`) over the pull.
//!
//! For each it prints the daemon's RSS when idle before the load, its peak
//! during the load (the kernel's `VmHWM`, reset before the load through
//! `/proc/<pid>/clear_refs`), and its RSS 5 s and 15 s after the load
//! ended (`SETTLE`).
//! Targets (issue 18): peak <= 64 MiB for `cold4` and `seed8`, <= 128 MiB
//! for `gets256-*`, and back near idle after the load.
//!
//! Run as root (clear_refs):
//! `cargo build --release -p shoal && cargo bench -p shoal-benches --bench memory`
//! (`SHOAL_MEM_MIB` sets the blob size, default 256; `SHOAL_MEM_ONLY` a
//! comma-separated list of scenarios; `SHOAL_BIN` another daemon binary;
//! `SHOAL_MEM_COMPARE` a second binary whose rows are measured in the same
//! run, alternating with the first, for a before/after.)
//! Writes `target/bench/memory.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use shoal_e2e::{Origin, Pki, swarm_toml_at};
use shoal_testkit::{ChildGuard, ShoalDaemon, free_port, random_bytes, wait_http_status};

/// When after the load the settled RSS is read: allocators hand freed
/// memory back over seconds, not at once.
const SETTLE: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(15)];
const REPO: &str = "bench/mem";

fn release_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_BIN") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/shoal");
    assert!(p.is_file(), "build the daemon first: cargo build --release -p shoal");
    p
}

/// The daemon's CPU time so far, user plus system, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0 // USER_HZ, 100 on Linux
}

/// A field of `/proc/<pid>/status` in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Idle, peak and settled RSS of one daemon around one load, and its
/// largest thread count (sampled every 20 ms).
struct Watch {
    pid: u32,
    idle_kib: u64,
    threads: tokio::task::JoinHandle<u64>,
    stop: Arc<tokio::sync::Notify>,
}

impl Watch {
    /// Record the idle RSS and restart the peak from here.
    fn start(pid: u32) -> Watch {
        let idle_kib = status_kib(pid, "VmRSS:");
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM (run as root)");
        let stop = Arc::new(tokio::sync::Notify::new());
        let threads = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                let mut most = 0;
                loop {
                    most = most.max(status_kib(pid, "Threads:"));
                    tokio::select! {
                        _ = stop.notified() => return most,
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                }
            }
        });
        Watch { pid, idle_kib, threads, stop }
    }

    /// The peak now, then the RSS at each `SETTLE`.
    async fn finish(self, name: &str, note: String) -> Row {
        let peak_kib = status_kib(self.pid, "VmHWM:");
        self.stop.notify_one();
        let threads = self.threads.await.unwrap_or(0);
        let ended = tokio::time::Instant::now();
        let mut after = [0.0; 2];
        for (slot, at) in after.iter_mut().zip(SETTLE) {
            tokio::time::sleep_until(ended + at).await;
            *slot = mib(status_kib(self.pid, "VmRSS:"));
        }
        Row { name: name.to_owned(), idle: mib(self.idle_kib), peak: mib(peak_kib), after, threads, note }
    }
}

struct Row {
    name: String,
    idle: f64,
    peak: f64,
    after: [f64; 2],
    threads: u64,
    note: String,
}

async fn daemon(bin: &Path, origin: &Origin, swarm: Option<String>) -> ShoalDaemon {
    let mut b = ShoalDaemon::builder()
        .bin(bin)
        .default_registry(&origin.front.host())
        .registry(&origin.front.host(), &origin.front.url())
        .env("RUST_LOG", "warn");
    if let Some(toml) = swarm {
        b = b.config_toml(&toml);
    }
    b.start().await.expect("start shoal daemon")
}

fn blob_url(d: &ShoalDaemon, digest: &str) -> String {
    format!("{}/v2/{REPO}/blobs/{digest}", d.mirror_url())
}

/// GET `url` with curl into /dev/null; the bytes received.
async fn curl(curl: &Path, url: String) -> u64 {
    let out = tokio::process::Command::new(curl)
        .args(["-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}", &url])
        .output()
        .await
        .expect("run curl");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("curl -w size")
}

async fn cold4(bin: &Path, origin: &Origin, digest: &str, size: u64) -> Row {
    let d = daemon(bin, origin, None).await;
    let w = Watch::start(d.pid().expect("running"));
    let started = tokio::time::Instant::now();
    let curl_bin = shoal_testkit::require_tool("curl").expect("curl");
    let pulls: Vec<_> = (0..4).map(|_| curl(&curl_bin, blob_url(&d, digest))).collect();
    for got in futures_util::future::join_all(pulls).await {
        assert_eq!(got, size);
    }
    let secs = started.elapsed().as_secs_f64();
    w.finish("cold4", format!("4 pulls in {secs:.1} s")).await
}

/// `n` connections GET the blob at once; each reads `hold` bytes, then all
/// stop reading for two seconds, then hang up.
async fn gets(d: &ShoalDaemon, digest: &str, n: usize, hold: u64) {
    let barrier = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut jobs = Vec::new();
    for _ in 0..n {
        let url = blob_url(d, digest);
        let barrier = Arc::clone(&barrier);
        jobs.push(tokio::spawn(async move {
            // One client each: a connection of its own, as separate nodes' pulls have.
            let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            let resp = client.get(&url).send().await.expect("GET blob");
            assert_eq!(resp.status(), 200, "{url}");
            let mut body = resp.bytes_stream();
            let mut got = 0u64;
            while got < hold {
                match body.next().await {
                    Some(chunk) => got += chunk.expect("body chunk").len() as u64,
                    None => break,
                }
            }
            barrier.wait().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            got
        }));
    }
    tokio::time::timeout(Duration::from_secs(120), barrier.wait()).await.expect("GETs hung");
    for j in jobs {
        assert!(j.await.unwrap() >= hold);
    }
}

async fn gets256(bin: &Path, origin: &Origin, digest: &str, warm: bool, hold: u64) -> Row {
    let d = daemon(bin, origin, None).await;
    if warm {
        let curl_bin = shoal_testkit::require_tool("curl").expect("curl");
        curl(&curl_bin, blob_url(&d, digest)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let w = Watch::start(d.pid().expect("running"));
    gets(&d, digest, 256, hold).await;
    let name = if warm { "gets256-warm" } else { "gets256-cold" };
    w.finish(name, format!("each reads {} MiB, then stalls 2 s", hold >> 20)).await
}

/// A `shoal scheduler` process on free loopback ports.
async fn scheduler(bin: &Path, pki: &Pki, logs: &Path) -> (ChildGuard, String) {
    let quic = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["scheduler", "--listen", &quic, "--metrics-listen", &metrics, "--certs-dir"])
        .arg(pki.scheduler_certs("scheduler-0"))
        .env("RUST_LOG", "warn");
    let mut child = ChildGuard::spawn("scheduler", cmd, logs).expect("start scheduler");
    wait_http_status(&format!("http://{metrics}/readyz"), Duration::from_secs(20), |s| s == 200, Some(&mut child))
        .await
        .expect("scheduler ready");
    (child, quic)
}

async fn metric(d: &ShoalDaemon, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", d.metrics_url())).await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

async fn seed8(bin: &Path, origin: &Origin, digest: &str, size: u64) -> (Row, f64) {
    let pki = Pki::new();
    let logs = tempfile::tempdir().unwrap();
    let (_sched, quic) = scheduler(bin, &pki, logs.path()).await;
    let seed = daemon(bin, origin, Some(swarm_toml_at(&pki, "seed", &[&quic], ""))).await;
    let curl_bin = shoal_testkit::require_tool("curl").expect("curl");
    assert_eq!(curl(&curl_bin, blob_url(&seed, digest)).await, size);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut children = Vec::new();
    for i in 0..8 {
        children.push(daemon(bin, origin, Some(swarm_toml_at(&pki, &format!("child-{i}"), &[&quic], ""))).await);
    }
    let origin_before = origin.front.blob_bytes(digest);
    let w = Watch::start(seed.pid().expect("running"));
    let pulls: Vec<_> = children.iter().map(|c| curl(&curl_bin, blob_url(c, digest))).collect();
    for got in futures_util::future::join_all(pulls).await {
        assert_eq!(got, size);
    }
    let sent = metric(&seed, "shoal_peer_sent_bytes_total").await;
    let from_origin = origin.front.blob_bytes(digest) - origin_before;
    let child_peak = children.iter().map(|c| status_kib(c.pid().expect("running"), "VmHWM:")).max().unwrap_or(0);
    let note = format!(
        "seed uploaded {:.2}x the blob, the origin {:.2}x",
        sent / size as f64,
        from_origin as f64 / size as f64
    );
    (w.finish("seed8", note).await, mib(child_peak))
}

async fn cold1_cpu(bin: &Path, origin: &Origin, digest: &str, size: u64) -> Row {
    let d = daemon(bin, origin, None).await;
    let pid = d.pid().expect("running");
    let w = Watch::start(pid);
    let cpu = cpu_secs(pid);
    let started = tokio::time::Instant::now();
    let curl_bin = shoal_testkit::require_tool("curl").expect("curl");
    assert_eq!(curl(&curl_bin, blob_url(&d, digest)).await, size);
    let secs = started.elapsed().as_secs_f64();
    // The blob completes (sync, record) just after its last byte is sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let used = cpu_secs(pid) - cpu;
    let note = format!("{} MiB in {secs:.2} s; daemon CPU {used:.2} s", size >> 20);
    w.finish("cold1-cpu", note).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probes
    }
    let mib_size: u64 = std::env::var("SHOAL_MEM_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let hold: u64 = std::env::var("SHOAL_MEM_HOLD_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(4) << 20;
    let only = std::env::var("SHOAL_MEM_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|s| s == name);
    let size = mib_size << 20;
    let origin = Origin::start().await;
    let digest = shoal_testkit::push_blob(&origin.registry.url(), REPO, random_bytes(size as usize, 18), None)
        .await
        .expect("push blob");

    let cpu_mib: u64 = std::env::var("SHOAL_MEM_CPU_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let cpu_digest = if wanted("cold1-cpu") {
        let data = random_bytes((cpu_mib << 20) as usize, 19);
        Some(shoal_testkit::push_blob(&origin.registry.url(), REPO, data, None).await.expect("push blob"))
    } else {
        None
    };
    let mut bins = vec![("this", release_bin())];
    if let Some(other) = std::env::var_os("SHOAL_MEM_COMPARE") {
        bins.push(("compare", PathBuf::from(other)));
    }
    let mut rows = Vec::new();
    let mut child_peaks = Vec::new();
    let label = |mut r: Row, name: &str| {
        if bins.len() > 1 {
            r.name = format!("{} ({name})", r.name);
        }
        r
    };
    // Scenario by scenario, each binary in turn, so both meet the same load
    // on the machine.
    if wanted("cold4") {
        for (name, bin) in &bins {
            rows.push(label(cold4(bin, &origin, &digest, size).await, name));
        }
    }
    if wanted("seed8") {
        for (name, bin) in &bins {
            let (row, child) = seed8(bin, &origin, &digest, size).await;
            rows.push(label(row, name));
            child_peaks.push((name.to_string(), child));
        }
    }
    for warm in [true, false] {
        if wanted(if warm { "gets256-warm" } else { "gets256-cold" }) {
            for (name, bin) in &bins {
                rows.push(label(gets256(bin, &origin, &digest, warm, hold).await, name));
            }
        }
    }
    if let Some(d) = &cpu_digest {
        for (name, bin) in &bins {
            rows.push(label(cold1_cpu(bin, &origin, d, cpu_mib << 20).await, name));
        }
    }

    println!("daemon memory, {mib_size} MiB blob, one fresh release daemon per scenario (RSS in MiB)");
    println!(
        "| scenario | idle | peak (VmHWM) | {} s after | {} s after | threads (max) | |",
        SETTLE[0].as_secs(),
        SETTLE[1].as_secs()
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            r.name, r.idle, r.peak, r.after[0], r.after[1], r.threads, r.note
        );
    }
    for (name, c) in &child_peaks {
        println!("seed8 ({name}): largest peak among the 8 children: {c:.1} MiB");
    }
    let json: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({"scenario": r.name, "idle_mib": r.idle, "peak_mib": r.peak,
                "settled_5s_mib": r.after[0], "settled_15s_mib": r.after[1], "threads_max": r.threads, "note": r.note})
        })
        .collect();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let report = serde_json::json!({"blob_mib": mib_size, "child_peak_mib": child_peaks, "scenarios": json});
    std::fs::write(out.join("memory.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
}
