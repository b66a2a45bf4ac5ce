//! The scheduler's Prometheus metrics, registered under the
//! `shoal_scheduler` prefix in a registry the caller owns (no globals).
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `shoal_scheduler_hosts` | gauge | registered hosts |
//! | `shoal_scheduler_tasks` | gauge | tasks with at least one peer |
//! | `shoal_scheduler_peer_tasks` | gauge | (peer, task) entries |
//! | `shoal_scheduler_grants` | gauge | origin grants held |
//! | `shoal_scheduler_requests_total{kind, result}` | counter | requests answered |
//! | `shoal_scheduler_decision_duration_seconds` | histogram | time inside the core per request |
//! | `shoal_scheduler_origin_grants_total` | counter | origin grants given (by joins and ticks) |
//! | `shoal_scheduler_expired_hosts_total` | counter | hosts expired for silence |
//!
//! The gauges are refreshed after every request and every tick (reading
//! the sizes is O(1)), so a scrape is at most a tick behind.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::types::Stats;

/// Labels of `shoal_scheduler_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `register`, `heartbeat`, `join`, `progress`, `piece_failed`, `leave`,
    /// or `invalid` for a stream that carried no readable request.
    pub kind: &'static str,
    /// `ok`, `unknown_host`, `bad_request`, `internal`, or for `invalid`:
    /// `error`.
    pub result: &'static str,
}

/// The scheduler's metrics. Cloning shares them.
#[derive(Clone, Debug)]
pub struct SchedulerMetrics {
    hosts: Gauge,
    tasks: Gauge,
    peer_tasks: Gauge,
    grants: Gauge,
    prewarm_jobs: Gauge,
    prewarm_active: Gauge,
    piece_maps: Gauge,
    requests: Family<RequestLabels, Counter>,
    decision: Histogram,
    origin_grants: Counter,
    expired_hosts: Counter,
}

impl SchedulerMetrics {
    /// Creates the metrics and registers them in `registry` under
    /// `shoal_scheduler`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::unregistered();
        let r = registry.sub_registry_with_prefix("shoal_scheduler");
        r.register("hosts", "Registered hosts", m.hosts.clone());
        r.register("tasks", "Tasks with at least one peer", m.tasks.clone());
        r.register("peer_tasks", "(peer, task) entries", m.peer_tasks.clone());
        r.register("grants", "Origin grants held", m.grants.clone());
        r.register("prewarm_jobs", "Prewarm jobs held (finished ones for an hour)", m.prewarm_jobs.clone());
        r.register("prewarm_jobs_active", "Prewarm jobs with a node still queued or running", m.prewarm_active.clone());
        r.register(
            "piece_maps",
            "Final piece maps held for joiners that arrive after a blob's authority left",
            m.piece_maps.clone(),
        );
        r.register("requests", "Requests answered, by kind and result", m.requests.clone());
        r.register(
            "decision_duration_seconds",
            "Time spent in the scheduler core per request, lock wait included",
            m.decision.clone(),
        );
        r.register("origin_grants", "Origin grants given, by joins and ticks", m.origin_grants.clone());
        r.register("expired_hosts", "Hosts expired after sending nothing for host_ttl", m.expired_hosts.clone());
        m
    }

    /// Metrics that no registry exposes (tests, embedded use without
    /// metrics).
    pub fn unregistered() -> Self {
        SchedulerMetrics {
            hosts: Gauge::default(),
            tasks: Gauge::default(),
            peer_tasks: Gauge::default(),
            grants: Gauge::default(),
            prewarm_jobs: Gauge::default(),
            prewarm_active: Gauge::default(),
            piece_maps: Gauge::default(),
            requests: Family::default(),
            // 1 µs .. ~0.26 s: a decision takes microseconds; the tail shows
            // lock contention.
            decision: Histogram::new(exponential_buckets(1e-6, 4.0, 10)),
            origin_grants: Counter::default(),
            expired_hosts: Counter::default(),
        }
    }

    /// Sets the size gauges.
    pub fn record_stats(&self, s: Stats) {
        let set = |g: &Gauge, v: usize| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        set(&self.hosts, s.hosts);
        set(&self.tasks, s.tasks);
        set(&self.peer_tasks, s.peer_tasks);
        set(&self.grants, s.grants);
        set(&self.prewarm_jobs, s.prewarm_jobs);
        set(&self.prewarm_active, s.prewarm_active);
        set(&self.piece_maps, s.piece_maps);
    }

    /// Counts one answered request.
    pub fn record_request(&self, kind: &'static str, result: &'static str) {
        self.requests.get_or_create(&RequestLabels { kind, result }).inc();
    }

    /// Records how long one decision took in the core, lock wait included.
    pub fn observe_decision(&self, seconds: f64) {
        self.decision.observe(seconds);
    }

    /// Counts a stream that carried no readable request.
    pub fn record_invalid(&self) {
        self.requests.get_or_create(&RequestLabels { kind: "invalid", result: "error" }).inc();
    }

    /// Counts origin grants given.
    pub fn record_grants(&self, n: u64) {
        self.origin_grants.inc_by(n);
    }

    /// Counts expired hosts.
    pub fn record_expired(&self, n: u64) {
        self.expired_hosts.inc_by(n);
    }

    /// Requests answered so far with this kind and result.
    pub fn requests(&self, kind: &'static str, result: &'static str) -> u64 {
        self.requests.get_or_create(&RequestLabels { kind, result }).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_named_under_the_prefix() {
        let mut registry = Registry::default();
        let m = SchedulerMetrics::register(&mut registry);
        m.record_stats(Stats {
            hosts: 3,
            tasks: 2,
            peer_tasks: 5,
            grants: 1,
            prewarm_jobs: 2,
            prewarm_active: 1,
            piece_maps: 0,
        });
        m.record_request("join", "ok");
        m.observe_decision(2e-6);
        m.record_grants(1);
        m.record_expired(2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "shoal_scheduler_hosts 3",
            "shoal_scheduler_peer_tasks 5",
            "shoal_scheduler_requests_total{kind=\"join\",result=\"ok\"} 1",
            "shoal_scheduler_decision_duration_seconds_count 1",
            "shoal_scheduler_origin_grants_total 1",
            "shoal_scheduler_expired_hosts_total 2",
            "shoal_scheduler_prewarm_jobs 2",
            "shoal_scheduler_prewarm_jobs_active 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert_eq!(m.requests("join", "ok"), 1);
    }
}
