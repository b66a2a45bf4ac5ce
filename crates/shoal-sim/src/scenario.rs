//! [`Scenario`]: what is simulated (nodes, image, links, failures, seed),
//! the ideal completion time T* it is measured against, and the parsers
//! for the units the command line takes (`100mbit`, `256MiB`, `1ms`).

use std::time::Duration;

use shoal_peer::swarm::SwarmTuning;

/// A parameter that does not parse or makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// A rate that is not a tc-style rate.
    #[error("rate {0:?} is invalid: write e.g. 100mbit, 1gbit or 12500000bps (bytes/s)")]
    Rate(String),
    /// A value out of range.
    #[error("{0}")]
    Range(String),
}

/// One simulated pull. `Default` is the swarm benchmark's setting at N = 8.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Nodes pulling the image.
    pub nodes: u32,
    /// Image size in bytes, split evenly over `layers` blobs.
    pub size: u64,
    /// Layers (blobs), pulled in parallel as containerd does.
    pub layers: u32,
    /// Each node's upload and download, bytes/s.
    pub rate: f64,
    /// The origin's upload, bytes/s.
    pub origin_rate: f64,
    /// One-way latency between any two hosts (scheduler and origin too).
    pub latency: Duration,
    /// Seed of every random choice.
    pub seed: u64,
    /// Share of the uplink a node's uploads to peers may use: 1.0 is the
    /// daemon's default (`upload_rate = 0`, uploads unlimited); the swarm
    /// benchmark's `--upload-share` sets 0.9.
    pub upload_share: f64,
    /// Share of nodes on slow links.
    pub slow_fraction: f64,
    /// A slow node's links are this many times slower.
    pub slow_factor: f64,
    /// Share of nodes that die mid-pull.
    pub die_fraction: f64,
    /// Nodes start at a uniformly random moment within this long of the
    /// start (0: all at once, as in the benchmark).
    pub start_jitter: Duration,
    /// Give up on the run (and report the nodes not finished) after this
    /// much virtual time.
    pub time_limit: Duration,
    /// Keep each node's start, finish and byte counts for the report.
    pub timeline: bool,
    /// Every node's swarm settings (production's by default).
    pub tuning: SwarmTuning,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            nodes: 8,
            size: 256 << 20,
            layers: 2,
            rate: 12_500_000.0,
            origin_rate: 12_500_000.0,
            latency: Duration::from_millis(1),
            seed: 1,
            upload_share: 1.0,
            slow_fraction: 0.0,
            slow_factor: 4.0,
            die_fraction: 0.0,
            start_jitter: Duration::ZERO,
            time_limit: Duration::from_secs(3600),
            timeline: false,
            tuning: SwarmTuning::default(),
        }
    }
}

impl Scenario {
    /// The ideal completion time, as the swarm benchmark computes it:
    /// max(S/B_down, S/B_origin, N·S/(B_origin + N·B_up)), with the
    /// nominal (fast) node rate.
    pub fn t_star(&self) -> f64 {
        let s = self.size as f64;
        let n = f64::from(self.nodes);
        (s / self.rate).max(s / self.origin_rate).max(n * s / (self.origin_rate + n * self.rate))
    }

    /// Bytes of layer `l` (the last one takes the remainder).
    pub fn layer_size(&self, l: u32) -> u64 {
        let base = self.size / u64::from(self.layers);
        if l + 1 == self.layers { self.size - base * u64::from(self.layers - 1) } else { base }
    }

    /// Refuse settings that cannot run.
    pub fn check(&self) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Range(m.into()));
        if self.nodes == 0 {
            return bad("--nodes must be at least 1");
        }
        if self.layers == 0 || u64::from(self.layers) > self.size {
            return bad("--layers must be at least 1 and at most the image size in bytes");
        }
        if self.rate <= 0.0 || self.origin_rate <= 0.0 {
            return bad("--rate and --origin-rate must be positive");
        }
        if !(0.0..=1.0).contains(&self.slow_fraction) || !(0.0..=1.0).contains(&self.die_fraction) {
            return bad("--slow-fraction and --die-fraction are shares between 0 and 1");
        }
        if self.slow_factor < 1.0 {
            return bad("--slow-factor must be at least 1 (how many times slower)");
        }
        if !(self.upload_share > 0.0 && self.upload_share <= 1.0) {
            return bad("--upload-share must be above 0 and at most 1");
        }
        Ok(())
    }
}

/// A rate in tc units: `bit`, `kbit`, `mbit`, `gbit` (10^3 steps, bits/s)
/// or `bps`, `kbps`, `mbps`, `gbps` (bytes/s, as tc reads them). Returns
/// bytes/s.
pub fn parse_rate(s: &str) -> Result<f64, ScenarioError> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| ScenarioError::Rate(s.into()))?;
    let per_sec = match unit {
        "bit" => value / 8.0,
        "kbit" => value * 1e3 / 8.0,
        "mbit" => value * 1e6 / 8.0,
        "gbit" => value * 1e9 / 8.0,
        "bps" => value,
        "kbps" => value * 1e3,
        "mbps" => value * 1e6,
        "gbps" => value * 1e9,
        _ => return Err(ScenarioError::Rate(s.into())),
    };
    if per_sec.is_finite() && per_sec > 0.0 { Ok(per_sec) } else { Err(ScenarioError::Rate(s.into())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_as_tc_writes_them() {
        assert_eq!(parse_rate("100mbit").unwrap(), 12_500_000.0);
        assert_eq!(parse_rate("1gbit").unwrap(), 125_000_000.0);
        assert_eq!(parse_rate("1000bps").unwrap(), 1000.0);
        assert!(parse_rate("100").is_err() && parse_rate("fast").is_err() && parse_rate("0mbit").is_err());
    }

    #[test]
    fn t_star_is_the_benchmarks() {
        // 256 MiB at 100 Mbit/s: 21.47 s (the benchmark's 21.48 s counts
        // the manifest and config too).
        let t = Scenario::default().t_star();
        assert!((t - 21.47).abs() < 0.01, "{t}");
        // A slow origin bounds it.
        let slow_origin = Scenario { origin_rate: 1_250_000.0, ..Scenario::default() };
        assert!((slow_origin.t_star() - 214.7).abs() < 0.1);
    }
}
