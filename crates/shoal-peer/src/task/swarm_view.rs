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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shoal_core::{Digest, PieceLayout};

    use super::*;
    use crate::task::TaskError;

    #[test]
    fn only_recorded_pieces_are_offered_with_their_hashes() {
        let mut p = Progress::running(PieceLayout::with_piece_size(40, 10), &[(1, [7; 32])]);
        assert_eq!(p.stage(), Stage::Running);
        assert_eq!((p.hash_of(0), p.hash_of(1), p.hash_of(4)), (None, Some([7; 32]), None));
        assert_eq!(p.held(), 1);
        p.phase = Phase::Done;
        assert_eq!(p.stage(), Stage::Complete);
        p.phase = Phase::Failed(Arc::new(TaskError::Cancelled(Digest::sha256_of(b"b"))));
        assert_eq!(p.stage(), Stage::Failed);
        assert_eq!(Progress::starting().stage(), Stage::Starting);
        assert_eq!(Progress::starting().layout(), None);
    }
}
