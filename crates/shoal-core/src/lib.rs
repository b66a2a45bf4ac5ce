//! Shared vocabulary of shoal: the types every other crate speaks.
//!
//! # Layout
//! - [`digest`]: OCI content digests (`sha256:…`, `sha512:…`) and the
//!   streaming hasher that checks bytes against one.
//! - [`host`]: [`HostId`], a node's name in the swarm (its certificate CN).
//! - [`reference`]: repository names and references (tag or digest) as the
//!   OCI distribution spec defines them.
//! - [`route`]: the registry API paths (`/v2/<name>/blobs/<digest>` …) a
//!   mirror answers, parsed into a [`route::Route`].
//! - [`range`]: HTTP `Range: bytes=` requests resolved against a blob size.
//! - [`piece`]: how a blob is cut into pieces (size choice, index maths).
//! - [`task`]: [`TaskId`], one blob as fetched from one registry: the
//!   unit the swarm trades.
//! - [`units`]: human byte sizes (`20GiB`) and durations (`7d`) for config.
//!
//! Nothing here does I/O; everything is plain data with exhaustive tests.
#![warn(missing_docs)]

pub mod digest;
pub mod host;
pub mod piece;
pub mod range;
pub mod reference;
pub mod route;
pub mod task;
pub mod units;

pub use digest::{Algorithm, Digest, DigestError, DigestHasher};
pub use host::{HostId, HostIdError};
pub use piece::{PieceIndex, PieceLayout};
pub use range::{ByteRange, RangeError, content_range};
pub use reference::{Reference, ReferenceError, RepoName};
pub use route::{Route, RouteError};
pub use task::{TaskId, TaskIdError};
pub use units::{ByteSize, HumanDuration, UnitError};
