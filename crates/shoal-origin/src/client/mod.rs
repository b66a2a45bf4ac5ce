//! [`OriginClient`]: one per origin registry. It owns a pooled HTTP client
//! (rustls, HTTP/1.1 and HTTP/2) and a token cache, and offers the registry
//! operations the mirror needs.
//!
//! - this file: construction and the public operations;
//! - `exchange`: one HTTP exchange (timeouts, error mapping, status
//!   classes, bounded body reads);
//! - `auth_flow`: forwarding a client's `Authorization`, or authenticating
//!   as the daemon (challenge → Basic or token → retry);
//! - [`file`]: one plain HTTP(S) file in place of a registry blob (`shoal get`).

mod auth_flow;
mod exchange;
pub mod file;

use std::sync::Mutex;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, header};
use shoal_core::{Digest, Reference, RepoName};
use url::Url;

use crate::auth::Credentials;
use crate::auth::cache::TokenCache;
use crate::blob::BlobStream;
use crate::caller::Caller;
use crate::config::RegistryConfig;
use crate::error::{OriginError, redact};
use crate::manifest::{
    self, MAX_MANIFEST_SIZE, ManifestHead, ManifestResponse, RawResponse, header_digest, header_length, media_type,
    media_type_from_body, verify_digest,
};
use crate::retry::RetryPolicy;

use auth_flow::AuthHint;

/// Limit for token server answers.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// A client of one origin registry. Cheap to share behind an `Arc`.
pub struct OriginClient {
    registry: String,
    base_url: Url,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    /// Whether the daemon's credentials answer for clients that send none.
    share_credentials: bool,
    tokens: TokenCache,
    hint: Mutex<AuthHint>,
    timeout: Duration,
    read_timeout: Duration,
    retry: RetryPolicy,
    /// A plain file fetched in place of registry blobs (`shoal get`).
    file: Option<file::FileTarget>,
}

/// One request, before authentication is added.
pub(crate) struct Request<'a> {
    method: Method,
    url: Url,
    headers: HeaderMap,
    /// The token scope for this request (`repository:<name>:pull`), used
    /// to find a cached token up front and when a challenge names none.
    scope: Option<String>,
    /// On whose behalf it goes out (and so which credentials it carries).
    caller: &'a Caller,
}

impl OriginClient {
    /// A client for `registry` (its name as in `?ns=`) at `base_url`.
    /// `config.url` is not consulted (the caller resolved it into
    /// `base_url`); `credentials` are the daemon's own.
    pub fn new(
        registry: impl Into<String>,
        base_url: Url,
        config: &RegistryConfig,
        credentials: Option<Credentials>,
    ) -> Result<OriginClient, OriginError> {
        let registry = registry.into();
        if !matches!(base_url.scheme(), "http" | "https") || base_url.host_str().is_none() {
            return Err(OriginError::Config {
                what: format!("registries.\"{registry}\".url"),
                detail: format!("{base_url} is not an http(s)://host[:port] URL"),
            });
        }
        for (name, d) in [("timeout", config.timeout), ("read_timeout", config.read_timeout)] {
            if d.0.is_zero() {
                return Err(OriginError::Config {
                    what: format!("registries.\"{registry}\".{name}"),
                    detail: "must be longer than zero (e.g. \"30s\")".into(),
                });
            }
        }
        let mut base_url = base_url;
        if !base_url.path().ends_with('/') {
            let p = format!("{}/", base_url.path());
            base_url.set_path(&p);
        }
        base_url.set_query(None);
        let timeout = config.timeout.0;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .tcp_keepalive(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::limited(10))
            .danger_accept_invalid_certs(config.insecure_skip_verify);
        if crate::upstreams::is_loopback_host(base_url.host_str().unwrap_or_default()) {
            builder = builder.no_proxy();
        }
        if let Some(path) = &config.ca_bundle {
            for cert in load_ca_bundle(&registry, path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| OriginError::Config {
            what: format!("HTTP client for registry {registry}"),
            detail: e.to_string(),
        })?;
        Ok(OriginClient {
            registry,
            base_url,
            http,
            credentials,
            share_credentials: config.share_credentials,
            tokens: TokenCache::default(),
            hint: Mutex::new(AuthHint::None),
            timeout,
            read_timeout: config.read_timeout.0,
            retry: RetryPolicy::new(config.retries),
            file: None,
        })
    }

    /// The registry name (as in `?ns=`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The [`Caller`] a mirror request with `authorization` (the client's
    /// own header, if any) is made as: node credentials stand in for a
    /// client that sent none only where `share_credentials` is set.
    pub fn caller_for(&self, authorization: Option<HeaderValue>) -> Caller {
        Caller::for_client(authorization, self.share_credentials)
    }

    /// Where the registry is reached (always ends in `/`).
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The retry policy from the config, for callers that run their own
    /// loops (blob downloads).
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The longest tolerated silence while reading a body.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// GET a manifest (buffered, at most [`MAX_MANIFEST_SIZE`]), retried on
    /// retryable failures. `accept` are the client's `Accept` values (the
    /// standard list if empty). When the reference is a digest, or the
    /// origin sends `Docker-Content-Digest`, the body is checked against it.
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
        caller: &Caller,
    ) -> Result<ManifestResponse, OriginError> {
        let req = self.manifest_request(Method::GET, repo, reference, accept, caller)?;
        let r = self.buffered(&req, MAX_MANIFEST_SIZE).await?;
        let url = redact(&r.url);
        let digest = header_digest(&r.headers, &url)?;
        if let Reference::Digest(asked) = reference {
            verify_digest(asked, &r.body, &url)?;
        }
        if let Some(announced) = &digest {
            verify_digest(announced, &r.body, &url)?;
        }
        let media_type = media_type(r.headers.get(header::CONTENT_TYPE))
            .or_else(|| media_type_from_body(&r.body))
            .ok_or_else(|| OriginError::BadHeader { url, header: "content-type".into(), value: String::new() })?;
        Ok(ManifestResponse { media_type, digest, body: r.body })
    }

    /// HEAD a manifest, retried on retryable failures.
    pub async fn head_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
        caller: &Caller,
    ) -> Result<ManifestHead, OriginError> {
        let req = self.manifest_request(Method::HEAD, repo, reference, accept, caller)?;
        let r = self.buffered(&req, MAX_MANIFEST_SIZE).await?;
        let url = redact(&r.url);
        let media_type = media_type(r.headers.get(header::CONTENT_TYPE)).ok_or_else(|| OriginError::BadHeader {
            url: url.clone(),
            header: "content-type".into(),
            value: String::new(),
        })?;
        Ok(ManifestHead {
            media_type,
            digest: header_digest(&r.headers, &url)?,
            size: header_length(&r.headers, &url)?,
        })
    }

    /// HEAD a blob (following redirects) and return its size, retried on
    /// retryable failures.
    pub async fn head_blob(&self, repo: &RepoName, digest: &Digest, caller: &Caller) -> Result<u64, OriginError> {
        let req = self.blob_request(Method::HEAD, repo, digest, caller)?;
        let r = self.buffered(&req, 0).await?;
        let url = redact(&r.url);
        header_length(&r.headers, &url)?.ok_or(OriginError::BadHeader {
            url,
            header: "content-length".into(),
            value: String::new(),
        })
    }

    /// GET a blob from byte `start` on: ONE attempt (the caller retries,
    /// since it knows how far it got). See [`BlobStream`] for what the
    /// stream guarantees. If a 200 carries no `Content-Length`, the size is
    /// learnt with a HEAD.
    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        start: u64,
        caller: &Caller,
    ) -> Result<BlobStream, OriginError> {
        self.get_blob_range(repo, digest, start, None, caller).await
    }

    /// GET bytes `start..end` of a blob (`end` `None`: to its end), as
    /// [`OriginClient::get_blob`]. An origin that ignores the bounded range
    /// sends more; the stream yields it and the caller stops reading.
    pub async fn get_blob_range(
        &self,
        repo: &RepoName,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
        caller: &Caller,
    ) -> Result<BlobStream, OriginError> {
        let mut req = self.blob_request(Method::GET, repo, digest, caller)?;
        let range = match end {
            Some(end) if end > start => Some(format!("bytes={start}-{}", end - 1)),
            _ if start > 0 => Some(format!("bytes={start}-")),
            _ => None,
        };
        if let Some(range) = range {
            req.headers.insert(header::RANGE, HeaderValue::from_str(&range).expect("ascii"));
        }
        let resp = self.send(&req).await?;
        let url = redact(resp.url());
        let size = if resp.status() == http::StatusCode::PARTIAL_CONTENT {
            None
        } else {
            match header_length(resp.headers(), &url)? {
                Some(n) => Some(n),
                None => Some(self.head_blob(repo, digest, caller).await?),
            }
        };
        let stream = BlobStream::new(resp, &self.registry, start, size, self.read_timeout)?;
        self.check_version(stream.response(), stream.total_size)?;
        Ok(stream)
    }

    /// GET a small pass-through resource such as `/v2/<name>/tags/list`
    /// (buffered, at most [`MAX_MANIFEST_SIZE`]), retried on retryable
    /// failures. Non-success statuses are errors, as for the other calls.
    pub async fn get_raw(&self, path_and_query: &str, caller: &Caller) -> Result<RawResponse, OriginError> {
        let (path, _) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let ok = path.starts_with("/v2/")
            && !path.split('/').any(|s| s == ".." || s == ".")
            && !path.contains("//")
            && !path.contains('\\');
        if !ok {
            return Err(OriginError::BadPath(path_and_query.to_owned()));
        }
        let url =
            self.base_url.join(&path_and_query[1..]).map_err(|_| OriginError::BadPath(path_and_query.to_owned()))?;
        let scope = match shoal_core::Route::parse(path) {
            Ok(shoal_core::Route::TagList(name)) => Some(pull_scope(&name)),
            Ok(shoal_core::Route::Manifest(name, _)) | Ok(shoal_core::Route::Blob(name, _)) => Some(pull_scope(&name)),
            _ => None,
        };
        let req = Request { method: Method::GET, url, headers: HeaderMap::new(), scope, caller };
        let r = self.buffered(&req, MAX_MANIFEST_SIZE).await?;
        let mut headers = HeaderMap::new();
        for name in [header::CONTENT_TYPE, header::LINK, http::HeaderName::from_static(manifest::DOCKER_CONTENT_DIGEST)]
        {
            for v in r.headers.get_all(&name) {
                headers.append(name.clone(), v.clone());
            }
        }
        Ok(RawResponse { status: r.status, headers, body: r.body })
    }

    fn manifest_request<'a>(
        &self,
        method: Method,
        repo: &RepoName,
        reference: &Reference,
        accept: &[String],
        caller: &'a Caller,
    ) -> Result<Request<'a>, OriginError> {
        let url = self.api_url(&format!("v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, manifest::accept_header(accept, url.as_str())?);
        Ok(Request { method, url, headers, scope: Some(pull_scope(repo)), caller })
    }

    fn blob_request<'a>(
        &self,
        method: Method,
        repo: &RepoName,
        digest: &Digest,
        caller: &'a Caller,
    ) -> Result<Request<'a>, OriginError> {
        if let Some(req) = self.file_request(method.clone(), caller) {
            return Ok(req);
        }
        Ok(Request {
            method,
            url: self.api_url(&format!("v2/{repo}/blobs/{digest}"))?,
            headers: HeaderMap::new(),
            scope: Some(pull_scope(repo)),
            caller,
        })
    }

    fn api_url(&self, relative: &str) -> Result<Url, OriginError> {
        self.base_url.join(relative).map_err(|_| OriginError::BadPath(relative.to_owned()))
    }

    /// `GET /v2/` exactly as the mirror's client would send it, one attempt
    /// within `timeout`: with the client's `Authorization` when it has one;
    /// anonymously, with no token flow, when it has none (so a private
    /// registry's challenge comes back for the client to answer); as the
    /// daemon (challenge flow with its credentials) for [`Caller::Node`].
    /// `Ok` for a 2xx; a 401/403 is [`OriginError::Unauthorized`] carrying
    /// the origin's challenge, for the mirror to pass back.
    pub async fn ping(&self, caller: &Caller) -> Result<(), OriginError> {
        let url = self.api_url("v2/")?;
        let req = Request { method: Method::GET, url, headers: HeaderMap::new(), scope: None, caller };
        let resp = match caller {
            Caller::Node => self.send(&req).await?,
            other => {
                let resp = self.exchange(&req, other.client_header()).await?;
                self.check_status(resp).await?
            }
        };
        drop(resp);
        Ok(())
    }
}

/// The scope a pull of `repo` needs.
fn pull_scope(repo: &RepoName) -> String {
    format!("repository:{repo}:pull")
}

/// The certificates of a PEM bundle; errors name the file.
fn load_ca_bundle(registry: &str, path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, OriginError> {
    let what = format!("CA bundle {} (registries.\"{registry}\".ca_bundle)", path.display());
    let pem = std::fs::read(path)
        .map_err(|e| OriginError::Config { what: what.clone(), detail: format!("cannot read it ({e})") })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| OriginError::Config {
        what: what.clone(),
        detail: format!("not a PEM certificate bundle ({e})"),
    })?;
    if certs.is_empty() {
        return Err(OriginError::Config {
            what,
            detail: "holds no PEM certificates (expected -----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(certs)
}

impl std::fmt::Debug for OriginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginClient")
            .field("registry", &self.registry)
            .field("base_url", &self.base_url.as_str())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}
