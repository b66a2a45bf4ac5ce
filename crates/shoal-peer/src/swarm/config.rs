//! The swarm's settings (the binary fills them from its config file).

use std::net::SocketAddr;
use std::time::Duration;

use shoal_core::HostId;
use shoal_proto::HostLabels;

use super::fetch::FetchConfig;

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
    /// Concurrent uploads accepted.
    pub max_uploads: u32,
    /// Piece fetching.
    pub fetch: FetchConfig,
    /// Deadline of one scheduler call.
    pub scheduler_deadline: Duration,
    /// How long a download keeps asking the swarm before it gives up on it
    /// and goes to the origin regardless of grants.
    pub give_up_after: Duration,
}
