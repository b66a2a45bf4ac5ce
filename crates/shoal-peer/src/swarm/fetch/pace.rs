//! The node's [`Downlink`] as the fetch core's [`Pace`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::core::Pace;
use crate::swarm::downlink::Downlink;

impl Pace for Arc<Downlink> {
    /// The downlink reads the clock itself (it is node-wide, shared by every
    /// download's driver), so `now` only matters to virtual-time callers.
    fn try_take(&mut self, _now: Instant, n: u64) -> Result<(), Duration> {
        Downlink::try_take(self, n)
    }
}
