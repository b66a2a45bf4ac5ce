//! The node's [`Downlink`] as the fetch core's [`Pace`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::core::Pace;
use crate::swarm::downlink::Downlink;

impl Pace for Arc<Downlink> {
    fn try_take(&mut self, now: Instant, n: u64) -> Result<(), Duration> {
        Downlink::try_take(self, now, n)
    }
}
