//! Time as the core sees it: a [`Millis`] passed in by the caller.
//!
//! The core never reads a clock. The service around it picks an epoch (its
//! own start, say) and hands in `Millis::from(epoch.elapsed())`; tests and
//! simulators hand in whatever virtual time they like. Arithmetic saturates,
//! so a clock that steps backwards makes things look fresh, never panics.

use std::ops::Add;
use std::time::Duration;

/// A point in time: milliseconds since an epoch the caller chooses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// The epoch itself.
    pub const ZERO: Millis = Millis(0);

    /// How long after `earlier` this is; zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Whether at least `d` has passed between `earlier` and `self`.
    pub(crate) fn reached(self, earlier: Millis, d_ms: u64) -> bool {
        self.0.saturating_sub(earlier.0) >= d_ms
    }
}

impl From<Duration> for Millis {
    /// The point `d` after the epoch (saturating at `u64::MAX` ms).
    fn from(d: Duration) -> Self {
        Millis(as_ms(d))
    }
}

impl Add<Duration> for Millis {
    type Output = Millis;

    fn add(self, d: Duration) -> Millis {
        Millis(self.0.saturating_add(as_ms(d)))
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn as_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Millis(1_000);
        assert_eq!(t + Duration::from_millis(500), Millis(1_500));
        assert_eq!(Millis(u64::MAX) + Duration::from_secs(1), Millis(u64::MAX));
        assert_eq!(Millis(1_500).since(t), Duration::from_millis(500));
        assert_eq!(t.since(Millis(1_500)), Duration::ZERO);
        assert!(Millis(1_500).reached(t, 500));
        assert!(!Millis(1_499).reached(t, 500));
        assert_eq!(Millis::from(Duration::from_secs(2)), Millis(2_000));
    }
}
