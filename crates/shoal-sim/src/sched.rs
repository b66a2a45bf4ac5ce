//! The scheduler as the simulated nodes reach it: the real
//! [`shoal_scheduler::Scheduler`] core answering real
//! [`SchedulerRequest`]s through the real request handler
//! ([`shoal_scheduler::handle`], what the network service and the
//! daemon's embedded scheduler run), ticked every second as the service
//! ticks it. The latency of each call is the caller's to add.

use std::time::Duration;

use shoal_proto::{SchedulerRequest, SchedulerResponse};
use shoal_scheduler::{Scheduler, SchedulerConfig};

use crate::clock::{Clock, SimTime};

/// How often the service ticks the core (`ServiceConfig::tick`).
pub const TICK: Duration = Duration::from_secs(1);

/// The scheduler host.
pub struct SchedHost {
    core: Scheduler,
    /// Requests answered.
    pub calls: u64,
}

impl SchedHost {
    /// A scheduler with the production defaults.
    pub fn new() -> SchedHost {
        SchedHost { core: Scheduler::new(SchedulerConfig::default()), calls: 0 }
    }

    /// Answer `req` at `now` (in-process: no certificate check).
    pub fn call(&mut self, clock: &Clock, now: SimTime, req: SchedulerRequest) -> SchedulerResponse {
        self.calls += 1;
        shoal_scheduler::handle(&mut self.core, clock.millis(now), req, None)
    }

    /// The periodic tick: expiry and grant hand-over.
    pub fn tick(&mut self, clock: &Clock, now: SimTime) {
        self.core.tick(clock.millis(now));
    }

    /// How often a registered host heartbeats.
    pub fn heartbeat_interval(&self) -> Duration {
        shoal_scheduler::handler::heartbeat_interval(&self.core)
    }
}

impl Default for SchedHost {
    fn default() -> Self {
        SchedHost::new()
    }
}
