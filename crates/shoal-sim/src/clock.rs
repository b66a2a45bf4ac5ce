//! Virtual time: [`SimTime`], nanoseconds since the simulation's start,
//! and its conversions to the clock types the real cores take
//! (`tokio::time::Instant` for the fetch core, `std::time::Instant` for
//! the handout and pacing rules, [`Millis`] for the scheduler).
//!
//! Every instant handed to a core is one fixed base plus the virtual
//! time, so no core ever reads a real clock through the simulator, and
//! only differences between instants (which are virtual) matter.

use std::time::Duration;

use shoal_scheduler::Millis;

/// A point in virtual time: nanoseconds since the simulation started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(pub u64);

impl SimTime {
    /// The start.
    pub const ZERO: SimTime = SimTime(0);

    /// `d` after the start.
    pub fn from_duration(d: Duration) -> SimTime {
        SimTime(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// `d` later.
    pub fn after(self, d: Duration) -> SimTime {
        SimTime(self.0.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }

    /// Seconds since the start.
    pub fn secs(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// How long after `earlier` this is (zero if it is not later).
    pub fn since(self, earlier: SimTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// The fixed base every virtual instant is measured from.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: tokio::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { base: tokio::time::Instant::now() }
    }
}

impl Clock {
    /// `t` as the daemon's clock type.
    pub fn tokio(&self, t: SimTime) -> tokio::time::Instant {
        self.base + Duration::from_nanos(t.0)
    }

    /// `t` as the scheduler core's time (its epoch is the start).
    pub fn millis(&self, t: SimTime) -> Millis {
        Millis(t.0 / 1_000_000)
    }

    /// A daemon instant back in virtual time (instants before the base
    /// map to the start).
    pub fn from_tokio(&self, at: tokio::time::Instant) -> SimTime {
        SimTime::from_duration(at.saturating_duration_since(self.base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_through_the_base() {
        let c = Clock::default();
        let t = SimTime::from_duration(Duration::from_millis(1_500));
        assert_eq!(c.from_tokio(c.tokio(t)), t);
        assert_eq!(c.millis(t), Millis(1_500));
        assert_eq!(c.tokio(t) - c.tokio(SimTime::ZERO), Duration::from_millis(1_500));
        assert_eq!(t.after(Duration::from_millis(500)).since(t), Duration::from_millis(500));
    }
}
