//! Verified reads of complete blobs: the first read that touches a piece
//! hashes the whole piece and compares it with the BLAKE3 recorded when the
//! piece was stored; no byte of a piece that fails is returned.
//!
//! The verdicts live in a [`PieceChecks`] per open file, shared by every
//! reader of that file alive at the same time (the [`CheckTable`] hands the
//! same one to each `open_blob` while any holder lives), so a piece is
//! hashed at most once however many requests read it concurrently. When
//! the last reader goes, the verdicts go with it and the next open checks
//! again. A piece being hashed is locked, so two readers of it wait for one
//! hash instead of doing two.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use shoal_core::{Digest, PieceIndex, PieceLayout};

use crate::error::{ReadError, StoreError};

/// Bytes outside the caller's buffer are hashed through a scratch buffer
/// of at most this size, so memory stays small whatever the piece size.
const SCRATCH: usize = 1 << 20;

/// Which file a descriptor is open on. Stable while any descriptor to it
/// is open (an inode is not reused before its last close), which is
/// exactly as long as a [`PieceChecks`] for it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(crate) fn of(file: &File) -> io::Result<FileId> {
        file.metadata().map(|m| FileId { dev: m.dev(), ino: m.ino() })
    }

    pub(crate) fn of_path(path: &std::path::Path) -> io::Result<FileId> {
        std::fs::metadata(path).map(|m| FileId { dev: m.dev(), ino: m.ino() })
    }
}

/// What is known of one piece of an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Unchecked,
    Good,
    Rotten,
}

/// The verdicts on the pieces of one open blob file.
#[derive(Debug)]
pub(crate) struct PieceChecks {
    digest: Digest,
    file: FileId,
    /// The recorded hash per piece; `None` (lost record) fails the piece.
    expected: Vec<Option<[u8; 32]>>,
    verdicts: Vec<Mutex<Verdict>>,
    table: Arc<CheckTable>,
}

/// The live [`PieceChecks`] per digest; an entry goes when its last holder
/// drops it.
#[derive(Debug, Default)]
pub(crate) struct CheckTable {
    map: Mutex<HashMap<Digest, Weak<PieceChecks>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Verdicts and the table hold no invariant a panic could break halfway
    // (a verdict is set only after its hash completed).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CheckTable {
    /// The checks of file `file` of blob `d`: the ones a live reader of the
    /// same file already has, else new ones over the hashes `load` gives.
    pub(crate) fn get_or_load(
        self: &Arc<Self>,
        d: &Digest,
        file: FileId,
        load: impl FnOnce() -> Result<Vec<Option<[u8; 32]>>, StoreError>,
    ) -> Result<Arc<PieceChecks>, StoreError> {
        // An `Arc` upgraded here may be the last one once the guard is
        // gone; it is dropped outside the lock, because dropping the last
        // one takes the lock.
        let live = lock(&self.map).get(d).and_then(Weak::upgrade);
        if let Some(c) = live.filter(|c| c.file == file) {
            return Ok(c);
        }
        let expected = load()?;
        let fresh = Arc::new(PieceChecks {
            digest: d.clone(),
            file,
            verdicts: expected.iter().map(|_| Mutex::new(Verdict::Unchecked)).collect(),
            expected,
            table: Arc::clone(self),
        });
        let mut map = lock(&self.map);
        let current = map.get(d).and_then(Weak::upgrade);
        let chosen = match &current {
            // Another open of the same file won the race: share its checks.
            Some(c) if c.file == file => Arc::clone(c),
            _ => {
                map.insert(d.clone(), Arc::downgrade(&fresh));
                Arc::clone(&fresh)
            }
        };
        drop(map);
        drop((current, fresh));
        Ok(chosen)
    }
}

impl Drop for PieceChecks {
    fn drop(&mut self) {
        let mut map = lock(&self.table.map);
        // Only a dead entry is ours to remove: a reader of a newer copy
        // may have replaced it.
        if map.get(&self.digest).is_some_and(|w| w.strong_count() == 0) {
            map.remove(&self.digest);
        }
    }
}

impl PieceChecks {
    /// The file these verdicts are about.
    pub(crate) fn file(&self) -> FileId {
        self.file
    }

    /// The hash recorded for `piece` when it was stored; `None` for a
    /// piece past the end or whose record is lost.
    pub(crate) fn expected(&self, piece: PieceIndex) -> Option<[u8; 32]> {
        self.expected.get(piece as usize).copied().flatten()
    }

    /// The recorded hash of every piece, by index.
    pub(crate) fn all_expected(&self) -> &[Option<[u8; 32]>] {
        &self.expected
    }

    /// Fills `buf` from `offset` (the caller clipped it to the blob),
    /// checking every piece it touches that is not checked yet. Bytes of a
    /// piece being checked are taken from the very read that was hashed.
    pub(crate) fn read(&self, file: &File, layout: &PieceLayout, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let end = offset + buf.len() as u64;
        for i in layout.covering(offset..end) {
            let piece = layout.range(i);
            let want = piece.start.max(offset)..piece.end.min(end);
            let dst = &mut buf[(want.start - offset) as usize..(want.end - offset) as usize];
            let slot = self.verdicts.get(i as usize).ok_or_else(|| self.rotten(i))?;
            let mut verdict = lock(slot);
            match *verdict {
                Verdict::Good => {
                    drop(verdict);
                    read_exact(file, dst, want.start).map_err(|e| self.io(i, e))?;
                }
                Verdict::Rotten => return Err(self.rotten(i)),
                Verdict::Unchecked => {
                    let expected = self.expected[i as usize];
                    let ok = match expected {
                        Some(h) => check_piece(file, piece, &want, dst, &h).map_err(|e| self.io(i, e))?,
                        None => false,
                    };
                    if !ok {
                        *verdict = Verdict::Rotten;
                        tracing::error!(digest = %self.digest, piece = i, "a stored piece no longer matches its recorded hash");
                        return Err(self.rotten(i));
                    }
                    *verdict = Verdict::Good;
                }
            }
        }
        Ok(())
    }

    fn rotten(&self, piece: PieceIndex) -> ReadError {
        ReadError::Rotten { digest: self.digest.clone(), piece }
    }

    /// A file that ends inside a recorded piece lost bytes: that is rot too.
    fn io(&self, piece: PieceIndex, e: io::Error) -> ReadError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.rotten(piece)
        } else {
            ReadError::Io { digest: self.digest.clone(), source: e }
        }
    }
}

/// Reads all of `piece`, copying its `want` part into `dst`, and says
/// whether it hashes to `expected`.
fn check_piece(
    file: &File,
    piece: Range<u64>,
    want: &Range<u64>,
    dst: &mut [u8],
    expected: &[u8; 32],
) -> io::Result<bool> {
    let mut hasher = blake3::Hasher::new();
    let mut scratch = Vec::new();
    hash_through(file, piece.start..want.start, &mut hasher, &mut scratch)?;
    read_exact(file, dst, want.start)?;
    hasher.update(dst);
    hash_through(file, want.end..piece.end, &mut hasher, &mut scratch)?;
    Ok(hasher.finalize().as_bytes() == expected)
}

fn hash_through(file: &File, bytes: Range<u64>, hasher: &mut blake3::Hasher, scratch: &mut Vec<u8>) -> io::Result<()> {
    let mut at = bytes.start;
    while at < bytes.end {
        let n = ((bytes.end - at) as usize).min(SCRATCH);
        scratch.resize(n, 0);
        read_exact(file, &mut scratch[..n], at)?;
        hasher.update(&scratch[..n]);
        at += n as u64;
    }
    Ok(())
}

fn read_exact(file: &File, dst: &mut [u8], at: u64) -> io::Result<()> {
    file.read_exact_at(dst, at)
}
