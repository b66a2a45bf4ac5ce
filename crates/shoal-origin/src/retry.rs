//! When and how long to wait before trying an origin request again:
//! [`RetryPolicy`] (exponential backoff with jitter, `Retry-After`), the
//! pure maths behind it, and the loop that applies it to buffered requests.
//!
//! Blob downloads are not retried here: the daemon tracks its own offset and
//! runs its own loop with [`RetryPolicy::delay_after`].

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::OriginError;

/// The first backoff step.
pub const DEFAULT_BASE: Duration = Duration::from_millis(200);
/// No single wait is longer than this (`Retry-After` included).
pub const DEFAULT_CAP: Duration = Duration::from_secs(5);

/// How many extra attempts to make and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first one (0 = try once).
    pub attempts: u32,
    /// The wait before the first retry, doubled for each later one.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new(3)
    }
}

impl RetryPolicy {
    /// `attempts` extra attempts with the default 200 ms base and 5 s cap.
    pub fn new(attempts: u32) -> RetryPolicy {
        RetryPolicy { attempts, base: DEFAULT_BASE, cap: DEFAULT_CAP }
    }

    /// The wait before retry number `attempt` (0 = the first retry), with
    /// "equal jitter": half of `min(cap, base * 2^attempt)` is fixed, the
    /// other half scaled by `random` (in `[0, 1)`; clamped).
    pub fn backoff(&self, attempt: u32, random: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).min(self.cap);
        let half = exp / 2;
        let random = if random.is_finite() { random.clamp(0.0, 1.0) } else { 0.0 };
        half + half.mul_f64(random)
    }

    /// Whether to retry after `err`, which ended attempt `attempt` (0 = the
    /// first try), and how long to wait first: `None` when the error is
    /// final or the attempts are used up. A `Retry-After` from the origin
    /// wins over the backoff, up to the cap.
    pub fn delay_after(&self, attempt: u32, err: &OriginError, random: f64) -> Option<Duration> {
        if attempt >= self.attempts || !err.is_retryable() {
            return None;
        }
        Some(match err.retry_after() {
            Some(asked) => asked.min(self.cap),
            None => self.backoff(attempt, random),
        })
    }

    /// Run `op` until it succeeds, fails for good, or the attempts run out.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, OriginError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OriginError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => match self.delay_after(attempt, &e, random_unit()) {
                    Some(wait) => {
                        tracing::debug!(%what, attempt, ?wait, error = %e, "retrying origin request");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }
}

/// Parse a `Retry-After` header. Only the delay-seconds form is understood;
/// an HTTP-date yields `None` (the normal backoff applies).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// A number in `[0, 1)` for jitter, from the standard library's randomly
/// keyed hasher (no RNG crate needed for this).
pub fn random_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn status(s: u16, retry_after: Option<Duration>) -> OriginError {
        OriginError::Status { registry: "r".into(), url: "u".into(), status: s, retry_after, body: Bytes::new() }
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let p = RetryPolicy::new(10);
        let ms = |a, r| p.backoff(a, r).as_millis();
        assert_eq!(ms(0, 0.0), 100);
        assert_eq!(ms(0, 1.0), 200);
        assert_eq!(ms(1, 0.0), 200);
        assert_eq!(ms(2, 0.5), 600);
        assert_eq!(ms(5, 1.0), 5000);
        assert_eq!(ms(60, 1.0), 5000);
        assert_eq!(ms(u32::MAX, 0.0), 2500);
        assert_eq!(ms(0, f64::NAN), 100);
        assert_eq!(ms(0, 7.0), 200);
    }

    #[test]
    fn delay_after_respects_attempts_kind_and_retry_after() {
        let p = RetryPolicy::new(2);
        assert!(p.delay_after(0, &status(503, None), 0.0).is_some());
        assert!(p.delay_after(1, &status(503, None), 0.0).is_some());
        assert_eq!(p.delay_after(2, &status(503, None), 0.0), None);
        assert_eq!(p.delay_after(0, &status(400, None), 0.0), None);
        let asked = status(429, Some(Duration::from_secs(2)));
        assert_eq!(p.delay_after(0, &asked, 0.0), Some(Duration::from_secs(2)));
        let greedy = status(429, Some(Duration::from_secs(3600)));
        assert_eq!(p.delay_after(0, &greedy, 0.0), Some(DEFAULT_CAP));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
    }

    #[test]
    fn random_unit_is_in_range_and_varies() {
        let xs: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(xs.windows(2).any(|w| w[0] != w[1]));
    }

    #[tokio::test(start_paused = true)]
    async fn run_retries_then_gives_up() {
        let p = RetryPolicy::new(2);
        let mut calls = 0;
        let r: Result<(), _> = p
            .run("test", || {
                calls += 1;
                async { Err(status(502, None)) }
            })
            .await;
        assert_eq!(calls, 3);
        assert_eq!(r.unwrap_err().status(), Some(502));
    }
}
