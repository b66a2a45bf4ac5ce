//! `/api/v1/prewarm`: how `shoal prewarm --all-nodes | --nodes N |
//! --selector` reaches the scheduler through the local daemon (which holds
//! the node's certificate), so the command itself needs no credentials.
//!
//! - `POST /api/v1/prewarm` with a [`SubmitPrewarm`] body: makes a job id,
//!   submits the job and answers `202` with a [`PrewarmSubmitted`].
//! - `GET /api/v1/prewarm/{job}`: the job's `shoal_proto::PrewarmJob`.
//!
//! Errors answer `{"error": "..."}`: 409 when this daemon is not in a swarm,
//! 400 when the scheduler refused the job (no node matched, bad selector)
//! or the job is over a limit below, 413 for a body over
//! [`MAX_SUBMIT_BODY`], 415 for a body that is not JSON, 404 for an unknown
//! job, 502 when no scheduler answered.
//!
//! Both answer loopback connections only ([`super::guard`]): a job makes
//! every node it names fetch. Run `shoal prewarm` on a node (or in a
//! `hostNetwork` pod).

use std::hash::{BuildHasher, Hasher};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use shoal_core::HostId;
use shoal_proto::{NodeSelector, PrewarmSpec};

use super::Admin;
use crate::swarm::PrewarmCallError;

/// The body of `POST /api/v1/prewarm`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SubmitPrewarm {
    /// What to warm.
    pub spec: PrewarmSpec,
    /// On which nodes.
    pub selector: NodeSelector,
}

/// The answer to a submit.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PrewarmSubmitted {
    /// The job id, for `GET /api/v1/prewarm/{job}`.
    pub job: String,
    /// The nodes it runs on.
    pub nodes: Vec<HostId>,
}

/// An error answer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApiError {
    /// What went wrong, and what to do.
    pub error: String,
}

/// The largest submit body read. A job for a rollout names a handful of
/// images in well under 4 KiB.
pub const MAX_SUBMIT_BODY: usize = 64 << 10;
/// Images in one job at most: each one makes every selected node fetch
/// all its blobs, and the job's progress (nodes x images) travels in
/// messages of bounded size.
pub const MAX_IMAGES: usize = 64;
/// Platforms in one job at most (an index rarely lists more than 10).
pub const MAX_PLATFORMS: usize = 16;
/// `key=value` pairs in a label selector at most.
pub const MAX_LABELS: usize = 16;
/// The longest image reference, platform, label key or value. A reference
/// is at most a 253-character registry, a 255-character repository and a
/// 135-character digest.
pub const MAX_STRING: usize = 1024;

/// Why a job is over a limit, naming it.
fn over_limit(body: &SubmitPrewarm) -> Option<String> {
    let counts = [
        ("images", body.spec.images.len(), MAX_IMAGES),
        ("platforms", body.spec.platforms.len(), MAX_PLATFORMS),
        ("selector labels", selector_labels(&body.selector).len(), MAX_LABELS),
    ];
    if let Some((what, n, max)) = counts.into_iter().find(|(_, n, max)| n > max) {
        return Some(format!("the job names {n} {what}; a job may name at most {max} (split it into several jobs)"));
    }
    let strings = body
        .spec
        .images
        .iter()
        .chain(&body.spec.platforms)
        .chain(selector_labels(&body.selector).iter().flat_map(|(k, v)| [k, v]));
    strings.into_iter().find(|s| s.len() > MAX_STRING).map(|s| {
        let start: String = s.chars().take(40).collect();
        format!("{start:?}... is {} bytes; image references, platforms and labels are at most {MAX_STRING}", s.len())
    })
}

fn selector_labels(s: &NodeSelector) -> &[(String, String)] {
    match s {
        NodeSelector::Labels(l) => l,
        NodeSelector::All | NodeSelector::Count(_) => &[],
    }
}

/// Read and check a submit body.
async fn read_submit(headers: &HeaderMap, body: Body) -> Result<SubmitPrewarm, Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return Err(fail(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the job as Content-Type: application/json"));
    }
    let too_big = || {
        fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the job is larger than {MAX_SUBMIT_BODY} bytes, the most a submit may send"),
        )
    };
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_SUBMIT_BODY as u64) {
        return Err(too_big());
    }
    let bytes = match axum::body::to_bytes(body, MAX_SUBMIT_BODY).await {
        Ok(b) => b,
        Err(e) if e.source_is_length_limit() => return Err(too_big()),
        Err(e) => return Err(fail(StatusCode::BAD_REQUEST, format!("reading the job failed: {e}"))),
    };
    let parsed: SubmitPrewarm = serde_json::from_slice(&bytes)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("the job is not a prewarm job: {e}")))?;
    if let Some(why) = over_limit(&parsed) {
        return Err(fail(StatusCode::BAD_REQUEST, why));
    }
    Ok(parsed)
}

/// Length-limit errors of [`axum::body::to_bytes`].
trait LengthLimit {
    fn source_is_length_limit(&self) -> bool;
}

impl LengthLimit for axum::Error {
    fn source_is_length_limit(&self) -> bool {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = cur {
            if e.is::<http_body_util::LengthLimitError>() {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

/// An `{"error": ...}` answer.
pub(crate) fn fail(status: StatusCode, error: impl Into<String>) -> Response {
    (status, Json(ApiError { error: error.into() })).into_response()
}

fn call_failed(e: PrewarmCallError) -> Response {
    let status = match e {
        PrewarmCallError::Refused(_) => StatusCode::BAD_REQUEST,
        PrewarmCallError::NotFound(_) => StatusCode::NOT_FOUND,
        PrewarmCallError::Unreachable(_) | PrewarmCallError::Unexpected(_) => StatusCode::BAD_GATEWAY,
    };
    fail(status, e.to_string())
}

const NO_SWARM: &str = "this daemon is not in a swarm, so there are no other nodes to warm: start it with --swarm \
                        (or run `shoal prewarm` without --all-nodes/--nodes/--selector to warm this node)";

/// A fresh job id: `pw-` and 16 random hex digits.
fn new_job_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("pw-{:016x}", h.finish())
}

pub(super) async fn submit(State(a): State<Admin>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_submit(&headers, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Some(swarm) = a.swarm.clone() else {
        return fail(StatusCode::CONFLICT, NO_SWARM);
    };
    if body.spec.images.is_empty() {
        return fail(StatusCode::BAD_REQUEST, "name at least one image");
    }
    let job = new_job_id();
    match swarm.submit_prewarm(&job, body.spec, body.selector).await {
        Ok(nodes) => {
            tracing::info!(%job, nodes = nodes.len(), "prewarm job submitted");
            (StatusCode::ACCEPTED, Json(PrewarmSubmitted { job, nodes })).into_response()
        }
        Err(e) => call_failed(e),
    }
}

pub(super) async fn status(State(a): State<Admin>, Path(job): Path<String>) -> Response {
    let Some(swarm) = a.swarm.clone() else {
        return fail(StatusCode::CONFLICT, NO_SWARM);
    };
    match swarm.prewarm_status(&job).await {
        Ok(job) => Json(job).into_response(),
        Err(e) => call_failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(images: usize, platforms: usize, labels: usize) -> SubmitPrewarm {
        SubmitPrewarm {
            spec: PrewarmSpec {
                images: (0..images).map(|i| format!("nginx:{i}")).collect(),
                platforms: (0..platforms).map(|i| format!("linux/arch{i}")).collect(),
            },
            selector: NodeSelector::Labels((0..labels).map(|i| (format!("k{i}"), "v".into())).collect()),
        }
    }

    #[test]
    fn limits_name_what_is_over() {
        assert_eq!(over_limit(&job(MAX_IMAGES, MAX_PLATFORMS, MAX_LABELS)), None);
        let e = over_limit(&job(MAX_IMAGES + 1, 1, 0)).unwrap();
        assert!(e.contains("65 images") && e.contains("at most 64"), "{e}");
        let e = over_limit(&job(1, MAX_PLATFORMS + 1, 0)).unwrap();
        assert!(e.contains("platforms") && e.contains("at most 16"), "{e}");
        let e = over_limit(&job(1, 0, MAX_LABELS + 1)).unwrap();
        assert!(e.contains("selector labels") && e.contains("at most 16"), "{e}");
        let mut long = job(1, 0, 0);
        long.spec.images[0] = "x".repeat(MAX_STRING + 1);
        let e = over_limit(&long).unwrap();
        assert!(e.contains("1025 bytes") && e.contains("at most 1024"), "{e}");
    }

    #[test]
    fn job_ids_differ() {
        let a = super::new_job_id();
        assert!(a.starts_with("pw-") && a.len() == 19, "{a}");
        assert_ne!(a, super::new_job_id());
    }
}
