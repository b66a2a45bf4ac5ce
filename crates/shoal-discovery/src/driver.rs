//! The discovery task: owns the libp2p swarm and serves the commands that
//! [`crate::Discovery`] sends it.
//!
//! One task, one event loop: commands (provide, unprovide, find, stats),
//! swarm events (Kademlia queries, identify, describe requests and
//! answers), resolved bootstrap addresses, and a 100 ms tick for deadlines,
//! bootstrap retries and the store sweep.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use libp2p::kad::{self, GetProvidersOk, QueryResult, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, Swarm, identify};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::bootstrap::{self, Schedule};
use crate::config::DiscoveryConfig;
use crate::error::DiscoveryError;
use crate::find::Find;
use crate::network::{Behaviour, BehaviourEvent, IDENTIFY_PROTOCOL};
use crate::provider::{DescribeRequest, DescribeResponse, KAD_PROTOCOL, Provider, WireProvider};

/// How often deadlines and the bootstrap schedule are checked.
const TICK: Duration = Duration::from_millis(100);
/// How often expired provider records are swept from the store, at most
/// (a quarter of the TTL when that is shorter).
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Addresses remembered as members' (see `Driver::known`).
const MAX_KNOWN_ADDRS: usize = 65_536;
/// Listen addresses taken from one peer's identify.
const MAX_ADDRS_PER_PEER: usize = 8;

/// What the handle asks of the task.
pub(crate) enum Command {
    Provide { key: RecordKey, provider: Provider, reply: oneshot::Sender<Result<(), DiscoveryError>> },
    Unprovide { key: RecordKey, reply: oneshot::Sender<bool> },
    Find { key: RecordKey, timeout: Duration, reply: oneshot::Sender<Vec<Provider>> },
    Stats { reply: oneshot::Sender<crate::DiscoveryStats> },
}

pub(crate) struct Driver {
    swarm: Swarm<Behaviour>,
    config: DiscoveryConfig,
    /// What this node provides, as it describes itself.
    provided: HashMap<RecordKey, Provider>,
    finds: HashMap<kad::QueryId, Find>,
    describes: HashMap<OutboundRequestId, kad::QueryId>,
    listen: Vec<SocketAddr>,
    /// Addresses of connected peers (dialled or identified).
    peer_addrs: HashMap<PeerId, HashSet<SocketAddr>>,
    /// Every address a member was ever reached at (bounded): bootstrap does
    /// not dial these again; Kademlia reconnects to its routing table
    /// itself, and a new daemon at an old address dials us.
    known: HashSet<SocketAddr>,
    schedule: Schedule,
    resolving: bool,
    resolved_tx: mpsc::Sender<Vec<SocketAddr>>,
    resolved_rx: mpsc::Receiver<Vec<SocketAddr>>,
    next_sweep: Instant,
}

impl Driver {
    pub(crate) fn new(swarm: Swarm<Behaviour>, config: DiscoveryConfig, listen: Vec<SocketAddr>) -> Driver {
        let now = Instant::now();
        let schedule =
            Schedule::new(now, config.bootstrap_backoff, config.bootstrap_backoff_max, config.resolve_interval);
        let (resolved_tx, resolved_rx) = mpsc::channel(1);
        let next_sweep = now + sweep_every(&config);
        Driver {
            swarm,
            config,
            provided: HashMap::new(),
            finds: HashMap::new(),
            describes: HashMap::new(),
            listen,
            peer_addrs: HashMap::new(),
            known: HashSet::new(),
            schedule,
            resolving: false,
            resolved_tx,
            resolved_rx,
            next_sweep,
        }
    }

    /// Runs until the handle is dropped or sends shutdown.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(addrs) = self.resolved_rx.recv() => self.on_resolved(addrs),
                _ = tick.tick() => self.on_tick(Instant::now()),
            }
        }
        for (_, find) in self.finds.drain() {
            find.finish();
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Provide { key, provider, reply } => {
                let _ = reply.send(self.provide(key, provider));
            }
            Command::Unprovide { key, reply } => {
                let was = self.provided.remove(&key).is_some();
                self.swarm.behaviour_mut().kad.stop_providing(&key);
                let _ = reply.send(was);
            }
            Command::Find { key, timeout, reply } => self.start_find(key, timeout, reply),
            Command::Stats { reply } => {
                let kad = &mut self.swarm.behaviour_mut().kad;
                let routing_peers = kad.kbuckets().map(|b| b.num_entries()).sum();
                let stored_keys = kad.store_mut().stored_keys();
                let _ = reply.send(crate::DiscoveryStats {
                    connected_peers: self.swarm.connected_peers().count(),
                    routing_peers,
                    provided: self.provided.len(),
                    stored_keys,
                    listen: self.listen.clone(),
                });
            }
        }
    }

    fn provide(&mut self, key: RecordKey, provider: Provider) -> Result<(), DiscoveryError> {
        if let Some(p) = self.provided.get_mut(&key) {
            // A state change: finders ask us, so no re-announcement is needed.
            *p = provider;
            return Ok(());
        }
        if self.provided.len() >= self.config.limits.max_provided {
            return Err(DiscoveryError::TooManyProvided(self.provided.len()));
        }
        self.swarm.behaviour_mut().kad.start_providing(key.clone()).map_err(|_| DiscoveryError::StoreFull)?;
        self.provided.insert(key, provider);
        Ok(())
    }

    fn start_find(&mut self, key: RecordKey, timeout: Duration, reply: oneshot::Sender<Vec<Provider>>) {
        let deadline = Instant::now() + timeout;
        let qid = self.swarm.behaviour_mut().kad.get_providers(key.clone());
        self.finds.insert(qid, Find::new(key, deadline, self.config.limits.max_providers_per_key, reply));
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.on_identify(e),
            SwarmEvent::Behaviour(BehaviourEvent::Describe(e)) => self.on_describe(e),
            SwarmEvent::NewListenAddr { address, .. } => {
                if let Some(a) = socket_addr(&address)
                    && !self.listen.contains(&a)
                {
                    self.listen.push(a);
                    if self.config.advertise.is_none() && !a.ip().is_unspecified() {
                        self.swarm.add_external_address(address);
                    }
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                if endpoint.is_dialer()
                    && let Some(a) = socket_addr(endpoint.get_remote_address())
                {
                    self.peer_addrs.entry(peer_id).or_default().insert(a);
                    self.remember(a);
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.peer_addrs.remove(&peer_id);
                if !self.connected() {
                    self.schedule.hurry(Instant::now());
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "discovery dial failed");
            }
            SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
                // A stranger (no or another cluster key) ends here.
                tracing::debug!(%send_back_addr, %error, "discovery refused an incoming connection");
            }
            _ => {}
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed { id, result: QueryResult::GetProviders(res), step, .. } => {
                let Some(find) = self.finds.get_mut(&id) else { return };
                match res {
                    Ok(GetProvidersOk::FoundProviders { providers, .. }) => {
                        for peer in providers {
                            self.ask(id, peer);
                        }
                    }
                    Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => find.query_done = true,
                }
                if step.last
                    && let Some(f) = self.finds.get_mut(&id)
                {
                    f.query_done = true;
                }
                self.maybe_finish(id);
            }
            kad::Event::RoutingUpdated { is_new_peer: true, .. } => {
                let kad = &mut self.swarm.behaviour_mut().kad;
                let peers: usize = kad.kbuckets().map(|b| b.num_entries()).sum();
                if peers == 1 {
                    // The first peer after none: what was provided while
                    // alone reached nobody, so announce it now, and fill the
                    // routing table from that peer.
                    for key in self.provided.keys() {
                        let _ = kad.start_providing(key.clone());
                    }
                    let _ = kad.bootstrap();
                }
            }
            _ => {}
        }
    }

    /// Asks `peer` to describe itself for the find's key (or answers from
    /// `provided` when the peer is this node).
    fn ask(&mut self, qid: kad::QueryId, peer: PeerId) {
        let local = *self.swarm.local_peer_id();
        let Some(find) = self.finds.get_mut(&qid) else { return };
        if !find.admit(peer) {
            if find.full() {
                // The per-key limit is reached: stop the query.
                if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&qid) {
                    q.finish();
                }
                find.query_done = true;
            }
            return;
        }
        if peer == local {
            if let Some(p) = self.provided.get(&find.key) {
                find.found(p.clone());
            }
            return;
        }
        let request = DescribeRequest { key: find.key.to_vec() };
        // Dial now, while the query still holds the provider's addresses
        // (kad hands them to the dial); the request waits for the connection.
        if !self.swarm.is_connected(&peer) {
            let _ = self.swarm.dial(DialOpts::peer_id(peer).build());
        }
        let rid = self.swarm.behaviour_mut().describe.send_request(&peer, request);
        find.pending.insert(rid);
        self.describes.insert(rid, qid);
    }

    fn on_describe(&mut self, event: request_response::Event<DescribeRequest, DescribeResponse>) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let provider = self.provided.get(&RecordKey::new(&request.key)).map(WireProvider::from);
                    let _ = self.swarm.behaviour_mut().describe.send_response(channel, DescribeResponse { provider });
                }
                request_response::Message::Response { request_id, response } => {
                    let provider = response.provider.and_then(WireProvider::into_provider);
                    self.answered(request_id, provider);
                }
            },
            request_response::Event::OutboundFailure { request_id, error, peer, .. } => {
                tracing::debug!(%peer, %error, "discovery provider did not describe itself");
                self.answered(request_id, None);
            }
            _ => {}
        }
    }

    fn answered(&mut self, rid: OutboundRequestId, provider: Option<Provider>) {
        let Some(qid) = self.describes.remove(&rid) else { return };
        let Some(find) = self.finds.get_mut(&qid) else { return };
        find.pending.remove(&rid);
        if let Some(p) = provider {
            find.found(p);
        }
        self.maybe_finish(qid);
    }

    fn maybe_finish(&mut self, qid: kad::QueryId) {
        if self.finds.get(&qid).is_some_and(Find::done)
            && let Some(find) = self.finds.remove(&qid)
        {
            find.finish();
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else { return };
        if info.protocol_version != IDENTIFY_PROTOCOL || !info.protocols.contains(&KAD_PROTOCOL) {
            return;
        }
        for addr in info.listen_addrs.into_iter().take(MAX_ADDRS_PER_PEER) {
            let Some(a) = socket_addr(&addr) else { continue };
            if a.ip().is_unspecified() {
                continue;
            }
            self.peer_addrs.entry(peer_id).or_default().insert(a);
            self.remember(a);
            self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let expired: Vec<kad::QueryId> =
            self.finds.iter().filter(|(_, f)| f.deadline <= now).map(|(id, _)| *id).collect();
        for qid in expired {
            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&qid) {
                q.finish();
            }
            if let Some(find) = self.finds.remove(&qid) {
                for rid in &find.pending {
                    self.describes.remove(rid);
                }
                find.finish();
            }
        }
        if now >= self.next_sweep {
            self.next_sweep = now + sweep_every(&self.config);
            self.swarm.behaviour_mut().kad.store_mut().sweep(now);
        }
        let connected = self.connected();
        if !self.config.bootstrap.is_empty() && !self.resolving && self.schedule.poll(now, connected) {
            self.resolving = true;
            let entries = self.config.bootstrap.clone();
            let tx = self.resolved_tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(bootstrap::resolve(entries).await).await;
            });
        }
    }

    fn on_resolved(&mut self, addrs: Vec<SocketAddr>) {
        self.resolving = false;
        for a in addrs {
            if self.known.contains(&a) || self.is_self(a) {
                continue;
            }
            let ma = multiaddr(a);
            if let Err(e) = self.swarm.dial(DialOpts::unknown_peer_id().address(ma).build()) {
                tracing::debug!(addr = %a, error = %e, "discovery bootstrap dial failed");
            }
        }
    }

    /// Whether this node is part of a cluster: connected to a member, or
    /// holding members in its routing table (connections idle out; Kademlia
    /// dials them again when a query needs them).
    fn connected(&mut self) -> bool {
        !self.peer_addrs.is_empty() || self.swarm.behaviour_mut().kad.kbuckets().any(|b| b.num_entries() > 0)
    }

    fn remember(&mut self, a: SocketAddr) {
        if self.known.len() >= MAX_KNOWN_ADDRS {
            // Forgetting only costs a redundant dial at the next resolve.
            self.known.clear();
        }
        self.known.insert(a);
    }

    /// Whether `a` is one of this node's own addresses.
    fn is_self(&self, a: SocketAddr) -> bool {
        self.config.advertise == Some(a)
            || self.listen.iter().any(|l| l.port() == a.port() && (l.ip() == a.ip() || l.ip().is_unspecified()))
    }
}

fn sweep_every(config: &DiscoveryConfig) -> Duration {
    SWEEP_EVERY.min(config.record_ttl / 4)
}

/// `/ip4/…/tcp/…` (or ip6) as a socket address.
pub(crate) fn socket_addr(ma: &Multiaddr) -> Option<SocketAddr> {
    let mut iter = ma.iter();
    let ip = match iter.next()? {
        Protocol::Ip4(ip) => std::net::IpAddr::V4(ip),
        Protocol::Ip6(ip) => std::net::IpAddr::V6(ip),
        _ => return None,
    };
    match iter.next()? {
        Protocol::Tcp(port) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

/// A socket address as a TCP multiaddr.
pub(crate) fn multiaddr(a: SocketAddr) -> Multiaddr {
    Multiaddr::empty().with(Protocol::from(a.ip())).with(Protocol::Tcp(a.port()))
}
