//! The node's piece store: blob files on disk plus a redb metadata database
//! recording which pieces of each blob are verified, which blobs are
//! complete, manifests, and the last digest seen per tag.
//!
//! # Layout
//! - [`config`]: [`StoreConfig`], the store's own settings.
//! - `store`: [`Store`]: open, blob queries, removal, usage.
//! - `begin`: starting or resuming a write; re-hashes recorded pieces.
//! - `writer`: [`BlobWriter`]: positional writes, complete/discard;
//!   `record`: its piece records, blocking or queued.
//! - `piece_log`: group commit of piece records, one transaction per
//!   batch.
//! - `reader`: [`BlobReader`]: positional reads under a lease.
//! - `checks`: the per-piece verdicts behind a complete blob's reads.
//! - `condemn`: [`Store::condemn`], dropping a damaged blob under readers.
//! - `catalog`: manifests and tags.
//! - `provenance`: which registries a blob's bytes are known to come from.
//! - `access`: content the origin last confirmed readable anonymously
//!   (public), kept so it stays pullable while the origin is down.
//! - [`gc`]: the pure eviction decision; `sweep` applies it
//!   ([`Store::gc`]).
//! - `space`: keeping the quota and the filesystem's free space before a
//!   write (evicting what is not in use), preallocation, the write probe.
//! - `recover`: open-time repair of files against records.
//! - `lease`: in-process read/write/remove leases that keep GC away from
//!   live handles.
//! - `db`: the redb tables and transactions; `records`: their encodings.
//! - `paths`: the on-disk layout, `root/blobs/<algo>/<hex>[.partial]`.
//! - `info`: the plain values handed out ([`BlobInfo`], [`TagRecord`],
//!   [`StoreUsage`], [`GcReport`]).
//! - `error`: [`StoreError`], and [`ReadError`] for reads.
//!
//! # Guarantees
//! - A piece counts only once its BLAKE3 hash is recorded (its record's
//!   commit returned: a queued record is not a held piece), and on resume
//!   every recorded piece is re-hashed: a torn or altered piece is never
//!   trusted.
//! - A blob is complete only after the caller verified its digest and its
//!   bytes were synced; complete blobs live under their final name.
//! - No byte of a complete blob opened with [`Store::open_blob`] is
//!   returned unless the whole piece holding it hashed to the BLAKE3
//!   recorded when it was stored, checked once per piece while any reader
//!   of that file lives; a piece that does not match fails every read of
//!   it with [`ReadError::Rotten`], naming the blob and the piece.
//! - [`Store::condemn`] drops such a blob at once, even while readers hold
//!   it: `open_blob` then answers `None` and a fresh `begin_write` starts,
//!   while the old readers keep their file and keep refusing the bad piece.
//! - A blob with a live [`BlobReader`] or [`BlobWriter`] is never evicted
//!   or removed by GC or [`Store::remove_blob`]; only a condemnation takes
//!   it from under them.
#![warn(missing_docs)]

mod access;
mod begin;
mod catalog;
mod checks;
mod condemn;
pub mod config;
mod db;
mod error;
pub mod gc;
mod info;
mod lease;
mod paths;
mod piece_log;
mod provenance;
mod reader;
mod record;
mod records;
mod recover;
mod space;
mod store;
mod sweep;
mod writer;

pub use config::StoreConfig;
pub use error::{ReadError, SpaceLimit, StoreError};
pub use gc::{GcCandidate, GcPolicy};
pub use info::{BlobInfo, GcReport, StoreUsage, StoredManifest, TagRecord};
pub use reader::BlobReader;
pub use store::Store;
pub use writer::BlobWriter;
