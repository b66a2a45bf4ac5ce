//! The swarm's settings (the binary fills them from its config file).

use std::net::SocketAddr;

use shoal_core::HostId;
use shoal_proto::HostLabels;

use super::tuning::SwarmTuning;

/// How this node takes part in the swarm.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Our host id (must match our certificate).
    pub host: HostId,
    /// Where other peers reach our QUIC endpoint.
    pub advertise: SocketAddr,
    /// Locality labels.
    pub labels: HostLabels,
    /// Upload capacity announced to the scheduler, bytes/s.
    pub upload_capacity: u64,
    /// How pieces are fetched and served (the same defaults everywhere).
    pub tuning: SwarmTuning,
}
