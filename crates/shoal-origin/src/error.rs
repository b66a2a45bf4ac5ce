//! [`OriginError`]: every way a conversation with an origin registry can
//! fail, with messages that name the registry or URL and say what to do.
//!
//! URLs inside errors have their query string removed: blob redirects point
//! at pre-signed object-storage URLs whose query is a credential.

use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use shoal_core::Digest;

/// An error talking to an origin registry (or its token server).
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// The origin answered 401 or 403. With a client `Authorization` header
    /// (or a challenge the daemon could not satisfy) this is passed back to
    /// the mirror's client verbatim, challenge included.
    #[error(
        "registry {registry} answered {status} (unauthorized{}): the client must authenticate, or give shoal credentials for {registry} (registries.\"{registry}\".username/password or docker_config)",
        www_authenticate.as_deref().map(|c| format!(", challenge {c}")).unwrap_or_default()
    )]
    Unauthorized {
        /// Registry name (as in `?ns=`).
        registry: String,
        /// 401 or 403.
        status: u16,
        /// The `WWW-Authenticate` header, to pass back unchanged.
        www_authenticate: Option<String>,
        /// The error body, to pass back unchanged.
        body: Bytes,
    },
    /// The origin answered 404.
    #[error("{url} not found at registry {registry} (404): check the repository name, tag or digest")]
    NotFound {
        /// Registry name.
        registry: String,
        /// The URL asked for (query removed).
        url: String,
        /// The error body (OCI error JSON), to pass back unchanged.
        body: Bytes,
    },
    /// Any other non-success status.
    #[error(
        "registry {registry} answered {status} for {url}{}",
        if is_retryable_status(*status) { " (temporary; retried with backoff)" } else { "" }
    )]
    Status {
        /// Registry name.
        registry: String,
        /// The URL asked for (query removed).
        url: String,
        /// The HTTP status.
        status: u16,
        /// A `Retry-After` delay the origin asked for, if any.
        retry_after: Option<Duration>,
        /// The error body.
        body: Bytes,
    },
    /// No connection could be made (DNS, refused, TLS handshake).
    #[error(
        "cannot connect to registry {registry} at {url}: {}; check the registry URL, DNS, firewall and TLS settings (ca_bundle, insecure_skip_verify)",
        chain(source)
    )]
    Connect {
        /// Registry name.
        registry: String,
        /// The URL asked for (query removed).
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The connection or the response headers took longer than `timeout`.
    #[error(
        "registry {registry} did not answer {url} within {}; raise registries.\"{registry}\".timeout if the origin is slow",
        humantime::format_duration(*after)
    )]
    Timeout {
        /// Registry name.
        registry: String,
        /// The URL asked for (query removed).
        url: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// A body read was silent for `read_timeout`.
    #[error(
        "registry {registry} stopped sending {url} for {}; the connection looks stalled (retry, or raise read_timeout)",
        humantime::format_duration(*after)
    )]
    Stalled {
        /// Registry name.
        registry: String,
        /// The URL being read (query removed).
        url: String,
        /// The silence that was tolerated.
        after: Duration,
    },
    /// The connection broke mid-exchange, or redirects looped.
    #[error("talking to registry {registry} at {url} failed: {}", chain(source))]
    Transport {
        /// Registry name.
        registry: String,
        /// The URL asked for (query removed).
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// The body ended before the announced end offset.
    #[error("body of {url} ended at byte {got} of {expected}; retry from byte {got}")]
    BodyTooShort {
        /// The URL read (query removed).
        url: String,
        /// The offset the body should have reached (the blob size).
        expected: u64,
        /// The offset it reached.
        got: u64,
    },
    /// More bytes arrived than the headers announced; nothing past the end
    /// was handed out.
    #[error("body of {url} runs past its announced end of {expected} bytes; the origin is misbehaving")]
    BodyTooLong {
        /// The URL read (query removed).
        url: String,
        /// The announced end offset (the blob size).
        expected: u64,
    },
    /// A buffered body (manifest, token, small pass-through) is too big.
    #[error("body of {url} exceeds the {limit}-byte limit for buffered responses")]
    TooLarge {
        /// The URL read (query removed).
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A response header is missing or malformed.
    #[error("{url} answered with a missing or invalid {header} header ({value:?})")]
    BadHeader {
        /// The URL read (query removed).
        url: String,
        /// The header name.
        header: String,
        /// Its value (empty when missing).
        value: String,
    },
    /// Content does not match the digest it was asked for or announced with.
    #[error("content of {url} has digest {actual}, expected {expected}; the origin served wrong bytes")]
    DigestMismatch {
        /// The URL read (query removed).
        url: String,
        /// The digest asked for or announced.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// `?ns=` names a registry that is not configured while
    /// `allow_unlisted` is false.
    #[error("registry {0:?} is not configured: add [registries.\"{0}\"] or set allow_unlisted = true")]
    UnknownRegistry(String),
    /// `?ns=` is not a `host[:port]`.
    #[error("registry name {0:?} is not a host[:port]")]
    BadRegistryName(String),
    /// A path handed to [`crate::OriginClient::get_raw`] is not a `/v2/` path.
    #[error("path {0:?} is not a registry API path under /v2/ (and must not contain `..`)")]
    BadPath(String),
    /// A file changed at the origin while it was being downloaded (its
    /// ETag, Last-Modified date or size is no longer what the download
    /// started with); the bytes of two versions are never mixed.
    #[error("{url} changed at the origin during the download ({detail}); start the download again")]
    Changed {
        /// The URL read (query removed).
        url: String,
        /// Which validator changed, and how.
        detail: String,
    },
    /// Configuration that cannot be used (unreadable CA bundle, bad docker
    /// config, …).
    #[error("{what}: {detail}")]
    Config {
        /// What was being loaded, naming the file or setting.
        what: String,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// The token server refused or answered nonsense.
    #[error(
        "token server {realm} {}: {detail}",
        status.map(|s| format!("answered {s}")).unwrap_or_else(|| "gave an unusable answer".into())
    )]
    Token {
        /// The realm URL (query removed).
        realm: String,
        /// The HTTP status, when the failure was one.
        status: Option<u16>,
        /// What was wrong.
        detail: String,
    },
}

/// 408, 429 and 5xx are worth another try.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..600).contains(&status)
}

impl OriginError {
    /// Whether trying again (after a backoff) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            OriginError::Status { status, .. } => is_retryable_status(*status),
            OriginError::Token { status: Some(status), .. } => is_retryable_status(*status),
            OriginError::Connect { .. }
            | OriginError::Timeout { .. }
            | OriginError::Stalled { .. }
            | OriginError::BodyTooShort { .. } => true,
            OriginError::Transport { source, .. } => !source.is_redirect() && !source.is_builder(),
            _ => false,
        }
    }

    /// The HTTP status the origin answered with, when the error is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            OriginError::Unauthorized { status, .. } | OriginError::Status { status, .. } => Some(*status),
            OriginError::NotFound { .. } => Some(404),
            OriginError::Token { status, .. } => *status,
            _ => None,
        }
    }

    /// The delay the origin asked for with `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            OriginError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An error and its causes, joined with `: ` (reqwest's own message alone
/// says little more than "error sending request").
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

/// A URL as it may appear in logs and errors: no query, no credentials.
pub(crate) fn redact(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_query_and_userinfo() {
        let u: url::Url = "https://u:p@s3.example/b/sha?X-Amz-Signature=secret#f".parse().unwrap();
        assert_eq!(redact(&u), "https://s3.example/b/sha");
    }

    #[test]
    fn retryable_classes() {
        let status = |s| OriginError::Status {
            registry: "r".into(),
            url: "u".into(),
            status: s,
            retry_after: None,
            body: Bytes::new(),
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!OriginError::UnknownRegistry("x".into()).is_retryable());
        let short = OriginError::BodyTooShort { url: "u".into(), expected: 10, got: 3 };
        assert!(short.is_retryable());
        assert_eq!(short.to_string(), "body of u ended at byte 3 of 10; retry from byte 3");
    }
}
