//! Blob GET/HEAD: from the store when complete, else by joining (or
//! starting) the blob's download and streaming it as it lands.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use shoal_core::{ByteRange, Digest, RepoName, content_range};
use shoal_storage::BlobReader;
use tokio::sync::watch;

use super::body::BlobBody;
use super::errors::{self, Subject};
use super::refetch::Refetch;
use super::{Ctx, Mirror};
use crate::metrics::{Outcome, Source};
use crate::oci_error::{ErrorCode, OciError};
use crate::task::progress::Progress;

/// Answer `GET`/`HEAD /v2/<repo>/blobs/<digest>`.
pub async fn handle(m: &Mirror, ctx: Ctx, repo: RepoName, digest: Digest) -> Response {
    let d = digest.clone();
    match m.blocking(move |s| s.open_blob(&d)).await {
        Ok(Some(reader)) => return serve(m, ctx, &repo, &digest, reader, None, Outcome::hit),
        Ok(None) => {}
        Err(e) => return ctx.reply(errors::store_error(&e), Outcome::error),
    }
    let origin = match m.origin(&ctx) {
        Ok(o) => o,
        Err(e) => return ctx.reply(errors::origin_error(&e, Subject::Blob), Outcome::error),
    };
    if ctx.head {
        let known = m.tasks.get(&digest).and_then(|t| t.subscribe().borrow().size());
        let size = match known {
            Some(size) => Ok(size),
            None => origin.head_blob(&repo, &digest, ctx.auth().as_ref()).await,
        };
        return match size {
            Ok(size) => {
                let resp = headers(StatusCode::OK, &digest, size, size, None).body(axum::body::Body::empty());
                ctx.reply(resp.expect("valid response"), Outcome::origin)
            }
            Err(e) => ctx.reply(errors::origin_error(&e, Subject::Blob), Outcome::error),
        };
    }
    let task = m.tasks.get_or_start(origin, &repo, &digest, ctx.auth());
    if let Err(e) = task.wait_started(m.config.origin_wait).await {
        return ctx.reply(errors::start_error(&e), Outcome::error);
    }
    let Some(reader) = task.reader() else {
        let e = OciError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, "download started without a file");
        return ctx.reply(e.into_response(), Outcome::error);
    };
    serve(m, ctx, &repo, &digest, reader, Some(task.subscribe()), Outcome::origin)
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
    let body =
        BlobBody { reader, progress, range: body_range, stall: m.config.body_stall, source, log: ctx.log, refetch }
            .into_body();
    builder.body(body).expect("valid response")
}
