//! [`Store`]: opening a store and the blob-level queries and removal. The
//! other `impl Store` blocks live beside it: writing in `begin.rs`,
//! manifests and tags in `catalog.rs`, GC in `sweep.rs`, open-time repair
//! in `recover.rs`, dropping a damaged blob in `condemn.rs`.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use shoal_core::{Digest, PieceIndex};

use crate::checks::{CheckTable, FileId};
use crate::config::StoreConfig;
use crate::db::MetaDb;
use crate::error::StoreError;
use crate::info::{BlobInfo, StoreUsage};
use crate::lease::LeaseTable;
use crate::paths::{ALGORITHMS, Paths};
use crate::piece_log::PieceLog;
use crate::reader::BlobReader;
use crate::records::{BlobMeta, from_ms, to_ms};
use crate::recover;

/// Access times are persisted at most this often per blob or manifest, so a
/// hot blob read by many requests does not cost a database commit each.
pub(crate) const ACCESS_PERSIST_MS: u64 = 60_000;

/// The node's piece store: blob files plus a metadata database.
///
/// Cheap to clone (an `Arc` inside) and shared across threads. Every method
/// is synchronous and may block on disk; async callers use
/// `spawn_blocking`.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) cfg: StoreConfig,
    pub(crate) paths: Paths,
    pub(crate) db: Arc<MetaDb>,
    /// Group commit of piece records (`piece_log.rs`).
    pub(crate) log: PieceLog,
    pub(crate) leases: Arc<LeaseTable>,
    /// Piece verdicts of the complete blob files open now.
    pub(crate) checks: Arc<CheckTable>,
    /// Held through one condemnation, so two never interleave.
    pub(crate) condemning: Mutex<()>,
    /// Held while a write makes room and takes its blocks (`space.rs`).
    pub(crate) space: Mutex<()>,
}

impl Store {
    /// Opens the store at `cfg.root`, creating `blobs/<algorithm>/` and
    /// `meta.redb` as needed, then brings files and records into agreement:
    /// blob files the database does not know are deleted, and records whose
    /// file is gone are dropped (each logged as a warning).
    ///
    /// # Errors
    /// [`StoreError::NotWritable`] if the directories cannot be created,
    /// [`StoreError::Locked`] if another process has the database open.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        cfg.validate()?;
        let paths = Paths::new(cfg.root.clone());
        let not_writable = |source| StoreError::NotWritable { root: cfg.root.clone(), source };
        for algo in ALGORITHMS {
            fs::create_dir_all(paths.algo_dir(algo)).map_err(not_writable)?;
        }
        let db = Arc::new(MetaDb::open(paths.db(), paths.root())?);
        recover::reconcile(&paths, &db)?;
        let log = PieceLog::start(Arc::clone(&db))?;
        Ok(Store {
            inner: Arc::new(Inner {
                cfg,
                paths,
                db,
                log,
                leases: Arc::new(LeaseTable::default()),
                checks: Arc::new(CheckTable::default()),
                condemning: Mutex::new(()),
                space: Mutex::new(()),
            }),
        })
    }

    /// Transactions that committed piece records since the store opened:
    /// with group commit, far fewer than the pieces recorded while
    /// downloads run side by side.
    pub fn piece_commits(&self) -> u64 {
        self.inner.log.commits()
    }

    /// The settings the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    /// What the store knows of `d`, complete or partial.
    pub fn blob_info(&self, d: &Digest) -> Result<Option<BlobInfo>, StoreError> {
        let Some(meta) = self.inner.db.blob(d)? else {
            return Ok(None);
        };
        self.info_of(d, &meta).map(Some)
    }

    /// The public view of `d` under its record `meta`. A complete blob
    /// holds every piece, so its piece records are not read: that scan (up
    /// to the piece cap) would come on every request the mirror and the
    /// piece server answer from the store.
    fn info_of(&self, d: &Digest, meta: &BlobMeta) -> Result<BlobInfo, StoreError> {
        let pieces: Vec<PieceIndex> =
            if meta.complete { Vec::new() } else { self.inner.db.pieces(d)?.into_iter().map(|p| p.0).collect() };
        Ok(blob_info(d, meta, &pieces))
    }

    /// The recorded BLAKE3 hash of every piece of `d`, by index, read from
    /// its records (`None` for a piece not recorded). `None` when the blob
    /// is unknown. A parent serving a complete blob takes them from its
    /// reader instead (`BlobReader::recorded_hashes`), which loaded them.
    pub fn piece_hashes(&self, d: &Digest) -> Result<Option<Vec<Option<[u8; 32]>>>, StoreError> {
        let Some(meta) = self.inner.db.blob(d)? else {
            return Ok(None);
        };
        self.recorded_hashes(d, &meta).map(Some)
    }

    /// The recorded hash per piece of `d` under `meta`'s layout.
    fn recorded_hashes(&self, d: &Digest, meta: &BlobMeta) -> Result<Vec<Option<[u8; 32]>>, StoreError> {
        let mut out = vec![None; meta.layout().count() as usize];
        for (i, h) in self.inner.db.pieces(d)? {
            if let Some(slot) = out.get_mut(i as usize) {
                *slot = Some(h);
            }
        }
        Ok(out)
    }

    /// Every blob, in digest order.
    pub fn list_blobs(&self) -> Result<Vec<BlobInfo>, StoreError> {
        let mut out =
            self.inner.db.blobs()?.iter().map(|(d, meta)| self.info_of(d, meta)).collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// A reader of `d` if it is complete; `None` otherwise. The reader holds
    /// a lease that keeps GC away, and checks each piece against its
    /// recorded BLAKE3 before returning any byte of it (see
    /// [`BlobReader::read_at`]); readers of the same file alive at once
    /// share those checks. Bumps the access time (persisted at most once a
    /// minute).
    pub fn open_blob(&self, d: &Digest) -> Result<Option<BlobReader>, StoreError> {
        let Some(lease) = self.inner.leases.read(d) else {
            return Ok(None); // being removed
        };
        let meta = match self.inner.db.blob(d)? {
            Some(meta) if meta.complete => meta,
            _ => return Ok(None),
        };
        let path = self.inner.paths.complete(d);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(digest = %d, path = %path.display(), "complete blob file vanished; forgetting the blob");
                drop(lease);
                self.evict(d)?;
                return Ok(None);
            }
            Err(e) => return Err(StoreError::io("open blob", &path)(e)),
        };
        let id = FileId::of(&file).map_err(StoreError::io("inspect blob", &path))?;
        let checks = self.inner.checks.get_or_load(d, id, || self.recorded_hashes(d, &meta))?;
        let now = to_ms(SystemTime::now());
        if now.saturating_sub(meta.last_access_ms) >= ACCESS_PERSIST_MS {
            self.inner.db.touch_blob(d, now)?;
        }
        Ok(Some(BlobReader::checked(d.clone(), meta.layout(), Arc::new(file), checks, lease)))
    }

    /// Removes `d` (file and records). `Ok(false)` if the store did not have
    /// it.
    ///
    /// # Errors
    /// [`StoreError::InUse`] while a reader or writer holds it.
    pub fn remove_blob(&self, d: &Digest) -> Result<bool, StoreError> {
        match self.evict(d)? {
            Evicted::Freed(_) => Ok(true),
            Evicted::Absent => Ok(false),
            Evicted::InUse => Err(StoreError::InUse { digest: d.clone() }),
        }
    }

    /// Bytes held and how many of each thing.
    pub fn usage(&self) -> Result<StoreUsage, StoreError> {
        let mut u = StoreUsage {
            used_bytes: 0,
            capacity: self.inner.cfg.quota,
            complete_blobs: 0,
            partial_blobs: 0,
            manifests: 0,
        };
        for (_, meta) in self.inner.db.blobs()? {
            u.used_bytes += meta.size;
            if meta.complete {
                u.complete_blobs += 1;
            } else {
                u.partial_blobs += 1;
            }
        }
        for (_, meta) in self.inner.db.manifest_metas()? {
            u.used_bytes += meta.size;
            u.manifests += 1;
        }
        Ok(u)
    }

    /// Deletes `d`'s records then its files, under a removal lease so no
    /// reader or writer can appear meanwhile. Records go first: a crash in
    /// between leaves an unknown file, which the next open deletes.
    pub(crate) fn evict(&self, d: &Digest) -> Result<Evicted, StoreError> {
        let Some(_lease) = self.inner.leases.remove(d) else {
            return Ok(Evicted::InUse);
        };
        let Some(meta) = self.inner.db.blob(d)? else {
            return Ok(Evicted::Absent);
        };
        self.inner.db.remove_blobs(std::slice::from_ref(d))?;
        for complete in [true, false] {
            let path = self.inner.paths.blob(d, complete);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StoreError::io("delete blob", &path)(e));
                }
                _ => {}
            }
        }
        Ok(Evicted::Freed(meta.size))
    }
}

/// What [`Store::evict`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evicted {
    Freed(u64),
    Absent,
    InUse,
}

/// The public view of a blob record plus its recorded piece indices.
fn blob_info(d: &Digest, meta: &BlobMeta, recorded: &[PieceIndex]) -> BlobInfo {
    let layout = meta.layout();
    let (verified_pieces, verified_bytes) = if meta.complete {
        (layout.count(), meta.size)
    } else {
        let valid = recorded.iter().filter(|&&i| i < layout.count());
        valid.fold((0, 0), |(n, b), &i| (n + 1, b + layout.len_of(i)))
    };
    BlobInfo {
        digest: d.clone(),
        size: meta.size,
        layout,
        complete: meta.complete,
        verified_pieces,
        verified_bytes,
        last_access: from_ms(meta.last_access_ms),
        created: from_ms(meta.created_ms),
        sources: meta.sources.clone(),
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.paths.root())
            .field("quota", &self.inner.cfg.quota)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
