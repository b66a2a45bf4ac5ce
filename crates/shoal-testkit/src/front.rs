//! `CountingFront`: an in-process HTTP/1.1 reverse proxy on 127.0.0.1 in
//! front of an upstream registry, used as "the origin" in tests. It forwards
//! method, path+query, headers (Authorization, Range, Accept, and the
//! client's Host, so upload `Location`s point back at the front) and streams
//! bodies both ways without buffering. It records every request (method,
//! path, status, Range, body bytes sent) and injects faults per blob digest
//! (see [`Fault`]) plus an optional pace for blob bodies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::Uri;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use crate::front_body::Fault;
use crate::front_proxy::serve;

use crate::error::{Error, IoContext, Result};

/// What the front saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Request path (no query).
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Status sent to the client.
    pub status: u16,
    /// The client's `Range` header, if any.
    pub range: Option<String>,
    /// The client's `Accept` header, if any.
    pub accept: Option<String>,
    /// The client's `Authorization` header, if any (e.g. `Basic …`).
    pub authorization: Option<String>,
    /// Response body bytes sent to the client so far.
    pub body_bytes: u64,
}

pub(crate) struct Entry {
    pub(crate) record: RequestRecord,
    pub(crate) bytes: Arc<AtomicU64>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) entries: Mutex<Vec<Entry>>,
    pub(crate) faults: Mutex<HashMap<String, (Fault, usize)>>,
    pub(crate) rate: Arc<AtomicU64>,
}

/// A counting, fault-injecting reverse proxy. Stops serving when dropped.
pub struct CountingFront {
    addr: SocketAddr,
    upstream: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for CountingFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingFront").field("url", &self.url()).field("upstream", &self.upstream).finish()
    }
}

/// The digest if `path` is `/v2/<name>/blobs/<digest>`.
pub(crate) fn blob_digest(path: &str) -> Option<&str> {
    let (before, digest) = path.rsplit_once('/')?;
    (before.starts_with("/v2/") && before.ends_with("/blobs") && digest.contains(':')).then_some(digest)
}

impl CountingFront {
    /// Starts a front for `upstream_url` (e.g. `http://127.0.0.1:5000`).
    pub async fn start(upstream_url: &str) -> Result<CountingFront> {
        let upstream: Uri =
            upstream_url.parse().map_err(|e| Error::invalid("upstream URL", format!("{upstream_url}: {e}")))?;
        if upstream.scheme_str() != Some("http") || upstream.authority().is_none() {
            return Err(Error::invalid(
                "upstream URL",
                format!("{upstream_url}: use http://HOST:PORT (the front speaks plain HTTP)"),
            ));
        }
        let listener =
            TcpListener::bind("127.0.0.1:0").await.ctx(|| "binding the counting front to 127.0.0.1:0".to_string())?;
        let addr = listener.local_addr().ctx(|| "reading the counting front address".to_string())?;
        let state = Arc::new(State::default());
        let base = format!("http://{}", upstream.authority().expect("checked above").as_str());
        let task = tokio::spawn(serve(listener, base.clone(), state.clone()));
        Ok(CountingFront { addr, upstream: base, state, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The upstream base URL.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Snapshot of every request since the last reset, in arrival order of
    /// their responses.
    pub fn requests(&self) -> Vec<RequestRecord> {
        let entries = self.state.entries.lock().expect("front lock");
        entries
            .iter()
            .map(|e| RequestRecord { body_bytes: e.bytes.load(Ordering::SeqCst), ..e.record.clone() })
            .collect()
    }

    fn blob_records(&self, digest: Option<&str>) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET")
            .filter(|r| match (blob_digest(&r.path), digest) {
                (Some(d), Some(want)) => d == want,
                (Some(_), None) => true,
                (None, _) => false,
            })
            .collect()
    }

    /// GET requests whose path ends with `/blobs/<digest>`.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.blob_records(Some(digest)).len()
    }

    /// Body bytes actually sent for that blob (all GETs, counted as written).
    pub fn blob_bytes(&self, digest: &str) -> u64 {
        self.blob_records(Some(digest)).iter().map(|r| r.body_bytes).sum()
    }

    /// GETs of any blob.
    pub fn total_blob_gets(&self) -> usize {
        self.blob_records(None).len()
    }

    /// Body bytes sent for all blobs.
    pub fn total_blob_bytes(&self) -> u64 {
        self.blob_records(None).iter().map(|r| r.body_bytes).sum()
    }

    /// Requests (any method) for `/v2/.../manifests/...`.
    pub fn manifest_requests(&self) -> usize {
        self.requests().iter().filter(|r| r.path.starts_with("/v2/") && r.path.contains("/manifests/")).count()
    }

    /// Forgets all records (bytes of responses still streaming are dropped).
    pub fn reset_counts(&self) {
        self.state.entries.lock().expect("front lock").clear();
    }

    /// Applies `fault` to the next `times` GETs of blob `digest` (replacing
    /// any fault set for it before; `times` 0 removes it).
    pub fn set_fault(&self, digest: &str, fault: Fault, times: usize) {
        let mut faults = self.state.faults.lock().expect("front lock");
        if times == 0 {
            faults.remove(digest);
        } else {
            faults.insert(digest.to_string(), (fault, times));
        }
    }

    /// Removes all pending faults.
    pub fn clear_faults(&self) {
        self.state.faults.lock().expect("front lock").clear();
    }

    /// Paces every blob body to at most this many bytes per second (per
    /// response); `None` removes the limit. Takes effect on bodies already
    /// streaming too.
    pub fn set_rate_limit(&self, bytes_per_sec: Option<u64>) {
        self.state.rate.store(bytes_per_sec.unwrap_or(0), Ordering::SeqCst);
    }
}

impl Drop for CountingFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_blob_paths() {
        assert_eq!(blob_digest("/v2/a/b/blobs/sha256:ab"), Some("sha256:ab"));
        assert_eq!(blob_digest("/v2/a/blobs/uploads/"), None);
        assert_eq!(blob_digest("/v2/a/manifests/sha256:ab"), None);
    }
}
