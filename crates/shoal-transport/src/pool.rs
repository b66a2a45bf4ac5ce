//! Connection reuse: one live QUIC connection per (peer address, server
//! name), shared by every piece request to that peer. Streams are cheap
//! and connections are not (a handshake costs round trips and public-key
//! operations), so all requests to a peer multiplex over one connection.
//!
//! Each key has a slot guarded by an async mutex: concurrent callers for
//! the same peer wait for one dial instead of racing several. A dead
//! connection (`close_reason()` is set) is replaced on the next request;
//! a slot is removed when its connection closes or its dial fails, so the
//! map does not grow with every peer ever met.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

type Key = (SocketAddr, String);
type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// Live connections by peer.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    slots: Mutex<HashMap<Key, Slot>>,
}

impl Pool {
    /// The slot for `key`, created empty if missing.
    pub(crate) fn slot(&self, addr: SocketAddr, server_name: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry((addr, server_name.to_string())).or_default().clone()
    }

    /// Drops the slot for a peer we could not reach, so failed dials leave
    /// nothing behind (callers already waiting on it still get an answer).
    pub(crate) fn forget(&self, addr: SocketAddr, server_name: &str, slot: &Slot) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let key = (addr, server_name.to_string());
        if slots.get(&key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(&key);
        }
    }

    /// Forgets `conn` once it closes (unless the slot already holds a newer
    /// connection).
    pub(crate) fn watch(self: &Arc<Self>, addr: SocketAddr, server_name: &str, conn: quinn::Connection) {
        let pool: Weak<Self> = Arc::downgrade(self);
        let key = (addr, server_name.to_string());
        tokio::spawn(async move {
            conn.closed().await;
            let Some(pool) = pool.upgrade() else { return };
            let mut slots = pool.slots.lock().unwrap_or_else(|p| p.into_inner());
            let stale = slots.get(&key).is_some_and(|slot| {
                slot.try_lock().is_ok_and(|c| c.as_ref().is_none_or(|c| c.stable_id() == conn.stable_id()))
            });
            if stale {
                slots.remove(&key);
            }
        });
    }
}

/// The cached connection in `slot` if it is still open.
pub(crate) fn live(slot: &Option<quinn::Connection>) -> Option<quinn::Connection> {
    slot.as_ref().filter(|c| c.close_reason().is_none()).cloned()
}
