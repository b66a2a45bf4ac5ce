//! Authorization that survives the cache: before the mirror answers with
//! any content (manifest or blob, GET or HEAD, from the store, a download in
//! flight or a stale tag), the origin configured for the request's registry
//! has confirmed, with the request's own credentials (anonymously when it
//! has none), that the repository in the path can be read and holds that
//! digest.
//!
//! - [`fingerprint`]: whose credentials, as a keyed hash (never the secret).
//! - [`cache`]: the origin's recent answers (pure, time passed in).
//! - [`proof`]: a registry proving it holds bytes the store got from another.
//! - [`node_token`]: the daemon's own requests through its mirror.
//! - this file: [`Gate`], which asks the origin (a `HEAD` by digest) when
//!   the cache does not know, and decides what a client may get while the
//!   origin cannot be reached.
//!
//! # While the origin is unreachable
//! Content the origin last confirmed as readable without credentials
//! (public: recorded in the store) stays available to everyone, however
//! long the outage; content of a private repository goes only to
//! credentials the origin confirmed within `auth_ttl` (the cache); anything
//! else is refused quickly with 503, so containerd goes to the origin
//! itself. Both stale answers are counted.

pub mod cache;
pub mod fingerprint;
pub mod node_token;
pub mod proof;

pub use node_token::NodeToken;

use std::sync::Mutex;
use std::time::Duration;

use shoal_core::{Digest, Reference, RepoName};
use shoal_origin::{Caller, OriginClient, OriginError};
use shoal_storage::Store;

use crate::metrics::{AccessLabels, AccessResult, Metrics};
use cache::{AuthCache, Lookup, Refusal, RepoKey};
use fingerprint::Fingerprinter;

/// How long the origin's answers are trusted, and how long it is waited for.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// How long a confirmation (this credential may read this repository,
    /// which holds these digests) is reused without asking the origin. Zero
    /// asks for every request. Also how long private content stays
    /// available to those credentials while the origin is unreachable.
    pub auth_ttl: Duration,
    /// How long a refusal (401, 403, 404) is reused.
    pub refusal_ttl: Duration,
    /// The longest wait for the origin's answer to a check; past it the
    /// origin counts as unreachable.
    pub auth_wait: Duration,
    /// Most cached answers of each kind (confirmations, refusals).
    pub capacity: usize,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            auth_ttl: Duration::from_secs(300),
            refusal_ttl: Duration::from_secs(5),
            auth_wait: Duration::from_secs(10),
            capacity: 10_000,
        }
    }
}

/// What is being read.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A blob by digest.
    Blob(&'a Digest),
    /// A manifest by digest.
    Manifest(&'a Digest),
}

impl Subject<'_> {
    fn digest(&self) -> &Digest {
        match self {
            Subject::Blob(d) | Subject::Manifest(d) => d,
        }
    }
}

/// How a read was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// The origin confirmed it within `auth_ttl`.
    Cached,
    /// The origin confirmed it just now; for a blob, with its size.
    Origin {
        /// The blob's size as the origin's `HEAD` gave it.
        size: Option<u64>,
    },
    /// The origin is unreachable and the content is public (last confirmed
    /// readable without credentials).
    Public,
}

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// The origin refused (401/403, with its challenge) or does not hold it
    /// (404).
    #[error(transparent)]
    Refused(OriginError),
    /// The origin cannot be reached to confirm access, and nothing lets the
    /// content out without it.
    #[error(
        "registry {registry} cannot be reached to confirm access to {repo}@{digest} ({cause}); \
         shoal serves it without the origin only to credentials confirmed in the last {ttl:?}, \
         or to anyone when the origin last said it was public"
    )]
    Unavailable {
        /// The registry.
        registry: String,
        /// The repository.
        repo: String,
        /// The content.
        digest: Digest,
        /// The confirmation window.
        ttl: Duration,
        /// Why the origin could not answer.
        cause: OriginError,
    },
    /// The origin failed otherwise (a malformed answer, a 400).
    #[error(transparent)]
    Failed(OriginError),
}

/// The mirror's authorization checks; see the module docs.
pub struct Gate {
    config: AccessConfig,
    fingerprints: Fingerprinter,
    cache: Mutex<AuthCache>,
    epoch: tokio::time::Instant,
    store: Store,
    metrics: Metrics,
}

impl Gate {
    /// A gate recording public content in `store`.
    pub fn new(config: AccessConfig, store: Store, metrics: Metrics) -> Gate {
        let cache = AuthCache::new(config.auth_ttl, config.refusal_ttl, config.capacity);
        Gate {
            config,
            fingerprints: Fingerprinter::new(),
            cache: Mutex::new(cache),
            epoch: tokio::time::Instant::now(),
            store,
            metrics,
        }
    }

    /// The settings it runs with.
    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, AuthCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(&self, registry: &str, repo: &RepoName, caller: &Caller) -> RepoKey {
        RepoKey { who: self.fingerprints.of(caller), registry: registry.to_owned(), repo: repo.to_string() }
    }

    fn count(&self, result: AccessResult) {
        self.metrics.access_checks.get_or_create(&AccessLabels { result }).inc();
    }

    /// May `caller` read `subject` in `repo` at `origin`'s registry? Asks
    /// the origin (a `HEAD` by digest, with the caller's credentials) unless
    /// a recent answer is cached.
    pub async fn check(
        &self,
        origin: &OriginClient,
        repo: &RepoName,
        subject: Subject<'_>,
        caller: &Caller,
    ) -> Result<Allowed, Denied> {
        let registry = origin.registry();
        let key = self.key(registry, repo, caller);
        let digest = subject.digest();
        match self.cache().lookup(self.now(), &key, digest) {
            Lookup::Allowed => {
                self.count(AccessResult::cached);
                return Ok(Allowed::Cached);
            }
            Lookup::Refused(r) => {
                self.count(AccessResult::refused);
                return Err(Denied::Refused(rebuild(registry, repo, digest, r)));
            }
            Lookup::Unknown => {}
        }
        let ask = async {
            match subject {
                Subject::Blob(d) => origin.head_blob(repo, d, caller).await.map(Some),
                Subject::Manifest(d) => {
                    origin.head_manifest(repo, &Reference::Digest(d.clone()), &[], caller).await.map(|_| None)
                }
            }
        };
        match within(origin, self.config.auth_wait, ask).await {
            Ok(size) => {
                self.confirmed(registry, repo, caller, std::slice::from_ref(digest)).await;
                self.count(AccessResult::origin);
                Ok(Allowed::Origin { size })
            }
            Err(e) if is_refusal(&e) => {
                self.refused(registry, repo, caller, digest, &e).await;
                self.count(AccessResult::refused);
                Err(Denied::Refused(e))
            }
            Err(e) if e.is_retryable() => {
                if self.offline(registry, repo, caller, digest).await == Some(Allowed::Public) {
                    self.count(AccessResult::public_stale);
                    tracing::warn!(%registry, %repo, %digest, error = %e, "origin unreachable; serving public content without its confirmation");
                    return Ok(Allowed::Public);
                }
                self.count(AccessResult::unavailable);
                let (registry, repo, ttl) = (registry.to_owned(), repo.to_string(), self.config.auth_ttl);
                Err(Denied::Unavailable { registry, repo, digest: digest.clone(), ttl, cause: e })
            }
            Err(e) => {
                self.count(AccessResult::error);
                Err(Denied::Failed(e))
            }
        }
    }

    /// The origin just answered `caller` with content naming `digests` in
    /// `repo` (a manifest by tag or digest): they may be read for
    /// `auth_ttl`, and for everyone while the origin is down if the caller
    /// was anonymous.
    pub async fn confirmed(&self, registry: &str, repo: &RepoName, caller: &Caller, digests: &[Digest]) {
        let key = self.key(registry, repo, caller);
        self.cache().allow(self.now(), &key, digests);
        if key.who.is_anonymous() {
            self.remember_public(registry, repo, digests).await;
        }
    }

    /// `digests` are listed by a manifest `caller` was just authorised for
    /// in `repo` (its config and layers, or an index's manifests): they
    /// need no check of their own while that authorisation lasts.
    pub async fn vouch(&self, registry: &str, repo: &RepoName, caller: &Caller, digests: &[Digest]) {
        let key = self.key(registry, repo, caller);
        self.cache().vouch(self.now(), &key, digests);
        if key.who.is_anonymous() {
            self.remember_public(registry, repo, digests).await;
        }
    }

    /// Whether `caller` may read `digest` in `repo` while the origin cannot
    /// be asked: the origin confirmed it for those credentials within
    /// `auth_ttl` (`Cached`), or last let anonymous clients read it
    /// (`Public`, for everyone).
    pub async fn offline(&self, registry: &str, repo: &RepoName, caller: &Caller, digest: &Digest) -> Option<Allowed> {
        if self.cache().allowed(self.now(), &self.key(registry, repo, caller), digest) {
            return Some(Allowed::Cached);
        }
        let (store, registry, repo, digest) =
            (self.store.clone(), registry.to_owned(), repo.to_string(), digest.clone());
        let public = tokio::task::spawn_blocking(move || store.public_since(&registry, &repo, &digest)).await;
        matches!(public, Ok(Ok(Some(_)))).then_some(Allowed::Public)
    }

    /// The origin refused `caller` `digest` in `repo` (401/403/404): keep
    /// the refusal for `refusal_ttl`, and if the caller was anonymous the
    /// content (a 404) or the whole repository (401/403) is not public any
    /// more.
    pub async fn refused(&self, registry: &str, repo: &RepoName, caller: &Caller, digest: &Digest, e: &OriginError) {
        let Some(refusal) = refusal_of(e) else { return };
        let key = self.key(registry, repo, caller);
        let not_found = refusal.status == 404;
        self.cache().refuse(self.now(), &key, digest, refusal);
        if key.who.is_anonymous() {
            self.forget_public(registry, repo, not_found.then(|| digest.clone())).await;
        }
    }

    /// The origin refused `caller` the repository itself (a tag answered
    /// 401/403): if the caller was anonymous, nothing of it is public any
    /// more.
    pub async fn repo_refused(&self, registry: &str, repo: &RepoName, caller: &Caller, e: &OriginError) {
        if matches!(e, OriginError::Unauthorized { .. }) && self.fingerprints.of(caller).is_anonymous() {
            self.forget_public(registry, repo, None).await;
        }
    }

    async fn remember_public(&self, registry: &str, repo: &RepoName, digests: &[Digest]) {
        let (registry, repo, digests) = (registry.to_owned(), repo.to_string(), digests.to_vec());
        self.store_job("record public content", move |s| s.record_public(&registry, &repo, &digests)).await;
    }

    /// `digest` (`None`: everything) of `registry/repo` is not public any
    /// more.
    async fn forget_public(&self, registry: &str, repo: &RepoName, digest: Option<Digest>) {
        let (registry, repo) = (registry.to_owned(), repo.to_string());
        self.store_job("forget public content", move |s| s.forget_public(&registry, &repo, digest.as_ref())).await;
    }

    /// Run a store update on the blocking pool; a failure is logged (the
    /// record only widens what is served while the origin is down).
    async fn store_job(
        &self,
        what: &str,
        job: impl FnOnce(&Store) -> Result<(), shoal_storage::StoreError> + Send + 'static,
    ) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || job(&store)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not {what}"),
            Err(e) => tracing::warn!(error = %e, "could not {what}"),
        }
    }
}

/// `ask` the origin, giving it at most `wait`: an origin that hangs counts
/// as unreachable (a retryable [`OriginError::Timeout`]) instead of holding
/// the client for the origin client's own retries.
pub async fn within<T>(
    origin: &OriginClient,
    wait: Duration,
    ask: impl std::future::Future<Output = Result<T, OriginError>>,
) -> Result<T, OriginError> {
    tokio::time::timeout(wait, ask).await.unwrap_or_else(|_| {
        Err(OriginError::Timeout {
            registry: origin.registry().to_owned(),
            url: origin.base_url().to_string(),
            after: wait,
        })
    })
}

/// A refusal the client should see as the origin sent it.
fn is_refusal(e: &OriginError) -> bool {
    matches!(e, OriginError::Unauthorized { .. } | OriginError::NotFound { .. })
}

fn refusal_of(e: &OriginError) -> Option<Refusal> {
    match e {
        OriginError::Unauthorized { status, www_authenticate, body, .. } => {
            Some(Refusal { status: *status, challenge: www_authenticate.clone(), body: body.clone() })
        }
        OriginError::NotFound { body, .. } => Some(Refusal { status: 404, challenge: None, body: body.clone() }),
        _ => None,
    }
}

/// The origin error a cached refusal stands for.
fn rebuild(registry: &str, repo: &RepoName, digest: &Digest, r: Refusal) -> OriginError {
    match r.status {
        404 => {
            OriginError::NotFound {
                registry: registry.to_owned(), url: format!("/v2/{repo}/…/{digest}"), body: r.body
            }
        }
        status => OriginError::Unauthorized {
            registry: registry.to_owned(),
            status,
            www_authenticate: r.challenge,
            body: r.body,
        },
    }
}
