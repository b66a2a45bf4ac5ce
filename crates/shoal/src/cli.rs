//! The command line. Every daemon flag can also be set through the
//! environment variable named next to it, and overrides the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use shoal_core::ByteSize;

/// Peer-to-peer container image distribution.
#[derive(Parser, Debug)]
#[command(name = "shoal", version, about)]
pub(crate) struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run the node daemon: a registry mirror containerd pulls through.
    Daemon(Box<DaemonArgs>),
    /// Run a scheduler replica: it picks who fetches from whom.
    Scheduler(crate::scheduler_cmd::SchedulerArgs),
    /// Fill stores with images before a rollout (this node, or many through the scheduler).
    Prewarm(crate::prewarm::PrewarmArgs),
    /// Fetch any large file (model weights) through the local daemon and the swarm.
    Get(crate::get_cmd::GetArgs),
    /// Show what the local daemon holds and is downloading.
    Status(StatusArgs),
    /// A whole swarm in this process: an origin, a scheduler and peers
    /// pulling one image at once; prints who got what from where.
    Demo(crate::demo::DemoArgs),
    /// Simulate N nodes pulling one image (the real scheduler and fetch
    /// cores on a virtual clock); prints one JSON object.
    Simulate(crate::simulate_cmd::SimulateArgs),
    /// Make the cluster CA and node certificates for mutual TLS.
    #[command(subcommand)]
    Certs(crate::certs_cmd::CertsCommand),
    /// Point containerd at the local shoal mirror (hosts.toml per registry,
    /// the origin as fallback).
    #[command(subcommand)]
    Containerd(crate::containerd_cmd::ContainerdCommand),
}

/// Log output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `shoal daemon` flags.
#[derive(Args, Debug, Default)]
pub(crate) struct DaemonArgs {
    /// TOML config file [default: /etc/shoal/config.toml if it exists].
    #[arg(long, env = "SHOAL_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Mirror listen address [default: 127.0.0.1:65001].
    #[arg(long, env = "SHOAL_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Metrics and admin API listen addresses, repeatable or comma-separated
    /// (e.g. loopback for `shoal status` plus the node's IP for Prometheus)
    /// [default: 127.0.0.1:65002].
    #[arg(long, env = "SHOAL_METRICS_LISTEN", value_delimiter = ',', value_parser = crate::listen::parse_listen)]
    pub(crate) metrics_listen: Vec<SocketAddr>,
    /// Store directory [default: /var/lib/shoal as root, else ~/.local/share/shoal].
    #[arg(long, env = "SHOAL_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Disk quota of the store, e.g. 20GiB [default: 20GiB].
    #[arg(long, env = "SHOAL_QUOTA")]
    pub(crate) quota: Option<ByteSize>,
    /// Registry used when a request has no `ns` parameter [default: docker.io].
    #[arg(long, env = "SHOAL_DEFAULT_REGISTRY")]
    pub(crate) default_registry: Option<String>,
    /// Origin URL for a registry, as NAME=URL (repeatable, or comma-separated
    /// in the env var), e.g. docker.io=https://registry-1.docker.io.
    #[arg(long = "upstream", env = "SHOAL_UPSTREAMS", value_delimiter = ',')]
    pub(crate) upstreams: Vec<String>,
    /// Docker config.json with credentials per registry (the format of a
    /// Kubernetes pull secret).
    #[arg(long, env = "SHOAL_DOCKER_CONFIG")]
    pub(crate) docker_config: Option<PathBuf>,
    /// Answer tags from the last digest seen when the origin is unreachable
    /// [default: true].
    #[arg(long, env = "SHOAL_STALE_TAGS")]
    pub(crate) stale_tags: Option<bool>,
    /// Log format [default: human].
    #[arg(long, env = "SHOAL_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
    /// Join the swarm (peer-to-peer piece exchange; needs certificates).
    #[arg(long, env = "SHOAL_SWARM")]
    pub(crate) swarm: bool,
    /// Directory with ca.crt, tls.crt and tls.key (from `shoal certs`).
    #[arg(long, env = "SHOAL_CERTS_DIR")]
    pub(crate) certs_dir: Option<PathBuf>,
    /// UDP address of the QUIC endpoint [default: 0.0.0.0:65003].
    #[arg(long, env = "SHOAL_SWARM_LISTEN")]
    pub(crate) swarm_listen: Option<SocketAddr>,
    /// Address other peers dial [default: $POD_IP or the listen address].
    #[arg(long, env = "SHOAL_SWARM_ADVERTISE")]
    pub(crate) swarm_advertise: Option<SocketAddr>,
    /// This node's host id [default: $NODE_NAME, else the host name].
    #[arg(long, env = "SHOAL_HOST_ID")]
    pub(crate) host_id: Option<String>,
    /// Scheduler replica (host:port), repeatable or comma-separated; none:
    /// an embedded scheduler.
    #[arg(long = "scheduler", env = "SHOAL_SCHEDULERS", value_delimiter = ',')]
    pub(crate) schedulers: Vec<String>,
    /// TCP address of the discovery DHT, which finds blobs' holders when no
    /// scheduler answers [default: 0.0.0.0:65006].
    #[arg(long, env = "SHOAL_DISCOVERY_LISTEN")]
    pub(crate) discovery_listen: Option<SocketAddr>,
    /// Another daemon's discovery address (host:port; a headless Service
    /// name lists every daemon), repeatable or comma-separated; turns
    /// discovery on.
    #[arg(long = "discovery-bootstrap", env = "SHOAL_DISCOVERY_BOOTSTRAP", value_delimiter = ',')]
    pub(crate) discovery_bootstrap: Vec<String>,
}

/// `shoal status` flags.
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// The daemon's admin address.
    #[arg(long, env = "SHOAL_METRICS_LISTEN", default_value = "127.0.0.1:65002")]
    pub(crate) admin: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}
