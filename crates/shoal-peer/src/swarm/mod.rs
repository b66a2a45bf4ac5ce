//! The node's side of the swarm: fetching pieces from other peers and
//! serving pieces to them, under a scheduler.
//!
//! - [`config`]: the swarm settings.
//! - [`node`]: [`Swarm`], registration, heartbeats and scheduler calls.
//! - [`link`]: how the scheduler is reached (embedded or remote).
//! - [`embedded`]: a scheduler in this process.
//! - [`remote`]: scheduler replicas over QUIC.
//! - [`fetch`]: fetching a task's pieces from parents.
//! - [`downlink`]: pacing peer fetches so a seed's origin stream keeps its share.
//! - [`path_stats`]: loss, congestion and round trips of the upload paths.
//! - [`picker`]: a download's pieces held and in flight, and its outlook
//!   (pure).
//! - [`tuning`]: every swarm setting, with defaults.
//! - [`trust`]: the piece hashes pieces are checked against, and who
//!   vouched for them (pure).
//! - [`server`]: serving availability and pieces to other peers.
//! - [`downloads`]: what the server needs of the downloads running here
//!   (implemented by `task`).
//! - [`handout`]: one copy of a piece out at a time (super-seeding).
//! - [`prewarm`]: the scheduler calls behind prewarm jobs.
//! - [`wire`]: stream set-up (hello exchange).

pub mod config;
pub mod downlink;
pub mod downloads;
pub mod embedded;
pub mod fetch;
pub mod handout;
pub mod link;
pub mod node;
pub mod path_stats;
pub mod picker;
pub mod prewarm;
pub mod remote;
pub mod server;
pub mod trust;
pub mod tuning;
pub mod wire;
pub mod without_scheduler;

pub use config::SwarmConfig;
pub use embedded::EmbeddedScheduler;
pub use link::{LinkError, SchedulerLink};
pub use node::{Joined, Swarm};
pub use prewarm::PrewarmCallError;
pub use remote::RemoteScheduler;
pub use tuning::SwarmTuning;
