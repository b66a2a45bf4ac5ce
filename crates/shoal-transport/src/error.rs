//! The crate's error types, one per kind of operation: [`CertError`] for
//! issuing certificates, [`IdentityError`] for loading an identity and
//! building TLS configs, [`TransportError`] for endpoints, connections and
//! streams. Each message names the thing that failed and, where there is
//! one, the fix.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Issuing or writing cluster certificates failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or could not sign.
    #[error("could not {what}: {source}")]
    Rcgen {
        /// What was being made, e.g. "sign the node certificate for node-a".
        what: String,
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },

    /// A subject alternative name is neither an IP address nor a valid DNS name.
    #[error("invalid subject alternative name {san:?}: give a DNS name (node-a.example) or an IP address (10.0.0.7)")]
    BadSan {
        /// The name as given.
        san: String,
    },

    /// A node certificate was asked to carry the scheduler role's name.
    #[error(
        "{san:?} marks scheduler certificates and cannot name a node: issue the scheduler's certificate with \
         `shoal certs scheduler`"
    )]
    ReservedSan {
        /// The name as given.
        san: String,
    },

    /// Reading or writing a certificate file failed.
    #[error("could not {what} {path}: {source}")]
    File {
        /// "read" or "write".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Loading an identity (CA, certificate chain, key) or building a TLS
/// config from it failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A PEM file could not be read.
    #[error("could not read the {what} file {path}: {source} (create it with `shoal certs`, or fix the path)")]
    Read {
        /// "CA certificate", "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// PEM text held nothing usable.
    #[error(
        "the {what} ({origin}) {detail}: expected PEM made by `shoal certs` (a Kubernetes TLS Secret's tls.crt, tls.key, ca.crt)"
    )]
    Pem {
        /// "CA certificate", "certificate" or "private key".
        what: &'static str,
        /// The file path, or "inline PEM".
        origin: String,
        /// What was wrong.
        detail: String,
    },

    /// rustls refused the roots, the chain or the key.
    #[error("invalid TLS identity: {what}: {source}")]
    Tls {
        /// Which step failed.
        what: &'static str,
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },

    /// The client-certificate verifier could not be built (e.g. no CA roots).
    #[error("could not build the client certificate verifier from the CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),

    /// quinn refused the rustls config (needs TLS 1.3 and an AEAD suite).
    #[error("TLS config not usable for QUIC: {0}")]
    Quic(String),
}

/// An endpoint, connection or stream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The identity could not be turned into TLS configs.
    #[error(transparent)]
    Identity(#[from] IdentityError),

    /// A socket operation failed.
    #[error("could not {what}: {source}")]
    Io {
        /// What was being done, e.g. "bind UDP 127.0.0.1:7000".
        what: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// A tuning value is out of the range quinn accepts.
    #[error("invalid transport tuning: {0}")]
    Tuning(String),

    /// The dial could not even start (bad server name, endpoint closed).
    #[error("could not connect to {addr}: {source}")]
    Connect {
        /// The peer.
        addr: SocketAddr,
        /// quinn's reason.
        #[source]
        source: quinn::ConnectError,
    },

    /// The QUIC/TLS handshake failed: usually a certificate from another CA,
    /// or no client certificate.
    #[error("handshake with {peer} failed: {detail} (both peers need certificates from the same cluster CA)")]
    Handshake {
        /// The peer.
        peer: SocketAddr,
        /// quinn's or rustls' reason.
        detail: String,
    },

    /// The server dialled as a scheduler holds a certificate without the
    /// scheduler role: a node (or a wrong address) answered.
    #[error(
        "{addr} is not a scheduler: it answered with the certificate of {}, which lacks the scheduler role \
         (DNS name {}), so no request was sent to it; point the daemon's schedulers at a scheduler replica, \
         or issue the scheduler's certificate with `shoal certs scheduler --ca CA_DIR --out DIR`",
        host.as_deref().unwrap_or("a host with no name"),
        crate::certs::SCHEDULER_ROLE_NAME
    )]
    NotScheduler {
        /// The address dialled.
        addr: SocketAddr,
        /// The host its certificate names.
        host: Option<String>,
    },

    /// A wait ran past its deadline.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was awaited, e.g. "handshake with 10.0.0.7:7000".
        what: String,
        /// The deadline.
        after: Duration,
    },

    /// The connection is gone (closed by either side, idle timeout, reset).
    #[error("connection closed: {0}")]
    Closed(#[from] quinn::ConnectionError),

    /// The peer reset the stream or stopped reading it.
    #[error("stream {what} by the peer with code {code}")]
    StreamReset {
        /// "reset" (it stopped sending) or "stopped" (it stopped reading).
        what: &'static str,
        /// The application error code.
        code: u64,
    },

    /// The stream ended before the expected number of bytes.
    #[error("stream ended after {got} of {expected} bytes")]
    ShortRead {
        /// Bytes wanted.
        expected: usize,
        /// Bytes received.
        got: usize,
    },

    /// The stream was already finished or reset locally.
    #[error("stream already closed locally")]
    StreamClosed,
}

impl From<quinn::WriteError> for TransportError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::Stopped(code) => Self::StreamReset { what: "stopped", code: code.into_inner() },
            quinn::WriteError::ConnectionLost(c) => Self::Closed(c),
            quinn::WriteError::ClosedStream => Self::StreamClosed,
            quinn::WriteError::ZeroRttRejected => Self::StreamClosed,
        }
    }
}

impl From<quinn::ReadError> for TransportError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::Reset(code) => Self::StreamReset { what: "reset", code: code.into_inner() },
            quinn::ReadError::ConnectionLost(c) => Self::Closed(c),
            quinn::ReadError::ClosedStream => Self::StreamClosed,
            quinn::ReadError::IllegalOrderedRead => Self::StreamClosed,
            quinn::ReadError::ZeroRttRejected => Self::StreamClosed,
        }
    }
}
