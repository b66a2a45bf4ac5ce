//! [`BlobReader`]: positional reads of one blob file under a read lease.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use shoal_core::{Digest, PieceLayout};

use crate::lease::Lease;

/// A handle for reading one blob. While any clone lives, GC and
/// `remove_blob` leave the blob alone; the handle holds an open descriptor,
/// so it keeps reading the same bytes even across the partial-to-complete
/// rename. Cheap to clone; share it between concurrent range requests.
#[derive(Clone)]
pub struct BlobReader {
    inner: Arc<Inner>,
}

struct Inner {
    digest: Digest,
    layout: PieceLayout,
    file: Arc<File>,
    _lease: Lease,
}

impl BlobReader {
    pub(crate) fn new(digest: Digest, layout: PieceLayout, file: Arc<File>, lease: Lease) -> Self {
        BlobReader { inner: Arc::new(Inner { digest, layout, file, _lease: lease }) }
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

    /// Reads up to `buf.len()` bytes at `offset`; returns 0 at or past the
    /// end. For a partial blob (a writer's reader) only regions of recorded
    /// pieces hold meaningful bytes; elsewhere the preallocated file reads
    /// as zeros.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.inner.layout.blob_size.saturating_sub(offset);
        let len = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        if len == 0 {
            return Ok(0);
        }
        self.inner.file.read_at(&mut buf[..len], offset)
    }
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("digest", &self.inner.digest)
            .field("size", &self.inner.layout.blob_size)
            .finish()
    }
}
