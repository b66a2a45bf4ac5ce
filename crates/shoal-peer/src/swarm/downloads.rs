//! What the piece server needs of the downloads running on this node, and
//! nothing more: for a task, the pieces its download holds (with their
//! hashes) as they change, whether it ended, whether this node fetches it
//! from the origin, and a reader of its partial file.
//!
//! `swarm` owns this interface and `task` implements it, so the two meet
//! here instead of in each other's internals.

use std::sync::Arc;

use shoal_core::{PieceLayout, TaskId};
use shoal_storage::BlobReader;
use tokio::sync::watch;

/// Where a running download stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The blob's size is not known yet.
    Starting,
    /// Pieces are arriving.
    Running,
    /// Every piece is held and the blob's digest matched.
    Complete,
    /// It failed: no more pieces will arrive.
    Failed,
}

/// One moment of a download, as the piece server reads it.
pub trait Held {
    /// Where it stands.
    fn stage(&self) -> Stage;
    /// The blob's pieces; `None` while starting.
    fn layout(&self) -> Option<PieceLayout>;
    /// The recorded BLAKE3 of `piece` if the piece is held (written and
    /// recorded), else `None`.
    fn hash_of(&self, piece: u32) -> Option<[u8; 32]>;
    /// Pieces held.
    fn held(&self) -> u32;
}

/// A download running here, at the moment it was looked up.
pub struct Running<H> {
    /// Its pieces as they change; the sender is dropped when it ends.
    pub progress: watch::Receiver<H>,
    /// This node fetches (part of) the blob from the origin, so its fresh
    /// pieces exist nowhere else in the swarm yet.
    pub seeding: bool,
    /// A reader of its (partial) blob file, once the file exists.
    pub reader: Option<BlobReader>,
}

/// The downloads running on this node.
pub trait Downloads: Send + Sync + 'static {
    /// What a download's progress watch carries.
    type Held: Held + Send + Sync + 'static;

    /// The download of `task` running here, if it fetches for that task's
    /// registry (bytes fetched for another registry never answer for it).
    fn running(&self, task: &TaskId) -> Option<Running<Self::Held>>;
}

impl<D: Downloads> Downloads for Arc<D> {
    type Held = D::Held;

    fn running(&self, task: &TaskId) -> Option<Running<Self::Held>> {
        (**self).running(task)
    }
}
