//! The plain values the store hands out: what a blob, a tag and the whole
//! store look like from outside, and what a GC pass did.

use std::time::SystemTime;

use shoal_core::{Digest, PieceLayout};

/// A blob as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The blob's digest.
    pub digest: Digest,
    /// Total size in bytes.
    pub size: u64,
    /// How the blob is cut into pieces.
    pub layout: PieceLayout,
    /// Whether the whole-blob digest was verified and the bytes are synced.
    pub complete: bool,
    /// Pieces with a recorded BLAKE3 hash (all of them when complete).
    pub verified_pieces: u32,
    /// Bytes in those pieces.
    pub verified_bytes: u64,
    /// Last read or write, persisted at most once a minute per blob.
    pub last_access: SystemTime,
    /// When the first write began.
    pub created: SystemTime,
    /// Registries the bytes are known to come from; a request naming
    /// another registry must not be served them without a proof.
    pub sources: Vec<String>,
}

impl BlobInfo {
    /// Complete, with bytes known to come from `registry`: what may be
    /// served under that registry's name without a proof.
    pub fn complete_from(&self, registry: &str) -> bool {
        self.complete && self.sources.iter().any(|s| s == registry)
    }
}

/// A stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// Its media type.
    pub media_type: String,
    /// Its bytes (checked against its digest before they were stored).
    pub bytes: Vec<u8>,
    /// Registries it was fetched from.
    pub sources: Vec<String>,
}

/// The last manifest digest seen for a tag, for serving a stale answer when
/// the origin is down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    /// Digest the tag pointed at.
    pub digest: Digest,
    /// The manifest's media type.
    pub media_type: String,
    /// When the origin last said so.
    pub seen_at: SystemTime,
}

/// How full the store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUsage {
    /// Sizes of complete and partial blobs (partials are preallocated to
    /// their full size) plus manifest bytes.
    pub used_bytes: u64,
    /// The configured quota.
    pub capacity: u64,
    /// Blobs verified and complete.
    pub complete_blobs: u64,
    /// Blobs being written or abandoned mid-download.
    pub partial_blobs: u64,
    /// Manifests stored.
    pub manifests: u64,
}

/// What one GC pass did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcReport {
    /// Blobs removed, in eviction order.
    pub evicted: Vec<Digest>,
    /// Manifests removed because they were not accessed within `max_age`.
    pub expired_manifests: Vec<Digest>,
    /// Bytes freed by both.
    pub freed_bytes: u64,
    /// `used_bytes` after the pass.
    pub used_after: u64,
}
