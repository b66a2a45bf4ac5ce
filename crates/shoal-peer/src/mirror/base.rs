//! `GET`/`HEAD /v2/`: the API version check, answered as the origin of the
//! request's registry (`?ns=`, else the default registry) answers it.
//!
//! skopeo, podman and Docker send credentials only after a challenge, and
//! look for it on this request. So shoal sends `GET /v2/` to the origin with
//! the client's own `Authorization` (anonymously when it has none, or with
//! the node's credentials where the registry shares them) and
//! passes a 401 back with the origin's `WWW-Authenticate` unchanged; the
//! client then authenticates every later request. A 2xx is `200 {}`. An
//! origin that cannot be asked (down, timed out, a 5xx) also gives `200 {}`,
//! logged, so content already cached stays pullable: the content routes
//! check authorization themselves.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use shoal_origin::OriginError;

use super::errors::{self, Subject};
use super::{Ctx, Mirror};
use crate::metrics::Outcome;

/// Answer `GET`/`HEAD /v2/`.
pub async fn handle(m: &Mirror, ctx: Ctx) -> Response {
    let origin = match m.origin(&ctx) {
        Ok(o) => o,
        Err(e) => return ctx.reply(with_version(errors::origin_error(&e, Subject::Other)), Outcome::error),
    };
    match origin.ping(&m.caller(&origin, &ctx)).await {
        Ok(()) => ctx.reply(ok(), Outcome::origin),
        Err(e @ OriginError::Unauthorized { .. }) => {
            ctx.reply(with_version(errors::origin_error(&e, Subject::Other)), Outcome::error)
        }
        Err(e) => {
            tracing::warn!(
                registry = origin.registry(),
                error = %e,
                "the origin did not answer /v2/: answering 200 so cached content stays pullable"
            );
            ctx.reply(ok(), Outcome::hit)
        }
    }
}

/// `200 {}` (hyper leaves the body out for HEAD).
fn ok() -> Response {
    let mut resp = (StatusCode::OK, "{}").into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_version(resp)
}

fn with_version(mut resp: Response) -> Response {
    api_version(resp.headers_mut());
    resp
}

/// The header registry clients look for on `/v2/`.
fn api_version(h: &mut HeaderMap) {
    h.insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
}
