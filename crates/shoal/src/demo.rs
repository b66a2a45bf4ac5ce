//! `shoal demo`: a whole swarm in one process, needing nothing else on the
//! machine. An in-process origin serves a generated image (counting every
//! byte it sends), an embedded scheduler coordinates, and N peers on
//! loopback, each with its own store, mirror and QUIC endpoint, pull the
//! image at the same moment. It prints each peer's time and where its bytes
//! came from, and the origin's total against the image size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::Args;
use shoal_core::{ByteRange, ByteSize, Digest};
use shoal_peer::swarm::{EmbeddedScheduler, SwarmConfig};
use tokio::time::Instant;

/// `shoal demo` flags.
#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Peers.
    #[arg(long, default_value_t = 6)]
    pub(crate) peers: usize,
    /// Image size in MiB (two layers).
    #[arg(long, default_value_t = 64)]
    pub(crate) mib: u64,
    /// The origin's link in MiB/s, shared by everything it sends at once
    /// (0: unlimited), to make the swarm visible on a fast machine.
    #[arg(long, default_value_t = 50)]
    pub(crate) origin_mib_per_s: u64,
}

struct Image {
    manifest: Vec<u8>,
    manifest_digest: Digest,
    blobs: Vec<(Digest, Arc<Vec<u8>>)>,
    sent: AtomicU64,
    link: Link,
}

/// The origin's uplink: `rate` bytes/s shared by every body it sends, as a
/// real link is (one client fetching two layers at once gets half each).
struct Link {
    rate: u64,
    /// When the bytes reserved so far have left.
    free_at: std::sync::Mutex<Option<Instant>>,
}

impl Link {
    /// Waits until `n` more bytes have crossed the link.
    async fn send(&self, n: u64) {
        if self.rate == 0 {
            return;
        }
        let took = Duration::from_secs_f64(n as f64 / self.rate as f64);
        let done = {
            let mut free_at = self.free_at.lock().expect("link lock");
            let now = Instant::now();
            let done = free_at.map_or(now, |t| t.max(now)) + took;
            *free_at = Some(done);
            done
        };
        tokio::time::sleep_until(done).await;
    }
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len / 8 + 1)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .take(len)
        .collect()
}

fn make_image(mib: u64, rate: u64) -> Image {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
    let half = (mib << 20) / 2;
    let layers = [pseudo_random(half as usize, 1), pseudo_random((mib << 20) as usize - half as usize, 2)];
    let mut blobs = vec![(Digest::sha256_of(&config), Arc::new(config))];
    for l in layers {
        blobs.push((Digest::sha256_of(&l), Arc::new(l)));
    }
    let desc = |(d, b): &(Digest, Arc<Vec<u8>>), mt: &str| serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": b.len()});
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc(&blobs[0], "application/vnd.oci.image.config.v1+json"),
        "layers": blobs[1..].iter().map(|b| desc(b, "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
    }))
    .expect("json");
    let link = Link { rate, free_at: std::sync::Mutex::new(None) };
    Image { manifest_digest: Digest::sha256_of(&manifest), manifest, blobs, sent: AtomicU64::new(0), link }
}

async fn manifest(State(img): State<Arc<Image>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/vnd.oci.image.manifest.v1+json".to_owned()),
            (header::HeaderName::from_static("docker-content-digest"), img.manifest_digest.to_string()),
        ],
        img.manifest.clone(),
    )
        .into_response()
}

async fn blob(State(img): State<Arc<Image>>, Path(digest): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, bytes)) = img.blobs.iter().find(|(d, _)| d.to_string() == digest) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let size = bytes.len() as u64;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(ByteRange::parse);
    let (status, r) = match range.map(|r| r.resolve(size)) {
        Some(Ok(r)) => (StatusCode::PARTIAL_CONTENT, r),
        Some(Err(_)) => return StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
        None => (StatusCode::OK, 0..size),
    };
    let len = r.end - r.start;
    // Send the body over the origin's link, in 256 KiB steps.
    let (bytes, img2, start) = (bytes.clone(), img.clone(), r.start);
    let stream = futures_util::stream::unfold(start, move |pos| {
        let (bytes, img) = (bytes.clone(), img2.clone());
        let end = start + len;
        async move {
            if pos >= end {
                return None;
            }
            let n = (end - pos).min(256 << 10);
            img.link.send(n).await;
            img.sent.fetch_add(n, Ordering::Relaxed);
            let chunk = bytes::Bytes::copy_from_slice(&bytes[pos as usize..(pos + n) as usize]);
            Some((Ok::<_, std::io::Error>(chunk), pos + n))
        }
    });
    let mut resp = axum::body::Body::from_stream(stream).into_response();
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, len.into());
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(header::CONTENT_RANGE, shoal_core::content_range(&r, size).parse().expect("ascii"));
    }
    resp
}

async fn blob_head(State(img): State<Arc<Image>>, Path(digest): Path<String>) -> Response {
    match img.blobs.iter().find(|(d, _)| d.to_string() == digest) {
        Some((_, b)) => ([(header::CONTENT_LENGTH, b.len().to_string())], "").into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Entry point of `shoal demo`.
pub(crate) fn main(args: DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let image = Arc::new(make_image(args.mib, args.origin_mib_per_s << 20));
    let image_bytes: u64 = image.blobs.iter().map(|(_, b)| b.len() as u64).sum();
    let app = axum::Router::new()
        .route("/v2/demo/app/manifests/latest", axum::routing::get(manifest))
        .route("/v2/demo/app/blobs/{digest}", axum::routing::get(blob).head(blob_head))
        .with_state(image.clone());
    let origin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let origin: SocketAddr = origin_l.local_addr()?;
    tokio::spawn(async move { axum::serve(origin_l, app).await });
    println!(
        "origin: http://{origin} serving demo/app:latest ({} in {} blobs, {} MiB/s)",
        ByteSize(image_bytes),
        image.blobs.len(),
        args.origin_mib_per_s
    );

    let ca = shoal_transport::new_ca("shoal demo CA")?;
    let scheduler = EmbeddedScheduler::new(shoal_scheduler::SchedulerConfig::default());
    let ticker = scheduler.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            ticker.tick();
        }
    });
    let tmp = tempfile::tempdir().context("temp dir")?;
    let mut mirrors = Vec::new();
    let mut admins = Vec::new();
    let stop = Arc::new(tokio::sync::Notify::new());
    for i in 0..args.peers {
        let host = format!("demo-{i}");
        let cert = shoal_transport::issue(&ca, &host, &[])?;
        let identity = shoal_transport::Identity::from_pem(&ca.cert_pem, &cert.cert_pem, &cert.key_pem)?;
        let endpoint = shoal_transport::Endpoint::bind(
            "127.0.0.1:0".parse()?,
            &identity,
            &shoal_transport::TransportTuning::default(),
        )?;
        let config = SwarmConfig {
            host: host.parse()?,
            advertise: endpoint.local_addr()?,
            labels: shoal_proto::HostLabels { node: host.clone(), zone: None, rack: None },
            upload_capacity: 1 << 30,
            tuning: shoal_peer::swarm::SwarmTuning::default(),
        };
        let swarm = shoal_peer::SwarmSetup {
            config,
            endpoint,
            link: Arc::new(scheduler.clone()),
            upload_rate: 0,
            download_rate: 0,
            heartbeat: Duration::from_secs(2),
        };
        let store = shoal_storage::Store::open(shoal_storage::StoreConfig::new(tmp.path().join(&host)))?;
        let reg = shoal_origin::RegistryConfig { url: Some(format!("http://{origin}").parse()?), ..Default::default() };
        let upstreams = shoal_origin::Upstreams::new(shoal_origin::UpstreamsConfig {
            default_registry: "demo".into(),
            registries: [("demo".to_owned(), reg)].into_iter().collect(),
            ..Default::default()
        })?;
        let mirror = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        mirrors.push(format!("http://{}", mirror.local_addr()?));
        admins.push(format!("http://{}", admin.local_addr()?));
        let stop = stop.clone();
        tokio::spawn(shoal_peer::run(
            shoal_peer::DaemonConfig { shutdown_grace: Duration::from_secs(1), ..Default::default() },
            store,
            upstreams,
            prometheus_client::registry::Registry::default(),
            mirror,
            admin,
            Some(swarm),
            async move { stop.notified().await },
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("{} peers pulling demo/app:latest at once...", args.peers);
    let t0 = Instant::now();
    let pulls: Vec<_> = mirrors.iter().cloned().map(|m| tokio::spawn(async move { pull(&m).await })).collect();
    let mut rows = Vec::new();
    for (i, p) in pulls.into_iter().enumerate() {
        let (secs, bytes) = p.await?.with_context(|| format!("peer demo-{i}"))?;
        let metrics = reqwest::get(format!("{}/metrics", admins[i])).await?.text().await?;
        let from_peers = sample(&metrics, "shoal_peer_received_bytes_total");
        let from_origin = sample(&metrics, "shoal_origin_received_bytes_total");
        rows.push((i, secs, bytes, from_peers, from_origin));
    }
    let wall = t0.elapsed().as_secs_f64();
    println!("\n| peer | time | image bytes | from peers | from origin |\n|---|---|---|---|---|");
    for (i, secs, bytes, peers, origin) in &rows {
        println!(
            "| demo-{i} | {secs:.2} s | {} | {} | {} |",
            ByteSize(*bytes),
            ByteSize(*peers as u64),
            ByteSize(*origin as u64)
        );
    }
    let sent = image.sent.load(Ordering::Relaxed);
    // The image crossing the origin's link once: no peer alone can pull
    // it faster, whatever it fetches in parallel.
    let alone = match args.origin_mib_per_s {
        0 => String::new(),
        rate => {
            format!(" (one peer alone from this origin: at least {:.2} s)", image_bytes as f64 / (rate << 20) as f64)
        }
    };
    println!(
        "\nall {} peers done in {wall:.2} s{alone}\norigin sent {} for a {} image: {:.2}x the image size",
        args.peers,
        ByteSize(sent),
        ByteSize(image_bytes),
        sent as f64 / image_bytes as f64
    );
    stop.notify_waiters();
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

fn sample(metrics: &str, name: &str) -> f64 {
    metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

/// Pull the image through `mirror` and verify every blob; (seconds, bytes).
async fn pull(mirror: &str) -> anyhow::Result<(f64, u64)> {
    let t0 = Instant::now();
    let client = reqwest::Client::new();
    let m: serde_json::Value =
        client.get(format!("{mirror}/v2/demo/app/manifests/latest")).send().await?.json().await?;
    let mut digests = vec![m["config"]["digest"].as_str().context("config digest")?.to_owned()];
    for l in m["layers"].as_array().context("layers")? {
        digests.push(l["digest"].as_str().context("layer digest")?.to_owned());
    }
    let mut total = 0;
    for d in digests {
        let body =
            client.get(format!("{mirror}/v2/demo/app/blobs/{d}")).send().await?.error_for_status()?.bytes().await?;
        anyhow::ensure!(Digest::sha256_of(&body).to_string() == d, "blob {d} did not verify");
        total += body.len() as u64;
    }
    Ok((t0.elapsed().as_secs_f64(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two bodies sent at once share the origin's link: together they take
    /// as long as one body of both sizes would.
    #[tokio::test(start_paused = true)]
    async fn bodies_sent_at_once_share_the_link() {
        let link = Arc::new(Link { rate: 1 << 20, free_at: std::sync::Mutex::new(None) });
        let t0 = Instant::now();
        let sends: Vec<_> = (0..2)
            .map(|_| {
                let link = link.clone();
                tokio::spawn(async move {
                    for _ in 0..2 {
                        link.send(256 << 10).await;
                    }
                    t0.elapsed()
                })
            })
            .collect();
        let mut done: Vec<Duration> = Vec::new();
        for s in sends {
            done.push(s.await.expect("send task"));
        }
        let last = done.into_iter().max().expect("two sends");
        assert!(last >= Duration::from_millis(999), "1 MiB crossed a 1 MiB/s link in {last:?}");
        assert!(last <= Duration::from_millis(1010), "the link idled: 1 MiB took {last:?}");
    }
}
