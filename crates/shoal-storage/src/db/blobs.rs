//! Blob records and piece hashes in the metadata database. A blob's record
//! and its pieces are removed together, in one transaction.

use redb::{Durability, ReadableTable, WriteTransaction};
use shoal_core::{Digest, PieceIndex};

use super::{BLOBS, MetaDb, PIECES, TxError, decode, encode, parse_digest};
use crate::error::StoreError;
use crate::records::BlobMeta;

impl MetaDb {
    pub(crate) fn blob(&self, d: &Digest) -> Result<Option<BlobMeta>, StoreError> {
        let key = d.to_string();
        self.read("read blob record", |txn| {
            let t = txn.open_table(BLOBS)?;
            let v = t.get(key.as_str())?;
            v.map(|v| decode(&key, v.value())).transpose()
        })
    }

    /// Every blob record, in digest-string order.
    pub(crate) fn blobs(&self) -> Result<Vec<(Digest, BlobMeta)>, StoreError> {
        self.read("list blob records", |txn| {
            let t = txn.open_table(BLOBS)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                let key = k.value();
                out.push((parse_digest(key)?, decode(key, v.value())?));
            }
            Ok(out)
        })
    }

    /// Recorded pieces of one blob, in index order.
    pub(crate) fn pieces(&self, d: &Digest) -> Result<Vec<(PieceIndex, [u8; 32])>, StoreError> {
        let key = d.to_string();
        self.read("read piece hashes", |txn| {
            let t = txn.open_table(PIECES)?;
            let mut out = Vec::new();
            for item in t.range((key.as_str(), 0)..=(key.as_str(), PieceIndex::MAX))? {
                let (k, v) = item?;
                out.push((k.value().1, v.value()));
            }
            Ok(out)
        })
    }

    /// Writes a blob's record, leaving its pieces alone.
    pub(crate) fn put_blob(&self, d: &Digest, meta: &BlobMeta, durability: Durability) -> Result<(), StoreError> {
        let key = d.to_string();
        self.write("write blob record", durability, |txn| {
            txn.open_table(BLOBS)?.insert(key.as_str(), encode(meta).as_slice())?;
            Ok(())
        })
    }

    /// Replaces a blob's record and forgets all its pieces: a fresh start.
    pub(crate) fn start_blob(&self, d: &Digest, meta: &BlobMeta) -> Result<(), StoreError> {
        let key = d.to_string();
        self.write("start blob record", Durability::Eventual, |txn| {
            drop_pieces(txn, &key, |_| true)?;
            txn.open_table(BLOBS)?.insert(key.as_str(), encode(meta).as_slice())?;
            Ok(())
        })
    }

    /// Records one verified piece (see [`MetaDb::record_pieces`]).
    #[cfg(test)]
    pub(crate) fn record_piece(&self, d: &Digest, index: PieceIndex, hash: [u8; 32]) -> Result<(), StoreError> {
        self.record_pieces(&[(d, index, hash)])
    }

    /// Records verified pieces, of any blobs, in one transaction. Eventual
    /// durability (on Linux an fdatasync, without redb's two-phase commit):
    /// atomic and kept across a process kill; should a power loss drop it,
    /// that costs a re-fetch, because pieces are re-hashed on resume anyway.
    pub(crate) fn record_pieces(&self, rows: &[(&Digest, PieceIndex, [u8; 32])]) -> Result<(), StoreError> {
        let keys: Vec<String> = rows.iter().map(|(d, _, _)| d.to_string()).collect();
        self.write("record pieces", Durability::Eventual, |txn| {
            let mut t = txn.open_table(PIECES)?;
            for (key, (_, index, hash)) in keys.iter().zip(rows) {
                t.insert((key.as_str(), *index), *hash)?;
            }
            Ok(())
        })
    }

    /// Forgets the given pieces and rewrites the blob record, in one
    /// transaction (used when resuming finds pieces whose bytes changed).
    pub(crate) fn resume_blob(&self, d: &Digest, forget: &[PieceIndex], meta: &BlobMeta) -> Result<(), StoreError> {
        let key = d.to_string();
        self.write("resume blob record", Durability::Eventual, |txn| {
            if !forget.is_empty() {
                drop_pieces(txn, &key, |i| forget.contains(&i))?;
            }
            txn.open_table(BLOBS)?.insert(key.as_str(), encode(meta).as_slice())?;
            Ok(())
        })
    }

    /// Changes a blob's record with `change`, if the blob still exists.
    pub(crate) fn update_blob(&self, d: &Digest, change: impl FnOnce(&mut BlobMeta)) -> Result<(), StoreError> {
        self.update::<BlobMeta>("update blob record", BLOBS, d, change)
    }

    /// Sets a blob's last access time, if the blob still exists.
    pub(crate) fn touch_blob(&self, d: &Digest, now_ms: u64) -> Result<(), StoreError> {
        self.update::<BlobMeta>("update blob access time", BLOBS, d, |m| m.last_access_ms = now_ms)
    }

    /// Removes the records and piece hashes of every digest given.
    pub(crate) fn remove_blobs(&self, digests: &[Digest]) -> Result<(), StoreError> {
        self.write("remove blob records", Durability::Eventual, |txn| {
            let mut t = txn.open_table(BLOBS)?;
            for d in digests {
                let key = d.to_string();
                t.remove(key.as_str())?;
                drop_pieces(txn, &key, |_| true)?;
            }
            Ok(())
        })
    }
}

/// Removes the pieces of blob `key` whose index `forget` selects.
fn drop_pieces(txn: &WriteTransaction, key: &str, forget: impl Fn(PieceIndex) -> bool) -> Result<(), TxError> {
    let mut t = txn.open_table(PIECES)?;
    t.retain_in((key, 0)..=(key, PieceIndex::MAX), |(_, i), _| !forget(i))?;
    Ok(())
}
