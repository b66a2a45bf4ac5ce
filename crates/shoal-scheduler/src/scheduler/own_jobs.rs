//! Prewarm jobs the scheduler submits on its own behalf (the Harbor preheat
//! API, [`crate::harbor`]): no registered host submits them, they may carry
//! a credential for their nodes, and their answers name each node's address.

use std::net::SocketAddr;

use shoal_core::HostId;
use shoal_proto::{JobCredential, NodeSelector, PrewarmSpec};

use super::Scheduler;
use crate::jobs::HostView;
use crate::time::Millis;
use crate::types::SchedError;

impl Scheduler {
    /// Starts prewarm job `job` on the live hosts `selector` picks, handing
    /// them `credential` with it (see [`crate::jobs::Jobs::attach_credential`]);
    /// returns the hosts.
    pub fn submit_own_prewarm(
        &mut self,
        now: Millis,
        job: String,
        spec: PrewarmSpec,
        selector: &NodeSelector,
        credential: Option<JobCredential>,
    ) -> Result<Vec<HostId>, SchedError> {
        let ttl = self.limits.ttl_ms;
        let live: Vec<HostView<'_>> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.alive(now, ttl))
            .map(|(_, h)| HostView { id: &h.info.id, labels: &h.info.labels })
            .collect();
        let picked = self.jobs.submit(now, job.clone(), spec, selector, &live)?;
        if let Some(c) = credential {
            self.jobs.attach_credential(&job, c);
        }
        Ok(picked)
    }

    /// Live registered hosts.
    pub fn live_hosts(&self, now: Millis) -> usize {
        let ttl = self.limits.ttl_ms;
        self.hosts.iter().filter(|(_, h)| h.alive(now, ttl)).count()
    }

    /// The address `host` registered (its QUIC endpoint), while it is known.
    pub fn host_addr(&self, host: &HostId) -> Option<SocketAddr> {
        self.host_ids.get(host).map(|&h| self.hosts[h].info.addr)
    }
}
