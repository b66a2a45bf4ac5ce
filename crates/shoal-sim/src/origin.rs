//! Downloads from the origin: a node whose fetch core ended in the origin
//! (a grant, the swarm gave up, no scheduler) asks the origin for the
//! pieces it lacks and receives them as one stream, in order, over the
//! origin's uplink and its own downlink; each piece is held (and announced
//! to the node's children) once its last byte arrived. From the moment it
//! asks, the node is a source of the layer: its uploads follow the handout
//! rule, and its final piece map makes it an authority.

use crate::node::Phase;
use crate::world::{Ev, FlowTag, World};

impl World {
    /// Layer `l` of node `n` fetches what its core lacks from the origin.
    pub fn to_origin(&mut self, n: u32, l: u32) {
        let layout = self.layouts[l as usize];
        let layer = &mut self.nodes[n as usize].layers[l as usize];
        let Some(core) = layer.core.take() else { return };
        let missing = core.missing();
        drop(core);
        let parents = std::mem::take(&mut layer.parents);
        layer.phase = Phase::Origin;
        layer.seeding = true;
        layer.peer_owed = 0;
        layer.origin_owed = missing.iter().map(|&p| layout.len_of(p)).sum();
        layer.origin_queue.extend(missing);
        if !layer.origin_busy && !layer.origin_queue.is_empty() {
            layer.origin_busy = true;
            // The request's round trip before the first byte.
            let at = self.now.after(self.sc.latency * 2);
            self.q.push(at, Ev::OriginStart(n, l));
        }
        self.unfollow_all(n, l, parents);
    }

    /// Start the next origin piece of layer `l` on node `n`, if any.
    pub fn origin_next(&mut self, n: u32, l: u32) {
        let node = &mut self.nodes[n as usize];
        if !node.alive {
            return;
        }
        let down = node.down;
        let layer = &mut node.layers[l as usize];
        while let Some(piece) = layer.origin_queue.pop_front() {
            if layer.held.get(piece) {
                continue; // a request in flight when the core ended brought it
            }
            layer.origin_busy = true;
            let len = self.layouts[l as usize].len_of(piece);
            self.net.start(self.now, self.origin_up, down, len, FlowTag::Origin(n, l, piece));
            return;
        }
        layer.origin_busy = false;
    }

    /// An origin piece arrived.
    pub fn origin_piece(&mut self, n: u32, l: u32, piece: u32) {
        let len = self.layouts[l as usize].len_of(piece);
        self.count.origin_bytes += len;
        let node = &mut self.nodes[n as usize];
        node.from_origin += len;
        node.origin_received += len;
        let layer = &mut node.layers[l as usize];
        layer.origin_owed = layer.origin_owed.saturating_sub(len);
        self.store(n, l, piece);
        self.origin_next(n, l);
    }
}
