//! shoal-transport: how peers reach each other. QUIC endpoints (quinn)
//! under mutual TLS from a cluster CA, connection reuse, piece-body streams,
//! and the limits a node puts on its peers. What travels on the streams
//! (requests, piece headers, framing) belongs to `shoal-proto`.
//!
//! # Layout
//! - [`certs`]: the cluster PKI: [`new_ca`], [`issue`] node and
//!   [`issue_scheduler`] scheduler certificates ([`Role`]), write them as
//!   files (a Kubernetes TLS Secret's layout or per host).
//! - [`identity`]: [`Identity`] (CA roots, our chain and key) loaded from
//!   PEM, the mutual-TLS rustls configs, and what a peer's certificate says
//!   ([`peer_host`], [`peer_certificate`]).
//! - [`tuning`]: [`TransportTuning`], windows, datagram sizes, socket
//!   buffers and deadlines.
//! - [`endpoint`]: [`Endpoint`], one socket that serves and dials;
//!   [`Incoming`] handshakes into a [`PeerConnection`].
//! - `pool`: one cached live connection per peer.
//! - [`stream`]: [`send_bytes`], [`recv_exact`] and [`recv_chunks`],
//!   piece bodies with few copies, a rate limit and a deadline.
//! - [`limits`]: [`TokenBucket`] (pure), [`RateLimiter`], [`UploadSlots`].
//! - [`error`]: [`CertError`], [`IdentityError`], [`TransportError`].
//!
//! Crypto is rustls with ring throughout (never aws-lc-rs).
#![warn(missing_docs)]

pub mod certs;
pub mod endpoint;
pub mod error;
pub mod identity;
pub mod limits;
mod pool;
pub mod stream;
pub mod tuning;

pub use certs::{
    CLUSTER_SERVER_NAME, CaBundle, NodeCert, NodeLayout, Role, SCHEDULER_ROLE_NAME, issue, issue_role, issue_scheduler,
    new_ca, write_ca, write_node,
};
pub use endpoint::{Endpoint, Incoming, PeerConnection};
pub use error::{CertError, IdentityError, TransportError};
pub use identity::{ALPN, Identity, IdentityFiles, PeerCertificate, peer_certificate, peer_host};
pub use limits::{RateLimiter, TokenBucket, UploadPermit, UploadSlots};
pub use stream::{recv_chunks, recv_exact, send_bytes};
pub use tuning::{CongestionControl, GSO_MAX_MTU, MAX_MIN_MTU, MAX_UDP_PAYLOAD, TransportTuning};

/// quinn, re-exported so users name the same version's types
/// (`Connection`, `SendStream`, `RecvStream`, `VarInt`).
pub use quinn;
