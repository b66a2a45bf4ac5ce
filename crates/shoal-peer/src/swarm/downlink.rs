//! Sharing a node's downlink between its origin streams and its peer
//! fetches.
//!
//! A node that seeds one blob from the origin while it fetches another
//! from peers has both arriving on one link. The peers' QUIC flows are
//! several and each as eager as the origin's one TCP flow, so they take
//! most of the link, and the origin stream is the one every node of the
//! swarm waits for: unpaced, a seed's origin download ends well after the
//! time its link alone would take (docs/design/swarm-lessons.md).
//!
//! So while this node owes origin bytes, its piece requests to peers are
//! paced to
//!
//! ```text
//! max(1, peer bytes left / origin bytes left) × origin rate
//! ```
//!
//! (never below [`SwarmTuning::pace_floor`]): both finish together, and peers get at least
//! the origin's pace, so a small pull from peers is not held to a crawl by
//! a large seed download. A node owing nothing to one side is not paced.
//!
//! [`PaceCore`] is the pure rule (time and counters passed in);
//! [`Downlink`] is the node-wide state, and [`Owed`] the guard a download
//! holds for the bytes it still expects. The floor, the sampling interval
//! and the burst come from [`SwarmTuning`]; the clock is tokio's, so
//! paused time in tests moves the pace too.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shoal_transport::TokenBucket;
use tokio::time::Instant;

use super::tuning::SwarmTuning;

/// The pacing rule. See the module docs.
#[derive(Debug, Clone)]
pub struct PaceCore {
    /// Slowest pace while origin bytes are owed, bytes/s.
    floor: u64,
    /// How often the origin's rate is re-estimated.
    sample_every: Duration,
    /// Most request credit saved up, bytes.
    burst: u64,
    /// The last sample of origin bytes received: when, how many.
    sample: Option<(Instant, u64)>,
    /// Smoothed origin rate, bytes/s (0: none measured yet).
    origin_rate: u64,
    /// Request credit, refilled at the allowed pace.
    bucket: TokenBucket,
}

impl PaceCore {
    /// Unpaced until both sides are owed bytes, with the node's
    /// [`SwarmTuning::pace_floor`], [`SwarmTuning::pace_sample`] and
    /// [`SwarmTuning::pace_burst`].
    pub fn new(tuning: &SwarmTuning) -> PaceCore {
        PaceCore {
            floor: tuning.pace_floor,
            sample_every: tuning.pace_sample,
            burst: tuning.pace_burst,
            sample: None,
            origin_rate: 0,
            bucket: TokenBucket::new(tuning.pace_floor, 0),
        }
    }

    /// Back to unpaced (one side is owed nothing), keeping the settings.
    fn reset(&mut self) {
        self.sample = None;
        self.origin_rate = 0;
        self.bucket = TokenBucket::new(self.floor, 0);
    }
    /// May a request for `n` bytes go to a peer at `now`? `Ok` takes the
    /// bytes (possibly into debt); `Err` says how long until one may.
    /// `received` counts origin bytes ever received by the node; the
    /// `*_left` figures are what the node still expects from each side.
    pub fn try_take(
        &mut self,
        now: Instant,
        received: u64,
        origin_left: u64,
        peer_left: u64,
        n: u64,
    ) -> Result<(), Duration> {
        if origin_left == 0 || peer_left == 0 {
            self.reset();
            return Ok(());
        }
        if self.sample.is_none() {
            // Pacing starts now, with a burst's credit.
            self.bucket = TokenBucket::new(self.floor, self.burst);
        }
        self.measure(now, received);
        self.bucket.set_rate(now, self.allowed(origin_left, peer_left));
        self.bucket.try_take(now, n)
    }

    /// The pace allowed for peer bytes, bytes/s.
    pub fn allowed(&self, origin_left: u64, peer_left: u64) -> u64 {
        let ratio = (peer_left as f64 / origin_left as f64).max(1.0);
        ((self.origin_rate as f64 * ratio) as u64).max(self.floor)
    }

    fn measure(&mut self, now: Instant, received: u64) {
        let Some((at, then)) = self.sample else {
            self.sample = Some((now, received));
            return;
        };
        let dt = now.saturating_duration_since(at);
        if dt < self.sample_every {
            return;
        }
        let rate = (received.saturating_sub(then) as f64 / dt.as_secs_f64()) as u64;
        self.origin_rate = if self.origin_rate == 0 { rate } else { (self.origin_rate + rate) / 2 };
        self.sample = Some((now, received));
    }
}

/// The node-wide figures [`PaceCore`] decides on.
#[derive(Debug)]
pub struct Downlink {
    origin_left: AtomicU64,
    peer_left: AtomicU64,
    received: AtomicU64,
    core: Mutex<PaceCore>,
}

/// Which side of the downlink an [`Owed`] counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Origin,
    Peers,
}

impl Downlink {
    /// Nothing owed yet; paced by the node's [`SwarmTuning`].
    pub fn new(tuning: &SwarmTuning) -> Downlink {
        Downlink {
            origin_left: AtomicU64::new(0),
            peer_left: AtomicU64::new(0),
            received: AtomicU64::new(0),
            core: Mutex::new(PaceCore::new(tuning)),
        }
    }

    /// A download from the origin that still expects `bytes`.
    pub fn owe_origin(self: &Arc<Self>, bytes: u64) -> Owed {
        self.owe(Side::Origin, bytes)
    }

    /// A fetch from peers that still expects `bytes`.
    pub fn owe_peers(self: &Arc<Self>, bytes: u64) -> Owed {
        self.owe(Side::Peers, bytes)
    }

    fn owe(self: &Arc<Self>, side: Side, bytes: u64) -> Owed {
        self.left(side).fetch_add(bytes, Ordering::Relaxed);
        Owed { link: self.clone(), side, left: bytes }
    }

    fn left(&self, side: Side) -> &AtomicU64 {
        match side {
            Side::Origin => &self.origin_left,
            Side::Peers => &self.peer_left,
        }
    }

    /// May a request for `n` bytes go to a peer at `now`? See [`PaceCore::try_take`].
    pub fn try_take(&self, now: Instant, n: u64) -> Result<(), Duration> {
        let origin_left = self.origin_left.load(Ordering::Relaxed);
        let peer_left = self.peer_left.load(Ordering::Relaxed);
        let received = self.received.load(Ordering::Relaxed);
        self.core.lock().expect("downlink pace poisoned").try_take(now, received, origin_left, peer_left, n)
    }
}

/// Bytes a download still expects; what is left is forgotten on drop
/// (the download ended, failed or was cancelled).
#[derive(Debug)]
pub struct Owed {
    link: Arc<Downlink>,
    side: Side,
    left: u64,
}

impl Owed {
    /// `n` bytes arrived.
    pub fn arrived(&mut self, n: u64) {
        let n = n.min(self.left);
        self.left -= n;
        self.link.left(self.side).fetch_sub(n, Ordering::Relaxed);
        if self.side == Side::Origin {
            self.link.received.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        self.link.left(self.side).fetch_sub(self.left, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Requests of `piece` bytes made as soon as allowed over `secs`, with
    /// the origin delivering `origin_rate` bytes/s: the bytes granted.
    fn granted(origin_rate: u64, origin_left: u64, peer_left: u64, piece: u64, secs: u64) -> u64 {
        let t0 = Instant::now();
        let mut core = PaceCore::new(&SwarmTuning::default());
        let (mut now, mut total) = (t0, 0);
        while now < t0 + Duration::from_secs(secs) {
            let received = (now - t0).as_millis() as u64 * origin_rate / 1000;
            match core.try_take(now, received, origin_left, peer_left, piece) {
                Ok(()) => total += piece,
                Err(wait) => now += wait.max(Duration::from_millis(1)),
            }
        }
        total
    }

    #[test]
    fn peers_keep_pace_with_the_origin_share_of_what_is_left() {
        // Equal halves: peers get the origin's rate (6 MiB/s here).
        let even = granted(6 * MIB, 100 * MIB, 100 * MIB, MIB, 20);
        assert!((110 * MIB..=130 * MIB).contains(&even), "{}", even / MIB);
        // Three times as much left from peers: three times the origin's rate.
        let more = granted(6 * MIB, 100 * MIB, 300 * MIB, MIB, 20);
        assert!((340 * MIB..=380 * MIB).contains(&more), "{}", more / MIB);
        // Less left from peers: still the origin's rate, not less.
        let less = granted(6 * MIB, 100 * MIB, 10 * MIB, MIB, 20);
        assert!((110 * MIB..=130 * MIB).contains(&less), "{}", less / MIB);
    }

    #[test]
    fn a_stalled_origin_slows_peers_to_the_floor_not_to_zero() {
        let got = granted(0, 100 * MIB, 100 * MIB, MIB, 10);
        assert!((9 * MIB..=13 * MIB).contains(&got), "{}", got / MIB);
    }

    #[test]
    fn nothing_owed_to_one_side_means_no_pacing() {
        let t0 = Instant::now();
        let mut core = PaceCore::new(&SwarmTuning::default());
        for _ in 0..1000 {
            assert_eq!(core.try_take(t0, 0, 0, 100 * MIB, MIB), Ok(()));
            assert_eq!(core.try_take(t0, 0, 100 * MIB, 0, MIB), Ok(()));
        }
    }

    /// The pace runs on the time its caller reads from tokio's clock (the
    /// fetch driver's): with time paused it waits exactly as long as paused
    /// time says, and not a moment less.
    #[tokio::test(start_paused = true)]
    async fn the_pace_follows_paused_time() {
        let tuning = SwarmTuning::default();
        let link = Arc::new(Downlink::new(&tuning));
        let (_origin, _peers) = (link.owe_origin(100 * MIB), link.owe_peers(100 * MIB));
        // The burst's credit, then one request into debt; the origin has
        // delivered nothing, so the debt is paid at the floor.
        assert_eq!(link.try_take(Instant::now(), tuning.pace_burst), Ok(()));
        assert_eq!(link.try_take(Instant::now(), MIB), Ok(()));
        let wait = link.try_take(Instant::now(), MIB).unwrap_err();
        assert_eq!(wait, Duration::from_secs(MIB / tuning.pace_floor));
        tokio::time::advance(wait - Duration::from_millis(1)).await;
        assert!(link.try_take(Instant::now(), MIB).is_err(), "1 ms of debt is left");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(link.try_take(Instant::now(), MIB), Ok(()));
    }

    #[test]
    fn owed_bytes_are_counted_and_forgotten_on_drop() {
        let link = Arc::new(Downlink::new(&SwarmTuning::default()));
        let mut origin = link.owe_origin(10 * MIB);
        let peers = link.owe_peers(4 * MIB);
        origin.arrived(3 * MIB);
        origin.arrived(100 * MIB); // more than owed: clamps
        assert_eq!(link.origin_left.load(Ordering::Relaxed), 0);
        assert_eq!(link.received.load(Ordering::Relaxed), 10 * MIB);
        assert_eq!(link.peer_left.load(Ordering::Relaxed), 4 * MIB);
        drop(peers);
        assert_eq!(link.peer_left.load(Ordering::Relaxed), 0);
        let o2 = link.owe_origin(5 * MIB);
        drop(o2);
        assert_eq!(link.origin_left.load(Ordering::Relaxed), 0);
        drop(origin);
        assert_eq!(link.origin_left.load(Ordering::Relaxed), 0);
    }
}
