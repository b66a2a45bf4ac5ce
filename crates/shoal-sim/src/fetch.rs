//! A node's downloads from the swarm: one real [`FetchCore`] per layer,
//! whose [`Action`]s are carried out as the daemon's driver carries them
//! out (joins and failure reports to the scheduler, availability streams
//! and piece requests to parents), and whose end hands the rest to the
//! origin.

use shoal_peer::swarm::fetch::core::{Action, End, FetchCore, Input, ParentId, PieceError, ToOrigin, WARM_STAGES};
use shoal_proto::{HaveState, PeerEvent, SchedulerRequest};

use crate::node::{Layer, NodePace, Phase, index_of};
use crate::world::{Call, Ev, World, Xfer};

/// Followers warmed together (see `haves_arrive`).
const WARM_BATCH: usize = 32;

impl World {
    /// Node `n` starts layer `l`: a fetch core that asks to join first.
    pub fn begin_layer(&mut self, n: u32, l: u32) {
        let now = self.clock.tokio(self.now);
        let layout = self.layouts[l as usize];
        let node = &mut self.nodes[n as usize];
        let salt = shoal_peer::swarm::fetch::host_key(&node.host);
        let core = FetchCore::new(now, &self.tuning, node.host.clone(), layout, std::iter::empty(), salt);
        let layer = &mut node.layers[l as usize];
        layer.core = Some(core);
        layer.phase = Phase::Swarm;
        layer.peer_owed = layout.blob_size;
        self.q.push(self.now.after(self.tuning.progress_every), Ev::Progress(n, l));
        self.drive(n, l);
    }

    /// Something reached layer `l` of node `n`.
    pub fn input(&mut self, n: u32, l: u32, input: Input) {
        let node = &mut self.nodes[n as usize];
        if !node.alive {
            return;
        }
        // A dropped parent's late piece (asked elsewhere meanwhile) is not
        // stored, as the daemon's driver does not store it.
        let awaited = match (&input, node.layers[l as usize].core.as_ref()) {
            (Input::PieceArrived(pid, piece), Some(core)) => core.awaits(*pid, *piece),
            _ => true,
        };
        if let Input::PieceArrived(_, piece) = &input
            && awaited
        {
            let len = self.layouts[l as usize].len_of(*piece);
            let layer = &mut node.layers[l as usize];
            layer.peer_owed = layer.peer_owed.saturating_sub(len);
            node.from_peers += len;
            self.count.peer_pieces += 1;
            self.store(n, l, *piece);
        }
        let layer = &mut self.nodes[n as usize].layers[l as usize];
        match layer.core.as_mut() {
            Some(core) => {
                core.handle(self.clock.tokio(self.now), input);
                self.drive(n, l);
            }
            // The core ended (the rest comes from the origin): a request
            // still in flight that failed goes to the origin too.
            None => {
                if let Input::PieceFailed(_, piece, _) = input
                    && layer.phase == Phase::Origin
                    && !layer.held.get(piece)
                {
                    let len = self.layouts[l as usize].len_of(piece);
                    layer.origin_owed += len;
                    layer.origin_queue.push_back(piece);
                    if !layer.origin_busy {
                        self.origin_next(n, l);
                    }
                }
            }
        }
    }

    /// The core's deadline came.
    pub fn wake(&mut self, n: u32, l: u32) {
        let now = self.now;
        let node = &mut self.nodes[n as usize];
        let layer = &mut node.layers[l as usize];
        if !node.alive || layer.wake_at != Some(now) {
            return; // superseded
        }
        layer.wake_at = None;
        self.drive(n, l);
    }

    /// Poll the core until it has nothing more to do; carry out each
    /// action; set its wake-up.
    fn drive(&mut self, n: u32, l: u32) {
        let now = self.clock.tokio(self.now);
        self.pulse(n, l, now);
        loop {
            let node = &mut self.nodes[n as usize];
            let (origin_left, peer_left) = node.owed();
            let layer = &mut node.layers[l as usize];
            let Some(core) = layer.core.as_mut() else { return };
            let mut pace = NodePace { core: &mut node.pace, received: node.origin_received, origin_left, peer_left };
            let Some(action) = core.poll(now, &mut pace) else { break };
            self.act(n, l, action);
        }
        let layer = &mut self.nodes[n as usize].layers[l as usize];
        let Some(core) = layer.core.as_ref() else { return };
        if let Some(at) = core.deadline() {
            // A deadline now or past would spin: poll again a microsecond on.
            let at = self.clock.from_tokio(at).max(crate::clock::SimTime(self.now.0 + 1_000));
            if layer.wake_at.is_none_or(|w| w != at) {
                layer.wake_at = Some(at);
                self.q.push(at, Ev::Wake(n, l));
            }
        }
    }

    /// Parents whose stall clock ran out and that are alive still send
    /// bytes (every flow has a share of its links): tell the core, as the
    /// daemon's driver does while a piece streams in. Dead ones stay
    /// silent and are dropped.
    fn pulse(&mut self, n: u32, l: u32, now: tokio::time::Instant) {
        let rtt = self.sc.latency * 2;
        let layer = &self.nodes[n as usize].layers[l as usize];
        let Some(core) = layer.core.as_ref() else { return };
        if core.deadline().is_none_or(|d| d > now) {
            return;
        }
        let alive: Vec<ParentId> = core
            .stalling(now)
            .into_iter()
            .filter(|pid| layer.parents.get(pid).is_some_and(|&p| self.nodes[p as usize].alive))
            .collect();
        let Some(core) = self.nodes[n as usize].layers[l as usize].core.as_mut() else { return };
        for pid in alive {
            core.handle(now, Input::Heard(pid, rtt));
        }
    }

    fn act(&mut self, n: u32, l: u32, action: Action) {
        let node = &mut self.nodes[n as usize];
        let task = self.tasks[l as usize].clone();
        match action {
            Action::Join { want_map, held } => {
                let total = self.layouts[l as usize].count();
                let have = HaveState { pieces_done: held, pieces_total: Some(total), complete: false };
                let req = SchedulerRequest::Join { host: node.host.clone(), task, have, want_map };
                self.sched_call(n, Call::Join(l), req);
            }
            Action::Follow(pid, info) => {
                let p = index_of(info.addr);
                node.layers[l as usize].parents.insert(pid, p);
                self.send(Ev::Follow(p, n, l, pid));
            }
            // The parent stays in `parents`: a piece asked of it may still
            // be streaming in, and `pulse` must hear it.
            Action::Unfollow(pid) => {
                if let Some(&p) = node.layers[l as usize].parents.get(&pid)
                    && let Some(parent) = self.nodes.get_mut(p as usize)
                {
                    parent.layers[l as usize].followers.retain(|&(c, id)| (c, id) != (n, pid));
                }
            }
            Action::Request { parent, peer, piece, len, .. } => {
                let p = index_of(peer.addr);
                node.layers[l as usize].parents.insert(parent, p);
                let x = Xfer {
                    child: n,
                    layer: l,
                    pid: parent,
                    parent: p,
                    piece,
                    len,
                    sent_at: self.now,
                    flow: None,
                    handout: false,
                };
                let x = self.put_xfer(x);
                self.send(Ev::Request(x));
            }
            Action::Report(f) => {
                let req = SchedulerRequest::PieceFailed {
                    host: node.host.clone(),
                    task,
                    parent: f.parent,
                    piece: f.piece,
                    kind: f.kind,
                };
                self.sched_call(n, Call::Other, req);
            }
            Action::End(End::Complete) => self.layer_done(n, l),
            Action::End(End::Origin(why)) => {
                let slot = match why {
                    ToOrigin::Granted => 0,
                    ToOrigin::GaveUp(_) => 1,
                    ToOrigin::SchedulerUnreachable(_) => 2,
                };
                self.count.to_origin[slot] += 1;
                self.to_origin(n, l);
            }
        }
    }

    /// Piece `piece` of layer `l` is stored on node `n`: its followers
    /// hear of it; the layer may be complete.
    pub fn store(&mut self, n: u32, l: u32, piece: u32) {
        let layer = &mut self.nodes[n as usize].layers[l as usize];
        if layer.held.get(piece) {
            return;
        }
        layer.held.set(piece);
        let full = layer.held.is_full();
        if !layer.followers.is_empty() {
            let mut to = self.fan_pool.pop().unwrap_or_default();
            to.extend_from_slice(&layer.followers);
            self.send(Ev::Haves(l, piece, to));
        }
        if full {
            self.layer_done(n, l);
        }
    }

    /// An announcement of `piece` of layer `l` reaches each of `to`, in
    /// order.
    pub fn haves_arrive(&mut self, l: u32, piece: u32, mut to: Vec<(u32, ParentId)>) {
        let blake3 = self.hashes[l as usize][piece as usize];
        // The queue counted one event; each follower's input is one.
        self.count.events += to.len() as u64 - 1;
        // Read every follower's state first, stage by stage over all of
        // them: each stage's reads (of different nodes) are in flight
        // together, and the deliveries below find them in cache.
        let mut warm = 0;
        for chunk in to.chunks(WARM_BATCH) {
            let mut layers: [&[Layer]; WARM_BATCH] = [&[]; WARM_BATCH];
            for (k, &(c, _)) in chunk.iter().enumerate() {
                layers[k] = &self.nodes[c as usize].layers;
            }
            let mut cores: [Option<&FetchCore>; WARM_BATCH] = [None; WARM_BATCH];
            for k in 0..chunk.len() {
                cores[k] = layers[k].get(l as usize).and_then(|layer| layer.core.as_ref());
            }
            for stage in 0..WARM_STAGES {
                for (k, &(_, pid)) in chunk.iter().enumerate() {
                    if let Some(core) = cores[k] {
                        warm ^= core.warm(stage, pid, piece);
                    }
                }
            }
        }
        std::hint::black_box(warm);
        for &(c, pid) in &to {
            self.input(c, l, Input::Avail(pid, PeerEvent::Have { index: piece, blake3 }));
        }
        to.clear();
        self.fan_pool.push(to);
    }

    /// A parent died under request `x`: the child hears at `noticed` or at
    /// the request's deadline, whichever comes first.
    pub fn fail_dead_parent(&mut self, x: u32, noticed: crate::clock::SimTime) {
        let xf = self.take_xfer(x);
        let deadline = xf.sent_at.after(self.tuning.piece_deadline);
        let (at, err) = if deadline <= noticed {
            (deadline, PieceError::Timeout(format!("piece {} took longer than the deadline", xf.piece)))
        } else {
            (noticed, PieceError::Unreachable("connection lost: the parent went silent".into()))
        };
        self.q.push(at.max(self.now), Ev::Input(xf.child, xf.layer, Input::PieceFailed(xf.pid, xf.piece, err)));
    }
}
