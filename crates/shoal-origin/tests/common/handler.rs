//! The origin's request handler: auth checks per [`super::AuthMode`],
//! manifests, tag lists, and the token endpoint (GET and OAuth2 POST).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use shoal_core::{Digest, Route};

use super::blobs::blob;
use super::{AuthMode, Seen, Shared};

pub(crate) fn respond(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(body).unwrap()
}

pub(crate) async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let seen = Seen {
        method: method.clone(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        authorization: h(header::AUTHORIZATION),
        accept: h(header::ACCEPT),
        range: h(header::RANGE),
        body: body.clone(),
    };
    s.seen.lock().unwrap().push(seen.clone());
    if uri.path() == "/token" {
        return token(&s, &seen);
    }
    if s.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return respond(StatusCode::SERVICE_UNAVAILABLE, &[("retry-after", "0".into())], Body::from("busy"));
    }
    let unauthorized = |challenge: String| {
        respond(
            StatusCode::UNAUTHORIZED,
            &[("www-authenticate", challenge), ("content-type", "application/json".into())],
            Body::from(r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#),
        )
    };
    let mode = s.auth.lock().unwrap().clone();
    match mode {
        AuthMode::None => {}
        AuthMode::Basic(want) => {
            if seen.authorization.as_deref() != Some(want.as_str()) {
                return unauthorized(r#"Basic realm="test-registry""#.into());
            }
        }
        AuthMode::Bearer => {
            let ok = seen
                .authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|t| s.valid_tokens.lock().unwrap().contains(t))
                && !s.reject_tokens.load(Ordering::SeqCst);
            if !ok {
                return unauthorized(s.challenge.lock().unwrap().clone());
            }
        }
    }
    match Route::parse(uri.path()) {
        Ok(Route::Manifest(name, reference)) => {
            let m = s.manifests.lock().unwrap().get(&format!("{name}@{reference}")).cloned();
            let Some((mt, body)) = m else {
                return respond(StatusCode::NOT_FOUND, &[], Body::from(r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#));
            };
            let digest = if *s.wrong_digest_header.lock().unwrap() {
                Digest::sha256_of(b"something else")
            } else {
                Digest::sha256_of(&body)
            };
            respond(
                StatusCode::OK,
                &[("content-type", mt), ("docker-content-digest", digest.to_string())],
                Body::from(body),
            )
        }
        Ok(Route::Blob(_, digest)) => blob(&s, &method, &seen, &digest).await,
        Ok(Route::TagList(name)) => respond(
            StatusCode::OK,
            &[
                ("content-type", "application/json".into()),
                ("link", format!(r#"</v2/{name}/tags/list?n=1&last=a>; rel="next""#)),
            ],
            Body::from(format!(r#"{{"name":"{name}","tags":["a"]}}"#)),
        ),
        _ => respond(StatusCode::NOT_FOUND, &[], Body::empty()),
    }
}

fn token(s: &Shared, seen: &Seen) -> Response {
    s.token_fetches.fetch_add(1, Ordering::SeqCst);
    let n = s.token_fetches.load(Ordering::SeqCst);
    let expires = s.expires_in.load(Ordering::SeqCst);
    if seen.method == Method::POST {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&seen.body).into_owned().collect();
        let want = s.refresh_token.lock().unwrap().clone();
        if form.get("grant_type").map(String::as_str) != Some("refresh_token")
            || want.is_none()
            || form.get("refresh_token") != want.as_ref()
        {
            return respond(StatusCode::UNAUTHORIZED, &[], Body::from("bad refresh token"));
        }
        let t = format!("oauth-{n}");
        s.valid_tokens.lock().unwrap().insert(t.clone());
        return respond(
            StatusCode::OK,
            &[("content-type", "application/json".into())],
            Body::from(format!(r#"{{"access_token":"{t}","expires_in":{expires}}}"#)),
        );
    }
    if let Some(want) = s.token_basic.lock().unwrap().clone()
        && seen.authorization.as_deref() != Some(want.as_str())
    {
        return respond(StatusCode::UNAUTHORIZED, &[], Body::from("bad credentials"));
    }
    let t = format!("tok-{n}");
    s.valid_tokens.lock().unwrap().insert(t.clone());
    respond(
        StatusCode::OK,
        &[("content-type", "application/json".into())],
        Body::from(format!(r#"{{"token":"{t}","expires_in":{expires},"issued_at":"2000-01-01T00:00:00Z"}}"#)),
    )
}
