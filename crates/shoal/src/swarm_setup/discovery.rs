//! Starting the discovery DHT from `[swarm.discovery]`.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use shoal_discovery::{ClusterKey, Discovery, DiscoveryConfig};

use crate::config::SwarmSection;

/// Default TCP address of the discovery DHT.
pub(crate) const DEFAULT_DISCOVERY_LISTEN: &str = "0.0.0.0:65006";
/// The key file `shoal certs node` writes beside the node certificate.
pub(crate) const CLUSTER_KEY_FILE: &str = "cluster.key";

/// Is discovery on? Explicitly, or because `bootstrap` names other daemons.
pub(crate) fn enabled(s: &SwarmSection) -> bool {
    s.discovery.enabled.unwrap_or(!s.discovery.bootstrap.is_empty())
}

/// Starts the DHT if `[swarm.discovery]` is on; `certs_dir` holds the
/// default key file, `swarm_advertise` gives the default address's IP.
pub(crate) async fn start(
    s: &SwarmSection,
    certs_dir: &Path,
    swarm_advertise: SocketAddr,
) -> anyhow::Result<Option<Discovery>> {
    if !enabled(s) {
        return Ok(None);
    }
    let d = &s.discovery;
    if d.bootstrap.is_empty() {
        tracing::warn!(
            "[swarm.discovery] is on with no bootstrap: this daemon finds other daemons only when they dial it"
        );
    }
    let key_file = d.key_file.clone().unwrap_or_else(|| certs_dir.join(CLUSTER_KEY_FILE));
    let key = ClusterKey::from_file(&key_file).with_context(|| {
        format!(
            "reading the cluster key for [swarm.discovery] from {} (`shoal certs node` writes it beside the node \
             certificate; or set [swarm.discovery] key_file to a file of 64 hex digits shared by every daemon)",
            key_file.display()
        )
    })?;
    let listen = d.listen.unwrap_or_else(|| DEFAULT_DISCOVERY_LISTEN.parse().expect("valid"));
    let advertise = match d.advertise {
        Some(a) => Some(a),
        None if listen.ip().is_unspecified() => Some(SocketAddr::new(swarm_advertise.ip(), listen.port())),
        None => None,
    };
    if advertise.is_some_and(|a| a.port() == 0) {
        bail!("[swarm.discovery] listens on port 0: set a fixed port, or advertise the one to dial");
    }
    let config = DiscoveryConfig {
        listen,
        advertise,
        bootstrap: d.bootstrap.clone(),
        cluster_key: Some(key.clone()),
        ..DiscoveryConfig::default()
    };
    let dht = Discovery::start(config)
        .await
        .with_context(|| format!("starting the discovery DHT on TCP {listen} (set [swarm.discovery] listen)"))?;
    tracing::info!(
        listen = %dht.listen_addr(),
        bootstrap = ?d.bootstrap,
        key = %key.fingerprint(),
        "discovery DHT started"
    );
    Ok(Some(dht))
}
