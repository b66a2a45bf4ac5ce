//! Starting a blob write: a fresh sparse partial file, or a resume of an
//! existing partial in which every recorded piece is re-read and re-hashed,
//! so a torn or altered piece is never trusted after a crash.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use shoal_core::{Digest, PieceIndex, PieceLayout};

use crate::error::StoreError;
use crate::lease::Lease;
use crate::records::{BlobMeta, to_ms};
use crate::store::Store;
use crate::writer::BlobWriter;

/// Re-hashing reads this much at a time, so resume memory stays small
/// whatever the piece size.
const VERIFY_CHUNK: usize = 1 << 20;

impl Store {
    /// Opens the one writer for `d`, a blob of `size` bytes.
    ///
    /// A new blob gets a partial file preallocated (sparse) to `size` and
    /// the layout `PieceLayout::for_blob(size)`. An existing partial of the
    /// same size is resumed: its recorded pieces are re-hashed and those
    /// whose bytes changed are forgotten. A partial of another size is
    /// discarded and restarted.
    ///
    /// # Errors
    /// [`StoreError::AlreadyComplete`] if the blob is complete,
    /// [`StoreError::WriterBusy`] if another writer for `d` is alive.
    pub fn begin_write(&self, d: &Digest, size: u64) -> Result<BlobWriter, StoreError> {
        let lease = self.inner.leases.write(d).ok_or_else(|| StoreError::WriterBusy { digest: d.clone() })?;
        let now = to_ms(SystemTime::now());
        match self.inner.db.blob(d)? {
            Some(meta) if meta.complete => Err(StoreError::AlreadyComplete { digest: d.clone() }),
            Some(meta) if meta.size == size && meta.layout() == PieceLayout::for_blob(size) => {
                self.resume(d, meta, lease, now)
            }
            Some(meta) => {
                tracing::warn!(
                    digest = %d, old_size = meta.size, new_size = size,
                    "partial blob has another size or layout; restarting it"
                );
                self.fresh(d, size, lease, now)
            }
            None => self.fresh(d, size, lease, now),
        }
    }

    fn fresh(&self, d: &Digest, size: u64, lease: Lease, now: u64) -> Result<BlobWriter, StoreError> {
        let meta = BlobMeta::new_partial(size, now);
        self.inner.db.start_blob(d, &meta)?;
        let path = self.inner.paths.partial(d);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|f| f.set_len(size).map(|()| f))
            .map_err(StoreError::io("create partial blob", &path))?;
        Ok(self.writer(d, meta, file, Vec::new(), lease))
    }

    fn resume(&self, d: &Digest, mut meta: BlobMeta, lease: Lease, now: u64) -> Result<BlobWriter, StoreError> {
        let path = self.inner.paths.partial(d);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(digest = %d, path = %path.display(), "partial blob file vanished; restarting it");
                return self.fresh(d, meta.size, lease, now);
            }
            Err(e) => return Err(StoreError::io("open partial blob", &path)(e)),
        };
        let len = file.metadata().map_err(StoreError::io("inspect partial blob", &path))?.len();
        if len != meta.size {
            file.set_len(meta.size).map_err(StoreError::io("resize partial blob", &path))?;
        }
        let layout = meta.layout();
        let mut kept = Vec::new();
        let mut forget = Vec::new();
        for (i, hash) in self.inner.db.pieces(d)? {
            let ok = i < layout.count()
                && piece_matches(&file, &layout, i, &hash).map_err(StoreError::io("re-read partial blob", &path))?;
            if ok {
                kept.push((i, hash));
            } else {
                forget.push(i);
            }
        }
        if !forget.is_empty() {
            tracing::warn!(
                digest = %d, pieces = ?forget,
                "recorded pieces no longer match their bytes; fetching them again"
            );
        }
        meta.last_access_ms = now;
        self.inner.db.resume_blob(d, &forget, &meta)?;
        Ok(self.writer(d, meta, file, kept, lease))
    }

    fn writer(
        &self,
        d: &Digest,
        meta: BlobMeta,
        file: File,
        recorded: Vec<(PieceIndex, [u8; 32])>,
        lease: Lease,
    ) -> BlobWriter {
        let layout = meta.layout();
        let mut pieces = vec![None; layout.count() as usize];
        for (i, hash) in recorded {
            pieces[i as usize] = Some(hash);
        }
        BlobWriter {
            store: self.clone(),
            digest: d.clone(),
            layout,
            path: self.inner.paths.partial(d),
            file: Arc::new(file),
            pieces,
            created_ms: meta.created_ms,
            sources: Vec::new(),
            lease,
        }
    }
}

/// Whether the bytes of piece `i` in `file` hash to `expected`; a piece cut
/// short by the end of the file does not match.
fn piece_matches(file: &File, layout: &PieceLayout, i: PieceIndex, expected: &[u8; 32]) -> io::Result<bool> {
    let range = layout.range(i);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; VERIFY_CHUNK.min((range.end - range.start) as usize)];
    let mut offset = range.start;
    while offset < range.end {
        let n = ((range.end - offset) as usize).min(buf.len());
        match file.read_exact_at(&mut buf[..n], offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hasher.finalize().as_bytes() == expected)
}
