//! `shoal prewarm`: fill stores with images before a rollout.
//!
//! Without a node option, this node's store is filled through the local
//! daemon ([`local`]). With `--all-nodes`, `--nodes N` or `--selector`, the
//! local daemon asks the scheduler to run a prewarm job on the nodes it
//! picks, and `--wait` follows the job to the end ([`cluster`]). Either way
//! blobs come through the mirror, and so through the swarm: warming a whole
//! cluster costs the origin about one copy of each blob.
//!
//! Progress: a bar per image on a terminal, plain lines otherwise, JSON with
//! `--output json`. The command exits non-zero if any image (on any node)
//! failed, naming the node, the image and the cause.

mod cluster;
mod local;

use clap::{Args, ValueEnum};

/// Output format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// Progress bars or lines.
    Text,
    /// One JSON document at the end.
    Json,
}

/// `shoal prewarm` flags.
#[derive(Args, Debug)]
pub(crate) struct PrewarmArgs {
    /// Images, e.g. nginx:1.27 ghcr.io/org/app@sha256:...
    #[arg(required = true)]
    pub(crate) images: Vec<String>,
    /// Platforms to fetch from an image index (repeatable) [default: each node's own].
    #[arg(long = "platform")]
    pub(crate) platforms: Vec<String>,
    /// Warm every node registered with the scheduler.
    #[arg(long, group = "nodes_choice")]
    pub(crate) all_nodes: bool,
    /// Warm this many nodes, spread over zones.
    #[arg(long = "nodes", value_name = "N", group = "nodes_choice")]
    pub(crate) node_count: Option<u32>,
    /// Warm the nodes whose labels match, e.g. zone=eu-west-1a (keys: zone, rack, node).
    #[arg(long, value_name = "KEY=VALUE[,...]", group = "nodes_choice")]
    pub(crate) selector: Option<String>,
    /// With a node option: follow the job until every node finished.
    #[arg(long)]
    pub(crate) wait: bool,
    /// With --wait: give up waiting after this long (the nodes carry on).
    #[arg(long, default_value = "1h")]
    pub(crate) timeout: shoal_core::HumanDuration,
    /// The local daemon's mirror.
    #[arg(long, env = "SHOAL_MIRROR", default_value = "http://127.0.0.1:65001")]
    pub(crate) mirror: String,
    /// The daemon's token file: with it, images are fetched as the node
    /// (the daemon's credentials for private registries apply); without
    /// (not readable), as an anonymous client [default: DATA_DIR/node-token].
    #[arg(long, env = "SHOAL_NODE_TOKEN", value_name = "FILE")]
    pub(crate) node_token: Option<std::path::PathBuf>,
    /// The local daemon's admin address (for jobs on other nodes).
    #[arg(long, env = "SHOAL_METRICS_LISTEN", default_value = "127.0.0.1:65002")]
    pub(crate) admin: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

/// The HTTP client for the local mirror: as the node when the daemon's
/// token file can be read (see [`PrewarmArgs::node_token`]).
fn mirror_client(args: &PrewarmArgs) -> reqwest::Client {
    let path = args
        .node_token
        .clone()
        .unwrap_or_else(|| crate::config::default_data_dir().join(crate::config::NODE_TOKEN_FILE));
    let token = shoal_peer::access::NodeToken::read_from(&path);
    if token.is_none() {
        tracing::debug!(path = %path.display(), "no node token readable; prewarming as an anonymous client");
    }
    shoal_prewarm::http_client_as(token)
}

/// Entry point of `shoal prewarm`.
pub(crate) fn main(args: PrewarmArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cluster::selector(&args)? {
        Some(selector) => runtime.block_on(cluster::run(args, selector)),
        None => {
            if args.wait {
                anyhow::bail!("--wait follows a job on other nodes: add --all-nodes, --nodes N or --selector");
            }
            runtime.block_on(local::run(args))
        }
    }
}
