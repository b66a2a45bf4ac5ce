//! The records the metadata database holds, as serde_json values so a later
//! version can add fields with defaults, and the time encoding they share
//! (milliseconds since the Unix epoch).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use shoal_core::{Digest, PieceLayout};

/// Converts a time to stored milliseconds; times before the epoch clamp to 0.
pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// Converts stored milliseconds back to a time.
pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// One blob, complete or partial. Piece hashes live in their own table so
/// recording a piece never rewrites this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobMeta {
    pub(crate) size: u64,
    pub(crate) piece_size: u64,
    pub(crate) complete: bool,
    pub(crate) created_ms: u64,
    pub(crate) last_access_ms: u64,
    /// Registries the bytes are known to come from (the one a download
    /// fetched it for, and any that later proved to hold the same bytes).
    /// A request naming another registry is never served these bytes
    /// without a proof. Empty in records written before the field existed.
    #[serde(default)]
    pub(crate) sources: Vec<String>,
}

impl BlobMeta {
    /// A fresh partial blob with the layout shoal uses for `size`.
    pub(crate) fn new_partial(size: u64, now_ms: u64) -> Self {
        BlobMeta {
            size,
            piece_size: PieceLayout::for_blob(size).piece_size,
            complete: false,
            created_ms: now_ms,
            last_access_ms: now_ms,
            sources: Vec::new(),
        }
    }

    pub(crate) fn layout(&self) -> PieceLayout {
        PieceLayout::with_piece_size(self.size, self.piece_size.max(1))
    }
}

/// One manifest's metadata; its bytes live in a separate table so bumping
/// the access time does not rewrite them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManifestMeta {
    pub(crate) media_type: String,
    pub(crate) size: u64,
    pub(crate) created_ms: u64,
    pub(crate) last_access_ms: u64,
    /// Registries the manifest was fetched from (see [`BlobMeta::sources`]).
    #[serde(default)]
    pub(crate) sources: Vec<String>,
}

/// The last digest seen for a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TagMeta {
    pub(crate) digest: Digest,
    pub(crate) media_type: String,
    pub(crate) seen_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips_at_millisecond_precision() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(from_ms(to_ms(t)), t);
        assert_eq!(to_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn meta_layout_matches_core() {
        let m = BlobMeta::new_partial(5 << 30, 0);
        assert_eq!(m.layout(), PieceLayout::for_blob(5 << 30));
    }
}
