//! `shoal prewarm`: fill this node's store with images before a rollout.
//!
//! Each image is resolved at its origin through the local daemon (tags
//! always resolve at the origin; the daemon's credentials and upstream
//! settings apply), walked down an index to the wanted platforms (default:
//! this machine's), and every config and layer blob is pulled through the
//! mirror, which stores it (through the swarm when the daemon is in one).
//! A re-run finds everything in the store and fetches nothing from the
//! origin. Progress: a bar per image on a terminal, plain lines otherwise,
//! JSON with `--output json`. Exits non-zero if any image failed, naming
//! the image and the cause.
//!
//! Warming many nodes at once (`--all-nodes`, through the scheduler) is not
//! built yet: run this on each node (e.g. as a DaemonSet-scheduled Job).
//!
//! - [`image_ref`]: parsing references with Docker's defaults.
//! - [`resolve`]: manifest, index and platform resolution.

mod image_ref;
mod resolve;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use shoal_core::ByteSize;

use resolve::Platform;

/// Output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// Progress bars or lines.
    Text,
    /// One JSON object per image at the end.
    Json,
}

/// `shoal prewarm` flags.
#[derive(Args, Debug)]
pub(crate) struct PrewarmArgs {
    /// Images, e.g. nginx:1.27 ghcr.io/org/app@sha256:...
    #[arg(required = true)]
    pub(crate) images: Vec<String>,
    /// Platforms to fetch from an image index (repeatable) [default: this machine's].
    #[arg(long = "platform")]
    pub(crate) platforms: Vec<String>,
    /// The local daemon's mirror.
    #[arg(long, env = "SHOAL_MIRROR", default_value = "http://127.0.0.1:65001")]
    pub(crate) mirror: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

#[derive(serde::Serialize)]
struct Report {
    image: String,
    ok: bool,
    platforms: Vec<String>,
    blobs: usize,
    bytes: u64,
    seconds: f64,
    error: Option<String>,
}

/// Entry point of `shoal prewarm`.
pub(crate) fn main(args: PrewarmArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: PrewarmArgs) -> anyhow::Result<()> {
    let platforms: Vec<Platform> = if args.platforms.is_empty() {
        vec![Platform::host()]
    } else {
        args.platforms.iter().map(|p| p.parse()).collect::<anyhow::Result<_>>()?
    };
    let mirror = args.mirror.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let mut reports = Vec::new();
    for image in &args.images {
        let t0 = Instant::now();
        let result = prewarm_one(&client, &mirror, image, &platforms, args.output).await;
        let seconds = t0.elapsed().as_secs_f64();
        let report = match result {
            Ok((plan, fetched)) => Report {
                image: image.clone(),
                ok: true,
                platforms: plan.platforms.clone(),
                blobs: plan.blobs.len(),
                bytes: fetched,
                seconds,
                error: None,
            },
            Err(e) => Report {
                image: image.clone(),
                ok: false,
                platforms: Vec::new(),
                blobs: 0,
                bytes: 0,
                seconds,
                error: Some(format!("{e:#}")),
            },
        };
        if args.output == Output::Text {
            match &report.error {
                None => eprintln!(
                    "{}: {} in {} blobs ({}) in {:.1}s",
                    report.image,
                    ByteSize(report.bytes),
                    report.blobs,
                    report.platforms.join(", "),
                    seconds
                ),
                Some(e) => eprintln!("error: {e}"),
            }
        }
        reports.push(report);
    }
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    let failed: Vec<&str> = reports.iter().filter(|r| !r.ok).map(|r| r.image.as_str()).collect();
    if !failed.is_empty() {
        anyhow::bail!("prewarm failed for {}", failed.join(", "));
    }
    Ok(())
}

async fn prewarm_one(
    client: &reqwest::Client,
    mirror: &str,
    image: &str,
    platforms: &[Platform],
    output: Output,
) -> anyhow::Result<(resolve::Plan, u64)> {
    let image_ref = image_ref::parse(image)?;
    let plan = resolve::plan(client, mirror, &image_ref, platforms).await?;
    let total = plan.bytes();
    let bar = (output == Output::Text && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_message(image.to_owned());
        b
    });
    let mut done = 0u64;
    let mut last_line = Instant::now();
    for (digest, _) in &plan.blobs {
        let url = format!("{mirror}/v2/{}/blobs/{digest}?ns={}", image_ref.repo, image_ref.registry);
        let resp = client.get(&url).send().await.with_context(|| format!("{image}: fetching {digest}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            anyhow::bail!("{image}: blob {digest} failed with {status}: {}", body.trim());
        }
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.with_context(|| format!("{image}: blob {digest} was cut short"))?;
            done += chunk.len() as u64;
            match &bar {
                Some(b) => b.set_position(done),
                None if output == Output::Text && last_line.elapsed() > Duration::from_secs(2) => {
                    eprintln!("{image}: {} of {}", ByteSize(done), ByteSize(total));
                    last_line = Instant::now();
                }
                None => {}
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok((plan, done))
}
