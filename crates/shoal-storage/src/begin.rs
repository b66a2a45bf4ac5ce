//! Starting a blob write: a fresh sparse partial file, or a resume of an
//! existing partial in which every recorded piece is re-read and re-hashed,
//! so a torn or altered piece is never trusted after a crash.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use shoal_core::{Digest, PieceIndex, PieceLayout};

use crate::error::{StoreError, io_no_space};
use crate::lease::Lease;
use crate::records::{BlobMeta, to_ms};
use crate::space;
use crate::store::Store;
use crate::writer::{BlobWriter, Pieces};

/// Re-hashing reads this much at a time, so resume memory stays small
/// whatever the piece size.
const VERIFY_CHUNK: usize = 1 << 20;

impl Store {
    /// Opens the one writer for `d`, a blob of `size` bytes.
    ///
    /// A new blob gets a partial file of `size` bytes with its disk blocks
    /// allocated (sparse where the filesystem cannot preallocate) and the
    /// layout `PieceLayout::for_blob(size)`. An existing partial of the
    /// same size is resumed: its recorded pieces are re-hashed and those
    /// whose bytes changed are forgotten. A partial of another size is
    /// discarded and restarted. Either way the quota and the disk must hold
    /// the whole blob first; blobs not in use are evicted to make room
    /// (`space.rs`).
    ///
    /// # Errors
    /// [`StoreError::AlreadyComplete`] if the blob is complete,
    /// [`StoreError::WriterBusy`] if another writer for `d` is alive,
    /// [`StoreError::NoSpace`] if no room can be made; a partial of `d`
    /// held before is then deleted, so a failed download holds nothing.
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
        let path = self.inner.paths.partial(d);
        let made = self.with_room(d, size, 0, || {
            self.inner.db.start_blob(d, &meta)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .and_then(|f| f.set_len(size).map(|()| f))
                .map_err(StoreError::io("create partial blob", &path))?;
            self.take_blocks(d, &file, size, 0)?;
            Ok(file)
        });
        match made {
            Ok(file) => Ok(self.writer(d, meta, file, Vec::new(), lease)),
            Err(e) => Err(self.give_up_partial(d, e)),
        }
    }

    /// Preallocates `file` (the partial of `d`, `size` bytes, `allocated`
    /// of them on disk already); a refusal for want of space becomes
    /// [`StoreError::NoSpace`].
    fn take_blocks(&self, d: &Digest, file: &File, size: u64, allocated: u64) -> Result<(), StoreError> {
        match space::preallocate(file, size) {
            Ok(_) => Ok(()),
            Err(e) if io_no_space(&e) => Err(self.no_space(d, size.saturating_sub(allocated))),
            Err(e) => Err(StoreError::io("allocate partial blob", self.inner.paths.partial(d))(e)),
        }
    }

    /// A write of `d` could not start (`e`): its partial file and records
    /// go, so the failed download holds no space. The caller holds `d`'s
    /// write lease.
    fn give_up_partial(&self, d: &Digest, e: StoreError) -> StoreError {
        let path = self.inner.paths.partial(d);
        if let Err(rm) = fs::remove_file(&path)
            && rm.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(digest = %d, error = %rm, "could not delete the partial blob of a failed write");
        }
        if let Err(rm) = self.inner.db.remove_blobs(std::slice::from_ref(d)) {
            tracing::warn!(digest = %d, error = %rm, "could not forget the partial blob of a failed write");
        }
        e
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
        let held = space::allocated(&file).map_err(StoreError::io("inspect partial blob", &path))?;
        if let Err(e) = self.with_room(d, meta.size, held, || self.take_blocks(d, &file, meta.size, held)) {
            drop(file);
            return Err(self.give_up_partial(d, e));
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
            state: Box::new(Pieces {
                recorded: pieces,
                pending: Default::default(),
                fresh: Vec::new(),
                inbox: Default::default(),
            }),
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
