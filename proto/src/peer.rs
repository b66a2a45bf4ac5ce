//! Peer <-> peer messages.
//!
//! A child opens one bidirectional stream per purpose:
//! - **availability**: it sends `PeerRequest::Interest { task }`; the parent
//!   answers with `PeerEvent::Bitfield` and then a `PeerEvent::Have` for
//!   every piece it gains, until the child closes the stream or the parent
//!   says `Complete`/`Gone`. Availability travels peer to peer, so the
//!   scheduler's load does not grow with pieces.
//! - **a piece**: it sends `PeerRequest::GetPiece { task, index }`; the
//!   parent answers `PieceReply::Piece(header)` followed by exactly
//!   `header.len` raw bytes, or `PieceReply::Error`. The child checks the
//!   bytes against `header.blake3` (and the length against the piece map)
//!   before it stores, serves or uploads them.

use shoal_core::Digest;

use crate::bitfield::Bitfield;

/// A child's request to a parent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PeerRequest {
    /// Tell me what you hold of this task, and keep telling me.
    Interest {
        /// The task.
        task: Digest,
    },
    /// Send me this piece.
    GetPiece {
        /// The task.
        task: Digest,
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
    },
    /// One more piece is held.
    Have {
        /// The piece.
        index: u32,
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
    /// BLAKE3 of those bytes, as recorded when the parent stored them.
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
            PeerEvent::Bitfield { size: 20 << 20, piece_size: 4 << 20, have },
            PeerEvent::Have { index: 4 },
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
