//! The metadata database: a redb file holding blob records, piece hashes,
//! manifests and tags. This module owns opening it (lock, schema version,
//! table creation) and the transaction helpers; the typed operations live in
//! [`blobs`] and [`catalog`].
//!
//! Tables (keys are digest strings such as `sha256:…`):
//! - `blobs`: digest -> [`BlobMeta`](crate::records::BlobMeta) as JSON
//! - `pieces`: (digest, piece index) -> BLAKE3 hash of the piece
//! - `manifests`: digest -> manifest bytes
//! - `manifest_meta`: digest -> [`ManifestMeta`](crate::records::ManifestMeta) as JSON
//! - `tags`: (registry, repo, tag) -> [`TagMeta`](crate::records::TagMeta) as JSON
//! - `public`: (registry, repo, digest) -> when the origin last confirmed
//!   that anonymous clients may read that digest in that repository
//! - `schema`: `"version"` -> layout version of this file

mod access;
mod blobs;
mod catalog;
#[cfg(test)]
mod faulty;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use redb::{Database, DatabaseError, Durability, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StoreError;

/// Bumped whenever a table's key or value encoding changes incompatibly.
const SCHEMA_VERSION: u32 = 1;
/// redb's page cache; metadata is small, so a modest cache holds all of it.
const CACHE_BYTES: usize = 32 << 20;

const SCHEMA: TableDefinition<&str, u32> = TableDefinition::new("schema");
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
const PIECES: TableDefinition<(&str, u32), [u8; 32]> = TableDefinition::new("pieces");
const MANIFESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifests");
const MANIFEST_META: TableDefinition<&str, &[u8]> = TableDefinition::new("manifest_meta");
const TAGS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("tags");
const PUBLIC: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("public");

/// The open metadata database. Every method is one transaction.
///
/// After an I/O error (a full disk) redb refuses every later transaction
/// until the database is closed and opened again. So the handle sits
/// behind a lock: the transaction that meets an I/O error marks it broken,
/// and the next one waits for the transactions in flight, closes it and
/// opens it again (redb repairs the file as it opens), instead of the
/// daemon failing every request until a restart.
pub(crate) struct MetaDb {
    db: RwLock<Option<Database>>,
    broken: AtomicBool,
    path: PathBuf,
    root: PathBuf,
    /// Test hook: while set, every write of the database file fails with
    /// ENOSPC (unit tests open every database through `faulty`).
    #[cfg(test)]
    pub(crate) fail_writes: std::sync::Arc<AtomicBool>,
}

/// An error inside a transaction, before it is given the database path and
/// the action that failed.
pub(crate) enum TxError {
    Redb(Box<redb::Error>),
    Corrupt { key: String, reason: String },
}

macro_rules! tx_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for TxError {
            fn from(e: $t) -> Self {
                TxError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
tx_error_from!(redb::Error, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

fn open_error(e: DatabaseError, path: &Path, root: &Path) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { db: path.to_owned(), root: root.to_owned() },
        DatabaseError::Storage(redb::StorageError::Io(source)) => {
            StoreError::NotWritable { root: root.to_owned(), source }
        }
        e => StoreError::Db { db: path.to_owned(), action: "open", source: Box::new(e.into()) },
    }
}

impl MetaDb {
    /// Opens (creating if needed) the database at `path`, creating every
    /// table and checking the schema version so later read transactions
    /// never meet a missing table.
    pub(crate) fn open(path: PathBuf, root: &Path) -> Result<MetaDb, StoreError> {
        let meta = MetaDb {
            db: RwLock::new(None),
            broken: AtomicBool::new(true),
            path,
            root: root.to_owned(),
            #[cfg(test)]
            fail_writes: std::sync::Arc::default(),
        };
        meta.reopen()?;
        meta.init()?;
        Ok(meta)
    }

    fn init(&self) -> Result<(), StoreError> {
        let found = self.write("create tables", Durability::Immediate, |txn| {
            let mut schema = txn.open_table(SCHEMA)?;
            let found = schema.get("version")?.map(|v| v.value());
            if found.is_none() {
                schema.insert("version", SCHEMA_VERSION)?;
            }
            txn.open_table(BLOBS)?;
            txn.open_table(PIECES)?;
            txn.open_table(MANIFESTS)?;
            txn.open_table(MANIFEST_META)?;
            txn.open_table(TAGS)?;
            txn.open_table(PUBLIC)?;
            Ok(found)
        })?;
        match found {
            Some(found) if found != SCHEMA_VERSION => {
                Err(StoreError::SchemaMismatch { db: self.path.clone(), found, expected: SCHEMA_VERSION })
            }
            _ => Ok(()),
        }
    }

    /// A commit that writes nothing of value, to learn whether the
    /// database can commit at all (readiness). No sync: it proves the
    /// write path, not durability.
    pub(crate) fn probe(&self) -> Result<(), StoreError> {
        self.write("probe", Durability::None, |txn| {
            txn.open_table(SCHEMA)?.insert("version", SCHEMA_VERSION)?;
            Ok(())
        })
    }

    /// Runs `f` against the open database, first reopening it if an I/O
    /// error broke it. An I/O error from `f` marks it broken.
    fn with_db<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&Database) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        if self.broken.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        let Some(db) = guard.as_ref() else {
            drop(guard);
            self.broken.store(true, Ordering::Release);
            return Err(StoreError::Db { db: self.path.clone(), action, source: Box::new(redb::Error::PreviousIo) });
        };
        let out = f(db);
        drop(guard);
        out.map_err(|e| {
            if let TxError::Redb(r) = &e
                && matches!(r.as_ref(), redb::Error::Io(_) | redb::Error::PreviousIo)
            {
                tracing::warn!(error = %r, action, "metadata database I/O error; it is reopened before its next use");
                self.broken.store(true, Ordering::Release);
            }
            self.wrap(action, e)
        })
    }

    /// Closes the broken database (once the transactions in flight are
    /// done) and opens it again.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if !self.broken.load(Ordering::Acquire) {
            return Ok(()); // another caller reopened it meanwhile
        }
        // The old handle holds the file lock: it goes before the new open.
        let first = slot.take().is_none();
        let db = self.open_handle()?;
        *slot = Some(db);
        self.broken.store(false, Ordering::Release);
        if !first {
            tracing::warn!("reopened the metadata database after an I/O error");
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn open_handle(&self) -> Result<Database, StoreError> {
        let opened = Database::builder().set_cache_size(CACHE_BYTES).create(&self.path);
        opened.map_err(|e| open_error(e, &self.path, &self.root))
    }

    #[cfg(test)]
    fn open_handle(&self) -> Result<Database, StoreError> {
        faulty::open(&self.path, CACHE_BYTES, self.fail_writes.clone())
            .map_err(|e| open_error(e, &self.path, &self.root))
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    fn read<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&ReadTransaction) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        self.with_db(action, |db| f(&db.begin_read()?))
    }

    /// Runs `f` in a write transaction committed with `durability`; an error
    /// from `f` aborts it, so each call is all-or-nothing.
    fn write<T>(
        &self,
        action: &'static str,
        durability: Durability,
        f: impl FnOnce(&WriteTransaction) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        self.with_db(action, |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability);
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        })
    }

    /// Changes the record at `d` in `table` with `change`, if it still
    /// exists (committed with eventual durability: access times and the
    /// like, which a crash may lose).
    fn update<M: Serialize + DeserializeOwned>(
        &self,
        action: &'static str,
        table: TableDefinition<&str, &[u8]>,
        d: &shoal_core::Digest,
        change: impl FnOnce(&mut M),
    ) -> Result<(), StoreError> {
        let key = d.to_string();
        self.write(action, Durability::Eventual, |txn| {
            let mut t = txn.open_table(table)?;
            let meta = t.get(key.as_str())?.map(|v| decode::<M>(&key, v.value()));
            if let Some(mut meta) = meta.transpose()? {
                change(&mut meta);
                t.insert(key.as_str(), encode(&meta).as_slice())?;
            }
            Ok(())
        })
    }

    fn wrap(&self, action: &'static str, e: TxError) -> StoreError {
        match e {
            TxError::Redb(source) => StoreError::Db { db: self.path.clone(), action, source },
            TxError::Corrupt { key, reason } => StoreError::CorruptRecord { db: self.path.clone(), key, reason },
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records are plain structs and always serialize")
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, TxError> {
    serde_json::from_slice(bytes).map_err(|e| TxError::Corrupt { key: key.to_owned(), reason: e.to_string() })
}

fn parse_digest(key: &str) -> Result<shoal_core::Digest, TxError> {
    key.parse().map_err(|e: shoal_core::DigestError| TxError::Corrupt { key: key.to_owned(), reason: e.to_string() })
}
