//! `shoal status`: ask the local daemon's admin API what it holds and is
//! doing, and print it.

use anyhow::Context;
use shoal_core::ByteSize;
use shoal_peer::admin::StatusReport;

use crate::cli::StatusArgs;

/// Entry point of `shoal status`.
pub(crate) fn main(args: StatusArgs) -> anyhow::Result<()> {
    // SHOAL_METRICS_LISTEN may list several addresses (the daemon's own
    // setting): the first is asked.
    let admin = args.admin.split(',').next().unwrap_or_default().trim();
    let base = if admin.starts_with("http") { admin.to_owned() } else { format!("http://{admin}") };
    let url = format!("{}/api/v1/status", base.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let report: StatusReport = runtime.block_on(async {
        let resp = reqwest::Client::new()
            .get(&url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("cannot reach the shoal daemon at {url}: is it running? (set --admin)"))?;
        let status = resp.status();
        if !status.is_success() {
            // The daemon says why (e.g. /api/v1 answers loopback only).
            let body = resp.text().await.unwrap_or_default();
            let why = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or(body);
            anyhow::bail!("{url} answered {status}: {why}");
        }
        resp.json().await.with_context(|| format!("{url} did not answer a status report"))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, &base));
    }
    Ok(())
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 100.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// The text form of a report.
pub(crate) fn render(r: &StatusReport, base: &str) -> String {
    let s = &r.store;
    let mut out = format!(
        "shoal {} at {base}\nstore: {} of {} used ({:.0}%), {} blobs complete, {} partial, {} manifests\n",
        r.version,
        ByteSize(s.used_bytes),
        ByteSize(s.capacity_bytes),
        percent(s.used_bytes, s.capacity_bytes),
        s.complete_blobs,
        s.partial_blobs,
        s.manifests
    );
    if r.downloads.is_empty() {
        out.push_str("downloads: none in progress\n");
    } else {
        out.push_str(&format!("downloads in progress: {}\n", r.downloads.len()));
        for d in &r.downloads {
            let (pct, size) = match d.size {
                Some(size) => (format!("{:5.1}%", percent(d.bytes_done, size)), ByteSize(size).to_string()),
                None => ("  ?  ".to_owned(), "unknown size".to_owned()),
            };
            out.push_str(&format!("  {pct}  {}  from {}  of {size}  ({}s)\n", d.digest, d.registry, d.age_secs));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_peer::admin::{DownloadReport, StoreReport};

    #[test]
    fn renders_progress() {
        let r = StatusReport {
            version: "0.1.0".into(),
            store: StoreReport {
                used_bytes: 1 << 30,
                capacity_bytes: 4 << 30,
                complete_blobs: 3,
                partial_blobs: 1,
                manifests: 2,
            },
            downloads: vec![DownloadReport {
                digest: "sha256:ab".into(),
                registry: "docker.io".into(),
                size: Some(200),
                bytes_done: 50,
                age_secs: 7,
            }],
        };
        let text = render(&r, "http://127.0.0.1:65002");
        assert!(text.contains("1.0 GiB of 4.0 GiB used (25%)"), "{text}");
        assert!(text.contains(" 25.0%  sha256:ab  from docker.io  of 200 B  (7s)"), "{text}");
    }
}
