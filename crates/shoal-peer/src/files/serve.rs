//! The `POST /api/v1/get` handler.
//!
//! Request: JSON `{"url": …, "digest": "sha256:…" (optional), "headers":
//! [["Name", "value"], …]}`, and optionally `Range: bytes=N-` to resume.
//! Every request first asks the origin for the file's first byte with the
//! request's own headers: nothing is served, from the store, a download in
//! flight or the swarm, unless the origin answered that with a success.
//! So credentials one client gave never let another client, who lacks
//! them, read the file. The answer's validators (ETag, Last-Modified,
//! size) key the download when no digest is given; a download that
//! finds them changed at the origin fails rather than mix two versions.
//!
//! Response: the bytes (200, or 206 from the offset asked for), streamed
//! as the download lands, with `X-Shoal-Key` naming the download (the
//! digest, or the URL-and-version key), so a resuming client can tell a
//! partial file of another version. Errors: a status and `{"error": …}`
//! with one line naming the cause. The headers are never logged or stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use shoal_core::{ByteRange, Digest, PieceLayout, RepoName, content_range};
use shoal_origin::{Caller, OriginClient, OriginError, Validators};

use super::key::{self, task_key};
use super::{Files, body};
use crate::admin::prewarm::fail;
use crate::task::progress::Phase;
use crate::task::{StartError, Task, TaskError};

/// Header naming the download a response is of.
pub const KEY_HEADER: &str = "x-shoal-key";

/// How long a failed download's cause answers new requests for it, so a
/// client whose transfer was cut learns why (a digest mismatch, a file
/// changed at the origin) instead of starting the same failure again.
const FAILURE_MEMORY: Duration = Duration::from_secs(10);

/// Recent failures by (task registry, key).
pub(super) type Failures = Arc<Mutex<HashMap<(String, Digest), (Instant, Refusal)>>>;

/// Most headers one request may pass to the origin.
const MAX_HEADERS: usize = 32;

/// What `shoal get` sends.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    /// The file's http(s) URL.
    pub url: String,
    /// Its digest, when known: the file is verified against it.
    #[serde(default)]
    pub digest: Option<String>,
    /// Headers for the origin (credentials), as name/value pairs.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
}

/// Headers a caller may not set: the request's framing and range are
/// shoal's own.
const RESERVED: &[&str] =
    &["host", "range", "if-range", "content-length", "transfer-encoding", "connection", "te", "upgrade"];

pub(super) async fn get(State(f): State<Files>, headers: HeaderMap, Json(req): Json<GetRequest>) -> Response {
    match answer(&f, &headers, req).await {
        Ok(resp) => resp,
        Err((status, why)) => fail(status, why),
    }
}

pub(super) type Refusal = (StatusCode, String);

async fn answer(f: &Files, asked: &HeaderMap, req: GetRequest) -> Result<Response, Refusal> {
    let url = key::check_url(&req.url, &f.config.allow_hosts).map_err(|e| (StatusCode::FORBIDDEN, e.to_string()))?;
    let shown = redacted(&url);
    let digest = match req.digest.as_deref() {
        Some(d) => Some(d.parse::<Digest>().map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?),
        None => key::digest_in_url(&url),
    };
    let origin_headers = origin_headers(&req.headers)?;
    // The registry name is fixed by the URL and whether a digest is known,
    // not by the version: the probe needs a client before the version is.
    let probe_key = task_key(&url, digest.as_ref(), &Validators { etag: None, last_modified: None, size: 0 }).0;
    let client = OriginClient::for_file(&probe_key, url.clone(), origin_headers, &f.config.origin)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let version = client.probe_file().await.map_err(|e| origin_refusal(&shown, &e))?;
    if digest.is_none() && !version.names_a_version() {
        return Err((
            StatusCode::CONFLICT,
            format!(
                "{shown} comes without an ETag or Last-Modified header, so shoal cannot tell its versions apart; \
                 pass --digest sha256:… to fetch it"
            ),
        ));
    }
    let (registry, key) = task_key(&url, digest.as_ref(), &version);
    if let Some(why) = recent_failure(&f.failures, &registry, &key) {
        return Err(why);
    }
    let origin = Arc::new(client.expect(version.clone()));
    let task = join(f, origin, &registry, &key, version.size).await?;
    remember_failure(&f.failures, &task, shown.clone());
    let layout = task.wait_started(f.origin_wait).await.map_err(|e| start_refusal(&shown, &e))?;
    if layout.blob_size != version.size {
        return Err((
            StatusCode::CONFLICT,
            format!(
                "{shown} is {} bytes at the origin now but {} bytes in this node's copy; the file changed at the \
                 origin: run shoal get again",
                version.size, layout.blob_size
            ),
        ));
    }
    respond(f, asked, &task, layout, &key)
}

/// The cause of a recent failure of this download, if any.
fn recent_failure(failures: &Failures, registry: &str, key: &Digest) -> Option<Refusal> {
    let mut map = failures.lock().unwrap_or_else(|p| p.into_inner());
    map.retain(|_, (at, _)| at.elapsed() < FAILURE_MEMORY);
    map.get(&(registry.to_owned(), key.clone())).map(|(_, why)| why.clone())
}

/// When `task` fails (other than by a wrong piece map, after which it is
/// fetched again, or a shutdown), keep the cause for [`FAILURE_MEMORY`].
fn remember_failure(failures: &Failures, task: &Arc<Task>, shown: String) {
    let (failures, mut rx) = (failures.clone(), task.subscribe());
    let id = (task.registry.clone(), task.digest.clone());
    tokio::spawn(async move {
        let Ok(p) = rx.wait_for(|p| matches!(p.phase, Phase::Done | Phase::Failed(_))).await else { return };
        let Phase::Failed(e) = &p.phase else { return };
        if matches!(e.as_ref(), TaskError::BadPieceMap { .. } | TaskError::Cancelled(_)) {
            return;
        }
        let why = start_refusal(&shown, &StartError::Failed(e.clone()));
        drop(p);
        failures.lock().unwrap_or_else(|p| p.into_inner()).insert(id, (Instant::now(), why));
    });
}

/// The caller's headers as the origin gets them; reserved names refused.
fn origin_headers(pairs: &[(String, String)]) -> Result<HeaderMap, Refusal> {
    if pairs.len() > MAX_HEADERS {
        return Err((StatusCode::BAD_REQUEST, format!("at most {MAX_HEADERS} headers may be passed to the origin")));
    }
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let bad = || (StatusCode::BAD_REQUEST, format!("header {name:?} is not a valid HTTP header"));
        let n = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        if RESERVED.contains(&n.as_str()) {
            return Err((StatusCode::BAD_REQUEST, format!("header {n} is set by shoal and cannot be passed")));
        }
        let mut v = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        v.set_sensitive(true);
        map.append(n, v);
    }
    Ok(map)
}

/// The download of `key` for this registry: joined if running, else
/// started. A download of the same digest for another URL runs in the
/// same store slot; it is waited for (bounded), then this URL's own
/// download starts and finds the stored blob, which this URL must then
/// prove it serves (`crate::access::proof`) before it is served.
async fn join(
    f: &Files,
    origin: Arc<OriginClient>,
    registry: &str,
    key: &Digest,
    size: u64,
) -> Result<Arc<Task>, Refusal> {
    let repo: RepoName = "shoal/get".parse().expect("a valid repository name");
    for _ in 0..3 {
        let task = f.tasks.start_sized(origin.clone(), &repo, key, Caller::Anonymous, Some(size));
        if task.registry == registry {
            return Ok(task);
        }
        let mut rx = task.subscribe();
        let ended = rx.wait_for(|p| matches!(p.phase, Phase::Done | Phase::Failed(_)));
        let _ = tokio::time::timeout(f.stall, ended).await;
        // Let the manager drop the finished task before asking again.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err((StatusCode::SERVICE_UNAVAILABLE, format!("{key} is being downloaded for another URL; retry shortly")))
}

fn respond(f: &Files, asked: &HeaderMap, task: &Task, layout: PieceLayout, key: &Digest) -> Result<Response, Refusal> {
    let size = layout.blob_size;
    let range = asked.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(ByteRange::parse);
    let range = match range.map(|r| r.resolve(size)) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(_)) => {
            return Err((
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the file is {size} bytes; the requested range is outside it"),
            ));
        }
    };
    let body_range = range.clone().unwrap_or(0..size);
    task.read_from(body_range.start);
    let Some(reader) = task.reader() else {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "the download started without a file".into()));
    };
    let mut b = http::Response::builder()
        .status(if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK })
        .header(header::CONTENT_LENGTH, body_range.end - body_range.start)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(KEY_HEADER, key.to_string());
    if let Some(r) = &range {
        b = b.header(header::CONTENT_RANGE, content_range(r, size));
    }
    let body = body::stream(reader, task.subscribe(), body_range, f.stall);
    Ok(b.body(body).expect("valid response").into_response())
}

/// The URL as it may be shown: no query (pre-signed URLs carry their
/// signature there), no user info.
fn redacted(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// The origin's refusal, as the client is told.
fn origin_refusal(shown: &str, e: &OriginError) -> Refusal {
    match e {
        OriginError::Changed { .. } => (StatusCode::CONFLICT, e.to_string()),
        _ => match e.status() {
            Some(s @ (401 | 403)) => (
                StatusCode::FORBIDDEN,
                format!("the origin refused {shown} ({s}): pass its credentials with --header 'Authorization: …'"),
            ),
            Some(404) => (StatusCode::NOT_FOUND, format!("{shown} was not found at the origin (404)")),
            Some(s) => (StatusCode::BAD_GATEWAY, format!("the origin answered {s} for {shown}")),
            None => (StatusCode::BAD_GATEWAY, format!("fetching {shown} failed: {e}")),
        },
    }
}

fn start_refusal(shown: &str, e: &StartError) -> Refusal {
    match e {
        StartError::Failed(t) => match t.as_ref() {
            TaskError::Origin(o) => origin_refusal(shown, o),
            TaskError::DigestMismatch { expected, actual, .. } => {
                (StatusCode::CONFLICT, format!("{shown} hashes to {actual}, not {expected}; nothing was kept"))
            }
            other => (StatusCode::BAD_GATEWAY, other.to_string()),
        },
        StartError::Timeout(d) => {
            (StatusCode::GATEWAY_TIMEOUT, format!("the origin did not answer {shown} within {d:?}"))
        }
        StartError::Gone => (StatusCode::BAD_GATEWAY, "the download ended without a result".into()),
    }
}
