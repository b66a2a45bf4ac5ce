//! The scheduler's decision core: swarm state and parent selection as plain
//! data, with no sockets, no tasks and no clock. The service around it
//! (network, timers, metrics) feeds it events with the current time and
//! acts on its answers; tests and simulators drive it the same way.
//!
//! The core modules below use no tokio and no I/O; [`handler`] (wire
//! messages to core calls) and [`rendezvous`] are pure too. Only
//! [`service`] is async: the QUIC server, the peers' client and metrics.
//!
//! # Layout
//! - [`scheduler`]: the [`Scheduler`] and its event methods; origin grants
//!   and the periodic tick live in its `grants` submodule.
//! - [`select`]: which peers a joining child gets as parents; the
//!   candidate and scoring rules, with their weights, are documented there.
//! - `state`: the compact records (hosts, tasks, one small entry per
//!   (peer, task)) and their indexes.
//! - [`types`]: the values going in and out; [`config`]: the knobs;
//!   [`time`]: [`Millis`], time as the caller passes it in.
//! - [`jobs`]: prewarm jobs: node selection and each node's state.
//! - [`harbor`]: Harbor's preheat API (the Dragonfly provider's
//!   endpoints) over those jobs; async, like [`service`].
//! - [`handler`]: one `shoal_proto` request in, one answer out.
//! - [`rendezvous`]: which replica owns a task.
//! - [`service`]: [`SchedulerService`] (server), [`SchedulerClient`]
//!   (peers' side), [`SchedulerMetrics`].
//!
//! # Parent selection
//! Candidates are other peers of the task that hold a piece or are
//! complete, on a live host that is not busy, has a free upload slot and
//! has fewer than `max_failures` recent failures reported against it for
//! the task. They rank by a weighted score: complete above any downloading
//! peer, then more pieces, same rack > same zone > elsewhere, more free
//! upload bandwidth per child, fewer recent failures; exact ties break by a
//! hash of (task, child, parent) so simultaneous joiners spread out. The
//! best `parents_per_join` are returned.
//!
//! # Origin grants
//! At most `max_origin_grants` peers per task may fetch from the origin at
//! once. A joiner that got no complete parent takes a free grant, or one
//! whose holder is dead or stalled; completing, leaving or expiring frees
//! it; a tick moves stalled and orphaned grants to waiting peers. A joiner
//! that gets neither a grant nor parents is told to ask again soon; once
//! the grant holder has pieces, the next join returns it as a parent.
//!
//! # Cost
//! A join costs a few hash lookups plus a scan of the task's peers that
//! hold pieces (at most `scan_limit`), independent of the number of hosts.
//! A tick is O(hosts + tasks).
#![warn(missing_docs)]

pub mod config;
pub mod handler;
pub mod harbor;
pub mod jobs;
pub mod rendezvous;
pub mod scheduler;
pub mod select;
pub mod service;
mod state;
pub mod time;
pub mod types;

pub use config::SchedulerConfig;
pub use handler::handle;
pub use rendezvous::rendezvous;
pub use scheduler::Scheduler;
pub use service::{ClientError, SchedulerClient, SchedulerMetrics, SchedulerService, ServiceConfig};
pub use shoal_core::HostId;
pub use time::Millis;
pub use types::{
    Expired, Have, HeapUsage, HostInfo, JoinDecision, Labels, Load, OriginGrant, Parent, SchedError, Stats,
};
