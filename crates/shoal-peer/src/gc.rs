//! The periodic garbage-collection loop around the store's pure GC plan.

use std::time::{Duration, SystemTime};

use shoal_storage::Store;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Run GC every `interval` until `stop` fires.
pub async fn run(store: Store, metrics: Metrics, interval: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.gc(SystemTime::now())).await {
            Ok(Ok(report)) => {
                if !report.evicted.is_empty() {
                    metrics.store_evictions.inc_by(report.evicted.len() as u64);
                    metrics.store_evicted_bytes.inc_by(report.freed_bytes);
                    tracing::info!(
                        evicted = report.evicted.len(),
                        freed = report.freed_bytes,
                        used = report.used_after,
                        "gc evicted blobs"
                    );
                }
                metrics.store_bytes.set(i64::try_from(report.used_after).unwrap_or(i64::MAX));
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "gc failed"),
            Err(e) => tracing::warn!(error = %e, "gc job panicked"),
        }
    }
}
