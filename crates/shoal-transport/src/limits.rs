//! Limits on what a node spends on its peers: byte rates ([`TokenBucket`],
//! pure, with time passed in; [`RateLimiter`], its async wrapper) and the
//! number of concurrent uploads ([`UploadSlots`]). Time is
//! `tokio::time::Instant`, the daemon's one clock, so paused time in tests
//! reaches the bucket too.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A token bucket over bytes: `rate` bytes/s refill up to `burst` bytes.
///
/// [`TokenBucket::take`] always grants the request and returns how long the
/// caller must wait before using the bytes: the bucket may go into debt, and
/// later callers wait for the debt too. So a request larger than `burst` is
/// still served (at the rate), and concurrent callers are ordered fairly
/// by arrival. Tokens are kept in byte-nanoseconds, so the maths is exact
/// integer arithmetic at any rate. A `rate` of 0 means unlimited.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens in bytes × 1e9 (may be negative: debt).
    level: i128,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A bucket that starts full.
    pub fn new(rate: u64, burst: u64) -> Self {
        Self { rate, burst, level: i128::from(burst) * NANOS_PER_SEC as i128, last: None }
    }

    /// The refill rate in bytes/s (0: unlimited).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Takes `n` bytes at `now` and returns the wait before they may be used.
    pub fn take(&mut self, now: Instant, n: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        self.refill(now);
        self.level -= i128::from(n) * NANOS_PER_SEC as i128;
        self.debt_wait()
    }

    /// Takes `n` bytes at `now` only if the bucket is not in debt; if it
    /// is, takes nothing and returns how long until it is not. For callers
    /// that decide whether to start something now (a piece request) rather
    /// than wait before using bytes already granted.
    pub fn try_take(&mut self, now: Instant, n: u64) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        self.refill(now);
        if self.level < 0 {
            return Err(self.debt_wait());
        }
        self.level -= i128::from(n) * NANOS_PER_SEC as i128;
        Ok(())
    }

    /// How long until the bucket is out of debt (zero if it is not in
    /// debt): debt / rate, rounded up. Only for a non-zero rate.
    fn debt_wait(&self) -> Duration {
        if self.level >= 0 {
            return Duration::ZERO;
        }
        let nanos = self.level.unsigned_abs().div_ceil(u128::from(self.rate));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Changes the rate from `now` on (what accrued until `now` was at the
    /// old rate).
    pub fn set_rate(&mut self, now: Instant, rate: u64) {
        self.refill(now);
        self.rate = rate;
    }

    fn refill(&mut self, now: Instant) {
        let cap = i128::from(self.burst) * NANOS_PER_SEC as i128;
        if let Some(last) = self.last {
            // A clock that steps back (it should not) refills nothing.
            let elapsed = now.saturating_duration_since(last).as_nanos();
            let room = (cap - self.level).max(0) as u128;
            let gained = elapsed.saturating_mul(u128::from(self.rate)).min(room);
            self.level += gained as i128;
        }
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
    }
}

/// The burst of [`RateLimiter::per_second`], in time at its rate: long
/// enough that tokio's 1 ms timer does not cost rate.
pub const BURST_TIME: Duration = Duration::from_millis(5);
/// The smallest burst of [`RateLimiter::per_second`].
pub const MIN_BURST: u64 = 64 << 10;

/// An async byte-rate limit shared by all transfers in one direction
/// (e.g. all uploads of a node). Cloning shares the limit.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    bucket: Option<Arc<Mutex<TokenBucket>>>,
}

impl RateLimiter {
    /// A limiter of `rate` bytes/s with bursts up to `burst` bytes; `rate`
    /// 0 means unlimited (and costs nothing per call).
    pub fn new(rate: u64, burst: u64) -> Self {
        let bucket = (rate > 0).then(|| Arc::new(Mutex::new(TokenBucket::new(rate, burst))));
        Self { bucket }
    }

    /// A limiter with `rate` bytes/s and a burst of [`BURST_TIME`]'s worth
    /// (at least [`MIN_BURST`]). The burst is what may leave at once after
    /// a pause: a large burst lets uploads that resume together overflow
    /// the node's link queue, which then drops packets
    /// (docs/design/swarm-lessons.md). Larger requests still pass: they
    /// wait for their bytes.
    pub fn per_second(rate: u64) -> Self {
        let burst = (rate as u128 * BURST_TIME.as_nanos() / 1_000_000_000) as u64;
        Self::new(rate, burst.max(MIN_BURST))
    }

    /// No limit.
    pub fn unlimited() -> Self {
        Self { bucket: None }
    }

    /// Whether this limiter never waits.
    pub fn is_unlimited(&self) -> bool {
        self.bucket.is_none()
    }

    /// Waits until `n` more bytes may be moved. Uses tokio's clock, so
    /// tests with paused time run instantly.
    pub async fn acquire(&self, n: u64) {
        let Some(bucket) = &self.bucket else { return };
        let wait = bucket.lock().await.take(Instant::now(), n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::unlimited()
    }
}

/// A cap on concurrent uploads. [`UploadSlots::try_acquire`] never waits,
/// so a busy peer can answer "busy" at once and the child asks another
/// parent instead of queueing behind a saturated one.
#[derive(Clone, Debug)]
pub struct UploadSlots {
    slots: Arc<Semaphore>,
    max: usize,
}

/// One upload in progress; the slot frees when this drops.
#[derive(Debug)]
pub struct UploadPermit {
    _permit: OwnedSemaphorePermit,
}

impl UploadSlots {
    /// At most `max` uploads at once; 0 means unlimited.
    pub fn new(max: usize) -> Self {
        let max = if max == 0 { Semaphore::MAX_PERMITS } else { max };
        Self { slots: Arc::new(Semaphore::new(max)), max }
    }

    /// A slot if one is free, else `None` (answer "busy").
    pub fn try_acquire(&self) -> Option<UploadPermit> {
        self.slots.clone().try_acquire_owned().ok().map(|p| UploadPermit { _permit: p })
    }

    /// Uploads in progress now.
    pub fn in_use(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn per_second_bursts_a_few_milliseconds_worth() {
        let burst = |rate| RateLimiter::per_second(rate).bucket.unwrap().try_lock().unwrap().burst;
        // 90 Mbit/s: 5 ms is 56 KB, so the floor applies.
        assert_eq!(burst(11_250_000), MIN_BURST);
        // 10 Gbit/s: 5 ms of it.
        assert_eq!(burst(1_250_000_000), 6_250_000);
    }

    #[tokio::test(start_paused = true)]
    async fn per_second_paces_after_its_burst() {
        let l = RateLimiter::per_second(1 << 20);
        let t0 = Instant::now();
        l.acquire(MIN_BURST).await;
        assert_eq!(t0.elapsed(), Duration::ZERO, "the burst passes at once");
        l.acquire(1 << 19).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(500), "then half a second's worth takes half a second");
    }

    #[test]
    fn full_bucket_grants_burst_then_paces() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 500);
        assert_eq!(b.take(t0, 500), Duration::ZERO);
        assert_eq!(b.take(t0, 100), Duration::from_millis(100));
        // The debt is paid by t0+100ms; another 100 bytes wait 100ms more.
        assert_eq!(b.take(t0 + Duration::from_millis(100), 100), Duration::from_millis(100));
        // After a long pause the bucket is full again, never fuller.
        assert_eq!(b.take(t0 + Duration::from_secs(60), 500), Duration::ZERO);
        assert_eq!(b.take(t0 + Duration::from_secs(60), 1), Duration::from_millis(1));
    }

    #[test]
    fn try_take_starts_only_out_of_debt_and_follows_rate_changes() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 0);
        // Not in debt: granted, into debt by 500 bytes.
        assert_eq!(b.try_take(t0, 500), Ok(()));
        // In debt: nothing taken, told when the debt is paid.
        assert_eq!(b.try_take(t0, 1), Err(Duration::from_millis(500)));
        assert_eq!(b.try_take(t0 + Duration::from_millis(200), 1), Err(Duration::from_millis(300)));
        // Twice the rate from here: the remaining 300 bytes take 150 ms.
        b.set_rate(t0 + Duration::from_millis(200), 2000);
        assert_eq!(b.try_take(t0 + Duration::from_millis(200), 1), Err(Duration::from_millis(150)));
        assert_eq!(b.try_take(t0 + Duration::from_millis(350), 1), Ok(()));
    }

    #[test]
    fn rate_zero_is_unlimited_and_big_requests_pass() {
        let t0 = Instant::now();
        assert_eq!(TokenBucket::new(0, 0).take(t0, u64::MAX), Duration::ZERO);
        let mut b = TokenBucket::new(1 << 20, 1024);
        assert_eq!(b.take(t0, (1 << 20) + 1024), Duration::from_secs(1));
    }

    proptest! {
        /// Over any schedule, bytes granted by time T (request time + wait)
        /// never exceed burst + rate × T, and waiting is never needed while
        /// the caller stays under the rate.
        #[test]
        fn never_exceeds_rate_plus_burst(
            rate in 1u64..10_000_000,
            burst in 0u64..10_000_000,
            steps in prop::collection::vec((0u64..50_000_000, 0u64..5_000_000), 1..50),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate, burst);
            let (mut now, mut total, mut ready) = (t0, 0u128, t0);
            for (gap_ns, n) in steps {
                now += Duration::from_nanos(gap_ns);
                let wait = b.take(now, n);
                total += u128::from(n);
                ready = ready.max(now + wait);
                let allowed = u128::from(burst) + (ready - t0).as_nanos() * u128::from(rate) / NANOS_PER_SEC;
                // +1: the wait is rounded up to whole nanoseconds.
                prop_assert!(total <= allowed + 1, "total {total} allowed {allowed}");
            }
        }

        #[test]
        fn wait_is_exact_debt_over_rate(rate in 1u64..1_000_000_000, n in 0u64..1_000_000_000) {
            let mut b = TokenBucket::new(rate, 0);
            let wait = b.take(Instant::now(), n);
            prop_assert_eq!(wait.as_nanos(), (u128::from(n) * NANOS_PER_SEC).div_ceil(u128::from(rate)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_with_paused_time() {
        let limiter = RateLimiter::new(1 << 20, 64 << 10);
        let start = Instant::now();
        // 64 KiB burst, then 4 MiB at 1 MiB/s: 4 s.
        for _ in 0..((4 << 20) + (64 << 10)) / (64 << 10) {
            limiter.acquire(64 << 10).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(4) && took < Duration::from_millis(4010), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_is_shared_by_clones() {
        let limiter = RateLimiter::new(1000, 0);
        let start = Instant::now();
        let (a, b) = (limiter.clone(), limiter.clone());
        tokio::join!(a.acquire(1000), b.acquire(1000));
        assert!(start.elapsed() >= Duration::from_secs(2), "{:?}", start.elapsed());
        assert!(RateLimiter::unlimited().is_unlimited());
    }

    #[test]
    fn upload_slots_cap() {
        let slots = UploadSlots::new(2);
        let a = slots.try_acquire().unwrap();
        let _b = slots.try_acquire().unwrap();
        assert!(slots.try_acquire().is_none(), "third upload must be refused");
        assert_eq!(slots.in_use(), 2);
        drop(a);
        assert!(slots.try_acquire().is_some());
        let unlimited = UploadSlots::new(0);
        let held: Vec<_> = (0..1000).map(|_| unlimited.try_acquire().unwrap()).collect();
        assert_eq!(unlimited.in_use(), held.len());
    }
}
