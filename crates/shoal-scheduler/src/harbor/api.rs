//! The HTTP routes Harbor's Dragonfly driver calls:
//! - `GET /healthy`: `200 OK` (Harbor's health check before each preheat);
//! - `POST /oapi/v1/jobs`: `200` with the job `PENDING`; `400` naming the
//!   field for a body that is not a Dragonfly image preheat or a URL that
//!   is not a manifest URL; `413` past [`MAX_BODY`]; `503` when the replica
//!   holds its limit of unfinished jobs;
//! - `GET /oapi/v1/jobs/{id}`: the job; `404` for an id this replica does
//!   not hold, `400` for one that is not an integer.
//!
//! Every route first checks Harbor's credentials ([`super::auth`]): a
//! missing or wrong `Authorization` gets `401` with a challenge and a JSON
//! `message`, which Harbor shows after the status line. Errors are
//! `{"message": "..."}`.

use axum::Json;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};

use super::wire::{self, ErrorBody};
use super::{CreateError, HarborApi};

/// The largest create body read; Harbor's is well under 4 KiB.
pub const MAX_BODY: usize = 64 << 10;

impl HarborApi {
    /// The routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/healthy", get(healthy))
            .route("/oapi/v1/jobs", post(create))
            .route("/oapi/v1/jobs/{id}", get(status))
            .fallback(not_found)
            .with_state(self.clone())
    }

    /// `Some(401)` unless `headers` carry the configured credentials.
    fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        let auth = &self.config().auth;
        if auth.admits(headers) {
            return None;
        }
        let message = format!(
            "shoal's Harbor preheat API wants {} credentials and the request's are missing or wrong: check the \
             instance's auth mode and credentials in Harbor (Administration > Distributions)",
            auth.mode()
        );
        let mut resp = fail(StatusCode::UNAUTHORIZED, message);
        if let Some(c) = auth.challenge() {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static(c));
        }
        Some(resp)
    }
}

/// A `{"message": ...}` answer.
fn fail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody { message: message.into() })).into_response()
}

async fn healthy(State(api): State<HarborApi>, headers: HeaderMap) -> Response {
    if let Some(r) = api.refuse(&headers) {
        return r;
    }
    (StatusCode::OK, "OK").into_response()
}

async fn create(State(api): State<HarborApi>, headers: HeaderMap, body: Body) -> Response {
    if let Some(r) = api.refuse(&headers) {
        return r;
    }
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return fail(StatusCode::PAYLOAD_TOO_LARGE, format!("the job request is larger than {MAX_BODY} bytes"));
        }
    };
    let job = match wire::parse_create(&bytes) {
        Ok(j) => j,
        Err(why) => return fail(StatusCode::BAD_REQUEST, why),
    };
    match api.create(job) {
        Ok(resp) => Json(resp).into_response(),
        Err(CreateError::BadUrl(e)) => fail(StatusCode::BAD_REQUEST, e.to_string()),
        Err(CreateError::TooMany(e)) => fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn status(State(api): State<HarborApi>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(r) = api.refuse(&headers) {
        return r;
    }
    let Ok(n) = id.parse::<u64>() else {
        let shown: String = id.chars().take(64).collect();
        return fail(StatusCode::BAD_REQUEST, format!("job id {shown:?} is not an integer"));
    };
    match api.status(n) {
        Some(resp) => Json(resp).into_response(),
        None => fail(
            StatusCode::NOT_FOUND,
            format!(
                "no preheat job {n} on this scheduler replica (it finished over an hour ago, the replica \
                 restarted, or Harbor reached another replica)"
            ),
        ),
    }
}

async fn not_found(State(api): State<HarborApi>, headers: HeaderMap) -> Response {
    if let Some(r) = api.refuse(&headers) {
        return r;
    }
    fail(StatusCode::NOT_FOUND, "shoal's Harbor preheat API serves /healthy and /oapi/v1/jobs")
}
