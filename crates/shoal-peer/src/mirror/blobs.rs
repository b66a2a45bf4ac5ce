//! Blob GET/HEAD. Every answer waits for the access check (`crate::access`):
//! the origin of the request's registry confirmed, for the request's own
//! credentials, that the repository holds the blob. Then:
//! - complete in the store: served from it, provided the store got it from
//!   the request's registry, or that registry proved it holds the same
//!   bytes (`crate::access::proof`);
//! - downloading: the request joins the download, with the same proviso
//!   (proved against the pieces verified so far);
//! - otherwise a download starts and the response streams it as it lands.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use shoal_core::{ByteRange, Digest, PieceIndex, RepoName, content_range};
use shoal_storage::BlobReader;
use tokio::sync::watch;

use super::body::BlobBody;
use super::errors::{self, Subject};
use super::refetch::Refetch;
use super::refusals;
use super::{Ctx, Mirror};
use crate::access::{self, proof};
use crate::metrics::{Outcome, Source};
use crate::oci_error::{ErrorCode, OciError};
use crate::task::Task;
use crate::task::progress::{Phase, Progress};

/// Answer `GET`/`HEAD /v2/<repo>/blobs/<digest>`.
pub async fn handle(m: &Mirror, ctx: Ctx, repo: RepoName, digest: Digest) -> Response {
    let origin = match m.origin(&ctx) {
        Ok(o) => o,
        Err(e) => return ctx.reply(errors::origin_error(&e, Subject::Blob), Outcome::error),
    };
    let caller = m.caller(&origin, &ctx);
    let (from_store, checked_size) = match m.access.check(&origin, &repo, access::Subject::Blob(&digest), &caller).await
    {
        Ok(access::Allowed::Public) => (Outcome::stale, None),
        Ok(access::Allowed::Origin { size }) => (Outcome::hit, size),
        Ok(access::Allowed::Cached) => (Outcome::hit, None),
        Err(e) => return ctx.reply(refusals::denied(&e, Subject::Blob), Outcome::error),
    };
    let d = digest.clone();
    let stored = m.blocking(move |s| Ok(s.blob_info(&d)?.filter(|i| i.complete))).await;
    match stored {
        Ok(Some(info)) => {
            let d = digest.clone();
            match m.blocking(move |s| s.open_blob(&d)).await {
                Ok(Some(reader)) => {
                    if !info.complete_from(origin.registry()) {
                        let all: Vec<PieceIndex> = (0..reader.layout().count()).collect();
                        let claim = proof::Claim { origin: &origin, repo: &repo, caller: &caller };
                        if let Err(resp) = provenance(m, claim, &reader, &all).await {
                            return ctx.reply(resp, Outcome::error);
                        }
                    }
                    return serve(m, ctx, &repo, &digest, reader, None, from_store);
                }
                Ok(None) => {} // evicted meanwhile: fetch it
                Err(e) => return ctx.reply(errors::store_error(&e), Outcome::error),
            }
        }
        Ok(None) => {}
        Err(e) => return ctx.reply(errors::store_error(&e), Outcome::error),
    }
    // A download of the blob from another registry: its registry must
    // prove it holds the same bytes. One that fails (or is retried after
    // bytes that did not match the digest) is waited out, then looked at
    // again: ours may start.
    let deadline = tokio::time::Instant::now() + m.config.origin_wait;
    while let Some(task) = m.tasks.get(&digest)
        && task.registry != origin.registry()
    {
        let claim = proof::Claim { origin: &origin, repo: &repo, caller: &caller };
        match provenance_in_flight(m, claim, &task, deadline).await {
            Ok(InFlight::Proved) => break,
            // The task map lets go of a failed download just after it
            // says so: look again a moment later.
            Ok(InFlight::Ended) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Err(resp) => return ctx.reply(resp, Outcome::error),
        }
    }
    if ctx.head {
        // The check's own HEAD gave the size already, when it asked.
        let known = m.tasks.get(&digest).and_then(|t| t.subscribe().borrow().size()).or(checked_size);
        let size = match known {
            Some(size) => Ok(size),
            None => origin.head_blob(&repo, &digest, &caller).await,
        };
        return match size {
            Ok(size) => {
                let resp = headers(StatusCode::OK, &digest, size, size, None).body(axum::body::Body::empty());
                ctx.reply(resp.expect("valid response"), Outcome::origin)
            }
            Err(e) => ctx.reply(errors::origin_error(&e, Subject::Blob), Outcome::error),
        };
    }
    let task = m.tasks.get_or_start(origin, &repo, &digest, caller);
    let layout = match task.wait_started(m.config.origin_wait).await {
        Ok(layout) => layout,
        Err(e) => return ctx.reply(errors::start_error(&e), Outcome::error),
    };
    // A client reading from the middle (a lazy-pulling snapshotter) is
    // served first from there: the swarm fetches from its offset on.
    let asked = ctx.headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(ByteRange::parse);
    if let Some(Ok(r)) = asked.map(|r| r.resolve(layout.blob_size)) {
        task.read_from(r.start);
    }
    let Some(reader) = task.reader() else {
        let e = OciError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, "download started without a file");
        return ctx.reply(e.into_response(), Outcome::error);
    };
    serve(m, ctx, &repo, &digest, reader, Some(task.subscribe()), Outcome::origin)
}

/// The claim's registry is not a source of the stored blob: it must prove
/// it holds the same bytes (checked against `verified` pieces of `reader`)
/// before they go out under its name; then it is recorded as a source.
async fn provenance(
    m: &Mirror,
    claim: proof::Claim<'_>,
    reader: &BlobReader,
    verified: &[PieceIndex],
) -> Result<(), Response> {
    let ledger = proof::Ledger { store: &m.store, metrics: &m.metrics };
    let wait = m.access.config().auth_wait;
    proof::establish(ledger, claim, reader, verified, wait).await.map_err(|e| refusals::unproved(&e))
}

/// How a download of the blob from another registry ended for a request.
enum InFlight {
    /// It completed and the request's registry proved it holds the bytes.
    Proved,
    /// It failed: the blob may be fetched from the request's registry.
    Ended,
}

/// As [`provenance`], against a download of the blob from another
/// registry, once it completed: before that its bytes are checked against
/// nothing but the digest at the end (a registry that lies about the blob
/// would make an honest one look like the liar). Waits until `deadline`.
async fn provenance_in_flight(
    m: &Mirror,
    claim: proof::Claim<'_>,
    task: &Task,
    deadline: tokio::time::Instant,
) -> Result<InFlight, Response> {
    let mut rx = task.subscribe();
    let over = |p: &Progress| matches!(p.phase, Phase::Done | Phase::Failed(_));
    let done = match tokio::time::timeout_at(deadline, rx.wait_for(over)).await {
        Ok(Ok(p)) => matches!(p.phase, Phase::Done),
        Ok(Err(_)) => false, // the task is gone: look again
        Err(_) => {
            let e = OciError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                format!("{} is still downloading from another registry; retry", task.digest),
            );
            return Err(e.into_response());
        }
    };
    let reader = match task.reader() {
        Some(reader) if done => reader,
        _ => return Ok(InFlight::Ended),
    };
    let all: Vec<PieceIndex> = (0..reader.layout().count()).collect();
    provenance(m, claim, &reader, &all).await.map(|()| InFlight::Proved)
}

fn headers(
    status: StatusCode,
    digest: &Digest,
    len: u64,
    size: u64,
    range: Option<&std::ops::Range<u64>>,
) -> http::response::Builder {
    let mut b = http::Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("Docker-Content-Digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(r) = range {
        b = b.header(header::CONTENT_RANGE, content_range(r, size));
    }
    b
}

/// Send the blob (or the requested range of it) from `reader`, following
/// `progress` when the blob is still downloading.
fn serve(
    m: &Mirror,
    mut ctx: Ctx,
    repo: &RepoName,
    digest: &Digest,
    reader: BlobReader,
    progress: Option<watch::Receiver<Progress>>,
    result: Outcome,
) -> Response {
    let size = reader.size();
    let asked = ctx.headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(ByteRange::parse);
    let range = match asked.map(|r| r.resolve(size)) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            let mut resp = OciError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::SizeInvalid,
                format!("blob {digest} is {size} bytes; the requested range is outside it"),
            )
            .into_response();
            let v = HeaderValue::from_str(&format!("bytes */{}", e.size)).expect("ascii");
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
            return ctx.reply(resp, Outcome::error);
        }
    };
    let (status, body_range) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.clone()),
        None => (StatusCode::OK, 0..size),
    };
    let builder = headers(status, digest, body_range.end - body_range.start, size, range.as_ref());
    if ctx.head {
        return ctx.reply(builder.body(axum::body::Body::empty()).expect("valid response"), result);
    }
    ctx.log.respond(status.as_u16(), result);
    let source = if progress.is_some() { Source::origin } else { Source::store };
    let refetch = Refetch::new(m, &ctx, repo);
    let body = BlobBody {
        reader,
        progress,
        range: body_range,
        stall: m.config.body_stall,
        source,
        log: ctx.log,
        refetch,
        buffers: m.config.body.clone(),
    }
    .into_body();
    builder.body(body).expect("valid response")
}
