//! [`BlobReader`]: positional reads of one blob file under a read lease,
//! checked piece by piece when the blob was opened complete from the store.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use shoal_core::{Digest, PieceIndex, PieceLayout};

use crate::checks::{FileId, PieceChecks};
use crate::error::ReadError;
use crate::lease::Lease;

/// A handle for reading one blob. While any clone lives, GC and
/// `remove_blob` leave the blob alone; the handle holds an open descriptor,
/// so it keeps reading the same bytes even across the partial-to-complete
/// rename, and after [`Store::condemn`](crate::Store::condemn) unlinked the
/// file. Cheap to clone; share it between concurrent range requests.
///
/// A reader from [`Store::open_blob`](crate::Store::open_blob) checks: no
/// byte of a piece is returned before the whole piece hashed to its
/// recorded BLAKE3, once per piece while any reader of the file lives. A
/// writer's reader does not: its caller reads only what the writer
/// recorded, whose bytes were hashed on their way in.
#[derive(Clone)]
pub struct BlobReader {
    inner: Arc<Inner>,
}

struct Inner {
    digest: Digest,
    layout: PieceLayout,
    file: Arc<File>,
    checks: Option<Arc<PieceChecks>>,
    _lease: Lease,
}

impl BlobReader {
    /// A reader that returns the file's bytes as they are (a writer's).
    pub(crate) fn new(digest: Digest, layout: PieceLayout, file: Arc<File>, lease: Lease) -> Self {
        BlobReader { inner: Arc::new(Inner { digest, layout, file, checks: None, _lease: lease }) }
    }

    /// A reader that checks every piece it returns against `checks`.
    pub(crate) fn checked(
        digest: Digest,
        layout: PieceLayout,
        file: Arc<File>,
        checks: Arc<PieceChecks>,
        lease: Lease,
    ) -> Self {
        BlobReader { inner: Arc::new(Inner { digest, layout, file, checks: Some(checks), _lease: lease }) }
    }

    /// The blob size in bytes.
    pub fn size(&self) -> u64 {
        self.inner.layout.blob_size
    }

    /// The piece geometry the blob was stored with. The piece size rule can
    /// change between versions; a stored blob keeps its own, and its
    /// recorded piece hashes are indexed by it.
    pub fn layout(&self) -> PieceLayout {
        self.inner.layout
    }

    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.inner.digest
    }

    /// Whether reads check pieces against their recorded hashes (a reader
    /// from `open_blob`).
    pub fn verifies(&self) -> bool {
        self.inner.checks.is_some()
    }

    /// The BLAKE3 recorded for `piece` when it was stored, which every
    /// read of it is checked against. `None` for a writer's reader, a
    /// piece past the end, or a piece whose record is lost (its reads
    /// fail).
    pub fn recorded_hash(&self, piece: PieceIndex) -> Option<[u8; 32]> {
        self.inner.checks.as_ref().and_then(|c| c.expected(piece))
    }

    /// The recorded BLAKE3 of every piece, by index, when each is there
    /// (a checking reader whose records are all intact); else `None`.
    pub fn recorded_hashes(&self) -> Option<Vec<[u8; 32]>> {
        self.inner.checks.as_ref()?.all_expected().iter().copied().collect()
    }

    /// Whether `other` reads the very same file (not merely the same
    /// digest): after a condemnation, the old copy and a fresh download
    /// are different files. `false` if either file cannot be inspected.
    pub fn same_file(&self, other: &BlobReader) -> bool {
        Arc::ptr_eq(&self.inner.file, &other.inner.file)
            || matches!((self.file_id(), other.file_id()), (Some(a), Some(b)) if a == b)
    }

    pub(crate) fn file_id(&self) -> Option<FileId> {
        match &self.inner.checks {
            Some(c) => Some(c.file()),
            None => FileId::of(&self.inner.file).ok(),
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns 0 at or past the
    /// end.
    ///
    /// A checking reader fills `buf` (up to the blob's end) after hashing
    /// every piece the range touches that no read of this file checked yet,
    /// the whole piece even when the range covers a part of it; a piece
    /// that does not match fails the read with [`ReadError::Rotten`], and
    /// keeps failing. Hashing costs one read of the piece, so call this
    /// off the async runtime.
    ///
    /// For a partial blob (a writer's reader) only regions of recorded
    /// pieces hold meaningful bytes; elsewhere the preallocated file reads
    /// as zeros.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, ReadError> {
        let left = self.inner.layout.blob_size.saturating_sub(offset);
        let len = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        if len == 0 {
            return Ok(0);
        }
        match &self.inner.checks {
            Some(checks) => {
                checks.read(&self.inner.file, &self.inner.layout, offset, &mut buf[..len])?;
                Ok(len)
            }
            None => self
                .inner
                .file
                .read_at(&mut buf[..len], offset)
                .map_err(|source| ReadError::Io { digest: self.inner.digest.clone(), source }),
        }
    }
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("digest", &self.inner.digest)
            .field("size", &self.inner.layout.blob_size)
            .field("verifies", &self.verifies())
            .finish()
    }
}
