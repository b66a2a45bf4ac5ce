//! `/api/v1/prewarm`: how `shoal prewarm --all-nodes | --nodes N |
//! --selector` reaches the scheduler through the local daemon (which holds
//! the node's certificate), so the command itself needs no credentials.
//!
//! - `POST /api/v1/prewarm` with a [`SubmitPrewarm`] body: makes a job id,
//!   submits the job and answers `202` with a [`PrewarmSubmitted`].
//! - `GET /api/v1/prewarm/{job}`: the job's `shoal_proto::PrewarmJob`.
//!
//! Errors answer `{"error": "..."}`: 409 when this daemon is not in a swarm,
//! 400 when the scheduler refused the job (no node matched, bad selector),
//! 404 for an unknown job, 502 when no scheduler answered.
//!
//! Submitting is accepted from loopback only (403 otherwise): the admin
//! address is usually open to Prometheus on the network, and a job makes
//! every node fetch. Run `shoal prewarm` on a node (or in a `hostNetwork`
//! pod). Reading a job's state is allowed from anywhere.

use std::hash::{BuildHasher, Hasher};

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
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

fn fail(status: StatusCode, error: impl Into<String>) -> Response {
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

pub(super) async fn submit(
    State(a): State<Admin>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Json(body): Json<SubmitPrewarm>,
) -> Response {
    if !peer.ip().to_canonical().is_loopback() {
        return fail(
            StatusCode::FORBIDDEN,
            format!(
                "prewarm jobs are submitted from the node itself, not from {}: run `shoal prewarm` on a node \
                 (or in a hostNetwork pod) against 127.0.0.1",
                peer.ip()
            ),
        );
    }
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
    #[test]
    fn job_ids_differ() {
        let a = super::new_job_id();
        assert!(a.starts_with("pw-") && a.len() == 19, "{a}");
        assert_ne!(a, super::new_job_id());
    }
}
