//! What a blob download has made readable so far, as plain data.
//!
//! The downloader publishes a [`Progress`] through a `watch` channel after
//! every write; HTTP responses read it to learn how far they may read the
//! partial file. Two kinds of bytes are readable: whole pieces already
//! recorded with their BLAKE3 hash (from a previous run, or finished now),
//! and the bytes of the run currently streaming from the origin
//! (`frontier`), which are written but belong to a piece not yet finished.
//!
//! The last byte of the blob is never readable before the whole-blob digest
//! has been checked, so a response can only complete with good bytes: on a
//! mismatch it is cut short instead.

use std::sync::Arc;

use shoal_core::{PieceIndex, PieceLayout};

/// Where a download stands.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Asking the origin; the size is not known yet.
    Starting,
    /// Bytes are arriving.
    Running,
    /// Every byte is written and the digest matched; the blob is complete.
    Done,
    /// The download failed; nothing more will arrive.
    Failed(Arc<crate::task::TaskError>),
}

/// Readable state of one blob download.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Current phase.
    pub phase: Phase,
    /// Piece geometry; `None` while starting.
    pub layout: Option<PieceLayout>,
    /// `pieces[i]` is true once piece `i` is written and recorded.
    pub pieces: Vec<bool>,
    /// The recorded BLAKE3 of piece `i` (meaningful where `pieces[i]`), so
    /// the piece can be served to other peers while the blob downloads.
    pub hashes: Vec<[u8; 32]>,
    /// Bytes written by the run now streaming: `start..end`.
    pub frontier: std::ops::Range<u64>,
}

impl Progress {
    /// The state before the origin answered.
    pub fn starting() -> Progress {
        Progress { phase: Phase::Starting, layout: None, pieces: Vec::new(), hashes: Vec::new(), frontier: 0..0 }
    }

    /// Running with a layout and the pieces already recorded (with their
    /// hashes).
    pub fn running(layout: PieceLayout, verified: &[(PieceIndex, [u8; 32])]) -> Progress {
        let n = layout.count() as usize;
        let mut p = Progress {
            phase: Phase::Running,
            layout: Some(layout),
            pieces: vec![false; n],
            hashes: vec![[0; 32]; n],
            frontier: 0..0,
        };
        for &(i, h) in verified {
            p.record(i, h);
        }
        p
    }

    /// Piece `i` is written and recorded with hash `h`.
    pub fn record(&mut self, i: PieceIndex, h: [u8; 32]) {
        self.pieces[i as usize] = true;
        self.hashes[i as usize] = h;
    }

    /// Pieces recorded so far.
    pub fn pieces_done(&self) -> u32 {
        self.pieces.iter().filter(|&&p| p).count() as u32
    }

    /// Blob size, once known.
    pub fn size(&self) -> Option<u64> {
        self.layout.map(|l| l.blob_size)
    }

    /// Bytes written so far (recorded pieces plus the streaming run's bytes
    /// beyond them), for progress reports.
    pub fn bytes_done(&self) -> u64 {
        let Some(layout) = self.layout else { return 0 };
        let pieces: u64 = (0..layout.count()).filter(|&i| self.pieces[i as usize]).map(|i| layout.len_of(i)).sum();
        let extra = if self.frontier.is_empty() {
            0
        } else {
            let covered = layout.covering(self.frontier.clone());
            let done_in_frontier: u64 = covered
                .filter(|&i| self.pieces[i as usize])
                .map(|i| {
                    let r = layout.range(i);
                    r.end.min(self.frontier.end) - r.start.max(self.frontier.start)
                })
                .sum();
            (self.frontier.end - self.frontier.start) - done_in_frontier
        };
        pieces + extra
    }

    /// The end of the readable stretch that starts at `pos`: bytes
    /// `pos..end` may be read now. Equal to `pos` when nothing is readable.
    pub fn readable_end(&self, pos: u64) -> u64 {
        let Some(layout) = self.layout else { return pos };
        let size = layout.blob_size;
        if matches!(self.phase, Phase::Done) {
            return size;
        }
        let mut end = pos;
        while end < size {
            if self.frontier.contains(&end) {
                end = self.frontier.end;
            } else if self.pieces[layout.index_of(end) as usize] {
                end = layout.range(layout.index_of(end)).end;
            } else {
                break;
            }
        }
        // Hold the final byte back until the digest is checked.
        if end == size && size > 0 { size - 1 } else { end }.max(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> PieceLayout {
        PieceLayout::with_piece_size(100, 10)
    }

    #[test]
    fn nothing_readable_while_starting() {
        assert_eq!(Progress::starting().readable_end(0), 0);
    }

    #[test]
    fn frontier_and_pieces_chain() {
        let mut p = Progress::running(layout(), &[(0, [0; 32]), (1, [0; 32])]);
        assert_eq!(p.readable_end(0), 20);
        assert_eq!(p.readable_end(5), 20);
        assert_eq!(p.readable_end(20), 20);
        p.frontier = 20..27;
        assert_eq!(p.readable_end(0), 27);
        assert_eq!(p.bytes_done(), 27);
        // Piece 2 recorded, the stream now halfway through piece 3.
        p.pieces[2] = true;
        p.frontier = 20..35;
        assert_eq!(p.readable_end(3), 35);
        assert_eq!(p.bytes_done(), 35);
    }

    #[test]
    fn last_byte_waits_for_verification() {
        let all: Vec<(PieceIndex, [u8; 32])> = (0..10).map(|i| (i, [0; 32])).collect();
        let mut p = Progress::running(layout(), &all);
        assert_eq!(p.readable_end(0), 99);
        assert_eq!(p.readable_end(99), 99);
        p.phase = Phase::Done;
        assert_eq!(p.readable_end(0), 100);
        assert_eq!(p.readable_end(99), 100);
    }

    #[test]
    fn holes_stop_reading() {
        let p = Progress::running(layout(), &[(0, [0; 32]), (2, [0; 32])]);
        assert_eq!(p.readable_end(0), 10);
        assert_eq!(p.readable_end(10), 10);
        assert_eq!(p.readable_end(25), 30);
        assert_eq!(p.bytes_done(), 20);
    }
}
