//! [`DiscoveryConfig`] and [`Limits`]: every tunable of discovery, with
//! defaults for a cluster of up to a few thousand nodes.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::cluster_key::ClusterKey;
use crate::error::DiscoveryError;

/// How one node takes part in the discovery DHT.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// TCP address the DHT listens on (default `0.0.0.0:65006`; port 0
    /// picks a free one, see [`crate::Discovery::listen_addrs`]).
    pub listen: SocketAddr,
    /// The address other nodes reach this one at (e.g. `$POD_IP:65006`).
    /// Unset: every address the listener reports that is not `0.0.0.0`.
    pub advertise: Option<SocketAddr>,
    /// Other nodes to start from, as `host:port` or `ip:port`. Names are
    /// resolved at start and every `resolve_interval` (a headless Service
    /// of the DaemonSet lists every daemon); every address is dialled.
    pub bootstrap: Vec<String>,
    /// The pre-shared key of the cluster; required.
    pub cluster_key: Option<ClusterKey>,
    /// Bounds on records.
    pub limits: Limits,
    /// How long a provider record lives at the nodes that store it.
    pub record_ttl: Duration,
    /// How often this node re-announces what it still provides (shorter
    /// than `record_ttl`, so records of live providers never lapse).
    pub republish_interval: Duration,
    /// Default for one `find` when the caller passes none, and the
    /// longest a Kademlia query runs.
    pub query_timeout: Duration,
    /// Longest wait for a provider to describe itself (host, address, state).
    pub request_timeout: Duration,
    /// How often bootstrap names are resolved again, once in a cluster;
    /// addresses no member was reached at before are dialled.
    pub resolve_interval: Duration,
    /// While no member is connected or in the routing table, bootstrap is
    /// retried after this pause, doubling up to `bootstrap_backoff_max`.
    pub bootstrap_backoff: Duration,
    /// Longest pause between bootstrap retries.
    pub bootstrap_backoff_max: Duration,
    /// A connection with no stream open this long is closed.
    pub idle_connection_timeout: Duration,
}

/// Bounds on what one node publishes and stores.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Blobs this node announces at once (complete and downloading); one
    /// more `provide` fails with [`DiscoveryError::TooManyProvided`].
    pub max_provided: usize,
    /// Keys this node's record store keeps, its own and other nodes'
    /// together; records for further keys are dropped.
    pub max_stored_keys: usize,
    /// Providers kept per key in the store, and returned by one `find`.
    pub max_providers_per_key: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_provided: 4096, max_stored_keys: 65_536, max_providers_per_key: 20 }
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 65006)),
            advertise: None,
            bootstrap: Vec::new(),
            cluster_key: None,
            limits: Limits::default(),
            record_ttl: Duration::from_secs(30 * 60),
            republish_interval: Duration::from_secs(10 * 60),
            query_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            resolve_interval: Duration::from_secs(60),
            bootstrap_backoff: Duration::from_millis(500),
            bootstrap_backoff_max: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(120),
        }
    }
}

impl DiscoveryConfig {
    /// Checks the rules between fields; the error names the key.
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        let bad = |m: &str| Err(DiscoveryError::Config(m.to_owned()));
        if self.cluster_key.is_none() {
            return Err(DiscoveryError::NoClusterKey);
        }
        let l = &self.limits;
        if l.max_provided == 0 || l.max_stored_keys == 0 || l.max_providers_per_key == 0 {
            return bad("limits must be at least 1");
        }
        if l.max_provided > l.max_stored_keys {
            return bad("limits.max_provided must not exceed limits.max_stored_keys (own records live in the store)");
        }
        if self.republish_interval.is_zero() || self.republish_interval >= self.record_ttl {
            return bad("republish_interval must be above zero and shorter than record_ttl");
        }
        for (name, d) in [
            ("query_timeout", self.query_timeout),
            ("request_timeout", self.request_timeout),
            ("resolve_interval", self.resolve_interval),
            ("bootstrap_backoff", self.bootstrap_backoff),
            ("idle_connection_timeout", self.idle_connection_timeout),
        ] {
            if d.is_zero() {
                return bad(&format!("{name} must be above zero"));
            }
        }
        if self.bootstrap_backoff_max < self.bootstrap_backoff {
            return bad("bootstrap_backoff_max must be at least bootstrap_backoff");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed() -> DiscoveryConfig {
        DiscoveryConfig { cluster_key: Some(ClusterKey::derive(b"t")), ..DiscoveryConfig::default() }
    }

    #[test]
    fn default_needs_only_a_key() {
        assert!(matches!(DiscoveryConfig::default().validate(), Err(DiscoveryError::NoClusterKey)));
        keyed().validate().unwrap();
    }

    #[test]
    fn rules_name_the_key() {
        let mut c = keyed();
        c.republish_interval = c.record_ttl;
        assert!(c.validate().unwrap_err().to_string().contains("republish_interval"));
        let mut c = keyed();
        c.limits.max_provided = c.limits.max_stored_keys + 1;
        assert!(c.validate().unwrap_err().to_string().contains("max_provided"));
        let mut c = keyed();
        c.request_timeout = Duration::ZERO;
        assert!(c.validate().unwrap_err().to_string().contains("request_timeout"));
    }
}
