//! Bootstrap: when to resolve and dial the configured peers, and resolving
//! them.
//!
//! While this node knows no member (the first daemon of a rollout), the
//! list is tried again after a pause that doubles up to a cap, so a node
//! started before its peers joins them once they are up. Once in a
//! cluster, names are resolved again on a fixed period, so daemons that
//! appeared behind a headless Service are dialled too.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

/// The schedule of bootstrap attempts; pure, driven by the caller's clock.
#[derive(Debug)]
pub(crate) struct Schedule {
    base: Duration,
    max: Duration,
    period: Duration,
    backoff: Duration,
    next: Instant,
}

impl Schedule {
    /// A schedule whose first attempt is due at `now`.
    pub(crate) fn new(now: Instant, base: Duration, max: Duration, period: Duration) -> Schedule {
        Schedule { base, max, period, backoff: base, next: now }
    }

    /// Whether an attempt is due; if so, the next one is scheduled: after
    /// the backoff (which then doubles) while `connected` is false, after
    /// the resolve period (and the backoff resets) while it is true.
    pub(crate) fn poll(&mut self, now: Instant, connected: bool) -> bool {
        if connected {
            self.backoff = self.base;
        }
        if now < self.next {
            return false;
        }
        if connected {
            self.next = now + self.period;
        } else {
            self.next = now + self.backoff;
            self.backoff = (self.backoff * 2).min(self.max);
        }
        true
    }

    /// Makes the next attempt due at once (a connection was lost).
    pub(crate) fn hurry(&mut self, now: Instant) {
        self.next = self.next.min(now);
    }
}

/// Resolves every `host:port` (names through the system resolver, so a
/// headless Service yields one address per ready pod); entries that do not
/// resolve are skipped (they may exist later) and logged.
pub(crate) async fn resolve(entries: Vec<String>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for entry in entries {
        match tokio::net::lookup_host(entry.as_str()).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => tracing::debug!(%entry, error = %e, "discovery bootstrap entry does not resolve (yet)"),
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backs_off_while_alone_and_settles_when_connected() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 100 * MS, 800 * MS, 60_000 * MS);
        assert!(s.poll(t0, false));
        assert!(!s.poll(t0 + 99 * MS, false));
        // Pauses: 100, 200, 400, 800, 800 ms.
        let mut at = t0;
        for pause in [100, 200, 400, 800, 800] {
            at += pause * MS;
            assert!(!s.poll(at - MS, false), "due before {pause} ms");
            assert!(s.poll(at, false), "not due after {pause} ms");
        }
        // Connected: the period rules and the backoff starts over.
        at += 800 * MS;
        assert!(s.poll(at, true));
        assert!(!s.poll(at + 59_999 * MS, true));
        s.hurry(at + MS);
        assert!(s.poll(at + MS, false));
        assert!(!s.poll(at + 100 * MS, false));
        assert!(s.poll(at + 101 * MS, false));
    }

    #[tokio::test]
    async fn resolves_names_and_skips_bad_entries() {
        let got = resolve(vec!["localhost:7001".into(), "127.0.0.1:7002".into(), "missing-port".into()]).await;
        assert!(got.contains(&"127.0.0.1:7002".parse().unwrap()), "{got:?}");
        assert!(got.iter().any(|a| a.port() == 7001 && a.ip().is_loopback()), "{got:?}");
        assert_eq!(got.len(), got.iter().filter(|a| a.ip().is_loopback()).count());
    }
}
