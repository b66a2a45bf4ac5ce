//! A scheduler in this process: the core behind a mutex, reached by plain
//! calls. Used when no scheduler is configured (one machine needs none on
//! the network) and by tests that run several peers in one process.

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use shoal_core::Digest;
use shoal_proto::{SchedulerRequest, SchedulerResponse};
use shoal_scheduler::{Millis, Scheduler, SchedulerConfig};
use tokio::time::Instant;

use super::link::{LinkError, SchedulerLink};

/// An in-process scheduler, shareable between peers.
#[derive(Clone)]
pub struct EmbeddedScheduler {
    core: Arc<Mutex<Scheduler>>,
    epoch: Instant,
}

impl EmbeddedScheduler {
    /// A fresh scheduler.
    pub fn new(config: SchedulerConfig) -> EmbeddedScheduler {
        EmbeddedScheduler { core: Arc::new(Mutex::new(Scheduler::new(config))), epoch: Instant::now() }
    }

    /// Forget everything, as a restarted scheduler would (soft state).
    pub fn restart(&self) {
        let config = self.core.lock().expect("scheduler poisoned").config().clone();
        *self.core.lock().expect("scheduler poisoned") = Scheduler::new(config);
    }

    /// Hosts, tasks, peer-task entries and grants held now.
    pub fn stats(&self) -> shoal_scheduler::types::Stats {
        self.core.lock().expect("scheduler poisoned").stats()
    }

    /// Expire silent hosts and stalled grants (call every second or so).
    pub fn tick(&self) {
        let now = Millis::from(self.epoch.elapsed());
        self.core.lock().expect("scheduler poisoned").tick(now);
    }
}

impl SchedulerLink for EmbeddedScheduler {
    fn call<'a>(
        &'a self,
        _task: Option<&'a Digest>,
        req: SchedulerRequest,
    ) -> BoxFuture<'a, Result<SchedulerResponse, LinkError>> {
        let now = Millis::from(self.epoch.elapsed());
        let resp = shoal_scheduler::handler::handle(&mut self.core.lock().expect("scheduler poisoned"), now, req, None);
        Box::pin(async move { Ok(resp) })
    }
}
