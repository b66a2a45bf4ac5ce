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

use std::path::{Path, PathBuf};

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
pub(crate) struct MetaDb {
    db: Database,
    path: PathBuf,
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

impl MetaDb {
    /// Opens (creating if needed) the database at `path`, creating every
    /// table and checking the schema version so later read transactions
    /// never meet a missing table.
    pub(crate) fn open(path: PathBuf, root: &Path) -> Result<MetaDb, StoreError> {
        let db = match Database::builder().set_cache_size(CACHE_BYTES).create(&path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked { db: path, root: root.to_owned() });
            }
            Err(DatabaseError::Storage(redb::StorageError::Io(source))) => {
                return Err(StoreError::NotWritable { root: root.to_owned(), source });
            }
            Err(e) => {
                return Err(StoreError::Db { db: path, action: "open", source: Box::new(e.into()) });
            }
        };
        let meta = MetaDb { db, path };
        let found = meta.write("create tables", Durability::Immediate, |txn| {
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
                Err(StoreError::SchemaMismatch { db: meta.path, found, expected: SCHEMA_VERSION })
            }
            _ => Ok(meta),
        }
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    fn read<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&ReadTransaction) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let run = || f(&self.db.begin_read()?);
        run().map_err(|e| self.wrap(action, e))
    }

    /// Runs `f` in a write transaction committed with `durability`; an error
    /// from `f` aborts it, so each call is all-or-nothing.
    fn write<T>(
        &self,
        action: &'static str,
        durability: Durability,
        f: impl FnOnce(&WriteTransaction) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        let run = || {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(durability);
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        };
        run().map_err(|e| self.wrap(action, e))
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
