//! A deterministic swarm simulator: thousands of shoal nodes pulling one
//! image, on a virtual clock, with no sockets, driving the real decision
//! cores: the scheduler ([`shoal_scheduler::Scheduler`], through the
//! request handler the service runs), each node's fetch core
//! ([`shoal_peer::swarm::fetch::core::FetchCore`]), its piece server's
//! handout rule ([`shoal_peer::swarm::handout::Handouts`]) and its downlink
//! pace ([`shoal_peer::swarm::downlink::PaceCore`]), all with
//! [`shoal_peer::SwarmTuning::default`] and the real piece layout. A seed
//! gives the same report every time. What is modelled and what is not:
//! docs/simulator.md.
//!
//! # Layout
//! - [`scenario`]: what is simulated, T*, unit parsing.
//! - [`clock`]: virtual time and the cores' clock types.
//! - [`events`]: the event queue, ordered by (time, sequence).
//! - [`net`]: links and flows sharing them (max-min fair, locally).
//! - [`sched`]: the scheduler host.
//! - [`node`]: a simulated daemon's state and its downlink pace.
//! - [`world`]: the simulation and its event loop; a node's life.
//! - `fetch`: carrying out the fetch core's actions.
//! - `serve`: the piece server.
//! - `origin`: downloads from the origin.
//! - [`report`]: the JSON report.
#![warn(missing_docs)]

pub mod clock;
mod due;
pub mod events;
mod fetch;
pub mod net;
pub mod node;
mod origin;
pub mod report;
pub mod scenario;
pub mod sched;
mod serve;
pub mod world;

pub use report::{Outcome, Report};
pub use scenario::{Scenario, ScenarioError, parse_rate};

/// Simulate `sc` and report.
pub fn simulate(sc: Scenario) -> Result<Report, ScenarioError> {
    sc.check()?;
    Ok(world::World::new(sc).run())
}
