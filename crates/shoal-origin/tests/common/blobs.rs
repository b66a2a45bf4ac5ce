//! How the fixture answers blob requests ([`BlobMode`]), and a stand-in
//! object-storage server for redirects.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use shoal_core::Digest;

use super::handler::respond;
use super::{Seen, Shared, serve};

/// How blob GETs are answered.
#[derive(Clone, Debug)]
pub enum BlobMode {
    /// Honour `Range: bytes=N-` and `bytes=N-M` with a 206.
    Normal,
    /// Always a 200 with the whole blob.
    IgnoreRange,
    /// Content-Length of the whole blob (or range), but only `n` bytes sent.
    CutAfter(usize),
    /// A 206 with a chunked body `n` bytes shorter than its Content-Range.
    ChunkedShort(usize),
    /// A chunked 200 (no Content-Length): the blob, then `n` extra bytes.
    ChunkedLong(usize),
    /// `n` bytes, then silence.
    StallAfter(usize),
    /// This status, with a small body.
    Status(u16),
    /// A 307 to this base URL + `/<digest>?sig=secret`.
    Redirect(String),
    /// Wait this long before the headers.
    SlowHeaders(Duration),
}

/// How a streamed body ends after its chunks.
#[derive(Clone, Copy, PartialEq)]
enum End {
    Clean,
    Stall,
    Abort,
}

/// `chunks` sent 50 ms apart (so each arrives as its own read), then `end`.
fn stream_body(chunks: Vec<Bytes>, end: End) -> Body {
    let s = futures_util::stream::iter(chunks.into_iter().enumerate()).then(|(i, c)| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<_, std::io::Error>(c)
    });
    match end {
        End::Clean => Body::from_stream(s),
        End::Stall => Body::from_stream(s.chain(futures_util::stream::pending())),
        End::Abort => Body::from_stream(s.chain(futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(std::io::Error::other("cut"))
        }))),
    }
}

pub(crate) async fn blob(s: &Shared, method: &Method, seen: &Seen, digest: &Digest) -> Response {
    let Some(data) = s.blobs.lock().unwrap().get(&digest.to_string()).cloned() else {
        return respond(StatusCode::NOT_FOUND, &[], Body::from("blob unknown"));
    };
    let total = data.len();
    let mode = s.blob_mode.lock().unwrap().clone();
    if *method == Method::HEAD {
        return respond(StatusCode::OK, &[("content-length", total.to_string())], Body::empty());
    }
    // `bytes=N-` or `bytes=N-M` (inclusive M).
    let (start, end) = seen
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().map_or(total, |m| (m + 1).min(total))))
        .unwrap_or((0, total));
    let partial = |body: Body, extra: &[(&str, String)]| {
        let mut hs = vec![("content-range", format!("bytes {start}-{}/{total}", end - 1))];
        hs.extend(extra.iter().cloned());
        let status = if seen.range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
        respond(status, &hs, body)
    };
    match mode {
        BlobMode::Normal => partial(Body::from(data.slice(start..end)), &[]),
        BlobMode::IgnoreRange => respond(StatusCode::OK, &[], Body::from(data)),
        BlobMode::CutAfter(n) => {
            let len = (total - start).to_string();
            partial(stream_body(vec![data.slice(start..start + n)], End::Abort), &[("content-length", len)])
        }
        BlobMode::ChunkedShort(n) => respond(
            StatusCode::PARTIAL_CONTENT,
            &[("content-range", format!("bytes {start}-{}/{total}", total - 1))],
            stream_body(vec![data.slice(start..total - n)], End::Clean),
        ),
        BlobMode::ChunkedLong(n) => {
            let chunks = vec![data.slice(start..), Bytes::from(vec![b'!'; n])];
            respond(StatusCode::OK, &[], stream_body(chunks, End::Clean))
        }
        BlobMode::StallAfter(n) => {
            let len = (total - start).to_string();
            partial(stream_body(vec![data.slice(start..start + n)], End::Stall), &[("content-length", len)])
        }
        BlobMode::Status(code) => {
            respond(StatusCode::from_u16(code).unwrap(), &[("retry-after", "1".into())], Body::from("try later"))
        }
        BlobMode::Redirect(base) => respond(
            StatusCode::TEMPORARY_REDIRECT,
            &[("location", format!("{base}{digest}?sig=secret"))],
            Body::empty(),
        ),
        BlobMode::SlowHeaders(d) => {
            tokio::time::sleep(d).await;
            respond(StatusCode::OK, &[], Body::from(data))
        }
    }
}

/// A plain file server standing in for object storage: serves `data` at
/// any path and records each request.
pub struct Storage {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Storage {
    pub async fn start(data: Bytes) -> Storage {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let rec = seen.clone();
        let router = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let rec = rec.clone();
            let data = data.clone();
            async move {
                let h = |n: header::HeaderName| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
                rec.lock().unwrap().push(Seen {
                    method,
                    path: uri.path().to_owned(),
                    query: uri.query().unwrap_or_default().to_owned(),
                    authorization: h(header::AUTHORIZATION),
                    accept: h(header::ACCEPT),
                    range: h(header::RANGE),
                    body: Bytes::new(),
                });
                respond(StatusCode::OK, &[], Body::from(data))
            }
        });
        let addr = serve(router).await;
        Storage { url: format!("http://{addr}/"), seen }
    }
}
