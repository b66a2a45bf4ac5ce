//! [`StoreError`]: every way a store operation fails. Each message names the
//! path or digest involved and says what to do about it, because these
//! errors end up in daemon logs read by an operator, not by the caller.

use std::io;
use std::path::PathBuf;

use shoal_core::{Digest, PieceIndex};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configuration cannot work (watermarks out of order, zero quota).
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),

    /// The store root cannot be created or written.
    #[error(
        "store directory {root} is not usable ({source}); make sure it is a directory \
         writable by the daemon's user, or point the daemon at another store directory"
    )]
    NotWritable {
        /// The store root.
        root: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },

    /// Another process holds the metadata database lock.
    #[error(
        "metadata database {db} is locked: is another shoal daemon using {root}? \
         stop it, or give this daemon its own store directory"
    )]
    Locked {
        /// The database file.
        db: PathBuf,
        /// The store root.
        root: PathBuf,
    },

    /// A file system operation on a blob file failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done, as a verb phrase ("create partial blob").
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },

    /// A verified piece's record did not commit, so the piece is not held
    /// and is fetched again.
    #[error(
        "could not record piece {index} of blob {digest} in the metadata database ({reason}); \
         the piece is fetched again"
    )]
    PieceRecord {
        /// The blob.
        digest: Digest,
        /// The piece.
        index: PieceIndex,
        /// Why the commit failed.
        reason: String,
        /// Whether it failed for want of space.
        no_space: bool,
    },

    /// The metadata database failed.
    #[error(
        "metadata database {db}: {action} failed: {source}; if the disk is fine and this \
         persists, stop the daemon and delete {db} (cached blobs are then re-fetched)"
    )]
    Db {
        /// The database file.
        db: PathBuf,
        /// What was being done.
        action: &'static str,
        /// What redb said (boxed: redb's error is large and this path is cold).
        #[source]
        source: Box<redb::Error>,
    },

    /// A record in the database cannot be decoded.
    #[error(
        "metadata database {db}: record {key:?} is unreadable ({reason}); stop the daemon \
         and delete {db} to rebuild the cache"
    )]
    CorruptRecord {
        /// The database file.
        db: PathBuf,
        /// The record's key.
        key: String,
        /// Why it does not decode.
        reason: String,
    },

    /// The database was written by an incompatible version of shoal.
    #[error(
        "metadata database {db} has schema version {found} but this daemon uses version \
         {expected}; run a matching daemon, or delete {db} and the blobs directory beside \
         it to start an empty cache"
    )]
    SchemaMismatch {
        /// The database file.
        db: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this code writes.
        expected: u32,
    },

    /// `begin_write` on a blob that is already complete.
    #[error("blob {digest} is already complete; read it with open_blob instead of writing it")]
    AlreadyComplete {
        /// The blob.
        digest: Digest,
    },

    /// `begin_write` while another writer for the digest is alive (or the
    /// blob is being removed).
    #[error(
        "blob {digest} already has a writer in this process (or is being removed); \
         wait for that download to finish instead of starting a second one"
    )]
    WriterBusy {
        /// The blob.
        digest: Digest,
    },

    /// Removal of a blob that has a live reader or writer.
    #[error(
        "blob {digest} is being read or written, so it is not removed; \
         retry after its readers and writer are gone"
    )]
    InUse {
        /// The blob.
        digest: Digest,
    },

    /// A piece index past the blob's last piece.
    #[error("blob {digest} has {count} pieces, so piece {index} does not exist")]
    PieceOutOfRange {
        /// The blob.
        digest: Digest,
        /// The index asked for.
        index: PieceIndex,
        /// How many pieces the blob has.
        count: PieceIndex,
    },

    /// `put_piece` with the wrong number of bytes.
    #[error("piece {index} of blob {digest} is {expected} bytes long, but {got} bytes were given")]
    PieceLength {
        /// The blob.
        digest: Digest,
        /// The piece.
        index: PieceIndex,
        /// Its length per the layout.
        expected: u64,
        /// The length given.
        got: u64,
    },

    /// `write_at` past the end of the blob.
    #[error(
        "write of {len} bytes at offset {offset} runs past the end of blob {digest} \
         ({size} bytes)"
    )]
    OutOfBounds {
        /// The blob.
        digest: Digest,
        /// Where the write started.
        offset: u64,
        /// How many bytes it had.
        len: u64,
        /// The blob size.
        size: u64,
    },

    /// `complete` while pieces are still unrecorded.
    #[error(
        "blob {digest} cannot be completed: {missing} of {total} pieces are not recorded; \
         write and record them first (missing_pieces() lists them)"
    )]
    Incomplete {
        /// The blob.
        digest: Digest,
        /// How many pieces are missing.
        missing: u32,
        /// How many pieces the blob has.
        total: u32,
    },

    /// No room for a blob: the quota, or the free space of the store's
    /// filesystem less `min_free`, cannot hold it even after evicting every
    /// blob not in use. Names no path: clients are shown this message.
    #[error(
        "the piece store of this node has no room for blob {digest}: it needs {needed} more bytes, \
         {available} are available {limit} after evicting everything not in use; free space on \
         the store's disk, or raise the store's quota"
    )]
    NoSpace {
        /// The blob being written.
        digest: Digest,
        /// Bytes the write needs.
        needed: u64,
        /// Bytes that could be had.
        available: u64,
        /// Which limit ran out.
        limit: SpaceLimit,
    },

    /// The store's filesystem has less free space than the store keeps
    /// free: writes fail until space is freed. Names no path.
    #[error(
        "the piece store's filesystem has {available} bytes free, less than the {min_free} it keeps \
         free (store min_free): new downloads fail until space is freed on that disk \
         (or min_free is lowered)"
    )]
    FilesystemFull {
        /// Bytes free for the daemon.
        available: u64,
        /// The configured `min_free`.
        min_free: u64,
    },

    /// `complete` with a digest other than the one being written.
    #[error(
        "the writer for blob {expected} was asked to complete as {got}; pass the digest \
         the bytes were verified against"
    )]
    WrongDigest {
        /// The digest the writer was opened for.
        expected: Digest,
        /// The digest passed to `complete`.
        got: Digest,
    },
}

/// Which limit a [`StoreError::NoSpace`] ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceLimit {
    /// The store's quota.
    Quota,
    /// The free space of the store's filesystem, less `min_free`.
    Disk,
}

impl std::fmt::Display for SpaceLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpaceLimit::Quota => "under the store's quota",
            SpaceLimit::Disk => "on the store's filesystem (keeping its min_free free)",
        })
    }
}

impl StoreError {
    /// Whether the store ran out of room: [`StoreError::NoSpace`],
    /// [`StoreError::FilesystemFull`], or a write the OS refused with
    /// ENOSPC or EDQUOT (in a blob file or the metadata database).
    pub fn is_no_space(&self) -> bool {
        match self {
            StoreError::NoSpace { .. } | StoreError::FilesystemFull { .. } => true,
            StoreError::PieceRecord { no_space, .. } => *no_space,
            StoreError::Io { source, .. } | StoreError::NotWritable { source, .. } => io_no_space(source),
            StoreError::Db { source, .. } => matches!(source.as_ref(), redb::Error::Io(e) if io_no_space(e)),
            _ => false,
        }
    }

    /// An [`StoreError::Io`] builder for `map_err`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { action, path, source }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn io_no_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Why a [`BlobReader::read_at`](crate::BlobReader::read_at) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A piece of a complete blob no longer hashes to the BLAKE3 recorded
    /// when it was stored (or its record or bytes are gone): nothing of
    /// that piece was returned.
    #[error(
        "piece {piece} of stored blob {digest} no longer matches the hash recorded when it was \
         stored, so none of it was returned; drop the copy with Store::condemn and fetch the \
         blob again, and check the node's disk if this repeats"
    )]
    Rotten {
        /// The blob.
        digest: Digest,
        /// The damaged piece.
        piece: PieceIndex,
    },

    /// Reading the blob file failed.
    #[error("cannot read blob {digest}: {source}")]
    Io {
        /// The blob.
        digest: Digest,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

impl ReadError {
    /// The damaged piece, when that is why the read failed.
    pub fn rotten_piece(&self) -> Option<PieceIndex> {
        match self {
            ReadError::Rotten { piece, .. } => Some(*piece),
            ReadError::Io { .. } => None,
        }
    }

    /// The [`ReadError`] inside an [`io::Error`] made from one (callers that
    /// pass reads on with `?` as `io::Error` can still tell rot apart).
    pub fn from_io(e: &io::Error) -> Option<&ReadError> {
        e.get_ref()?.downcast_ref()
    }
}

/// Rot reads as [`io::ErrorKind::InvalidData`]; a failed read keeps the OS's
/// kind. The [`ReadError`] stays inside (see [`ReadError::from_io`]).
impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> io::Error {
        let kind = match &e {
            ReadError::Rotten { .. } => io::ErrorKind::InvalidData,
            ReadError::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, e)
    }
}
