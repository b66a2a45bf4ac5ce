//! What a run reports, as one JSON object: completion times (p50, p99,
//! max, and each over T*) of the nodes that survived, the origin's egress
//! (and over S), what it cost to simulate, and optionally each node's
//! timeline. [`Outcome`] is what a seed determines; [`Cost`] is what the
//! machine running it measured.

use std::time::Duration;

use serde::Serialize;

use crate::world::World;

/// A run's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What the seed determines (the same JSON on every run).
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What simulating it cost on this machine.
    #[serde(flatten)]
    pub cost: Cost,
}

/// The simulated outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Nodes.
    pub nodes: u32,
    /// Image bytes (S).
    pub size: u64,
    /// Layers.
    pub layers: u32,
    /// Pieces per layer (the first; the last may differ).
    pub pieces_per_layer: u32,
    /// Piece size of the first layer, bytes.
    pub piece_size: u64,
    /// Node rate, bytes/s.
    pub rate: f64,
    /// Origin rate, bytes/s.
    pub origin_rate: f64,
    /// One-way latency, ms.
    pub latency_ms: f64,
    /// Seed.
    pub seed: u64,
    /// Share of nodes on slow links, and how much slower.
    pub slow_fraction: f64,
    /// How many times slower.
    pub slow_factor: f64,
    /// Share of nodes that die.
    pub die_fraction: f64,
    /// The ideal time, s.
    pub t_star_s: f64,
    /// Nodes that did not die.
    pub survivors: u32,
    /// Survivors that did not finish within the time limit.
    pub unfinished: u32,
    /// Completion (from the common start), s: median.
    pub p50_s: f64,
    /// 99th percentile.
    pub p99_s: f64,
    /// Slowest.
    pub max_s: f64,
    /// p50 / T*.
    pub p50_over_t_star: f64,
    /// p99 / T*.
    pub p99_over_t_star: f64,
    /// max / T*.
    pub max_over_t_star: f64,
    /// p50 / T* of the nodes on fast links (when some are slow).
    pub fast_p50_over_t_star: f64,
    /// p99 / T* of the nodes on fast links.
    pub fast_p99_over_t_star: f64,
    /// Bytes the origin sent.
    pub origin_egress: u64,
    /// Origin egress / S.
    pub egress_over_s: f64,
    /// Layer downloads that went to the origin: granted, the swarm gave
    /// up, the scheduler was unreachable.
    pub to_origin: [u64; 3],
    /// Pieces moved between peers.
    pub peer_pieces: u64,
    /// Piece requests refused or failed.
    pub refusals: u64,
    /// Scheduler requests answered.
    pub scheduler_calls: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated, s.
    pub simulated_s: f64,
    /// Per node, when `--timeline` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<NodeLine>>,
}

/// One node's pull.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeLine {
    /// Host id.
    pub node: String,
    /// On a slow link.
    pub slow: bool,
    /// Started, s.
    pub start_s: f64,
    /// Finished, s (none: died or unfinished).
    pub finish_s: Option<f64>,
    /// Died, s.
    pub died_s: Option<f64>,
    /// Bytes from the origin.
    pub from_origin: u64,
    /// Bytes from peers.
    pub from_peers: u64,
    /// Bytes uploaded to peers.
    pub uploaded: u64,
}

/// What the run cost.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// Peak resident memory of this process, bytes (0 where unknown).
    pub peak_rss: u64,
}

/// The report of a finished (or timed-out) world.
pub fn build(w: &World, wall: Duration) -> Report {
    let sc = &w.sc;
    let t_star = sc.t_star();
    let survivors: Vec<_> =
        w.nodes.iter().filter(|n| n.dies_at.is_none_or(|d| n.finished_at.is_some_and(|f| f <= d))).collect();
    let times = |fast_only: bool| {
        let mut t: Vec<f64> = survivors
            .iter()
            .filter(|n| !fast_only || !n.slow)
            .filter_map(|n| n.finished_at)
            .map(|f| f.secs())
            .collect();
        t.sort_by(f64::total_cmp);
        t
    };
    let all = times(false);
    let fast = times(true);
    let unfinished = survivors.len() - all.len();
    // With unfinished nodes, the percentiles count them as never done.
    let pct = |t: &[f64], q: f64, n: usize| {
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        t.get(rank - 1).copied().unwrap_or(f64::INFINITY)
    };
    let n = survivors.len();
    let nfast = survivors.iter().filter(|x| !x.slow).count();
    let (p50, p99, max) = (pct(&all, 0.5, n), pct(&all, 0.99, n), pct(&all, 1.0, n));
    let layout = w.layouts[0];
    let timeline = sc.timeline.then(|| {
        w.nodes
            .iter()
            .map(|n| NodeLine {
                node: n.host.to_string(),
                slow: n.slow,
                start_s: n.start_at.secs(),
                finish_s: n.finished_at.map(|f| f.secs()),
                died_s: n.dies_at.filter(|&d| d <= w.now && n.finished_at.is_none_or(|f| f > d)).map(|d| d.secs()),
                from_origin: n.from_origin,
                from_peers: n.from_peers,
                uploaded: n.uploaded,
            })
            .collect()
    });
    let outcome = Outcome {
        nodes: sc.nodes,
        size: sc.size,
        layers: sc.layers,
        pieces_per_layer: layout.count(),
        piece_size: layout.piece_size,
        rate: sc.rate,
        origin_rate: sc.origin_rate,
        latency_ms: sc.latency.as_secs_f64() * 1e3,
        seed: sc.seed,
        slow_fraction: sc.slow_fraction,
        slow_factor: sc.slow_factor,
        die_fraction: sc.die_fraction,
        t_star_s: t_star,
        survivors: n as u32,
        unfinished: unfinished as u32,
        p50_s: p50,
        p99_s: p99,
        max_s: max,
        p50_over_t_star: p50 / t_star,
        p99_over_t_star: p99 / t_star,
        max_over_t_star: max / t_star,
        fast_p50_over_t_star: pct(&fast, 0.5, nfast) / t_star,
        fast_p99_over_t_star: pct(&fast, 0.99, nfast) / t_star,
        origin_egress: w.count.origin_bytes,
        egress_over_s: w.count.origin_bytes as f64 / sc.size as f64,
        to_origin: w.count.to_origin,
        peer_pieces: w.count.peer_pieces,
        refusals: w.count.refusals,
        scheduler_calls: w.sched.calls,
        events: w.count.events,
        simulated_s: w.now.secs(),
        timeline,
    };
    Report { outcome, cost: Cost { wall_s: wall.as_secs_f64(), peak_rss: peak_rss() } }
}

/// This process's peak resident set (`VmHWM`), bytes; 0 where unknown.
fn peak_rss() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
