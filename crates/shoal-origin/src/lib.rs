//! shoal-origin: the client of the ORIGIN registry, the one the mirror
//! pulls through when no peer has the content.
//!
//! # Layout
//! - [`config`]: [`RegistryConfig`] and [`UpstreamsConfig`], plain data the
//!   binary loads from TOML.
//! - [`upstreams`]: [`Upstreams`] maps a request's `?ns=` to a cached
//!   [`OriginClient`] (default URLs, credentials per registry).
//! - [`client`]: [`OriginClient`], one per registry: manifests (GET, HEAD),
//!   blob HEAD, blob GET from an offset, small pass-through GETs; its
//!   `exchange` (timeouts, statuses, bounded reads) and `auth_flow`
//!   (forward the client's `Authorization`, or answer challenges as the
//!   daemon) submodules.
//!   A file client (`client::file`) fetches one plain URL in their place.
//! - [`blob`]: [`BlobStream`], a blob body checked as it streams (offset,
//!   length, stalls).
//! - [`caller`]: [`Caller`], on whose behalf (and with which credentials)
//!   a request goes out.
//! - [`manifest`]: response types and pure header handling (`Accept`,
//!   media types, `Docker-Content-Digest`).
//! - [`auth`]: `WWW-Authenticate` parsing, docker `config.json`
//!   credentials, the token request/response maths and the token cache.
//! - [`retry`]: [`RetryPolicy`], exponential backoff with jitter and
//!   `Retry-After`.
//! - [`error`]: the [`OriginError`] type.
//!
//! Parsing (challenges, docker config, token answers, `Content-Range`) and
//! maths (expiry, backoff) are pure and unit-tested; the HTTP flows are
//! tested against in-process servers in `tests/`.
#![warn(missing_docs)]

pub mod auth;
pub mod blob;
pub mod caller;
pub mod client;
pub mod config;
pub mod error;
pub mod manifest;
pub mod retry;
pub mod upstreams;

pub use auth::Credentials;
pub use auth::docker_config::DockerConfig;
pub use blob::BlobStream;
pub use caller::Caller;
pub use client::OriginClient;
pub use client::file::Validators;
pub use config::{RegistryConfig, UpstreamsConfig};
pub use error::OriginError;
pub use manifest::{DEFAULT_MANIFEST_ACCEPT, MAX_MANIFEST_SIZE, ManifestHead, ManifestResponse, RawResponse};
pub use retry::RetryPolicy;
pub use upstreams::Upstreams;
