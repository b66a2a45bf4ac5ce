//! Open-time repair: make blob files and blob records agree before anyone
//! reads. Each fix is logged as a warning.
//!
//! - A file whose name is not a digest, or whose digest has no record, is
//!   deleted (an orphan: a crash between file and record, or a stray file).
//! - A record whose file is missing is dropped.
//! - A record and a file in the other state (complete vs `.partial`) mean a
//!   completion was cut short by a crash. The record decides: the file is
//!   renamed to match. That is safe both ways: a complete record is only
//!   written after the file was synced, and a partial resumes with every
//!   piece re-hashed.
//! - A complete file whose length is not the recorded size is dropped with
//!   its record.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;

use shoal_core::Digest;

use crate::db::MetaDb;
use crate::error::StoreError;
use crate::paths::{ALGORITHMS, Paths, parse_blob_file};

/// Which files exist for one digest.
#[derive(Debug, Default, Clone, Copy)]
struct Present {
    complete: bool,
    partial: bool,
}

pub(crate) fn reconcile(paths: &Paths, db: &MetaDb) -> Result<(), StoreError> {
    let files = scan(paths)?;
    let records: HashMap<Digest, _> = db.blobs()?.into_iter().collect();

    for (d, present) in &files {
        if !records.contains_key(d) {
            for (complete, there) in [(true, present.complete), (false, present.partial)] {
                if there {
                    let path = paths.blob(d, complete);
                    tracing::warn!(path = %path.display(), "deleting blob file the metadata database does not know");
                    remove(&path)?;
                }
            }
        }
    }

    let mut dropped = Vec::new();
    for (d, meta) in &records {
        let present = files.get(d).copied().unwrap_or_default();
        let (want, other) =
            if meta.complete { (present.complete, present.partial) } else { (present.partial, present.complete) };
        let want_path = paths.blob(d, meta.complete);
        let other_path = paths.blob(d, !meta.complete);
        match (want, other) {
            (true, true) => {
                tracing::warn!(path = %other_path.display(), "deleting stale duplicate of a blob file");
                remove(&other_path)?;
            }
            (true, false) => {}
            (false, true) => {
                tracing::warn!(
                    from = %other_path.display(), to = %want_path.display(),
                    "finishing an interrupted rename of a blob file"
                );
                fs::rename(&other_path, &want_path).map_err(StoreError::io("rename blob file", &other_path))?;
            }
            (false, false) => {
                tracing::warn!(digest = %d, path = %want_path.display(), "blob file is missing; forgetting the blob");
                dropped.push(d.clone());
                continue;
            }
        }
        if meta.complete && file_len(&want_path)? != meta.size {
            tracing::warn!(digest = %d, path = %want_path.display(), size = meta.size, "complete blob file has the wrong length; deleting it");
            remove(&want_path)?;
            dropped.push(d.clone());
        }
    }
    if !dropped.is_empty() {
        db.remove_blobs(&dropped)?;
    }
    Ok(())
}

/// Lists the blob files under every algorithm directory; deletes files
/// whose names the store never writes.
fn scan(paths: &Paths) -> Result<HashMap<Digest, Present>, StoreError> {
    let mut out: HashMap<Digest, Present> = HashMap::new();
    let mut junk = HashSet::new();
    for algo in ALGORITHMS {
        let dir = paths.algo_dir(algo);
        let entries = fs::read_dir(&dir).map_err(StoreError::io("list blob directory", &dir))?;
        for entry in entries {
            let entry = entry.map_err(StoreError::io("list blob directory", &dir))?;
            let is_file = entry.file_type().map_err(StoreError::io("inspect", entry.path()))?.is_file();
            if !is_file {
                continue;
            }
            let name = entry.file_name();
            match name.to_str().and_then(|n| parse_blob_file(algo, n)) {
                Some(f) => {
                    let p = out.entry(f.digest).or_default();
                    if f.partial {
                        p.partial = true;
                    } else {
                        p.complete = true;
                    }
                }
                None => {
                    junk.insert(entry.path());
                }
            }
        }
    }
    for path in junk {
        tracing::warn!(path = %path.display(), "deleting a file the store did not write");
        remove(&path)?;
    }
    Ok(out)
}

fn file_len(path: &Path) -> Result<u64, StoreError> {
    fs::metadata(path).map(|m| m.len()).map_err(StoreError::io("inspect blob file", path))
}

fn remove(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io("delete blob file", path)(e)),
        _ => Ok(()),
    }
}
