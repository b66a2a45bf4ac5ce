//! A simulated daemon's state: its links, its layer downloads (one real
//! [`FetchCore`] each while it fetches from peers), its piece server's
//! state (the real [`Handouts`] rule and `max_uploads` upload slots), and
//! its downlink pace (the real [`PaceCore`] rule fed with the bytes the
//! node still expects from the origin and from peers, as `Downlink` feeds
//! it in the daemon).

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use shoal_core::HostId;
use shoal_peer::swarm::downlink::PaceCore;
use shoal_peer::swarm::fetch::core::{FetchCore, Pace, ParentId};
use shoal_peer::swarm::handout::Handouts;
use shoal_peer::swarm::tuning::SwarmTuning;
use shoal_proto::Bitfield;

use crate::clock::SimTime;
use crate::net::LinkId;

/// Where a layer download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started (the node has not registered yet).
    Idle,
    /// The fetch core runs.
    Swarm,
    /// The rest comes from the origin.
    Origin,
    /// Every piece is held.
    Done,
}

/// One layer (task) on one node.
pub struct Layer {
    /// Where it stands.
    pub phase: Phase,
    /// The fetch core, while fetching from peers.
    pub core: Option<FetchCore>,
    /// Pieces held (stored and verified).
    pub held: Bitfield,
    /// This node fetched from the origin: it is a source (the handout rule
    /// applies to its uploads) and an authority.
    pub seeding: bool,
    /// Which node each of the core's parents is.
    pub parents: BTreeMap<ParentId, u32>,
    /// Nodes following this layer's availability here: (child, the
    /// child's name for us).
    pub followers: Vec<(u32, ParentId)>,
    /// When the core asked to be polled again (a wake event is queued).
    pub wake_at: Option<SimTime>,
    /// What the scheduler last heard: (pieces, complete).
    pub reported: Option<(u32, bool)>,
    /// Pieces still to read from the origin, in order.
    pub origin_queue: VecDeque<u32>,
    /// An origin piece is on its way.
    pub origin_busy: bool,
    /// Bytes this layer still expects from peers (counted in the node's pace).
    pub peer_owed: u64,
    /// Bytes it still expects from the origin.
    pub origin_owed: u64,
    /// When it completed.
    pub done_at: Option<SimTime>,
}

impl Layer {
    fn new(pieces: u32) -> Layer {
        Layer {
            phase: Phase::Idle,
            core: None,
            held: Bitfield::new(pieces),
            seeding: false,
            parents: BTreeMap::new(),
            followers: Vec::new(),
            wake_at: None,
            reported: None,
            origin_queue: VecDeque::new(),
            origin_busy: false,
            peer_owed: 0,
            origin_owed: 0,
            done_at: None,
        }
    }

    /// A source: it read the blob from the origin, or holds it complete
    /// (what the piece server checks before the handout rule).
    pub fn is_source(&self) -> bool {
        self.seeding || self.phase == Phase::Done
    }
}

/// One simulated daemon.
pub struct Node {
    /// Its host id.
    pub host: HostId,
    /// Where peers reach it (encodes its index, see [`addr_of`]).
    pub addr: SocketAddr,
    /// Uplink and downlink.
    pub up: LinkId,
    /// Downlink.
    pub down: LinkId,
    /// On a slow link.
    pub slow: bool,
    /// When it starts pulling.
    pub start_at: SimTime,
    /// When it dies, if it does.
    pub dies_at: Option<SimTime>,
    /// Still running.
    pub alive: bool,
    /// Layer downloads.
    pub layers: Vec<Layer>,
    /// Uploads in flight (the piece server's slots).
    pub uploads: u32,
    /// The piece server's handout record.
    pub handouts: Handouts,
    /// Downlink pacing.
    pub pace: PaceCore,
    /// Origin bytes ever received (the pace's measure of the origin rate).
    pub origin_received: u64,
    /// When every layer was complete.
    pub finished_at: Option<SimTime>,
    /// Bytes received from the origin.
    pub from_origin: u64,
    /// Bytes received from peers.
    pub from_peers: u64,
    /// Bytes uploaded to peers.
    pub uploaded: u64,
}

impl Node {
    /// Node `i` with `layers` of `pieces[l]` pieces each.
    pub fn new(i: u32, up: LinkId, down: LinkId, pieces: &[u32], tuning: &SwarmTuning) -> Node {
        Node {
            host: format!("n{i}").parse().expect("a valid host id"),
            addr: addr_of(i),
            up,
            down,
            slow: false,
            start_at: SimTime::ZERO,
            dies_at: None,
            alive: true,
            layers: pieces.iter().map(|&p| Layer::new(p)).collect(),
            uploads: 0,
            handouts: Handouts::new(tuning),
            pace: PaceCore::new(tuning),
            origin_received: 0,
            finished_at: None,
            from_origin: 0,
            from_peers: 0,
            uploaded: 0,
        }
    }

    /// Bytes still expected from the origin and from peers, all layers.
    pub fn owed(&self) -> (u64, u64) {
        self.layers.iter().fold((0, 0), |(o, p), l| (o + l.origin_owed, p + l.peer_owed))
    }
}

/// The address of node `i`: 10.x.y.z, port 4000 (the index in the low
/// 24 bits), so a [`shoal_proto::ParentInfo`] leads back to its node.
pub fn addr_of(i: u32) -> SocketAddr {
    let [_, a, b, c] = i.to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, a, b, c), 4000))
}

/// The node index behind an address made by [`addr_of`].
pub fn index_of(addr: SocketAddr) -> u32 {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => {
            let [_, a, b, c] = ip.octets();
            u32::from_be_bytes([0, a, b, c])
        }
        std::net::IpAddr::V6(_) => u32::MAX,
    }
}

/// A node's downlink pace as the fetch core sees it: the real rule over
/// the node's counters.
pub struct NodePace<'a> {
    /// The rule.
    pub core: &'a mut PaceCore,
    /// Origin bytes ever received.
    pub received: u64,
    /// Bytes still owed by the origin.
    pub origin_left: u64,
    /// Bytes still expected from peers.
    pub peer_left: u64,
}

impl Pace for NodePace<'_> {
    fn try_take(&mut self, now: tokio::time::Instant, n: u64) -> Result<(), Duration> {
        self.core.try_take(now, self.received, self.origin_left, self.peer_left, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_leads_back_to_its_node() {
        for i in [0, 1, 255, 256, 9_999, 70_000] {
            assert_eq!(index_of(addr_of(i)), i);
        }
    }
}
