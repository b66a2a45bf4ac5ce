//! OCI distribution error bodies: every error a mirror client sees is
//! `{"errors":[{"code":…,"message":…}]}` with the matching HTTP status.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Error codes of the OCI distribution spec (plus `UNAVAILABLE`/`UNKNOWN`
/// from Docker Distribution, which containerd understands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Blob unknown to the registry.
    BlobUnknown,
    /// Manifest unknown to the registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest invalid.
    ManifestInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// Range not satisfiable (no OCI code exists; `SIZE_INVALID` is closest).
    SizeInvalid,
    /// The origin (or the mirror) is unavailable.
    Unavailable,
    /// Anything else.
    Unknown,
}

impl ErrorCode {
    /// The code string in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }
}

/// An OCI error response.
#[derive(Debug, Clone)]
pub struct OciError {
    /// HTTP status.
    pub status: StatusCode,
    /// OCI code.
    pub code: ErrorCode,
    /// Human message naming the thing and, where possible, the fix.
    pub message: String,
}

impl OciError {
    /// Build one.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> OciError {
        OciError { status, code, message: message.into() }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({"errors": [{"code": self.code.as_str(), "message": self.message, "detail": null}]})
            .to_string()
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let e = OciError::new(StatusCode::NOT_FOUND, ErrorCode::BlobUnknown, "blob x unknown");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "blob x unknown");
    }
}
