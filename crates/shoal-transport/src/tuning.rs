//! [`TransportTuning`]: the knobs that decide QUIC throughput (flow-control
//! windows, datagram sizes, socket buffers) and the deadlines of every wait,
//! with defaults sized for bulk piece transfer inside a data centre.

use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};

use crate::error::TransportError;

/// The largest UDP payload quinn accepts (IPv6's limit; IPv4's is 65507 and
/// MTU discovery finds it).
pub const MAX_UDP_PAYLOAD: u16 = 65527;

/// The largest UDP payload over IPv4 loopback (65535 - 20 - 8).
const LOOPBACK_IPV4_MTU: u16 = 65507;

/// The largest `min_mtu` quinn can use: handshake packets are padded to
/// it, and their 2-byte length field holds less than 16384 (quinn 0.11
/// panics rather than refusing a larger value).
pub const MAX_MIN_MTU: u16 = 16000;

/// The largest datagram for which Linux GSO is safe with quinn 0.11: it
/// batches up to 10 datagrams in one `sendmsg`, and the kernel refuses a
/// batch over 64 KiB, so larger datagrams lose whole batches.
pub const GSO_MAX_MTU: u16 = 6553;

/// Transport settings for an [`crate::Endpoint`].
///
/// The defaults favour throughput on an ordinary 1500-byte network: one
/// 4 MiB piece fits 4 times over in a stream window, so a single stream
/// never stalls on flow control at data-centre round trips, and 8 streams
/// in flight fill the connection window. Datagrams start at QUIC's safe
/// 1200 bytes and MTU discovery raises them to 1452, sent 10 per syscall
/// (GSO). Where the path carries more (jumbo frames: raise
/// `mtu_discovery_upper_bound` to 8952; loopback: [`TransportTuning::loopback`]),
/// larger datagrams mean far fewer packets, ACKs and AEAD calls per byte,
/// which matters more than GSO (switched off above [`GSO_MAX_MTU`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportTuning {
    /// Bytes a peer may send on one stream before we read them.
    pub stream_receive_window: u64,
    /// Bytes a peer may send on the whole connection before we read them.
    pub receive_window: u64,
    /// Bytes we buffer for sending across all streams of a connection.
    pub send_window: u64,
    /// Bidirectional streams a peer may have open at once (one per piece
    /// request in flight).
    pub max_concurrent_bidi_streams: u32,
    /// Unidirectional streams a peer may have open at once.
    pub max_concurrent_uni_streams: u32,
    /// Ping interval that keeps an idle connection (and NAT mappings) alive,
    /// and proves a live peer alive: a few fit in `idle_timeout`.
    pub keep_alive: Duration,
    /// A connection that hears nothing for this long is closed: how long
    /// a peer that died without a word (SIGKILL, a lost host) takes to be
    /// noticed when nothing of ours is outstanding there. Its children
    /// then drop it and the scheduler moves its origin grant; 30 s here
    /// once held a swarm up for half a minute. Four keep-alives fit in it,
    /// so a live peer must miss all of them to be taken for dead.
    pub idle_timeout: Duration,
    /// First datagram size (UDP payload). 1200 is safe anywhere; raise it
    /// only where the path MTU is known (e.g. 1452 on plain Ethernet).
    pub initial_mtu: u16,
    /// The datagram size the path is known to carry. quinn's black-hole
    /// detection drops to this size after a few loss bursts of larger
    /// datagrams, and it cannot tell a black hole from a receive-buffer
    /// overflow: on loopback, where overflows happen under load, leaving
    /// this at 1200 collapses the datagram size (and throughput) for the
    /// one-minute cooldown. Initial datagrams are padded to it, so it is
    /// capped at [`MAX_MIN_MTU`].
    pub min_mtu: u16,
    /// Upper bound for MTU discovery; `None` turns discovery off.
    pub mtu_discovery_upper_bound: Option<u16>,
    /// The largest UDP payload we accept (advertised to peers). Bounded by
    /// [`MAX_UDP_PAYLOAD`].
    pub max_udp_payload_size: u16,
    /// UDP socket send buffer (SO_SNDBUF) in bytes; 0 keeps the OS default.
    /// The kernel caps it at twice `net.core.wmem_max` (a warning is logged).
    pub socket_send_buffer: usize,
    /// UDP socket receive buffer (SO_RCVBUF) in bytes; 0 keeps the OS default.
    pub socket_recv_buffer: usize,
    /// Deadline for dialling and handshaking one connection.
    pub connect_timeout: Duration,
    /// Round-robin among streams with data to send. Off lets one stream's
    /// piece go out whole before the next (lower latency per piece, and
    /// fewer frames per packet).
    pub send_fairness: bool,
    /// Hand the kernel batches of datagrams in one `sendmsg` (Linux GSO):
    /// fewer syscalls per byte. Used only while no datagram can exceed
    /// [`GSO_MAX_MTU`] (see there).
    pub segmentation_offload: bool,
    /// The congestion controller of every connection.
    pub congestion: CongestionControl,
}

/// Which congestion controller a connection runs.
///
/// Cubic (quinn's default, and TCP's) fills a bottleneck's queue until it
/// drops packets; BBR sends at the bandwidth it measured and keeps that
/// queue short. Where peer traffic shares a node's link with its origin
/// download (TCP) and with other peers, the short queue matters: the
/// origin's stream loses fewer packets to the peers' bursts
/// (docs/design/swarm-lessons.md). quinn marks its BBR experimental, so
/// Cubic stays the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CongestionControl {
    /// RFC 8312 Cubic.
    #[default]
    Cubic,
    /// BBR (version 1, quinn's implementation).
    Bbr,
}

impl std::str::FromStr for CongestionControl {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, TransportError> {
        match s {
            "cubic" => Ok(CongestionControl::Cubic),
            "bbr" => Ok(CongestionControl::Bbr),
            other => Err(TransportError::Tuning(format!(
                "congestion control {other:?} is not one shoal knows: use \"cubic\" or \"bbr\""
            ))),
        }
    }
}

impl Default for TransportTuning {
    fn default() -> Self {
        Self {
            stream_receive_window: 16 << 20,
            receive_window: 64 << 20,
            send_window: 64 << 20,
            max_concurrent_bidi_streams: 1024,
            max_concurrent_uni_streams: 1024,
            keep_alive: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(2),
            initial_mtu: 1200,
            min_mtu: 1200,
            mtu_discovery_upper_bound: Some(1452),
            max_udp_payload_size: MAX_UDP_PAYLOAD,
            socket_send_buffer: 8 << 20,
            socket_recv_buffer: 8 << 20,
            connect_timeout: Duration::from_secs(10),
            send_fairness: false,
            segmentation_offload: true,
            congestion: CongestionControl::Cubic,
        }
    }
}

impl TransportTuning {
    /// Settings for loopback (tests, benchmarks, `shoal demo`): the path
    /// MTU is 65536, so send IPv4's largest datagram (65507) from the start,
    /// with the highest floor quinn allows. Measured on a 2-core machine:
    /// a third of the CPU per byte of 1452-byte datagrams with GSO, and
    /// 2-4x the throughput.
    pub fn loopback() -> Self {
        Self {
            initial_mtu: LOOPBACK_IPV4_MTU,
            min_mtu: MAX_MIN_MTU,
            // Kept on (at the size we start with) so that after a black-hole
            // false alarm (see `min_mtu`) discovery climbs back after its
            // cooldown instead of staying at the floor.
            mtu_discovery_upper_bound: Some(LOOPBACK_IPV4_MTU),
            ..Self::default()
        }
    }

    /// The largest datagram these settings can produce.
    fn max_mtu(&self) -> u16 {
        let discovered = self.mtu_discovery_upper_bound.unwrap_or(0);
        self.initial_mtu.max(self.min_mtu).max(discovered).min(self.max_udp_payload_size)
    }

    /// Whether GSO is used (asked for, and safe at [`Self::max_mtu`]).
    pub fn uses_gso(&self) -> bool {
        self.segmentation_offload && self.max_mtu() <= GSO_MAX_MTU
    }

    /// The quinn transport config these settings describe.
    pub fn transport_config(&self) -> Result<Arc<TransportConfig>, TransportError> {
        let varint = |name: &str, v: u64| {
            VarInt::from_u64(v).map_err(|_| TransportError::Tuning(format!("{name} = {v} is too large for QUIC")))
        };
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| TransportError::Tuning(format!("idle_timeout {:?} is too long", self.idle_timeout)))?;
        if self.keep_alive >= self.idle_timeout {
            return Err(TransportError::Tuning(format!(
                "keep_alive {:?} must be shorter than idle_timeout {:?}, or idle connections drop",
                self.keep_alive, self.idle_timeout
            )));
        }
        if self.min_mtu > MAX_MIN_MTU {
            return Err(TransportError::Tuning(format!(
                "min_mtu {} is above {MAX_MIN_MTU}: QUIC handshake packets cannot be that large",
                self.min_mtu
            )));
        }
        let mut t = TransportConfig::default();
        t.stream_receive_window(varint("stream_receive_window", self.stream_receive_window)?)
            .receive_window(varint("receive_window", self.receive_window)?)
            .send_window(self.send_window)
            .max_concurrent_bidi_streams(self.max_concurrent_bidi_streams.into())
            .max_concurrent_uni_streams(self.max_concurrent_uni_streams.into())
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(idle))
            .min_mtu(self.min_mtu.min(self.max_udp_payload_size))
            .initial_mtu(self.initial_mtu.max(self.min_mtu).min(self.max_udp_payload_size))
            .send_fairness(self.send_fairness)
            .enable_segmentation_offload(self.uses_gso());
        // quinn's default initial congestion window (14720 bytes) is smaller
        // than one large datagram, which stalls the handshake outright for
        // an initial_mtu above it: use RFC 9002's formula for the real size.
        let mtu = u64::from(self.initial_mtu.max(self.min_mtu).min(self.max_udp_payload_size).max(1200));
        let initial_window = (10 * mtu).min(14720.max(2 * mtu));
        match self.congestion {
            CongestionControl::Cubic => {
                let mut cubic = quinn::congestion::CubicConfig::default();
                cubic.initial_window(initial_window);
                t.congestion_controller_factory(Arc::new(cubic));
            }
            CongestionControl::Bbr => {
                let mut bbr = quinn::congestion::BbrConfig::default();
                bbr.initial_window(initial_window);
                t.congestion_controller_factory(Arc::new(bbr));
            }
        }
        let discovery = self.mtu_discovery_upper_bound.map(|upper| {
            let mut d = MtuDiscoveryConfig::default();
            d.upper_bound(upper.min(self.max_udp_payload_size));
            d
        });
        t.mtu_discovery_config(discovery);
        Ok(Arc::new(t))
    }

    /// The quinn endpoint config (the datagram size we accept).
    pub fn endpoint_config(&self) -> Result<quinn::EndpointConfig, TransportError> {
        let mut c = quinn::EndpointConfig::default();
        c.max_udp_payload_size(self.max_udp_payload_size).map_err(|_| {
            TransportError::Tuning(format!(
                "max_udp_payload_size {} must be within 1200..={MAX_UDP_PAYLOAD}",
                self.max_udp_payload_size
            ))
        })?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        TransportTuning::default().transport_config().unwrap();
        TransportTuning::default().endpoint_config().unwrap();
        TransportTuning::loopback().transport_config().unwrap();
        assert!(TransportTuning::default().uses_gso());
        assert!(!TransportTuning::loopback().uses_gso(), "64 KiB datagrams would lose GSO batches");
        let jumbo = TransportTuning { mtu_discovery_upper_bound: Some(8952), ..Default::default() };
        assert!(!jumbo.uses_gso());
    }

    #[test]
    fn bad_values_are_named() {
        let t = TransportTuning { keep_alive: Duration::from_secs(60), ..Default::default() };
        assert!(t.transport_config().unwrap_err().to_string().contains("keep_alive"));
        let t = TransportTuning { min_mtu: 20000, ..Default::default() };
        assert!(t.transport_config().unwrap_err().to_string().contains("min_mtu"));
        let t = TransportTuning { max_udp_payload_size: 100, ..Default::default() };
        assert!(t.endpoint_config().unwrap_err().to_string().contains("max_udp_payload_size"));
    }

    #[test]
    fn congestion_controls_parse_and_build() {
        assert_eq!("cubic".parse::<CongestionControl>().unwrap(), CongestionControl::Cubic);
        assert_eq!("bbr".parse::<CongestionControl>().unwrap(), CongestionControl::Bbr);
        let err = "reno".parse::<CongestionControl>().unwrap_err().to_string();
        assert!(err.contains("\"reno\"") && err.contains("\"cubic\" or \"bbr\""), "{err}");
        TransportTuning { congestion: CongestionControl::Bbr, ..Default::default() }.transport_config().unwrap();
    }
}
