//! A node's piece server, as `shoal_peer::swarm::server` answers: the
//! availability of a layer (a bitfield with every held piece's hash, then
//! a `Have` per new piece), and piece requests: `Busy` with no free upload
//! slot, `Missing` for a piece not held, the real handout rule's verdict
//! at a source (a node that read the layer from the origin or holds it
//! complete), else the bytes, as a flow from its uplink to the child's
//! downlink.

use shoal_peer::swarm::fetch::core::{Input, ParentId, PieceError};
use shoal_peer::swarm::handout::Verdict;
use shoal_proto::PeerEvent;

use crate::node::Phase;
use crate::world::{Ev, FlowTag, QUIC_IDLE, World};

impl World {
    /// Child `c`'s interest in layer `l` reached parent `p`.
    pub fn follow_arrives(&mut self, p: u32, c: u32, l: u32, pid: ParentId) {
        let parent = &mut self.nodes[p as usize];
        if !parent.alive {
            // No connection to a silent host: the connect attempt times out.
            let at = self.now.after(self.tuning.connect_timeout);
            let why = format!("no connection within {:?}", self.tuning.connect_timeout);
            self.q.push(at, Ev::Input(c, l, Input::AvailEnded(pid, Some(why))));
            return;
        }
        let layer = &mut parent.layers[l as usize];
        let layout = self.layouts[l as usize];
        if layer.phase == Phase::Idle {
            self.send(Ev::Input(c, l, Input::Avail(pid, PeerEvent::Gone)));
            self.send(Ev::Input(c, l, Input::AvailEnded(pid, None)));
            return;
        }
        let have = layer.held.clone();
        let hashes = have.iter().map(|i| self.hashes[l as usize][i as usize]).collect();
        let done = layer.phase == Phase::Done;
        if !done {
            layer.followers.push((c, pid));
        }
        let bitfield = PeerEvent::Bitfield { size: layout.blob_size, piece_size: layout.piece_size, have, hashes };
        self.send(Ev::Input(c, l, Input::Avail(pid, bitfield)));
        if done {
            self.send(Ev::Input(c, l, Input::Avail(pid, PeerEvent::Complete)));
            self.send(Ev::Input(c, l, Input::AvailEnded(pid, None)));
        }
    }

    /// Piece request `x` reached its parent.
    pub fn request_arrives(&mut self, x: u32) {
        let xf = self.xfer(x).clone();
        if !self.nodes[xf.child as usize].alive {
            self.take_xfer(x);
            return;
        }
        let parent = &mut self.nodes[xf.parent as usize];
        if !parent.alive {
            let noticed = parent.dies_at.unwrap_or(self.now).after(QUIC_IDLE);
            self.fail_dead_parent(x, noticed);
            return;
        }
        let layer = &mut parent.layers[xf.layer as usize];
        let refusal = if parent.uploads >= self.tuning.max_uploads {
            Some(PieceError::Busy)
        } else if !layer.held.get(xf.piece) {
            Some(PieceError::Missing(format!("piece {} is not here", xf.piece)))
        } else if layer.is_source() {
            let (held, pieces) = (layer.held.count(), layer.held.len());
            let child = self.nodes[xf.child as usize].host.as_str().to_owned();
            let now = self.clock.tokio(self.now);
            let parent = &mut self.nodes[xf.parent as usize];
            let digest = self.tasks[xf.layer as usize].digest();
            match parent.handouts.begin(digest, xf.piece, &child, held, pieces, now) {
                Verdict::Go => {
                    self.xfers[x as usize].as_mut().expect("live").handout = true;
                    None
                }
                Verdict::ChildBusy => Some(PieceError::Busy),
                Verdict::Elsewhere | Verdict::Fresh => Some(PieceError::Elsewhere),
            }
        } else {
            None
        };
        if let Some(err) = refusal {
            self.count.refusals += 1;
            let xf = self.take_xfer(x);
            self.send(Ev::Input(xf.child, xf.layer, Input::PieceFailed(xf.pid, xf.piece, err)));
            return;
        }
        let parent = &mut self.nodes[xf.parent as usize];
        parent.uploads += 1;
        let (up, down) = (parent.up, self.nodes[xf.child as usize].down);
        let flow = self.net.start(self.now, up, down, xf.len, FlowTag::Piece(x));
        self.xfers[x as usize].as_mut().expect("live").flow = Some(flow);
    }

    /// Upload `x` ended (sent, or given up on): the parent's slot and
    /// handout are free.
    fn upload_ended(&mut self, x: &crate::world::Xfer) {
        let now = self.clock.tokio(self.now);
        let digest = self.tasks[x.layer as usize].digest().clone();
        let child = self.nodes[x.child as usize].host.as_str().to_owned();
        let parent = &mut self.nodes[x.parent as usize];
        parent.uploads -= 1;
        if x.handout {
            parent.handouts.end(&digest, x.piece, &child, now);
        }
    }

    /// The parent of `x` gave up on its upload to a child that died.
    pub fn upload_lost(&mut self, x: u32) {
        let xf = self.take_xfer(x);
        if self.nodes[xf.parent as usize].alive {
            self.upload_ended(&xf);
        }
    }

    /// A flow completed.
    pub fn flow_done(&mut self, tag: FlowTag) {
        match tag {
            FlowTag::Piece(x) => {
                let xf = self.take_xfer(x);
                self.upload_ended(&xf);
                self.nodes[xf.parent as usize].uploaded += xf.len;
                self.send(Ev::Input(xf.child, xf.layer, Input::PieceArrived(xf.pid, xf.piece)));
            }
            FlowTag::Origin(n, l, piece) => self.origin_piece(n, l, piece),
        }
    }
}
