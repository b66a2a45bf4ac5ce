//! The health of the QUIC paths this node uploads on: packets sent and
//! lost, congestion events and round-trip times, as Prometheus metrics.
//!
//! Loss and queueing are what a shaped or congested node link shows first,
//! and shoal's piece counters cannot show them: a piece that needed three
//! retransmissions counts the same as one that needed none. These figures
//! are what tell a congestion controller that fills a link's queue until
//! it drops packets (loss, round trips far above the path's) from one that
//! keeps the queue short; see docs/design/swarm-lessons.md.
//!
//! [`PathTotals`] is the pure part: it turns two readings of a connection's
//! cumulative counters into the increments to add (a counter that went
//! backwards adds nothing). [`watch`] samples one connection until it
//! closes. Connections other peers opened to this node are watched: they
//! carry this node's uploads, the bulk it sends.

use std::time::Duration;

use crate::Metrics;

/// How often a connection's statistics are read.
pub const SAMPLE: Duration = Duration::from_secs(1);

/// Cumulative counters of one connection's path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathTotals {
    /// Packets sent.
    pub sent_packets: u64,
    /// Packets declared lost.
    pub lost_packets: u64,
    /// Congestion events (the controller cut its window).
    pub congestion_events: u64,
}

impl PathTotals {
    /// Reads a connection's totals.
    pub fn of(conn: &quinn::Connection) -> PathTotals {
        let path = conn.stats().path;
        PathTotals {
            sent_packets: path.sent_packets,
            lost_packets: path.lost_packets,
            congestion_events: path.congestion_events,
        }
    }

    /// What grew since `earlier`, field by field (never negative).
    pub fn since(self, earlier: PathTotals) -> PathTotals {
        PathTotals {
            sent_packets: self.sent_packets.saturating_sub(earlier.sent_packets),
            lost_packets: self.lost_packets.saturating_sub(earlier.lost_packets),
            congestion_events: self.congestion_events.saturating_sub(earlier.congestion_events),
        }
    }

    fn add_to(self, metrics: &Metrics) {
        metrics.quic_sent_packets.inc_by(self.sent_packets);
        metrics.quic_lost_packets.inc_by(self.lost_packets);
        metrics.quic_congestion_events.inc_by(self.congestion_events);
    }
}

/// Samples `conn` every [`SAMPLE`] until it closes, adding what its path
/// sent and lost to `metrics` and observing its round-trip time while it
/// sends. The last increments are added when it closes.
pub async fn watch(conn: quinn::Connection, metrics: Metrics) {
    let mut last = PathTotals::default();
    loop {
        let closed = tokio::time::timeout(SAMPLE, conn.closed()).await.is_ok();
        let now = PathTotals::of(&conn);
        let grew = now.since(last);
        grew.add_to(&metrics);
        if grew.sent_packets > 0 {
            metrics.quic_rtt.observe(conn.rtt().as_secs_f64());
        }
        last = now;
        if closed {
            tracing::debug!(
                peer = %conn.remote_address(),
                sent = now.sent_packets,
                lost = now.lost_packets,
                congestion_events = now.congestion_events,
                "peer connection closed"
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_are_field_by_field_and_never_negative() {
        let a = PathTotals { sent_packets: 100, lost_packets: 3, congestion_events: 1 };
        let b = PathTotals { sent_packets: 250, lost_packets: 7, congestion_events: 1 };
        assert_eq!(b.since(a), PathTotals { sent_packets: 150, lost_packets: 4, congestion_events: 0 });
        // A reading that went backwards (it should not) adds nothing.
        assert_eq!(a.since(b), PathTotals::default());
    }

    #[test]
    fn increments_reach_the_counters() {
        let m = Metrics::unregistered();
        PathTotals { sent_packets: 10, lost_packets: 2, congestion_events: 1 }.add_to(&m);
        PathTotals { sent_packets: 5, lost_packets: 0, congestion_events: 0 }.add_to(&m);
        assert_eq!((m.quic_sent_packets.get(), m.quic_lost_packets.get(), m.quic_congestion_events.get()), (15, 2, 1));
    }
}
