//! The one place where failures become HTTP answers.
//!
//! Origin refusals (401/403/404/4xx) are passed back as the origin sent
//! them, challenge and body included, so a client can authenticate itself
//! against the origin's token service and retry. Failures of the origin
//! itself become 502 `UNAVAILABLE` naming the registry and the cause; a
//! request naming a registry shoal may not or cannot use (`?ns=` malformed,
//! or unlisted with `allow_unlisted = false`) is the client's 4xx, not a 502.
//! Store failures name the store, never its files: the body says to read
//! the daemon log, which has the full error.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use shoal_core::RouteError;
use shoal_origin::OriginError;

use crate::oci_error::{ErrorCode, OciError};
use crate::task::{StartError, TaskError};

/// What was being fetched, to pick the "unknown" code.
#[derive(Clone, Copy, Debug)]
pub enum Subject {
    /// A blob.
    Blob,
    /// A manifest.
    Manifest,
    /// Anything else.
    Other,
}

impl Subject {
    fn unknown(self) -> ErrorCode {
        match self {
            Subject::Blob => ErrorCode::BlobUnknown,
            Subject::Manifest => ErrorCode::ManifestUnknown,
            Subject::Other => ErrorCode::Unknown,
        }
    }
}

/// A malformed path.
pub fn route_error(e: &RouteError) -> Response {
    let (status, code) = match e {
        RouteError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::Unsupported),
        RouteError::Name(_) => (StatusCode::BAD_REQUEST, ErrorCode::NameInvalid),
        RouteError::Reference(shoal_core::ReferenceError::Digest(_)) | RouteError::Digest(_) => {
            (StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid)
        }
        RouteError::Reference(_) => (StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid),
    };
    OciError::new(status, code, e.to_string()).into_response()
}

/// Pass an origin body through if it is an OCI error document, else make one.
fn passthrough(status: StatusCode, body: &Bytes, code: ErrorCode, message: String) -> Response {
    let is_oci = serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("errors").is_some());
    if is_oci {
        let mut r = (status, body.clone()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    } else {
        OciError::new(status, code, message).into_response()
    }
}

/// An origin failure.
pub fn origin_error(e: &OriginError, subject: Subject) -> Response {
    match e {
        OriginError::Unauthorized { status, www_authenticate, body, .. } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::UNAUTHORIZED);
            let code = if status == StatusCode::FORBIDDEN { ErrorCode::Denied } else { ErrorCode::Unauthorized };
            let mut r = passthrough(status, body, code, e.to_string());
            if let Some(v) = www_authenticate.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            r
        }
        OriginError::NotFound { body, .. } => {
            passthrough(StatusCode::NOT_FOUND, body, subject.unknown(), e.to_string())
        }
        OriginError::Status { status, body, .. } if (400..500).contains(status) => {
            let st = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            let code = if *status == 429 { ErrorCode::TooManyRequests } else { ErrorCode::Unknown };
            passthrough(st, body, code, e.to_string())
        }
        OriginError::UnknownRegistry(_) => {
            OciError::new(StatusCode::FORBIDDEN, ErrorCode::Denied, e.to_string()).into_response()
        }
        OriginError::BadRegistryName(_) => {
            OciError::new(StatusCode::BAD_REQUEST, ErrorCode::NameInvalid, e.to_string()).into_response()
        }
        _ => OciError::new(StatusCode::BAD_GATEWAY, ErrorCode::Unavailable, e.to_string()).into_response(),
    }
}

/// A blob download that failed before or while starting.
pub fn task_error(e: &TaskError, subject: Subject) -> Response {
    match e {
        TaskError::Origin(o) => origin_error(o, subject),
        TaskError::DigestMismatch { .. } | TaskError::SizeChanged { .. } => {
            OciError::new(StatusCode::BAD_GATEWAY, ErrorCode::DigestInvalid, e.to_string()).into_response()
        }
        TaskError::BadPieceMap { .. } => {
            OciError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, e.to_string()).into_response()
        }
        TaskError::Unproved(p) => super::refusals::unproved(p),
        TaskError::Cancelled(_) => {
            OciError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, e.to_string()).into_response()
        }
        TaskError::Store(s) => store_error(s),
        TaskError::Internal { .. } => {
            OciError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, e.to_string()).into_response()
        }
    }
}

/// Waiting for a download to start failed.
pub fn start_error(e: &StartError) -> Response {
    match e {
        StartError::Failed(t) => task_error(t, Subject::Blob),
        StartError::Timeout(_) => {
            OciError::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::Unavailable, e.to_string()).into_response()
        }
        StartError::Gone => {
            OciError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, e.to_string()).into_response()
        }
    }
}

/// What a client is told when the local store failed.
pub const STORE_FAILED: &str = "the piece store of this shoal daemon failed; the daemon log has the error";

/// What a client is told when the OS refused a store write for want of
/// space and the store's own accounting did not foresee it.
pub const STORE_FULL: &str = "the piece store of this shoal daemon ran out of disk space; this download was \
     dropped and its space freed, other content is still served; free space on the store's disk or lower \
     its quota";

/// The local store failed: logged in full, answered without its paths.
/// A store out of room is 507 Insufficient Storage, with the shortfall
/// when the store measured it (those messages name no path).
pub fn store_error(e: &shoal_storage::StoreError) -> Response {
    use shoal_storage::StoreError;
    if e.is_no_space() {
        tracing::warn!(error = %e, "piece store has no room for a download");
        let message = match e {
            StoreError::NoSpace { .. } | StoreError::FilesystemFull { .. } => e.to_string(),
            _ => STORE_FULL.to_owned(),
        };
        return OciError::new(StatusCode::INSUFFICIENT_STORAGE, ErrorCode::Unavailable, message).into_response();
    }
    tracing::error!(error = %e, "piece store failed");
    OciError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, STORE_FAILED).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(r: Response) -> (StatusCode, serde_json::Value) {
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn io_error() -> shoal_storage::StoreError {
        shoal_storage::StoreError::Io {
            action: "create partial blob",
            path: "/var/lib/shoal/partial/sha256/ab12".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        }
    }

    fn denied_error() -> shoal_storage::StoreError {
        shoal_storage::StoreError::Io {
            action: "create partial blob",
            path: "/var/lib/shoal/partial/sha256/ab12".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        }
    }

    #[tokio::test]
    async fn store_failures_name_the_store_not_its_files() {
        let e = denied_error();
        assert!(e.to_string().contains("/var/lib/shoal"), "the test needs an error that carries a path: {e}");
        let digest: shoal_core::Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        for r in [store_error(&e), task_error(&TaskError::Store(denied_error()), Subject::Blob)] {
            let (status, v) = body_of(r).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            let text = v.to_string();
            assert!(!text.contains("/var/lib/shoal") && !text.contains("partial"), "{text}");
            assert_eq!(v["errors"][0]["message"], STORE_FAILED);
        }
        let (status, _) = body_of(task_error(&TaskError::Cancelled(digest), Subject::Blob)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_store_out_of_room_is_507_with_the_shortfall_and_no_path() {
        let digest: shoal_core::Digest = format!("sha256:{}", "cd".repeat(32)).parse().unwrap();
        let no_room = shoal_storage::StoreError::NoSpace {
            digest,
            needed: 83_886_080,
            available: 41_943_040,
            limit: shoal_storage::SpaceLimit::Disk,
        };
        let (status, v) = body_of(task_error(&TaskError::Store(no_room), Subject::Blob)).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
        let message = v["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("piece store") && message.contains("83886080") && message.contains("41943040"));
        // The OS's ENOSPC carries the file's path: the answer does not.
        let (status, v) = body_of(store_error(&io_error())).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(v["errors"][0]["message"], STORE_FULL);
    }

    #[tokio::test]
    async fn registry_refusals_are_the_clients_4xx() {
        let (status, v) = body_of(origin_error(&OriginError::BadRegistryName("a/b".into()), Subject::Blob)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v["errors"][0]["code"], "NAME_INVALID");
        let (status, v) = body_of(origin_error(&OriginError::UnknownRegistry("ghcr.io".into()), Subject::Blob)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(v["errors"][0]["code"], "DENIED");
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("allow_unlisted"), "{v}");
    }
}
