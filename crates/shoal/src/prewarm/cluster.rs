//! Warming other nodes: the local daemon submits a prewarm job to the
//! scheduler (`POST /api/v1/prewarm` on its admin address), and `--wait`
//! follows it (`GET /api/v1/prewarm/{job}` each second) with a bar per
//! image summed over the nodes, until every node finished or `--timeout`.
//!
//! Each image is checked through the local mirror first (a HEAD, and the
//! index for a multi-platform image: nothing that would make this node
//! prefetch the image), so a typo, a missing platform or refused
//! credentials fail at once with a one-line error, before any node is
//! bothered.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use shoal_core::ByteSize;
use shoal_peer::admin::prewarm::{ApiError, PrewarmSubmitted, SubmitPrewarm};
use shoal_prewarm::Platform;
use shoal_proto::{NodeJobState, NodeSelector, PrewarmJob, PrewarmSpec};
use tokio::time::Instant;

use super::{Output, PrewarmArgs};

/// The node option given, if any.
pub(super) fn selector(args: &PrewarmArgs) -> anyhow::Result<Option<NodeSelector>> {
    Ok(if args.all_nodes {
        Some(NodeSelector::All)
    } else if let Some(n) = args.node_count {
        if n == 0 {
            bail!("--nodes must be at least 1");
        }
        Some(NodeSelector::Count(n))
    } else if let Some(s) = &args.selector {
        Some(NodeSelector::Labels(shoal_proto::prewarm::parse_selector(s).map_err(anyhow::Error::msg)?))
    } else {
        None
    })
}

/// A non-2xx answer from the admin API, with its `error` message.
#[derive(Debug)]
struct Refused {
    status: reqwest::StatusCode,
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(admin: &str) -> Api {
        let base = if admin.starts_with("http") { admin.to_owned() } else { format!("http://{admin}") };
        Api { client: shoal_prewarm::http_client(), base: base.trim_end_matches('/').to_owned() }
    }

    /// Sends `req`; a non-2xx answer becomes its `error` message.
    async fn send<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.timeout(Duration::from_secs(30)).send().await.with_context(|| {
            format!("cannot reach the local shoal daemon's admin API at {}: is it running? (set --admin)", self.base)
        })?;
        let status = resp.status();
        let body = resp.bytes().await.with_context(|| format!("reading the answer of {}", self.base))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
            return Err(Refused { status, message }.into());
        }
        serde_json::from_slice(&body).with_context(|| format!("{} answered something unexpected", self.base))
    }

    async fn submit(&self, body: &SubmitPrewarm) -> anyhow::Result<PrewarmSubmitted> {
        self.send(self.client.post(format!("{}/api/v1/prewarm", self.base)).json(body)).await
    }

    async fn status(&self, job: &str) -> anyhow::Result<PrewarmJob> {
        self.send(self.client.get(format!("{}/api/v1/prewarm/{job}", self.base))).await
    }
}

pub(super) async fn run(args: PrewarmArgs, selector: NodeSelector) -> anyhow::Result<()> {
    let platforms = Platform::parse_all_or_host(&args.platforms)?;
    let mirror = args.mirror.trim_end_matches('/').to_owned();
    let client = super::mirror_client(&args);
    for image in &args.images {
        let r = shoal_prewarm::image_ref::parse(image)?;
        shoal_prewarm::resolve::check(&client, &mirror, &r, &platforms).await?;
    }
    let api = Api::new(&args.admin);
    let spec = PrewarmSpec { images: args.images.clone(), platforms: args.platforms.clone() };
    let submitted = api.submit(&SubmitPrewarm { spec, selector }).await.context("submitting the prewarm job")?;
    let names: Vec<&str> = submitted.nodes.iter().map(|h| h.as_str()).collect();
    if args.output == Output::Text {
        let plural = if names.len() == 1 { "" } else { "s" };
        eprintln!("prewarm job {} on {} node{plural}: {}", submitted.job, names.len(), names.join(", "));
    }
    if !args.wait {
        match args.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&submitted)?),
            Output::Text => eprintln!("the nodes fetch in the background (add --wait to follow the job)"),
        }
        return Ok(());
    }
    let job = follow(&api, &submitted.job, &args).await?;
    if args.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&job)?);
    }
    let failed: Vec<(&str, &str)> = job
        .nodes
        .iter()
        .filter_map(|n| match &n.state {
            NodeJobState::Failed { reason } => Some((n.host.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    if args.output == Output::Text {
        for (host, reason) in &failed {
            eprintln!("error: node {host}: {reason}");
        }
        let bytes: u64 = job.nodes.iter().flat_map(|n| &n.images).map(|i| i.bytes_done).sum();
        eprintln!(
            "prewarm job {}: {} of {} nodes done, {} failed; {} fetched in {:.1}s",
            job.job,
            job.nodes.len() - failed.len(),
            job.nodes.len(),
            failed.len(),
            ByteSize(bytes),
            job.age_ms as f64 / 1000.0
        );
    }
    if !failed.is_empty() {
        let hosts: Vec<&str> = failed.iter().map(|f| f.0).collect();
        bail!("prewarm failed on {}", hosts.join(", "));
    }
    Ok(())
}

/// Per image: (bytes done, bytes total, nodes finished) over all nodes.
/// A node that has not resolved an image yet counts as many bytes as the
/// nodes that have, on average (0 before any has).
fn tally(job: &PrewarmJob) -> BTreeMap<String, (u64, u64, usize)> {
    let mut out = BTreeMap::new();
    for image in &job.spec.images {
        let known: Vec<u64> = job
            .nodes
            .iter()
            .filter_map(|n| n.images.iter().find(|p| &p.image == image && p.bytes_total > 0))
            .map(|p| p.bytes_total)
            .collect();
        let estimate = if known.is_empty() { 0 } else { known.iter().sum::<u64>() / known.len() as u64 };
        let mut t = (0, 0, 0);
        for node in &job.nodes {
            match node.images.iter().find(|p| &p.image == image) {
                Some(p) => {
                    t.0 += p.bytes_done;
                    t.1 += if p.bytes_total > 0 { p.bytes_total } else { estimate };
                    t.2 += usize::from(p.finished || p.error.is_some() || node.state.is_finished());
                }
                None => {
                    t.1 += estimate;
                    t.2 += usize::from(node.state.is_finished());
                }
            }
        }
        out.insert(image.clone(), t);
    }
    out
}

/// Polls the job until every node finished, rendering progress.
async fn follow(api: &Api, id: &str, args: &PrewarmArgs) -> anyhow::Result<PrewarmJob> {
    let started = Instant::now();
    let terminal = args.output == Output::Text && std::io::stderr().is_terminal();
    let bars = indicatif::MultiProgress::new();
    let mut image_bars = BTreeMap::new();
    let mut last_line = Instant::now();
    let mut warned = false;
    loop {
        let job = match api.status(id).await {
            Ok(job) => job,
            Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == reqwest::StatusCode::NOT_FOUND) => {
                bail!("{e:#}: re-run the prewarm (images already warmed are not fetched again)")
            }
            Err(e) if started.elapsed() > args.timeout.0 => {
                return Err(e.context(format!("asking for the state of prewarm job {id}")));
            }
            Err(e) => {
                if !warned && args.output == Output::Text {
                    eprintln!("warning: asking for the job's state failed ({e:#}); retrying");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let nodes = job.nodes.len();
        for (image, (done, total, finished)) in tally(&job) {
            let label = format!("{image} ({finished}/{nodes} nodes)");
            if terminal {
                let bar = image_bars.entry(image.clone()).or_insert_with(|| bars.add(super::local::bar(&label, total)));
                bar.set_length(total.max(1));
                bar.set_position(done);
                bar.set_message(label);
            } else if args.output == Output::Text && (last_line.elapsed() > Duration::from_secs(5) || job.is_finished())
            {
                eprintln!("{image}: {finished}/{nodes} nodes, {} of {}", ByteSize(done), ByteSize(total));
            }
        }
        if last_line.elapsed() > Duration::from_secs(5) {
            last_line = Instant::now();
        }
        if job.is_finished() {
            for bar in image_bars.values() {
                bar.finish_and_clear();
            }
            return Ok(job);
        }
        if started.elapsed() > args.timeout.0 {
            let running = job.nodes.iter().filter(|n| !n.state.is_finished()).map(|n| n.host.as_str());
            bail!(
                "gave up waiting for prewarm job {id} after {}: still running on {} (the nodes carry on)",
                args.timeout,
                running.collect::<Vec<_>>().join(", ")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use shoal_proto::{ImageProgress, NodeJob};

    use super::*;

    #[test]
    fn tallies_sum_nodes_and_estimate_unresolved_ones() {
        let progress = |done, total, finished| ImageProgress {
            image: "img".into(),
            bytes_done: done,
            bytes_total: total,
            finished,
            ..ImageProgress::default()
        };
        let node = |name: &str, state, images| NodeJob { host: name.parse().unwrap(), state, images, quiet_ms: 0 };
        let job = PrewarmJob {
            job: "pw".into(),
            spec: PrewarmSpec { images: vec!["img".into()], platforms: vec![] },
            age_ms: 0,
            nodes: vec![
                node("a", NodeJobState::Done, vec![progress(100, 100, true)]),
                node("b", NodeJobState::Running, vec![progress(40, 100, false)]),
                node("c", NodeJobState::Queued, vec![]),
            ],
        };
        // c has not resolved the image yet: it counts as the average, 100.
        assert_eq!(tally(&job)["img"], (140, 300, 1));
    }
}
