//! The answers for content the mirror will not serve: an authorization the
//! origin refused or could not give, and a registry that could not prove it
//! holds bytes the store got from another.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::errors::{self, Subject};
use crate::access::Denied;
use crate::access::proof::ProofError;
use crate::oci_error::{ErrorCode, OciError};

/// A refused authorization: the origin's own refusal (challenge included)
/// as it sent it; 503 when it could not be asked, so the client goes to the
/// origin itself.
pub fn denied(e: &Denied, subject: Subject) -> Response {
    match e {
        Denied::Refused(o) | Denied::Failed(o) => errors::origin_error(o, subject),
        Denied::Unavailable { .. } => {
            OciError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, e.to_string()).into_response()
        }
    }
}

/// A failed proof of possession.
pub fn unproved(e: &ProofError) -> Response {
    match e {
        ProofError::Refused(o) => errors::origin_error(o, Subject::Blob),
        ProofError::Unreachable(_) => {
            OciError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, e.to_string()).into_response()
        }
        ProofError::Mismatch { .. } => {
            OciError::new(StatusCode::NOT_FOUND, ErrorCode::BlobUnknown, e.to_string()).into_response()
        }
        ProofError::Local { .. } => {
            tracing::error!(error = %e, "reading a stored blob for a proof of possession failed");
            OciError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, errors::STORE_FAILED).into_response()
        }
    }
}
