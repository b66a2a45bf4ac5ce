//! A [`BlobWriter`]'s piece records: blocking ([`BlobWriter::record_piece`])
//! or queued for the store's group commit ([`BlobWriter::submit_piece`]),
//! whose outcomes the writer takes when it is ready to publish them. Either
//! way a piece is held only once the commit carrying its record returned.

use shoal_core::PieceIndex;

use crate::error::StoreError;
use crate::writer::BlobWriter;

impl BlobWriter {
    /// Records piece `i` as verified with hash `blake3`, and returns once
    /// the record committed. The caller wrote the whole piece with
    /// [`write_at`](Self::write_at) while hashing it. Records of other
    /// writers committing at the same time share the commit. A crash of the
    /// process keeps the record once this returned; should a power loss
    /// drop it, the piece is fetched again (resume re-hashes every piece).
    pub fn record_piece(&mut self, i: PieceIndex, blake3: [u8; 32]) -> Result<(), StoreError> {
        self.submit_piece(i, blake3)?;
        self.settle(true)?;
        self.state.fresh.retain(|(j, _)| *j != i);
        Ok(())
    }

    /// Queues the record of piece `i` (written and hashed, as for
    /// [`record_piece`](Self::record_piece)) and returns at once, so the
    /// caller goes on writing while the store commits it with others. The
    /// piece is not held yet: [`has_piece`](Self::has_piece) says no and no
    /// reader of the database sees it until the commit returns;
    /// [`take_recorded`](Self::take_recorded) then hands it out, once.
    pub fn submit_piece(&mut self, i: PieceIndex, blake3: [u8; 32]) -> Result<(), StoreError> {
        let slot = self.slot(i)?;
        if self.state.recorded[slot].is_some() || self.state.pending.contains_key(&i) {
            return Ok(());
        }
        self.state.pending.insert(i, blake3);
        self.store.inner.log.submit(&self.digest, i, blake3, &self.state.inbox);
        Ok(())
    }

    /// Whether piece `i`'s record is queued or being committed.
    pub fn is_pending(&self, i: PieceIndex) -> bool {
        self.state.pending.contains_key(&i)
    }

    /// Whether any record of this writer is queued or being committed.
    pub fn has_pending(&self) -> bool {
        self.state.inbox.outstanding() > 0 || !self.state.pending.is_empty()
    }

    /// The pieces whose queued records committed since the last call,
    /// without waiting. An error names a record whose commit failed: its
    /// piece is not held.
    pub fn take_recorded(&mut self) -> Result<Vec<(PieceIndex, [u8; 32])>, StoreError> {
        self.settle(false)?;
        Ok(std::mem::take(&mut self.state.fresh))
    }

    /// [`take_recorded`](Self::take_recorded), after waiting until every
    /// queued record is settled.
    pub fn wait_recorded(&mut self) -> Result<Vec<(PieceIndex, [u8; 32])>, StoreError> {
        self.settle(true)?;
        Ok(std::mem::take(&mut self.state.fresh))
    }

    /// Applies the committer's outcomes (after waiting for all of them if
    /// `wait`): committed pieces become held; the first failure is returned.
    pub(crate) fn settle(&mut self, wait: bool) -> Result<(), StoreError> {
        let settled = if wait { self.state.inbox.wait() } else { self.state.inbox.take() };
        for (i, hash) in settled.durable {
            self.state.pending.remove(&i);
            if let Some(slot) = self.state.recorded.get_mut(i as usize) {
                *slot = Some(hash);
                self.state.fresh.push((i, hash));
            }
        }
        let mut first = None;
        for (i, e) in settled.failed {
            self.state.pending.remove(&i);
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}
