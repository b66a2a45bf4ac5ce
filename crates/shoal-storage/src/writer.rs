//! [`BlobWriter`]: filling one partial blob file piece by piece, recording
//! each verified piece's BLAKE3 hash, and completing or discarding the blob.
//! Starting or resuming a writer is in `begin.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use redb::Durability;
use shoal_core::{Digest, PieceIndex, PieceLayout};

use crate::error::{StoreError, io_no_space};
use crate::lease::Lease;
use crate::piece_log::Inbox;
use crate::reader::BlobReader;
use crate::records::{BlobMeta, to_ms};
use crate::store::Store;

/// A writer's pieces: recorded, and queued for the group commit.
pub(crate) struct Pieces {
    /// Recorded hash per piece; `None` until its record committed.
    pub(crate) recorded: Vec<Option<[u8; 32]>>,
    /// Records queued with [`BlobWriter::submit_piece`], not yet settled.
    pub(crate) pending: BTreeMap<PieceIndex, [u8; 32]>,
    /// Pieces whose records committed since the last
    /// [`BlobWriter::take_recorded`].
    pub(crate) fresh: Vec<(PieceIndex, [u8; 32])>,
    /// Where the committer settles this writer's records.
    pub(crate) inbox: Arc<Inbox>,
}

/// The only writer of one partial blob in this process.
///
/// Bytes go to their offsets with positional writes; a piece counts only
/// once [`record_piece`](Self::record_piece) (or [`put_piece`](Self::put_piece))
/// stored its hash, or a record queued with
/// [`submit_piece`](Self::submit_piece) committed. Dropping the writer without [`complete`](Self::complete)
/// or [`discard`](Self::discard) keeps the partial for a later resume and
/// releases the write lease.
pub struct BlobWriter {
    pub(crate) store: Store,
    pub(crate) digest: Digest,
    pub(crate) layout: PieceLayout,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<File>,
    /// Which pieces are recorded or being recorded (boxed: a writer is
    /// moved around by value and this is its bulk).
    pub(crate) state: Box<Pieces>,
    pub(crate) created_ms: u64,
    /// Registries to record as the blob's sources when it completes.
    pub(crate) sources: Vec<String>,
    pub(crate) lease: Lease,
}

impl BlobWriter {
    /// The blob being written.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The blob's piece geometry (`PieceLayout::for_blob(size)`).
    pub fn layout(&self) -> PieceLayout {
        self.layout
    }

    /// Whether piece `i` is recorded (an index out of range is not).
    pub fn has_piece(&self, i: PieceIndex) -> bool {
        self.piece_hash(i).is_some()
    }

    /// Recorded pieces, in index order.
    pub fn verified_pieces(&self) -> Vec<PieceIndex> {
        self.indices(true)
    }

    /// Pieces not yet recorded, in index order.
    pub fn missing_pieces(&self) -> Vec<PieceIndex> {
        self.indices(false)
    }

    /// The recorded BLAKE3 hash of piece `i`.
    pub fn piece_hash(&self, i: PieceIndex) -> Option<[u8; 32]> {
        self.state.recorded.get(usize::try_from(i).ok()?).copied().flatten()
    }

    fn indices(&self, recorded: bool) -> Vec<PieceIndex> {
        (0..self.layout.count()).filter(|&i| self.has_piece(i) == recorded).collect()
    }

    /// Writes `bytes` at `offset` without recording anything: until the
    /// covering piece is recorded, these bytes are not trusted (a resume
    /// re-hashes only recorded pieces and treats the rest as missing).
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let len = bytes.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > self.layout.blob_size) {
            return Err(StoreError::OutOfBounds {
                digest: self.digest.clone(),
                offset,
                len,
                size: self.layout.blob_size,
            });
        }
        self.file.write_all_at(bytes, offset).map_err(|e| {
            if io_no_space(&e) {
                self.store.no_space(&self.digest, self.missing_bytes())
            } else {
                StoreError::io("write partial blob", &self.path)(e)
            }
        })
    }

    /// Bytes of the blob in pieces not yet recorded.
    fn missing_bytes(&self) -> u64 {
        self.missing_pieces().into_iter().map(|i| self.layout.len_of(i)).sum()
    }

    /// Writes all of piece `i`, hashes it and records it; returns the hash.
    /// For pieces whose bytes arrive whole (from a peer).
    pub fn put_piece(&mut self, i: PieceIndex, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
        self.slot(i)?;
        let expected = self.layout.len_of(i);
        if bytes.len() as u64 != expected {
            return Err(StoreError::PieceLength {
                digest: self.digest.clone(),
                index: i,
                expected,
                got: bytes.len() as u64,
            });
        }
        self.write_at(self.layout.range(i).start, bytes)?;
        let hash = *blake3::hash(bytes).as_bytes();
        self.record_piece(i, hash)?;
        Ok(hash)
    }

    pub(crate) fn slot(&self, i: PieceIndex) -> Result<usize, StoreError> {
        let count = self.layout.count();
        if i >= count {
            return Err(StoreError::PieceOutOfRange { digest: self.digest.clone(), index: i, count });
        }
        Ok(i as usize)
    }

    /// A reader of the partial file, for streaming pieces to a client as
    /// they land; the caller reads only recorded regions. Holds a read
    /// lease of its own, and keeps working after `complete`.
    pub fn reader(&self) -> BlobReader {
        let lease = self.lease.share_read();
        BlobReader::new(self.digest.clone(), self.layout, Arc::clone(&self.file), lease)
    }

    /// Records `registry` as where these bytes come from, when the blob
    /// completes (see [`crate::BlobInfo::sources`]).
    pub fn add_source(&mut self, registry: &str) {
        if !self.sources.iter().any(|s| s == registry) {
            self.sources.push(registry.to_owned());
        }
    }

    /// Marks the blob complete, the caller having checked the whole-blob
    /// digest against `verified`. Every piece must be recorded. The file is
    /// synced before the record commits with full durability, so a complete
    /// blob always has its bytes on disk. Its sources are those given to
    /// [`add_source`](Self::add_source) plus any recorded meanwhile.
    pub fn complete(mut self, verified: &Digest) -> Result<BlobReader, StoreError> {
        if verified != &self.digest {
            return Err(StoreError::WrongDigest { expected: self.digest.clone(), got: verified.clone() });
        }
        self.settle(true)?;
        let missing = self.state.recorded.iter().filter(|p| p.is_none()).count();
        if missing > 0 {
            return Err(StoreError::Incomplete {
                digest: self.digest.clone(),
                missing: missing as u32,
                total: self.layout.count(),
            });
        }
        self.file.sync_data().map_err(StoreError::io("sync partial blob", &self.path))?;
        let paths = &self.store.inner.paths;
        let done = paths.complete(&self.digest);
        fs::rename(&self.path, &done).map_err(StoreError::io("rename to complete", &done))?;
        sync_dir(&done)?;
        let db = &self.store.inner.db;
        let mut sources = db.blob(&self.digest)?.map(|m| m.sources).unwrap_or_default();
        for s in &self.sources {
            if !sources.contains(s) {
                sources.push(s.clone());
            }
        }
        let meta = BlobMeta {
            size: self.layout.blob_size,
            piece_size: self.layout.piece_size,
            complete: true,
            created_ms: self.created_ms,
            last_access_ms: to_ms(SystemTime::now()),
            sources,
        };
        if let Err(e) = db.put_blob(&self.digest, &meta, Durability::Immediate) {
            // Keep file name and record in step; a resume re-hashes anyway.
            let _ = fs::rename(&done, &self.path);
            return Err(e);
        }
        Ok(self.reader())
    }

    /// Deletes the partial file and every record of the blob: used when the
    /// whole-blob digest did not match, so nothing of it is kept.
    pub fn discard(mut self) -> Result<(), StoreError> {
        // No record of it may commit after its records are removed.
        let _ = self.settle(true);
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(StoreError::io("delete partial blob", &self.path)(e));
            }
            _ => {}
        }
        self.store.inner.db.remove_blobs(std::slice::from_ref(&self.digest))
    }
}

/// A writer that goes marks its blob used now: an abandoned partial's age
/// (`StoreConfig::partial_max_age`) counts from its last writer, not from
/// when that writer began. After `complete` this rewrites the fresh access
/// time; after `discard` there is no record left to touch.
impl Drop for BlobWriter {
    fn drop(&mut self) {
        // Records still in flight settle first: whoever begins the next
        // write of this blob finds them committed or not, not half-way.
        if let Err(e) = self.settle(true) {
            tracing::warn!(digest = %self.digest, error = %e, "a piece record of a finished write did not commit");
        }
        if let Err(e) = self.store.inner.db.touch_blob(&self.digest, to_ms(SystemTime::now())) {
            tracing::warn!(digest = %self.digest, error = %e, "could not record the last write of a blob");
        }
    }
}

/// Syncs the directory holding `path`, so a rename in it survives power loss.
fn sync_dir(path: &std::path::Path) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(path);
    File::open(dir).and_then(|d| d.sync_all()).map_err(StoreError::io("sync blob directory", dir))
}

impl fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobWriter")
            .field("digest", &self.digest)
            .field("layout", &self.layout)
            .field("recorded", &self.state.recorded.iter().flatten().count())
            .finish()
    }
}
