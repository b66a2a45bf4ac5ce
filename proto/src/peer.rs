//! Peer <-> peer messages.
//!
//! A child opens one bidirectional stream per purpose:
//! - **availability**: it sends `PeerRequest::Interest { task }`; the parent
//!   answers with `PeerEvent::Bitfield` and then a `PeerEvent::Have` for
//!   every piece it gains, until the child closes the stream or the parent
//!   says `Complete`/`Gone`. Availability travels peer to peer, so the
//!   scheduler's load does not grow with pieces. Every piece announced
//!   carries its BLAKE3, but a child takes those hashes as its *trusted
//!   piece map* only from a parent the scheduler names as an authority of
//!   the task (a node that read the blob from the origin); from any other
//!   parent they are ignored.
//! - **a piece**: it sends `PeerRequest::GetPiece { task, index }`; the
//!   parent answers `PieceReply::Piece(header)` followed by exactly
//!   `header.len` raw bytes, or `PieceReply::Error`. The child checks the
//!   bytes against the hash in its trusted piece map, never against
//!   `header.blake3` (the sender's own claim), and the length against the
//!   blob geometry, before it stores, serves or uploads them.

use shoal_core::TaskId;

use crate::bitfield::Bitfield;

/// A child's request to a parent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PeerRequest {
    /// Tell me what you hold of this task, and keep telling me.
    Interest {
        /// The task.
        task: TaskId,
    },
    /// Send me this piece.
    GetPiece {
        /// The task.
        task: TaskId,
        /// The piece.
        index: u32,
    },
}

/// What a parent tells an interested child.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PeerEvent {
    /// Everything held now, with the blob geometry.
    Bitfield {
        /// Blob size in bytes.
        size: u64,
        /// Piece size in bytes.
        piece_size: u64,
        /// Pieces held.
        have: Bitfield,
        /// The BLAKE3 of each piece held, in index order (one per set bit
        /// of `have`). Trusted only from an authority of the task.
        hashes: Vec<[u8; 32]>,
    },
    /// One more piece is held.
    Have {
        /// The piece.
        index: u32,
        /// Its BLAKE3 (trusted only from an authority of the task).
        blake3: [u8; 32],
    },
    /// The parent holds the whole, verified blob; no more events follow.
    Complete,
    /// The parent dropped the task (failed or evicted); ask elsewhere.
    Gone,
}

/// The header before a piece's raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PieceHeader {
    /// The piece.
    pub index: u32,
    /// Bytes that follow.
    pub len: u32,
    /// BLAKE3 of those bytes, as recorded when the parent stored them: the
    /// sender's claim, which a child may use to reject a piece early but
    /// never to accept one.
    pub blake3: [u8; 32],
}

/// Why a parent refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PeerErrorCode {
    /// It does not hold the task or piece.
    NotFound,
    /// It is at its upload cap; try another parent.
    Busy,
    /// The stored piece failed verification on the way out; it was dropped.
    Corrupt,
    /// Malformed request.
    BadRequest,
    /// It holds the piece but just handed it to another child: take another
    /// piece from it, or this one from that child (super-seeding).
    Elsewhere,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("peer refused: {code:?}: {message}")]
pub struct PeerError {
    /// What kind.
    pub code: PeerErrorCode,
    /// Human detail.
    pub message: String,
}

/// A parent's answer to `GetPiece`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PieceReply {
    /// The piece follows.
    Piece(PieceHeader),
    /// Refused.
    Error(PeerError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameDecoder, encode};

    #[test]
    fn events_round_trip() {
        let mut have = Bitfield::new(5);
        have.set(2);
        let events = vec![
            PeerEvent::Bitfield { size: 20 << 20, piece_size: 4 << 20, have, hashes: vec![[3; 32]] },
            PeerEvent::Have { index: 4, blake3: [9; 32] },
            PeerEvent::Complete,
        ];
        let mut d = FrameDecoder::default();
        for e in &events {
            d.push(&encode(e).unwrap());
        }
        for e in events {
            assert_eq!(d.next::<PeerEvent>().unwrap(), Some(e));
        }
        let reply = PieceReply::Piece(PieceHeader { index: 1, len: 10, blake3: [7; 32] });
        let mut d = FrameDecoder::default();
        d.push(&encode(&reply).unwrap());
        assert_eq!(d.next::<PieceReply>().unwrap(), Some(reply));
    }
}
