//! The downloads as the swarm's piece server sees them
//! ([`crate::swarm::downloads`]): a task's running download, its pieces
//! and hashes as they are recorded, and whether it ended.

use shoal_core::TaskId;

use super::TaskManager;
use super::progress::{Phase, Progress};
use crate::swarm::downloads::{Downloads, Held, Running, Stage};

impl Held for Progress {
    fn stage(&self) -> Stage {
        match self.phase {
            Phase::Starting => Stage::Starting,
            Phase::Running => Stage::Running,
            Phase::Done => Stage::Complete,
            Phase::Failed(_) => Stage::Failed,
        }
    }

    fn layout(&self) -> Option<shoal_core::PieceLayout> {
        self.layout
    }

    fn hash_of(&self, piece: u32) -> Option<[u8; 32]> {
        let i = piece as usize;
        self.pieces.get(i).copied().unwrap_or(false).then(|| self.hashes[i])
    }

    fn held(&self) -> u32 {
        self.pieces_done()
    }
}

impl Downloads for TaskManager {
    type Held = Progress;

    fn running(&self, task: &TaskId) -> Option<Running<Progress>> {
        let t = self.get(task.digest()).filter(|t| t.registry == task.registry())?;
        Some(Running { progress: t.subscribe(), seeding: t.seeding(), reader: t.reader() })
    }
}
