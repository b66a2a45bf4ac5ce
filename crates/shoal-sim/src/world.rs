//! The simulation: every node, the scheduler, the origin and the network
//! on one virtual clock, and the event loop that runs them.
//!
//! The node's behaviour is split by part: `fetch.rs` carries out the fetch
//! core's actions as the daemon's driver does, `serve.rs` is the piece
//! server, `origin.rs` the downloads from the origin, and this file the
//! node's life (start, registration, heartbeats, progress reports, death).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_core::{Digest, PieceLayout, TaskId};
use shoal_peer::swarm::SwarmTuning;
use shoal_peer::swarm::fetch::core::{Input, ParentId};
use shoal_proto::{HaveState, HostLabels, HostLoad, PeerEvent, SchedulerRequest, SchedulerResponse};

use crate::clock::{Clock, SimTime};
use crate::events::EventQueue;
use crate::net::{LinkId, Net};
use crate::node::{Node, Phase};
use crate::report::{self, Report};
use crate::scenario::Scenario;
use crate::sched::{self, SchedHost};

/// How long a QUIC connection to a peer that went silent takes to be
/// noticed (shoal-transport's `TransportTuning::idle_timeout`).
pub const QUIC_IDLE: Duration = Duration::from_secs(2);

/// What a flow carries.
#[derive(Debug, Clone, Copy)]
pub enum FlowTag {
    /// A piece from a parent to a child (an entry of `World::xfers`).
    Piece(u32),
    /// A piece from the origin to node, layer.
    Origin(u32, u32, u32),
}

/// Why a scheduler call was made (what to do with the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Registration at start.
    Register,
    /// A join of layer `.0`; the answer goes to its fetch core.
    Join(u32),
    /// Anything answered with an ack.
    Other,
}

/// Something that happens at an instant.
#[derive(Debug)]
pub enum Ev {
    /// A node starts its pull.
    Start(u32),
    /// A node dies.
    Die(u32),
    /// A request reaches the scheduler.
    SchedArrive(u32, Call, SchedulerRequest),
    /// Its answer reaches the node.
    SchedReply(u32, Call, SchedulerResponse),
    /// The scheduler's periodic tick.
    Tick,
    /// A node's heartbeat.
    Heartbeat(u32),
    /// A node's progress report timer for a layer.
    Progress(u32, u32),
    /// A fetch core's deadline.
    Wake(u32, u32),
    /// Something reaches a node's fetch core (node, layer, input).
    Input(u32, u32, Input),
    /// A child's interest in a layer reaches a parent: (parent, child,
    /// layer, the child's name for the parent).
    Follow(u32, u32, u32, ParentId),
    /// A piece request reaches its parent (an entry of `World::xfers`).
    Request(u32),
    /// A parent gives up on an upload to a child that died (entry of
    /// `World::xfers`): its slot and handout end.
    UploadLost(u32),
    /// The origin starts answering a node's request for a layer.
    OriginStart(u32, u32),
    /// A node's announcement of piece `.1` of layer `.0` reaches the
    /// followers it had when the piece was stored: one event for what the
    /// daemon sends as one `Have` per follower (they all arrive at the
    /// same instant, one after the other, as separate events would).
    Haves(u32, u32, Vec<(u32, ParentId)>),
}

/// One piece request: from its sending to its end.
#[derive(Debug, Clone)]
pub struct Xfer {
    /// The child.
    pub child: u32,
    /// The layer.
    pub layer: u32,
    /// The child's name for the parent.
    pub pid: ParentId,
    /// The parent.
    pub parent: u32,
    /// The piece.
    pub piece: u32,
    /// Its length.
    pub len: u64,
    /// When the child sent it.
    pub sent_at: SimTime,
    /// The flow carrying it, once the parent said yes.
    pub flow: Option<crate::net::FlowId>,
    /// The parent handed it out under the handout rule (end it after).
    pub handout: bool,
}

/// Counters of what happened, for the report.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Events processed: queue entries (a batch of announcements counts
    /// once per follower) and flow completions.
    pub events: u64,
    /// Pieces moved between peers.
    pub peer_pieces: u64,
    /// Piece requests refused (busy, elsewhere, missing) or failed.
    pub refusals: u64,
    /// Origin bytes sent (the origin's egress).
    pub origin_bytes: u64,
    /// Layer downloads that ended in the origin: granted, gave up, or no
    /// scheduler.
    pub to_origin: [u64; 3],
}

/// The simulation.
pub struct World {
    /// What is simulated.
    pub sc: Scenario,
    /// The settings every node runs with (production defaults).
    pub tuning: SwarmTuning,
    /// The base of virtual time.
    pub clock: Clock,
    /// Now.
    pub now: SimTime,
    /// Events waiting.
    pub q: EventQueue<Ev>,
    /// The network.
    pub net: Net<FlowTag>,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The scheduler.
    pub sched: SchedHost,
    /// The origin's uplink.
    pub origin_up: LinkId,
    /// Each layer's task, layout and piece hashes.
    pub tasks: Vec<TaskId>,
    /// Layouts.
    pub layouts: Vec<PieceLayout>,
    /// Piece hashes per layer (made up, distinct per piece).
    pub hashes: Vec<Vec<[u8; 32]>>,
    /// Piece requests in flight, by slot.
    pub xfers: Vec<Option<Xfer>>,
    /// Free slots of `xfers`.
    pub free_xfers: Vec<u32>,
    /// Follower lists of delivered [`Ev::Haves`], kept for reuse.
    pub fan_pool: Vec<Vec<(u32, ParentId)>>,
    /// Nodes not finished and alive.
    pub running: u32,
    /// What happened.
    pub count: Counters,
}

impl World {
    /// Set up `sc`: nodes, links, start and death times.
    pub fn new(sc: Scenario) -> World {
        let tuning = sc.tuning.clone();
        let mut rng = StdRng::seed_from_u64(sc.seed);
        let mut net = Net::default();
        let origin_up = net.link(sc.origin_rate);
        let mut tasks = Vec::new();
        let mut layouts = Vec::new();
        let mut hashes = Vec::new();
        for l in 0..sc.layers {
            let size = sc.layer_size(l);
            let digest = Digest::sha256_of(format!("shoal-sim layer {l} seed {}", sc.seed).as_bytes());
            tasks.push(TaskId::new("registry.sim", digest).expect("a valid task id"));
            let layout = PieceLayout::for_blob(size);
            hashes.push((0..layout.count()).map(|p| piece_hash(l, p)).collect());
            layouts.push(layout);
        }
        let pieces: Vec<u32> = layouts.iter().map(|l| l.count()).collect();
        let t_star = sc.t_star();
        let mut nodes = Vec::with_capacity(sc.nodes as usize);
        for i in 0..sc.nodes {
            let slow = rng.random_bool(sc.slow_fraction);
            let rate = if slow { sc.rate / sc.slow_factor } else { sc.rate };
            let up = net.link(rate * sc.upload_share);
            let down = net.link(rate);
            let mut node = Node::new(i, up, down, &pieces, &tuning);
            node.slow = slow;
            let jitter = sc.start_jitter.as_secs_f64() * rng.random::<f64>();
            node.start_at = SimTime::from_duration(Duration::from_secs_f64(jitter));
            if rng.random_bool(sc.die_fraction) {
                // Mid-pull: somewhere in the middle 90% of the ideal time.
                let at = t_star * (0.05 + 0.9 * rng.random::<f64>());
                node.dies_at = Some(node.start_at.after(Duration::from_secs_f64(at)));
            }
            nodes.push(node);
        }
        World {
            running: sc.nodes,
            sc,
            tuning,
            clock: Clock::default(),
            now: SimTime::ZERO,
            q: EventQueue::default(),
            net,
            nodes,
            sched: SchedHost::new(),
            origin_up,
            tasks,
            layouts,
            hashes,
            xfers: Vec::new(),
            free_xfers: Vec::new(),
            fan_pool: Vec::new(),
            count: Counters::default(),
        }
    }

    /// Run to the end (every live node finished, or the time limit) and
    /// report.
    pub fn run(mut self) -> Report {
        let wall = tokio::time::Instant::now();
        for i in 0..self.sc.nodes {
            let n = &self.nodes[i as usize];
            let (start, death) = (n.start_at, n.dies_at);
            self.q.push(start, Ev::Start(i));
            if let Some(d) = death {
                self.q.push(d, Ev::Die(i));
            }
        }
        self.q.push(SimTime::ZERO.after(sched::TICK), Ev::Tick);
        let limit = SimTime::from_duration(self.sc.time_limit);
        while self.running > 0 {
            let flow_at = self.net.next_at();
            let ev_at = self.q.next_at();
            let next = match (flow_at, ev_at) {
                (Some(f), Some(e)) => f.min(e),
                (Some(f), None) => f,
                (None, Some(e)) => e,
                (None, None) => break,
            };
            if next > limit {
                break;
            }
            self.now = next;
            self.count.events += 1;
            if flow_at == Some(next) {
                let tag = self.net.pop_done(next).expect("a flow is due");
                self.flow_done(tag);
            } else {
                let (_, ev) = self.q.pop().expect("an event is due");
                self.dispatch(ev);
            }
        }
        report::build(&self, wall.elapsed())
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Start(n) => self.start(n),
            Ev::Die(n) => self.die(n),
            Ev::SchedArrive(n, call, req) => {
                let resp = self.sched.call(&self.clock, self.now, req);
                let at = self.now.after(self.sc.latency);
                self.q.push_in_order(at, Ev::SchedReply(n, call, resp));
            }
            Ev::SchedReply(n, call, resp) => self.sched_reply(n, call, resp),
            Ev::Tick => {
                self.sched.tick(&self.clock, self.now);
                self.q.push(self.now.after(sched::TICK), Ev::Tick);
            }
            Ev::Heartbeat(n) => self.heartbeat(n),
            Ev::Progress(n, l) => self.progress(n, l),
            Ev::Wake(n, l) => self.wake(n, l),
            Ev::Input(n, l, input) => self.input(n, l, input),
            Ev::Follow(p, c, l, pid) => self.follow_arrives(p, c, l, pid),
            Ev::Request(x) => self.request_arrives(x),
            Ev::UploadLost(x) => self.upload_lost(x),
            Ev::OriginStart(n, l) => self.origin_next(n, l),
            Ev::Haves(l, piece, to) => self.haves_arrive(l, piece, to),
        }
    }

    /// Send `req` from node `n` to the scheduler.
    pub fn sched_call(&mut self, n: u32, call: Call, req: SchedulerRequest) {
        self.q.push_in_order(self.now.after(self.sc.latency), Ev::SchedArrive(n, call, req));
    }

    /// Deliver `ev` to node `to` one latency from now.
    pub fn send(&mut self, ev: Ev) {
        self.q.push_in_order(self.now.after(self.sc.latency), ev);
    }

    fn start(&mut self, n: u32) {
        let node = &self.nodes[n as usize];
        if !node.alive {
            return;
        }
        let req = SchedulerRequest::Register {
            host: node.host.clone(),
            addr: node.addr,
            labels: HostLabels::default(),
            upload_capacity: 1_250_000_000,
            max_uploads: self.tuning.max_uploads,
        };
        self.sched_call(n, Call::Register, req);
    }

    fn sched_reply(&mut self, n: u32, call: Call, resp: SchedulerResponse) {
        if !self.nodes[n as usize].alive {
            return;
        }
        match call {
            Call::Register => {
                let every = self.sched.heartbeat_interval();
                self.q.push(self.now.after(every), Ev::Heartbeat(n));
                for l in 0..self.sc.layers {
                    self.begin_layer(n, l);
                }
            }
            Call::Join(l) => {
                let input = match resp {
                    SchedulerResponse::Parents { parents, origin, authorities, map } => {
                        Input::Joined(shoal_peer::swarm::Joined { parents, origin, authorities, map })
                    }
                    other => Input::JoinFailed(format!("unexpected answer to join: {other:?}")),
                };
                self.input(n, l, input);
            }
            Call::Other => {}
        }
    }

    fn heartbeat(&mut self, n: u32) {
        let node = &self.nodes[n as usize];
        if !node.alive {
            return;
        }
        let load = HostLoad { uploads: node.uploads, upload_bps: 0, busy: node.uploads >= self.tuning.max_uploads };
        let req = SchedulerRequest::Heartbeat { host: node.host.clone(), load };
        self.sched_call(n, Call::Other, req);
        let every = self.sched.heartbeat_interval();
        self.q.push(self.now.after(every), Ev::Heartbeat(n));
    }

    /// Report layer `l`'s progress if it changed (the daemon's reporter,
    /// every `progress_every`), with the final map when this node read it
    /// from the origin and completed it; stop once completion is reported.
    fn progress(&mut self, n: u32, l: u32) {
        let node = &mut self.nodes[n as usize];
        if !node.alive {
            return;
        }
        let layer = &mut node.layers[l as usize];
        let done = layer.held.count();
        let complete = layer.phase == Phase::Done;
        if layer.reported != Some((done, complete)) {
            layer.reported = Some((done, complete));
            let total = layer.held.len();
            let map = (complete && layer.seeding).then(|| self.hashes[l as usize].clone());
            let req = SchedulerRequest::Progress {
                host: node.host.clone(),
                task: self.tasks[l as usize].clone(),
                have: HaveState { pieces_done: done, pieces_total: Some(total), complete },
                map,
            };
            self.sched_call(n, Call::Other, req);
        }
        if !complete {
            self.q.push(self.now.after(self.tuning.progress_every), Ev::Progress(n, l));
        }
    }

    /// Layer `l` of node `n` is complete.
    pub fn layer_done(&mut self, n: u32, l: u32) {
        let now = self.now;
        let node = &mut self.nodes[n as usize];
        let layer = &mut node.layers[l as usize];
        if layer.phase == Phase::Done {
            return;
        }
        layer.phase = Phase::Done;
        layer.done_at = Some(now);
        layer.core = None;
        let parents = std::mem::take(&mut layer.parents);
        layer.peer_owed = 0;
        layer.origin_owed = 0;
        let followers = std::mem::take(&mut layer.followers);
        if node.layers.iter().all(|x| x.phase == Phase::Done) && node.finished_at.is_none() {
            node.finished_at = Some(now);
            self.running -= 1;
        }
        for (c, pid) in followers {
            self.send(Ev::Input(c, l, Input::Avail(pid, PeerEvent::Complete)));
            self.send(Ev::Input(c, l, Input::AvailEnded(pid, None)));
        }
        self.unfollow_all(n, l, parents);
    }

    /// Node `n`'s download of layer `l` from peers is over: its
    /// availability streams close (the driver drops them with the fetch).
    pub fn unfollow_all(&mut self, n: u32, l: u32, parents: std::collections::BTreeMap<ParentId, u32>) {
        for (pid, p) in parents {
            self.nodes[p as usize].layers[l as usize].followers.retain(|&(c, id)| (c, id) != (n, pid));
        }
    }

    /// Node `n` dies: its flows stop; whoever waits on it notices after
    /// the QUIC idle timeout or the piece deadline; the scheduler stops
    /// hearing from it.
    fn die(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        if !node.alive {
            return;
        }
        node.alive = false;
        if node.finished_at.is_none() {
            self.running -= 1;
        }
        let (up, down) = (node.up, node.down);
        let noticed = self.now.after(QUIC_IDLE);
        for f in self.net.flows_on(up).into_iter().chain(self.net.flows_on(down)) {
            let Some((tag, sent)) = self.net.remove(self.now, f) else { continue };
            match tag {
                FlowTag::Origin(..) => self.count.origin_bytes += sent,
                // Uploads from the dead node: the child's request fails by
                // its deadline or when the connection is declared dead.
                FlowTag::Piece(x) if self.xfer(x).parent == n => self.fail_dead_parent(x, noticed),
                // Downloads to it: the parent's upload ends the same way.
                FlowTag::Piece(x) => {
                    let at = noticed.min(self.xfer(x).sent_at.after(self.tuning.piece_deadline));
                    self.q.push(at.max(self.now), Ev::UploadLost(x));
                }
            }
        }
        for l in 0..self.sc.layers {
            let followers = std::mem::take(&mut self.nodes[n as usize].layers[l as usize].followers);
            for (c, pid) in followers {
                let why = format!("no packet within {QUIC_IDLE:?}");
                self.q.push(noticed, Ev::Input(c, l, Input::Lost(pid, why)));
            }
        }
    }

    /// The xfer in slot `x`.
    pub fn xfer(&self, x: u32) -> &Xfer {
        self.xfers[x as usize].as_ref().expect("a live xfer")
    }

    /// Keep `x`; its slot.
    pub fn put_xfer(&mut self, x: Xfer) -> u32 {
        match self.free_xfers.pop() {
            Some(i) => {
                self.xfers[i as usize] = Some(x);
                i
            }
            None => {
                self.xfers.push(Some(x));
                self.xfers.len() as u32 - 1
            }
        }
    }

    /// Forget slot `x`.
    pub fn take_xfer(&mut self, x: u32) -> Xfer {
        let xf = self.xfers[x as usize].take().expect("a live xfer");
        self.free_xfers.push(x);
        xf
    }
}

/// A made-up BLAKE3 for piece `p` of layer `l`: distinct per piece, the
/// same on every node (the trusted map only compares them).
fn piece_hash(l: u32, p: u32) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..4].copy_from_slice(&l.to_le_bytes());
    h[4..8].copy_from_slice(&p.to_le_bytes());
    h[8..].fill(0x5a);
    h
}
