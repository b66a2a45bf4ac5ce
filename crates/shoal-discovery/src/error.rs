//! [`DiscoveryError`]: what can go wrong starting discovery or using it.
//!
//! Messages name the setting to fix and never carry the cluster key.

/// Why discovery could not start or could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// No pre-shared cluster key was configured: without it the node could
    /// not tell members from strangers, so it refuses to start.
    #[error("discovery needs the cluster key: set a 32-byte key (64 hex digits) or a key file shared by every node")]
    NoClusterKey,
    /// The cluster key is not 32 bytes of hex (or a `swarm.key` file).
    #[error("the cluster key is invalid: {0}")]
    BadClusterKey(String),
    /// The cluster key file could not be read (its path is not repeated here).
    #[error("the cluster key file could not be read: {0}")]
    ClusterKeyFile(#[source] std::io::Error),
    /// A configuration value breaks a rule (the message names the key).
    #[error("discovery config: {0}")]
    Config(String),
    /// The libp2p transport or behaviour could not be built.
    #[error("discovery could not build its network stack: {0}")]
    Setup(String),
    /// The listen address could not be bound.
    #[error("discovery could not listen on {addr}: {reason} (is the port in use?)")]
    Listen {
        /// The address from the config.
        addr: std::net::SocketAddr,
        /// What the transport said.
        reason: String,
    },
    /// The node already provides as many blobs as `limits.max_provided` allows.
    #[error("discovery already provides {0} blobs (limits.max_provided): unprovide evicted blobs first")]
    TooManyProvided(usize),
    /// The local record store refused the record (it is full).
    #[error("the discovery record store is full (limits.max_stored_keys)")]
    StoreFull,
    /// The discovery task has stopped (after `shutdown`, or it failed).
    #[error("discovery has stopped")]
    Stopped,
}
