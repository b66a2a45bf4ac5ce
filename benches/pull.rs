//! Single-node pull benchmark on loopback, side by side in one run:
//!
//! - `direct`: a client GETs the blob straight from Debian's docker-registry
//!   (page cache warm: the registry reads it from its own filesystem);
//! - `cold`: the same client GETs it through a fresh shoal daemon (empty
//!   store), which streams from the registry while it stores and verifies;
//! - `warm`: again through shoal, now served from its store;
//! - `ceiling`: the same bytes from a server that holds them in memory and
//!   does nothing but write them (no disk, no hashing): about what this
//!   machine's loopback and client can take at all, so the other paths can
//!   be read against it.
//!
//! Targets: cold >= 0.9x direct when the origin is not on loopback (the
//! swarm benchmark's one-node run measures that), warm >= 2x direct, and
//! the daemon's peak RSS during the cold pull of a 1 GiB blob under 64 MiB.
//!
//! Run: `cargo build --release -p shoal && cargo bench -p shoal-benches --bench pull`
//! (`SHOAL_BENCH_MIB` sets the blob size, default 1024; `SHOAL_BENCH_RUNS`
//! the repetitions, default 3; the median is reported.) Writes
//! `target/bench/pull.json`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use shoal_testkit::{Registry, ShoalDaemon, random_bytes};

struct Pull {
    secs: f64,
    ttfb_ms: f64,
    bytes: u64,
}

impl Pull {
    /// Bytes per second.
    fn rate(&self) -> f64 {
        self.bytes as f64 / self.secs
    }
}

/// GET `url` with curl into /dev/null. curl is the client because it can
/// take more than these servers give on loopback (a reqwest client topped
/// out near 2 GB/s and hid the difference between warm shoal and the
/// registry).
async fn pull(curl: &std::path::Path, url: &str) -> Pull {
    let out = tokio::process::Command::new(curl)
        .args(["-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_total} %{time_starttransfer}", url])
        .output()
        .await
        .expect("run curl");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace().map(|v| v.parse::<f64>().expect("curl -w number"));
    let (bytes, secs, ttfb) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
    Pull { secs, ttfb_ms: ttfb * 1000.0, bytes: bytes as u64 }
}

/// A server that holds the blob in memory and answers every GET on its
/// connection with it in 4 MiB writes: no disk, no hashing, one copy into
/// the socket, the least work an HTTP server can do for these bytes (a
/// `sendfile(2)` from the page cache measured no faster here). Returns its
/// URL; the thread serves until the process exits.
fn memory_server(blob: Arc<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the ceiling server");
    let url = format!("http://{}/blob", listener.local_addr().expect("its address"));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let blob = blob.clone();
            std::thread::spawn(move || {
                let _ = serve_blob(conn, &blob);
            });
        }
    });
    url
}

fn serve_blob(conn: TcpStream, blob: &[u8]) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        // Skip the request head; every request gets the blob.
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            blob.len()
        );
        conn.write_all(head.as_bytes())?;
        for chunk in blob.chunks(4 << 20) {
            conn.write_all(chunk)?;
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn release_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SHOAL_BIN") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/shoal");
    assert!(p.is_file(), "build the daemon first: cargo build --release -p shoal");
    p
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probes
    }
    let mib: usize = std::env::var("SHOAL_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let runs: usize = std::env::var("SHOAL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let size = mib << 20;
    let registry = Registry::start().await.expect("docker-registry");
    let data = random_bytes(size, 42);
    let ceiling_url = memory_server(Arc::new(data.clone()));
    let digest = shoal_testkit::push_blob(&registry.url(), "bench/blob", data, None).await.expect("push");
    let client = shoal_testkit::require_tool("curl").expect("curl");
    let direct_url = format!("{}/v2/bench/blob/blobs/{digest}", registry.url());
    pull(&client, &direct_url).await; // warm the registry's page cache
    assert_eq!(pull(&client, &ceiling_url).await.bytes, size as u64);

    let (mut direct, mut cold, mut warm, mut rss, mut cold_ttfb, mut direct_ttfb) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ceiling = Vec::new();
    for _ in 0..runs {
        ceiling.push(pull(&client, &ceiling_url).await.rate());
        let d = pull(&client, &direct_url).await;
        direct.push(d.rate());
        direct_ttfb.push(d.ttfb_ms);

        let shoal = ShoalDaemon::builder()
            .bin(release_bin())
            .default_registry(&registry.host())
            .registry(&registry.host(), &registry.url())
            .env("RUST_LOG", "warn")
            .start()
            .await
            .expect("shoal daemon");
        let url = format!("{}/v2/bench/blob/blobs/{digest}", shoal.mirror_url());
        let c = pull(&client, &url).await;
        assert_eq!(c.bytes, size as u64);
        cold.push(c.rate());
        cold_ttfb.push(c.ttfb_ms);
        rss.push(peak_rss_kib(shoal.pid().expect("running")) as f64 / 1024.0);
        // Let the download finish verifying before timing the warm pull.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        for _ in 0..2 {
            let w = pull(&client, &url).await;
            assert_eq!(w.bytes, size as u64);
            warm.push(w.rate());
        }
        ceiling.push(pull(&client, &ceiling_url).await.rate());
    }
    let gbs = |v: f64| v / 1e9;
    let (d, c, w, top) = (median(direct), median(cold), median(warm), median(ceiling));
    let peak = rss.iter().cloned().fold(0.0, f64::max);
    let report = serde_json::json!({
        "blob_mib": mib,
        "runs": runs,
        "direct_gbps": gbs(d),
        "cold_gbps": gbs(c),
        "warm_gbps": gbs(w),
        "ceiling_gbps": gbs(top),
        "cold_over_direct": c / d,
        "warm_over_direct": w / d,
        "warm_over_ceiling": w / top,
        "direct_over_ceiling": d / top,
        "direct_ttfb_ms": median(direct_ttfb),
        "cold_ttfb_ms": median(cold_ttfb),
        "daemon_peak_rss_mib": peak,
    });
    println!("single-node pull, {mib} MiB blob, median of {runs} runs (GB/s = 1e9 bytes/s)");
    println!("| path | throughput | ratio to direct | time to first byte |");
    println!("|---|---|---|---|");
    println!(
        "| direct from docker-registry | {:.2} GB/s | 1.00x | {:.1} ms |",
        gbs(d),
        median_ref(&report, "direct_ttfb_ms")
    );
    println!(
        "| cold through shoal | {:.2} GB/s | {:.2}x | {:.1} ms |",
        gbs(c),
        c / d,
        median_ref(&report, "cold_ttfb_ms")
    );
    println!("| warm from shoal's store | {:.2} GB/s | {:.2}x | |", gbs(w), w / d);
    println!("| ceiling: from memory, nothing else | {:.2} GB/s | {:.2}x | |", gbs(top), top / d);
    println!("warm is {:.2}x the ceiling, direct {:.2}x", w / top, d / top);
    println!("daemon peak RSS during the cold pulls: {peak:.1} MiB");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("pull.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
}

fn median_ref(report: &serde_json::Value, key: &str) -> f64 {
    report[key].as_f64().unwrap_or_default()
}
