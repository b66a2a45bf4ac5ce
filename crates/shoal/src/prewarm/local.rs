//! Warming this node: each image resolved and fetched through the local
//! daemon's mirror, one after another, with a progress bar per image on a
//! terminal, a line every few seconds otherwise, or JSON at the end.

use std::io::IsTerminal;
use std::time::Duration;

use shoal_core::ByteSize;
use shoal_prewarm::{Event, Platform};
use tokio::time::Instant;

use super::{Output, PrewarmArgs};

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

/// A progress bar for `image` of `total` bytes (bytes, rate, ETA).
pub(super) fn bar(image: &str, total: u64) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(total);
    b.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_message(image.to_owned());
    b
}

pub(super) async fn run(args: PrewarmArgs) -> anyhow::Result<()> {
    let platforms = Platform::parse_all_or_host(&args.platforms)?;
    let mirror = args.mirror.trim_end_matches('/').to_owned();
    let client = super::mirror_client(&args);
    let terminal = args.output == Output::Text && std::io::stderr().is_terminal();
    let mut reports = Vec::new();
    for image in &args.images {
        let t0 = Instant::now();
        let mut bar: Option<indicatif::ProgressBar> = None;
        let (mut done, mut total, mut last_line) = (0u64, 0u64, Instant::now());
        let result = shoal_prewarm::warm_image(&client, &mirror, image, &platforms, |event| match event {
            Event::Resolved { bytes, .. } => {
                total = bytes;
                bar = terminal.then(|| self::bar(image, bytes));
            }
            Event::Bytes(n) => {
                done += n;
                match &bar {
                    Some(b) => b.set_position(done),
                    None if args.output == Output::Text && last_line.elapsed() > Duration::from_secs(2) => {
                        eprintln!("{image}: {} of {}", ByteSize(done), ByteSize(total));
                        last_line = Instant::now();
                    }
                    None => {}
                }
            }
            Event::BlobDone => {}
        })
        .await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let seconds = t0.elapsed().as_secs_f64();
        let report = match result {
            Ok(w) => Report {
                image: image.clone(),
                ok: true,
                platforms: w.plan.platforms.clone(),
                blobs: w.plan.blobs.len(),
                bytes: w.bytes,
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
                error: Some(e.to_string()),
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
