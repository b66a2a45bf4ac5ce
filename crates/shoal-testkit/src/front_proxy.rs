//! The proxying half of [`CountingFront`]: the accept loop, and per request
//! forwarding to the upstream with hyper's client, recording the request,
//! and wrapping blob bodies in the fault-injecting `ShapedBody`.
//!
//! [`CountingFront`]: crate::front::CountingFront

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, HOST, RANGE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::front::{Entry, RequestRecord, State, blob_digest};
use crate::front_body::{BoxError, Fault, FrontBody, ResetIo, ShapedBody};

type UpstreamClient = Client<HttpConnector, Incoming>;

pub(crate) async fn serve(listener: TcpListener, upstream: String, state: Arc<State>) {
    let client: UpstreamClient = Client::builder(TokioExecutor::new()).build_http();
    // Connection tasks live in this set: aborting `serve` drops them all.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let reset = Arc::new(AtomicBool::new(false));
                let io = TokioIo::new(ResetIo::new(stream, reset.clone()));
                let (client, upstream, state) = (client.clone(), upstream.clone(), state.clone());
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (client, upstream, state, reset) =
                            (client.clone(), upstream.clone(), state.clone(), reset.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                handle(req, &client, &upstream, &state, reset).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

/// Start offset from `Content-Range: bytes START-END/TOTAL`.
fn range_start(headers: &HeaderMap) -> u64 {
    headers
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn boxed<B>(body: B) -> http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

async fn handle(
    req: Request<Incoming>,
    client: &UpstreamClient,
    upstream: &str,
    state: &State,
    reset: Arc<AtomicBool>,
) -> Response<FrontBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let header =
        |name: http::header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let range = header(RANGE);
    let accept = header(http::header::ACCEPT);
    let authorization = header(http::header::AUTHORIZATION);
    let digest = (method == http::Method::GET).then(|| blob_digest(&path).map(str::to_string)).flatten();
    let fault = digest.as_deref().and_then(|d| {
        let mut faults = state.faults.lock().expect("front lock");
        let (fault, left) = faults.get_mut(d)?;
        let f = fault.clone();
        *left = left.saturating_sub(1);
        if *left == 0 {
            faults.remove(d);
        }
        Some(f)
    });
    let counter = Arc::new(AtomicU64::new(0));
    let record = |status: u16| Entry {
        record: RequestRecord {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            status,
            range: range.clone(),
            accept: accept.clone(),
            authorization: authorization.clone(),
            body_bytes: 0,
        },
        bytes: counter.clone(),
    };
    let respond = |status: StatusCode, body| {
        state.entries.lock().expect("front lock").push(record(status.as_u16()));
        let body = ShapedBody::new(body, 0, None, counter.clone(), None, reset.clone());
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        resp
    };
    if let Some(Fault::Status(code)) = fault {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return respond(status, boxed(Empty::<Bytes>::new()));
    }

    let (mut parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".to_string());
    parts.uri = match format!("{upstream}{pq}").parse() {
        Ok(u) => u,
        Err(e) => {
            let msg = format!("counting front: bad upstream URI: {e}");
            return respond(StatusCode::BAD_GATEWAY, boxed(Full::new(Bytes::from(msg))));
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    if fault == Some(Fault::IgnoreRange) {
        parts.headers.remove(RANGE);
    }
    if !parts.headers.contains_key(HOST)
        && let Ok(h) = HeaderValue::from_str(&upstream["http://".len()..])
    {
        parts.headers.insert(HOST, h);
    }
    parts.version = http::Version::HTTP_11;
    let upstream_resp = match client.request(Request::from_parts(parts, body)).await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("counting front: upstream {upstream} failed: {e}");
            return respond(StatusCode::BAD_GATEWAY, boxed(Full::new(Bytes::from(msg))));
        }
    };
    let (mut parts, body) = upstream_resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let status = parts.status;
    state.entries.lock().expect("front lock").push(record(status.as_u16()));
    let is_blob_body = digest.is_some() && (status == StatusCode::OK || status.as_u16() == 206);
    let (fault, rate, start) =
        if is_blob_body { (fault, Some(state.rate.clone()), range_start(&parts.headers)) } else { (None, None, 0) };
    if let Some(Fault::ExtraBytes { count }) = fault {
        let declared =
            parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = declared {
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len + count));
        }
    }
    let body = ShapedBody::new(boxed(body), start, fault, counter, rate, reset);
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_range_start() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/1000"));
        assert_eq!(range_start(&h), 100);
        assert_eq!(range_start(&HeaderMap::new()), 0);
    }
}
