//! Room before a write. A blob write starts only once the quota and the
//! free space of the store's filesystem (less `min_free`) can hold the
//! whole blob, evicting blobs nobody reads or writes to get there:
//! abandoned partials first (oldest first), then complete blobs, least
//! recently used first. The partial file is then preallocated, so the
//! bytes that follow have their blocks and a full disk shows up here, at
//! the start of a download, rather than in the middle of one.
//!
//! Also the readiness probe: whether the store can write at all now.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::PoisonError;

use rustix::fs::FallocateFlags;
use shoal_core::Digest;

use crate::error::{SpaceLimit, StoreError, io_no_space};
use crate::store::{Evicted, Store};

/// Name of the file the write probe creates and removes in the store root
/// (outside `blobs/`, so open-time repair never sees it).
const PROBE: &str = ".write-probe";

/// Bytes of the filesystem holding `path` that the daemon may still use.
pub(crate) fn fs_available(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Bytes `file` occupies on disk (a sparse file occupies less than its
/// length).
pub(crate) fn allocated(file: &File) -> io::Result<u64> {
    Ok(file.metadata()?.blocks().saturating_mul(512))
}

/// Gives `file` disk blocks for its first `len` bytes. `Ok(false)` where
/// the filesystem cannot preallocate: the file stays sparse, and a full
/// disk then shows up as a failed write.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(true);
    }
    match rustix::fs::fallocate(file, FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(true),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Runs `write` (which creates or grows `d`'s partial file) once the
    /// quota and the disk can hold `size` bytes of `d`, whose partial file
    /// already has `allocated` bytes on disk, evicting idle blobs as
    /// needed. Holds the store's space lock throughout, so two writes
    /// starting at once do not both count the same free bytes.
    ///
    /// # Errors
    /// [`StoreError::NoSpace`] when eviction cannot make room.
    pub(crate) fn with_room<T>(
        &self,
        d: &Digest,
        size: u64,
        allocated: u64,
        write: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _one = self.inner.space.lock().unwrap_or_else(PoisonError::into_inner);
        self.make_room(d, size, allocated)?;
        write()
    }

    fn make_room(&self, d: &Digest, size: u64, allocated: u64) -> Result<(), StoreError> {
        let cfg = &self.inner.cfg;
        let root = self.inner.paths.root();
        let mut skip: HashSet<Digest> = HashSet::new();
        loop {
            let blobs = self.inner.db.blobs()?;
            let manifests: u64 = self.inner.db.manifest_metas()?.iter().map(|(_, m)| m.size).sum();
            let others: u64 = blobs.iter().filter(|(x, _)| x != d).map(|(_, m)| m.size).sum();
            let quota_room = cfg.quota.saturating_sub(manifests + others);
            let free = fs_available(root).map_err(StoreError::io("measure free space in", root))?;
            let disk_room = free.saturating_sub(cfg.min_free);
            let disk_need = size.saturating_sub(allocated);
            if quota_room >= size && disk_room >= disk_need {
                return Ok(());
            }
            // Abandoned partials go before complete blobs; within each,
            // the least recently used first.
            let victim = blobs
                .iter()
                .filter(|(x, _)| x != d && !skip.contains(x) && !self.inner.leases.in_use(x))
                .min_by_key(|(x, m)| (m.complete, m.last_access_ms, x.to_string()));
            let Some((victim, meta)) = victim else {
                let (needed, available, limit) = if quota_room < size {
                    (size, quota_room, SpaceLimit::Quota)
                } else {
                    (disk_need, disk_room, SpaceLimit::Disk)
                };
                return Err(StoreError::NoSpace { digest: d.clone(), needed, available, limit });
            };
            match self.evict(victim)? {
                Evicted::Freed(bytes) => {
                    tracing::info!(
                        digest = %victim, bytes, complete = meta.complete, for_blob = %d,
                        "evicted a blob to make room for a download"
                    );
                }
                Evicted::Absent => {}
                Evicted::InUse => {
                    skip.insert(victim.clone());
                }
            }
        }
    }

    /// The OS refused a write of `d` for want of space: the error that
    /// says so, with what the blob still needs against what is free.
    pub(crate) fn no_space(&self, d: &Digest, needed: u64) -> StoreError {
        let free = fs_available(self.inner.paths.root()).unwrap_or(0);
        StoreError::NoSpace {
            digest: d.clone(),
            needed,
            available: free.saturating_sub(self.inner.cfg.min_free),
            limit: SpaceLimit::Disk,
        }
    }

    /// Whether the store can take a new download now: its filesystem has
    /// `min_free` bytes free (counting what evicting idle blobs would
    /// free), a file can be written in its directory, and the metadata
    /// database commits (reopened first if an I/O error had latched it).
    ///
    /// # Errors
    /// [`StoreError::FilesystemFull`] when there is too little space, else
    /// the error the probe met.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let root = self.inner.paths.root();
        let free = fs_available(root).map_err(StoreError::io("measure free space in", root))?;
        if free < self.inner.cfg.min_free {
            let evictable: u64 =
                self.inner.db.blobs()?.iter().filter(|(d, _)| !self.inner.leases.in_use(d)).map(|(_, m)| m.size).sum();
            if free.saturating_add(evictable) < self.inner.cfg.min_free {
                return Err(StoreError::FilesystemFull { available: free, min_free: self.inner.cfg.min_free });
            }
        }
        let probe = root.join(PROBE);
        let written = File::create(&probe).and_then(|mut f| f.write_all(b"1"));
        let _ = fs::remove_file(&probe);
        match written {
            Err(e) if io_no_space(&e) => {
                return Err(StoreError::FilesystemFull { available: free, min_free: self.inner.cfg.min_free });
            }
            Err(e) => return Err(StoreError::io("write a probe file in", root)(e)),
            Ok(()) => {}
        }
        self.inner.db.probe()
    }
}
