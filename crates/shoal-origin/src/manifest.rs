//! What manifest and pass-through requests return
//! ([`ManifestResponse`], [`ManifestHead`], [`RawResponse`]) and the pure
//! header handling behind them: the default `Accept` list, media types,
//! `Docker-Content-Digest`, and checking a body against a digest.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use shoal_core::Digest;

use crate::error::OriginError;

/// The largest manifest (or other buffered body) accepted: 4 MiB, the
/// limit Docker Distribution and containerd use for manifests.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// The `Accept` list sent when the client gave none: every manifest and
/// index type a pull may meet.
pub const DEFAULT_MANIFEST_ACCEPT: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The `Docker-Content-Digest` header.
pub const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A manifest fetched with GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestResponse {
    /// The media type (the `Content-Type` without parameters, else the
    /// body's `mediaType`).
    pub media_type: String,
    /// `Docker-Content-Digest`, already checked against the body.
    pub digest: Option<Digest>,
    /// The manifest bytes, exactly as served.
    pub body: Bytes,
}

/// What a HEAD of a manifest tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// The media type (`Content-Type` without parameters).
    pub media_type: String,
    /// `Docker-Content-Digest`, if sent.
    pub digest: Option<Digest>,
    /// `Content-Length`, if sent.
    pub size: Option<u64>,
}

/// A small pass-through response (`/v2/<name>/tags/list` …).
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The (successful) status.
    pub status: StatusCode,
    /// The headers worth passing on: `content-type`, `link`,
    /// `docker-content-digest`.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// The `Accept` value to send: the client's values joined, or the default
/// list.
pub(crate) fn accept_header(accept: &[String], url: &str) -> Result<HeaderValue, OriginError> {
    let joined = if accept.iter().all(|a| a.trim().is_empty()) {
        DEFAULT_MANIFEST_ACCEPT.join(", ")
    } else {
        let parts: Vec<&str> = accept.iter().map(|a| a.trim()).filter(|a| !a.is_empty()).collect();
        parts.join(", ")
    };
    HeaderValue::from_str(&joined).map_err(|_| OriginError::BadHeader {
        url: url.to_owned(),
        header: "accept (from the client)".into(),
        value: joined.clone(),
    })
}

/// A media type from a `Content-Type` value: parameters dropped, trimmed;
/// `None` if empty.
pub(crate) fn media_type(content_type: Option<&HeaderValue>) -> Option<String> {
    let v = content_type?.to_str().ok()?;
    let mt = v.split(';').next().unwrap_or_default().trim();
    (!mt.is_empty()).then(|| mt.to_owned())
}

/// The `mediaType` field of a manifest body, if it has one.
pub(crate) fn media_type_from_body(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct M {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<M>(body).ok()?.media_type
}

/// `Docker-Content-Digest`, parsed; a malformed one is an error.
pub(crate) fn header_digest(headers: &HeaderMap, url: &str) -> Result<Option<Digest>, OriginError> {
    let Some(v) = headers.get(DOCKER_CONTENT_DIGEST) else {
        return Ok(None);
    };
    let bad = || OriginError::BadHeader {
        url: url.to_owned(),
        header: DOCKER_CONTENT_DIGEST.into(),
        value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
    };
    v.to_str().map_err(|_| bad())?.trim().parse().map(Some).map_err(|_| bad())
}

/// `Content-Length`, parsed; a malformed one is an error.
pub(crate) fn header_length(headers: &HeaderMap, url: &str) -> Result<Option<u64>, OriginError> {
    let Some(v) = headers.get(http::header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default().trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(OriginError::BadHeader {
            url: url.to_owned(),
            header: "content-length".into(),
            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
        });
    }
    s.parse().map(Some).map_err(|_| OriginError::BadHeader {
        url: url.to_owned(),
        header: "content-length".into(),
        value: s.to_owned(),
    })
}

/// Check `body` against `expected`.
pub(crate) fn verify_digest(expected: &Digest, body: &[u8], url: &str) -> Result<(), OriginError> {
    let mut h = expected.hasher();
    h.update(body);
    let actual = h.finish();
    if &actual == expected {
        Ok(())
    } else {
        Err(OriginError::DigestMismatch { url: url.to_owned(), expected: expected.clone(), actual })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_values() {
        assert_eq!(accept_header(&[], "u").unwrap(), DEFAULT_MANIFEST_ACCEPT.join(", ").as_str());
        assert_eq!(accept_header(&[" a/b ".into(), "".into(), "c/d, e/f".into()], "u").unwrap(), "a/b, c/d, e/f");
        assert!(accept_header(&["a\nb".into()], "u").is_err());
    }

    #[test]
    fn media_types() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            media_type(Some(&v("application/vnd.oci.image.index.v1+json; charset=utf-8"))).as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
        );
        assert_eq!(media_type(Some(&v(" ; x=y"))), None);
        assert_eq!(media_type(None), None);
        assert_eq!(media_type_from_body(br#"{"schemaVersion":2,"mediaType":"m/t"}"#).as_deref(), Some("m/t"));
        assert_eq!(media_type_from_body(b"{}"), None);
        assert_eq!(media_type_from_body(b"nope"), None);
    }

    #[test]
    fn digests_and_lengths() {
        let d = Digest::sha256_of(b"hello");
        let mut h = HeaderMap::new();
        assert_eq!(header_digest(&h, "u").unwrap(), None);
        h.insert(DOCKER_CONTENT_DIGEST, d.to_string().parse().unwrap());
        assert_eq!(header_digest(&h, "u").unwrap(), Some(d.clone()));
        h.insert(DOCKER_CONTENT_DIGEST, "sha256:zz".parse().unwrap());
        assert!(matches!(header_digest(&h, "u"), Err(OriginError::BadHeader { .. })));
        assert!(verify_digest(&d, b"hello", "u").is_ok());
        assert!(matches!(verify_digest(&d, b"hellO", "u"), Err(OriginError::DigestMismatch { .. })));
        let mut h = HeaderMap::new();
        assert_eq!(header_length(&h, "u").unwrap(), None);
        h.insert("content-length", "42".parse().unwrap());
        assert_eq!(header_length(&h, "u").unwrap(), Some(42));
        h.insert("content-length", "-1".parse().unwrap());
        assert!(header_length(&h, "u").is_err());
    }
}
