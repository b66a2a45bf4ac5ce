//! `FakeRegistry`: a registry that says yes to everything, standing for
//! one an attacker runs and names with `?ns=127.0.0.1:<port>`. Every HEAD
//! gets 200 with a `Content-Length` (of the size it was told to claim) and
//! the asked digest; every blob GET gets that many junk bytes (a `Range`
//! is honoured with a 206); every manifest GET gets a made-up manifest
//! announced under the asked digest. It never answers 401 or 404. A paced
//! one sends whole blobs slowly, so its download stays in flight a while.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, Uri, header};

/// The byte every junk blob is made of.
pub const JUNK: u8 = 0x5A;

struct Shared {
    size: u64,
    /// A whole-blob GET sends 64 KiB, then waits this long, and so on.
    pace: Option<std::time::Duration>,
    seen: Mutex<Vec<(String, String)>>,
}

/// A lying registry on 127.0.0.1; stops when dropped.
pub struct FakeRegistry {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeRegistry {
    /// One that claims every blob is `size` bytes.
    pub async fn start(size: u64) -> FakeRegistry {
        Self::start_paced(size, None).await
    }

    /// One that claims every blob is `size` bytes and sends a whole blob
    /// 64 KiB every `pace`.
    pub async fn start_paced(size: u64, pace: Option<std::time::Duration>) -> FakeRegistry {
        let shared = Arc::new(Shared { size, pace, seen: Mutex::new(Vec::new()) });
        let app = axum::Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRegistry { addr, shared, task }
    }

    /// `127.0.0.1:PORT`, what a client puts in `?ns=`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request it got, as (method, path).
    pub fn seen(&self) -> Vec<(String, String)> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Requests with `method` for a path containing `part`.
    pub fn asked(&self, method: &str, part: &str) -> usize {
        self.seen().iter().filter(|(m, p)| m == method && p.contains(part)).count()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `bytes=A-B` / `bytes=A-` within `size`.
fn range(headers: &HeaderMap, size: u64) -> Option<(u64, u64)> {
    let v = headers.get(header::RANGE)?.to_str().ok()?.strip_prefix("bytes=")?;
    let (a, b) = v.split_once('-')?;
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() { size - 1 } else { b.parse::<u64>().ok()?.min(size - 1) };
    (start <= end).then_some((start, end))
}

async fn answer(State(s): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_owned();
    s.seen.lock().unwrap().push((method.to_string(), path.clone()));
    let digest = path.rsplit('/').next().unwrap_or_default().to_owned();
    let head = method == Method::HEAD;
    let builder = Response::builder().header("Docker-Distribution-Api-Version", "registry/2.0");
    if path == "/v2/" {
        return builder.status(StatusCode::OK).body(Body::from("{}")).unwrap();
    }
    if path.contains("/manifests/") {
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": super::private::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": 2},
            "layers": [],
        }))
        .unwrap();
        let b = builder
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, super::private::OCI_MANIFEST)
            .header(header::CONTENT_LENGTH, manifest.len())
            .header("Docker-Content-Digest", &digest);
        return b.body(if head { Body::empty() } else { Body::from(manifest) }).unwrap();
    }
    let b = builder
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("Docker-Content-Digest", &digest)
        .header(header::ACCEPT_RANGES, "bytes");
    match range(&headers, s.size).filter(|_| !head) {
        Some((start, end)) => {
            let len = end - start + 1;
            b.status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_LENGTH, len)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{}", s.size))
                .body(Body::from(vec![JUNK; len as usize]))
                .unwrap()
        }
        None => {
            let b = b.status(StatusCode::OK).header(header::CONTENT_LENGTH, s.size);
            let body = match s.pace {
                _ if head => Body::empty(),
                None => Body::from(vec![JUNK; s.size as usize]),
                Some(pace) => paced(s.size, pace),
            };
            b.body(body).unwrap()
        }
    }
}

/// `size` junk bytes, 64 KiB every `pace`.
fn paced(size: u64, pace: std::time::Duration) -> Body {
    const CHUNK: u64 = 64 << 10;
    let chunks = futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= size {
            return None;
        }
        if sent > 0 {
            tokio::time::sleep(pace).await;
        }
        let n = CHUNK.min(size - sent);
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(vec![JUNK; n as usize])), sent + n))
    });
    Body::from_stream(chunks)
}
