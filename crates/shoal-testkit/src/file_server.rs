//! [`FileServer`]: a plain HTTP file server on loopback, the origin of
//! `shoal get` tests. It serves one file (from memory) at `/<name>` with
//! `Range` support (206, `Content-Range`), an `ETag` and a `Last-Modified`
//! date that change when the file is replaced, an optional header every
//! request must carry (credentials), an optional byte rate, a fault that
//! replaces the file while a body is being sent (and cuts that body), and
//! counters of the requests and body bytes it sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, ETAG, LAST_MODIFIED, RANGE};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::error::IoContext;

/// Bytes per body frame.
const FRAME: usize = 256 << 10;

#[derive(Default)]
struct State {
    file: Mutex<(Bytes, u64)>,
    authorization: Mutex<Option<String>>,
    rate: AtomicU64,
    requests: AtomicU64,
    refused: AtomicU64,
    body_bytes: Arc<AtomicU64>,
    /// After this many bytes of the next body: cut it and serve the new
    /// data as a new version from then on.
    change: Mutex<Option<(u64, Bytes)>>,
}

/// A file server; stops when dropped.
pub struct FileServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FileServer {
    /// Serve `data` (version 1) on a free loopback port.
    pub async fn start(data: Bytes) -> crate::Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await.ctx(|| "binding the file server".to_string())?;
        let addr = listener.local_addr().ctx(|| "reading the file server's address".to_string())?;
        let state = Arc::new(State::default());
        *state.file.lock().unwrap() = (data, 1);
        let task = tokio::spawn(serve(listener, state.clone()));
        Ok(FileServer { addr, state, task })
    }

    /// The URL of the file, `http://127.0.0.1:PORT/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// Serve `data` from now on, as a new version (new ETag and date).
    pub fn replace(&self, data: Bytes) {
        let mut f = self.state.file.lock().unwrap();
        let version = f.1 + 1;
        *f = (data, version);
    }

    /// Cut the next body after `after` bytes and serve `data` as a new
    /// version from that moment: the file changes mid-download.
    pub fn change_during_next_body(&self, after: u64, data: Bytes) {
        *self.state.change.lock().unwrap() = Some((after, data));
    }

    /// Every request must carry exactly this `Authorization` (401 otherwise).
    pub fn require_authorization(&self, value: Option<&str>) {
        *self.state.authorization.lock().unwrap() = value.map(str::to_owned);
    }

    /// Send bodies at this many bytes per second (per response; `None`: as
    /// fast as possible).
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        self.state.rate.store(bytes_per_sec.unwrap_or(0), Ordering::Relaxed);
    }

    /// Requests answered, refusals included.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests refused for want of the right `Authorization`.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }

    /// Body bytes handed to connections so far.
    pub fn body_bytes(&self) -> u64 {
        self.state.body_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let state = state.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn answer(state: &Arc<State>, req: Request<Incoming>) -> Response<CountedBody> {
    state.requests.fetch_add(1, Ordering::Relaxed);
    let empty =
        |status: StatusCode| Response::builder().status(status).body(CountedBody::empty()).expect("valid response");
    let wanted = state.authorization.lock().unwrap().clone();
    if let Some(w) = wanted
        && req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(w.as_str())
    {
        state.refused.fetch_add(1, Ordering::Relaxed);
        return empty(StatusCode::UNAUTHORIZED);
    }
    if req.uri().path().len() < 2 || req.uri().path().contains("missing") {
        return empty(StatusCode::NOT_FOUND);
    }
    let (data, version) = state.file.lock().unwrap().clone();
    let size = data.len() as u64;
    let range = req.headers().get(RANGE).and_then(|v| v.to_str().ok()).and_then(|r| parse_range(r, size));
    let (status, start, end) = match range {
        Some((s, e)) if s < size => (StatusCode::PARTIAL_CONTENT, s, e.min(size - 1) + 1),
        Some(_) => return empty(StatusCode::RANGE_NOT_SATISFIABLE),
        None => (StatusCode::OK, 0, size),
    };
    let mut b = Response::builder()
        .status(status)
        .header(CONTENT_LENGTH, end - start)
        .header(ETAG, format!("\"v{version}\""))
        .header(LAST_MODIFIED, format!("Mon, 0{} Dec 2026 00:00:00 GMT", version.min(9)))
        .header("accept-ranges", "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(CONTENT_RANGE, format!("bytes {start}-{}/{size}", end - 1));
    }
    let head = req.method() == http::Method::HEAD;
    // A fault waits for a real body, not a 1-byte probe.
    let change = if head || end - start <= 1 { None } else { state.change.lock().unwrap().take() };
    let body = CountedBody {
        data: if head { Bytes::new() } else { data.slice(start as usize..end as usize) },
        counter: state.body_bytes.clone(),
        rate: state.rate.load(Ordering::Relaxed),
        sleep: None,
        change: change.map(|(after, new)| (after, new, state.clone())),
        sent: 0,
    };
    b.body(body).expect("valid response")
}

/// `bytes=A-B` or `bytes=A-` (one range).
fn parse_range(v: &str, size: u64) -> Option<(u64, u64)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b = if b.trim().is_empty() { size.saturating_sub(1) } else { b.trim().parse().ok()? };
    (a <= b).then_some((a, b))
}

/// A body counting the bytes it hands out, paced at `rate` bytes/s.
struct CountedBody {
    data: Bytes,
    counter: Arc<AtomicU64>,
    rate: u64,
    sleep: Option<Pin<Box<Sleep>>>,
    change: Option<(u64, Bytes, Arc<State>)>,
    sent: u64,
}

impl CountedBody {
    fn empty() -> CountedBody {
        CountedBody {
            data: Bytes::new(),
            counter: Arc::new(AtomicU64::new(0)),
            rate: 0,
            sleep: None,
            change: None,
            sent: 0,
        }
    }
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(s) = self.sleep.as_mut() {
            match s.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => self.sleep = None,
            }
        }
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        if let Some((after, _, _)) = &self.change
            && self.sent >= *after
        {
            let (_, new, state) = self.change.take().expect("checked");
            let mut f = state.file.lock().unwrap();
            let version = f.1 + 1;
            *f = (new, version);
            self.data = Bytes::new();
            return Poll::Ready(Some(Err(std::io::Error::other("the file changed; body cut"))));
        }
        let n = self.data.len().min(FRAME);
        self.sent += n as u64;
        let chunk = self.data.split_to(n);
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        if self.rate > 0 {
            self.sleep = Some(Box::pin(tokio::time::sleep(Duration::from_secs_f64(n as f64 / self.rate as f64))));
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && self.sleep.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.data.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-0", 10), Some((0, 0)));
        assert_eq!(parse_range("bytes=4-", 10), Some((4, 9)));
        assert_eq!(parse_range("bytes=5-2", 10), None);
        assert_eq!(parse_range("items=1-2", 10), None);
    }
}
