//! One `find` in flight: the Kademlia provider query and the describe
//! requests it led to, until both are done or the deadline passes.

use std::collections::HashSet;

use libp2p::PeerId;
use libp2p::kad::RecordKey;
use libp2p::request_response::OutboundRequestId;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::provider::Provider;

/// The state of one find.
pub(crate) struct Find {
    pub(crate) key: RecordKey,
    pub(crate) deadline: Instant,
    /// Providers asked (or answered locally), at most `limit`.
    asked: HashSet<PeerId>,
    limit: usize,
    pub(crate) pending: HashSet<OutboundRequestId>,
    found: Vec<Provider>,
    pub(crate) query_done: bool,
    reply: oneshot::Sender<Vec<Provider>>,
}

impl Find {
    pub(crate) fn new(key: RecordKey, deadline: Instant, limit: usize, reply: oneshot::Sender<Vec<Provider>>) -> Find {
        Find {
            key,
            deadline,
            asked: HashSet::new(),
            limit,
            pending: HashSet::new(),
            found: Vec::new(),
            query_done: false,
            reply,
        }
    }

    /// Whether `peer` is to be asked: new, and under the per-key limit.
    pub(crate) fn admit(&mut self, peer: PeerId) -> bool {
        self.asked.len() < self.limit && self.asked.insert(peer)
    }

    /// Whether no further provider will be admitted.
    pub(crate) fn full(&self) -> bool {
        self.asked.len() >= self.limit
    }

    pub(crate) fn found(&mut self, provider: Provider) {
        self.found.push(provider);
    }

    /// Done: the query ended and every describe was answered or failed.
    pub(crate) fn done(&self) -> bool {
        self.query_done && self.pending.is_empty()
    }

    /// Hands the providers confirmed so far to the caller.
    pub(crate) fn finish(self) {
        // The caller may have given up (its own timeout); nothing to do then.
        let _ = self.reply.send(self.found);
    }
}
