//! The one place where failures become HTTP answers.
//!
//! Origin refusals (401/403/404/4xx) are passed back as the origin sent
//! them, challenge and body included, so a client can authenticate itself
//! against the origin's token service and retry. Failures of the origin
//! itself become 502 `UNAVAILABLE` naming the registry and the cause.

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
        TaskError::Store(_) | TaskError::Internal { .. } => {
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

/// The local store failed.
pub fn store_error(e: &shoal_storage::StoreError) -> Response {
    OciError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, format!("piece store: {e}")).into_response()
}
