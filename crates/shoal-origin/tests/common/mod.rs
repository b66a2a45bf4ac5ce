//! An in-process origin registry for the tests: an axum server on
//! 127.0.0.1:0 that serves manifests, blobs and tag lists, a token endpoint
//! at `/token`, and a second "object storage" server blobs can redirect to.
//! Every request is recorded so tests can assert exact counts and headers.
#![allow(dead_code, unreachable_pub, unused_imports)]

mod blobs;
mod handler;

pub use blobs::{BlobMode, Storage};

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::Method;
use bytes::Bytes;
use shoal_core::Digest;
use shoal_origin::{OriginClient, RegistryConfig};
use url::Url;

/// How the origin wants to be authenticated.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthMode {
    None,
    /// `Authorization: Basic` with exactly this value.
    Basic(String),
    /// A token from `/token` (any token in `valid_tokens`).
    Bearer,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub accept: Option<String>,
    pub range: Option<String>,
    pub body: Bytes,
}

pub struct Shared {
    pub auth: Mutex<AuthMode>,
    /// Required on the token endpoint (`None`: anonymous tokens are given).
    pub token_basic: Mutex<Option<String>>,
    pub refresh_token: Mutex<Option<String>>,
    pub valid_tokens: Mutex<HashSet<String>>,
    pub token_fetches: AtomicU32,
    pub expires_in: AtomicU64,
    pub seen: Mutex<Vec<Seen>>,
    pub manifests: Mutex<HashMap<String, (String, Bytes)>>,
    pub blobs: Mutex<HashMap<String, Bytes>>,
    pub blob_mode: Mutex<BlobMode>,
    pub challenge: Mutex<String>,
    pub wrong_digest_header: Mutex<bool>,
    /// Answer this many upcoming API requests with 503 + `Retry-After: 0`.
    pub fail_next: AtomicU32,
    /// Refuse every token, valid or not.
    pub reject_tokens: AtomicBool,
}

pub struct Origin {
    pub addr: SocketAddr,
    pub url: Url,
    pub state: Arc<Shared>,
}

pub fn bearer_challenge(origin: &Url, scope: &str) -> String {
    format!(r#"Bearer realm="{origin}token",service="test-registry",scope="{scope}""#)
}

impl Origin {
    pub async fn start(auth: AuthMode) -> Origin {
        let state = Arc::new(Shared {
            auth: Mutex::new(auth),
            token_basic: Mutex::new(None),
            refresh_token: Mutex::new(None),
            valid_tokens: Mutex::new(HashSet::new()),
            token_fetches: AtomicU32::new(0),
            expires_in: AtomicU64::new(300),
            seen: Mutex::new(Vec::new()),
            manifests: Mutex::new(HashMap::new()),
            blobs: Mutex::new(HashMap::new()),
            blob_mode: Mutex::new(BlobMode::Normal),
            challenge: Mutex::new(String::new()),
            wrong_digest_header: Mutex::new(false),
            fail_next: AtomicU32::new(0),
            reject_tokens: AtomicBool::new(false),
        });
        let addr = serve(Router::new().fallback(handler::handle).with_state(state.clone())).await;
        let url: Url = format!("http://{addr}/").parse().unwrap();
        Origin { addr, url, state }
    }

    pub fn client(&self, config: RegistryConfig) -> OriginClient {
        let creds = match (&config.username, &config.password) {
            (Some(u), Some(p)) => Some(shoal_origin::Credentials::basic(u, p)),
            _ => None,
        };
        OriginClient::new(self.addr.to_string(), self.url.clone(), &config, creds).unwrap()
    }

    pub fn add_manifest(&self, repo: &str, tag: &str, media_type: &str, body: &[u8]) -> Digest {
        let d = Digest::sha256_of(body);
        let mut m = self.state.manifests.lock().unwrap();
        let entry = (media_type.to_owned(), Bytes::copy_from_slice(body));
        m.insert(format!("{repo}@{tag}"), entry.clone());
        m.insert(format!("{repo}@{d}"), entry);
        d
    }

    pub fn add_blob(&self, body: &[u8]) -> Digest {
        let d = Digest::sha256_of(body);
        let b = Bytes::copy_from_slice(body);
        self.state.blobs.lock().unwrap().insert(d.to_string(), b);
        d
    }

    pub fn set_blob_mode(&self, m: BlobMode) {
        *self.state.blob_mode.lock().unwrap() = m;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests other than to `/token`.
    pub fn api_requests(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path != "/token").collect()
    }

    pub fn token_requests(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == "/token").collect()
    }

    pub fn token_fetches(&self) -> u32 {
        self.state.token_fetches.load(Ordering::SeqCst)
    }
}

/// Serve `router` on 127.0.0.1:0 in the background.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

/// Read a blob stream to the end: the bytes, and the error that ended it.
pub async fn drain(mut s: shoal_origin::BlobStream) -> (Vec<u8>, Option<shoal_origin::OriginError>) {
    let mut out = Vec::new();
    while let Some(c) = s.next_chunk().await {
        match c {
            Ok(b) => out.extend_from_slice(&b),
            Err(e) => {
                assert!(s.next_chunk().await.is_none(), "stream goes on after an error");
                return (out, Some(e));
            }
        }
    }
    (out, None)
}

pub fn fast_config() -> RegistryConfig {
    RegistryConfig {
        timeout: shoal_core::HumanDuration(Duration::from_secs(5)),
        read_timeout: shoal_core::HumanDuration(Duration::from_secs(5)),
        ..RegistryConfig::default()
    }
}
