//! [`Store::condemn`]: dropping a complete blob whose stored bytes went bad,
//! while readers may still hold it.
//!
//! Removal otherwise waits for readers: `remove_blob` and GC need a removal
//! lease, refused while any reader or writer lives. A damaged copy cannot
//! wait, or every request would meet it again. Condemning takes no lease
//! and takes nothing a reader relies on: readers keep their descriptor and
//! their piece checks, which keep refusing the damaged piece. What goes at
//! once is the name and the records, so `open_blob` answers `None` and
//! `begin_write` starts a fresh copy. That copy is written under the
//! `.partial` name and renamed to the complete name when done, after the
//! condemned file left it, so the two never collide.

use std::fs;
use std::io;
use std::sync::PoisonError;

use crate::checks::FileId;
use crate::error::StoreError;
use crate::reader::BlobReader;
use crate::store::Store;

impl Store {
    /// Drops the complete blob `reader` reads, because a piece of it failed
    /// its check ([`ReadError::Rotten`](crate::ReadError::Rotten)): its file
    /// is unlinked and its blob and piece records are removed, whoever
    /// holds readers of it.
    ///
    /// Returns `true` when this call dropped it, `false` when the store no
    /// longer holds that copy: another reader met the same damage first,
    /// or the blob was fetched again since (a fresh copy is another file,
    /// and is left alone), or it is a download in flight.
    pub fn condemn(&self, reader: &BlobReader) -> Result<bool, StoreError> {
        let d = reader.digest();
        let _one = self.inner.condemning.lock().unwrap_or_else(PoisonError::into_inner);
        match self.inner.db.blob(d)? {
            Some(meta) if meta.complete => {}
            _ => return Ok(false),
        }
        let path = self.inner.paths.complete(d);
        match FileId::of_path(&path) {
            Ok(current) if reader.file_id() != Some(current) => return Ok(false),
            // While the record says complete no writer can start
            // (`begin_write` answers `AlreadyComplete`), so nothing is
            // renamed onto this name between the check and the unlink.
            Ok(_) => match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StoreError::io("delete condemned blob", &path)(e));
                }
                _ => {}
            },
            // The name is gone already (removed by hand): the records point
            // at nothing, so they go too.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("inspect condemned blob", &path)(e)),
        }
        // The name went first: a crash now leaves a record without a file,
        // which the next open drops.
        self.inner.db.remove_blobs(std::slice::from_ref(d))?;
        tracing::warn!(digest = %d, "condemned a damaged stored blob; it is fetched again when next asked for");
        Ok(true)
    }
}
