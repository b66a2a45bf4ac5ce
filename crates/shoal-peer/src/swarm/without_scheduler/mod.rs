//! The swarm without a scheduler: blob providers found through the
//! discovery DHT (`shoal_discovery`), and the scheduler's join answer made
//! locally from them ([`decide`]).
//!
//! [`FallbackLink`] is the [`SchedulerLink`] a daemon with discovery uses:
//! it asks the scheduler replicas when there are any and they answer, and
//! answers a task's requests itself from the DHT when they do not (or when
//! the cluster runs no scheduler at all). Either way it keeps this node's
//! DHT announcements true (downloading, the seed, complete, gone), so that
//! when the schedulers die mid-rollout the DHT already knows who holds what.

pub mod decide;
mod fallback;

pub use decide::{Rules, TaskView};
pub use fallback::FallbackLink;
