//! The registry mirror endpoint containerd pulls through (OCI distribution
//! spec, pull side).
//!
//! - [`mod@self`]: routing, request context, method, URL and `?ns=` checks.
//! - [`base`]: `/v2/`, answered as the origin answers it.
//! - [`blobs`]: blob GET/HEAD from the store or a shared download.
//! - [`manifests`]: tags resolved at the origin, digests from the store.
//! - [`prefetch`]: starting an image's blobs when its manifest is served.
//! - [`body`]: streaming blob bodies that follow a download.
//! - [`refetch`]: a body's way back when the stored copy is damaged.
//! - [`errors`]: mapping failures to OCI error answers.
//! - [`refusals`]: the answers for content the access check refused.
//! - [`listing`]: the digests a manifest lists (which its readers may read).
//! - [`log`]: one outcome record per request.

pub mod base;
pub mod blobs;
pub mod body;
pub mod errors;
pub mod listing;
pub mod log;
pub mod manifests;
pub mod prefetch;
pub mod refetch;
pub mod refusals;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use shoal_core::Route;
use shoal_origin::{Caller, OriginClient, OriginError, Upstreams};
use shoal_storage::Store;

use crate::metrics::{Kind, Metrics, Outcome};
use crate::oci_error::{ErrorCode, OciError};
use crate::serve::ServeConfig;
use crate::task::TaskManager;
use log::RequestLog;

/// Mirror behaviour.
#[derive(Debug, Clone)]
pub struct MirrorConfig {
    /// Answer a tag from the last digest seen for it when the origin is
    /// unreachable (logged and counted as stale).
    pub stale_tags: bool,
    /// How long a blob request waits for the origin to start answering.
    pub origin_wait: Duration,
    /// How long a streaming response waits for new bytes before it is cut.
    pub body_stall: Duration,
    /// Chunk sizes and memory budget of blob bodies.
    pub body: body::BodyBuffers,
    /// Start every blob of an image manifest when it is served (see
    /// [`prefetch`]).
    pub prefetch: bool,
    /// Connection limits of the mirror's listener.
    pub http: ServeConfig,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            stale_tags: true,
            origin_wait: Duration::from_secs(60),
            body_stall: Duration::from_secs(120),
            body: body::BodyBuffers::default(),
            prefetch: true,
            http: ServeConfig::default(),
        }
    }
}

/// Shared state of the mirror handlers.
#[derive(Clone)]
pub struct Mirror {
    /// The piece store.
    pub store: Store,
    /// Origin clients per registry.
    pub upstreams: Arc<Upstreams>,
    /// Blob downloads.
    pub tasks: Arc<TaskManager>,
    /// Metrics.
    pub metrics: Metrics,
    /// Behaviour.
    pub config: MirrorConfig,
    /// The origin's confirmation before content is served.
    pub access: Arc<crate::access::Gate>,
    /// The daemon's own requests (prewarm jobs) through the mirror.
    pub node_token: Arc<crate::access::NodeToken>,
}

/// One request's inputs.
pub struct Ctx {
    /// GET or HEAD.
    pub head: bool,
    /// Request headers.
    pub headers: HeaderMap,
    /// The `ns` query parameter: which registry.
    pub ns: Option<String>,
    /// The raw query string (passed on for tag lists).
    pub query: Option<String>,
    /// The outcome record.
    pub log: RequestLog,
}

impl Ctx {
    /// The client's Authorization header, passed to the origin.
    pub fn auth(&self) -> Option<HeaderValue> {
        self.headers.get(header::AUTHORIZATION).cloned()
    }

    /// The client's Accept list, split into media types.
    pub fn accept(&self) -> Vec<String> {
        self.headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Finish a non-streamed answer.
    pub fn reply(mut self, resp: Response, result: Outcome) -> Response {
        self.log.respond(resp.status().as_u16(), result);
        resp
    }
}

impl Mirror {
    /// The router: every path goes through [`dispatch`].
    pub fn router(self) -> Router {
        Router::new().fallback(dispatch).with_state(self)
    }

    /// The origin client for this request's registry.
    pub fn origin(&self, ctx: &Ctx) -> Result<Arc<OriginClient>, OriginError> {
        self.upstreams.resolve(ctx.ns.as_deref())
    }

    /// On whose behalf this request goes to `origin`: the client's own
    /// credentials, anonymous when it sent none (the node's where the
    /// registry shares them), or the node's for the daemon's own requests.
    pub fn caller(&self, origin: &OriginClient, ctx: &Ctx) -> Caller {
        match ctx.auth() {
            Some(h) if self.node_token.matches(&h) => Caller::Node,
            h => origin.caller_for(h),
        }
    }

    /// Run a store call on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, shoal_storage::StoreError> + Send + 'static,
    ) -> Result<T, shoal_storage::StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// The longest request target (path and query) answered. Real ones are
/// far shorter: a repository name is at most 255 characters, a tag 128, a
/// digest 135 (`sha512:` and 128 hex digits), a registry name in `?ns=` 253
/// plus a port, so an OCI request stays under about 1 KiB. hyper refuses
/// targets past 64 KiB with an empty 414 of its own; below that, shoal
/// answers with an OCI error body that says why.
pub const MAX_REQUEST_TARGET: usize = 4096;

fn ns_of(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "ns" && !v.is_empty()).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// At most `max` characters of a client-supplied string, for messages and
/// logs.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

async fn dispatch(State(m): State<Mirror>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let target = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    let log = RequestLog::new(m.metrics.clone(), method.clone(), &shorten(uri.path(), 512));
    let mut ctx = Ctx {
        head: method == Method::HEAD,
        ns: ns_of(uri.query()),
        query: uri.query().map(str::to_owned),
        headers,
        log,
    };
    if target > MAX_REQUEST_TARGET {
        let e = OciError::new(
            StatusCode::URI_TOO_LONG,
            ErrorCode::NameInvalid,
            format!(
                "the request URL is {target} bytes; shoal answers at most {MAX_REQUEST_TARGET} (repository names \
                 are at most 255 characters and digests 135)"
            ),
        );
        return ctx.reply(e.into_response(), Outcome::error);
    }
    if let Some(ns) = ctx.ns.as_deref()
        && shoal_origin::upstreams::canonical_name(ns).is_none()
    {
        let e = OciError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::NameInvalid,
            format!(
                "?ns={:?} is not a registry host[:port] (such as docker.io or registry.example:5000)",
                shorten(ns, 100)
            ),
        );
        return ctx.reply(e.into_response(), Outcome::error);
    }
    // A registry the operator did not list is refused for every route, cached
    // content included (resolving builds nothing for it).
    if let Err(e @ OriginError::UnknownRegistry(_)) = m.upstreams.resolve(ctx.ns.as_deref()) {
        return ctx.reply(errors::origin_error(&e, errors::Subject::Other), Outcome::error);
    }
    let route = match Route::parse(uri.path()) {
        Ok(r) => r,
        Err(e) => return ctx.reply(errors::route_error(&e), Outcome::error),
    };
    ctx.log.kind(match &route {
        Route::Base => Kind::base,
        Route::Manifest(..) => Kind::manifest,
        Route::Blob(..) => Kind::blob,
        Route::TagList(_) => Kind::tags,
        Route::Unsupported => Kind::other,
    });
    if !(method == Method::GET || method == Method::HEAD) || route == Route::Unsupported {
        let e = OciError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
            format!(
                "{method} {} is not supported: shoal is a read-only pull-through mirror; push to the origin registry",
                uri.path()
            ),
        );
        let mut resp = e.into_response();
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return ctx.reply(resp, Outcome::error);
    }
    match route {
        Route::Base => base::handle(&m, ctx).await,
        Route::Manifest(repo, reference) => manifests::handle(&m, ctx, repo, reference).await,
        Route::Blob(repo, digest) => blobs::handle(&m, ctx, repo, digest).await,
        Route::TagList(repo) => manifests::tag_list(&m, ctx, repo).await,
        Route::Unsupported => unreachable!("answered above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_parameter() {
        assert_eq!(ns_of(Some("ns=docker.io")), Some("docker.io".into()));
        assert_eq!(ns_of(Some("a=b&ns=127.0.0.1%3A5000")), Some("127.0.0.1:5000".into()));
        assert_eq!(ns_of(Some("ns=")), None);
        assert_eq!(ns_of(None), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn shortened_client_strings() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "abc...");
        assert_eq!(shorten("ééé", 2), "éé...");
    }
}
