//! `shoal simulate`: a deterministic swarm simulation (`shoal-sim`) of N
//! nodes pulling one image, driving the real scheduler, fetch and handout
//! cores on a virtual clock; prints one JSON object (docs/simulator.md).

use clap::Args;
use shoal_core::{ByteSize, HumanDuration};
use shoal_sim::{Scenario, parse_rate};

/// `shoal simulate` flags.
#[derive(Args, Debug)]
pub(crate) struct SimulateArgs {
    /// Nodes pulling the image at once.
    #[arg(long, default_value_t = 8)]
    pub(crate) nodes: u32,
    /// Image size (e.g. 256MiB, 1GiB), split evenly over the layers.
    #[arg(long, default_value = "256MiB")]
    pub(crate) size: ByteSize,
    /// Layers (blobs), pulled in parallel.
    #[arg(long, default_value_t = 2)]
    pub(crate) layers: u32,
    /// Each node's upload and download rate, in tc units (e.g. 100mbit).
    #[arg(long, default_value = "100mbit")]
    pub(crate) rate: String,
    /// The origin's upload rate [default: --rate].
    #[arg(long)]
    pub(crate) origin_rate: Option<String>,
    /// One-way latency between any two hosts (e.g. 1ms, 250us).
    #[arg(long, default_value = "1ms")]
    pub(crate) latency: HumanDuration,
    /// Seed of every random choice: a seed gives the same JSON every time.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Share of its uplink a node's uploads may use (the daemon's
    /// `upload_rate` over the link: 1.0 is its default, unlimited, which the
    /// swarm benchmark runs unless given `--upload-share`).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) upload_share: f64,
    /// Share of nodes on slow links.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) slow_fraction: f64,
    /// How many times slower a slow node's links are.
    #[arg(long, default_value_t = 4.0)]
    pub(crate) slow_factor: f64,
    /// Share of nodes that die at a random moment mid-pull.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) die_fraction: f64,
    /// Nodes start at a random moment within this long of the start.
    #[arg(long, default_value = "0s")]
    pub(crate) start_jitter: HumanDuration,
    /// Stop after this much simulated time and report the nodes not done.
    #[arg(long, default_value = "3600s")]
    pub(crate) time_limit: HumanDuration,
    /// Add each node's start, finish and bytes from the origin and peers.
    #[arg(long)]
    pub(crate) timeline: bool,
    /// A daemon config file whose `[swarm.tuning]` every node runs
    /// [default: production's defaults].
    #[arg(long)]
    pub(crate) config: Option<std::path::PathBuf>,
}

pub(crate) fn main(args: SimulateArgs) -> anyhow::Result<()> {
    crate::huge_pages::reexec();
    let rate = parse_rate(&args.rate)?;
    let origin_rate = match &args.origin_rate {
        Some(r) => parse_rate(r)?,
        None => rate,
    };
    let sc = Scenario {
        nodes: args.nodes,
        size: args.size.0,
        layers: args.layers,
        rate,
        origin_rate,
        latency: args.latency.0,
        seed: args.seed,
        upload_share: args.upload_share,
        slow_fraction: args.slow_fraction,
        slow_factor: args.slow_factor,
        die_fraction: args.die_fraction,
        start_jitter: args.start_jitter.0,
        time_limit: args.time_limit.0,
        timeline: args.timeline,
        tuning: match &args.config {
            Some(path) => crate::config::swarm_tuning_of(path)?,
            None => shoal_peer::swarm::SwarmTuning::default(),
        },
    };
    let report = shoal_sim::simulate(sc)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
