//! Harbor's preheat API: the endpoints Harbor's built-in "Dragonfly"
//! provider driver calls, so an operator registers shoal in Harbor as a
//! Dragonfly instance and Harbor's preheat policies warm shoal's nodes.
//!
//! The scheduler serves it (`shoal scheduler --harbor-listen`): it is the
//! cluster-wide process with a Service Harbor can reach, it holds the
//! prewarm jobs and the live node list, and it talks to every node over the
//! mutually authenticated scheduler channel. (A daemon's admin API answers
//! loopback only, and each daemon knows only itself.)
//!
//! A preheat, end to end:
//! 1. `POST /oapi/v1/jobs` ([`wire`]) names a manifest URL and carries
//!    Harbor's short-lived pull token for that repository. The answer is
//!    `PENDING` with an integer id ([`table`]).
//! 2. At once, the scheduler fetches the manifest with that token, follows
//!    an index to the configured platforms and pins each platform's image
//!    manifest by digest ([`resolve`]). A refusal ends the job `FAILURE`
//!    with the registry's reason.
//! 3. The core's prewarm job ([`crate::jobs`]) names the nodes the scope
//!    picks; the token rides with each node's assignment as a
//!    [`shoal_proto::JobCredential`], in memory only, dropped when every
//!    node has finished. Each node warms the pinned images through its own
//!    mirror sending the token as the client's `Authorization`, exactly as
//!    a `containerd` pull with those credentials would: the mirror's access
//!    checks ask the registry with that token before serving, the nodes
//!    the scheduler grants the origin (one per blob by default) fetch each
//!    blob with it, and the others get the pieces from their peers. The token is never written to
//!    disk or logs, and a later pull is still checked with the puller's own
//!    credentials, so warming a private image makes it servable to no one
//!    who could not pull it anyway.
//! 4. `GET /oapi/v1/jobs/{id}` answers `PENDING` until every node finished,
//!    then `SUCCESS` (a node holds every image) with one success task per
//!    blob and node and one failure task per image a node failed, or
//!    `FAILURE` with each node's reason.
//!
//! Harbor authenticates with the mode configured here ([`auth`]): none
//! (loopback only), basic or bearer; anything else gets 401. With a
//! certificate and key the API speaks HTTPS only ([`tls`]), so those
//! credentials and the pull tokens do not cross the network in clear.
//!
//! Jobs live on the replica that took the `POST`: with several replicas,
//! Harbor must keep talking to the same one (see docs/operations.md).

pub mod api;
pub mod auth;
pub mod resolve;
pub mod table;
pub mod tls;
pub mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use shoal_prewarm::Platform;
use shoal_proto::{JobCredential, NodeSelector, PrewarmSpec};
use tokio_util::sync::CancellationToken;

pub use auth::ProviderAuth;
pub use tls::HarborTls;

use crate::service::SchedulerService;
use resolve::{ManifestUrl, ResolveError};
use table::{Phase, Record, Records, TooMany};
use wire::{CreateJob, JobResponse, Scope};

/// The Harbor API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarborConfig {
    /// Address Harbor reaches.
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate; `None`: plain HTTP.
    pub tls: Option<HarborTls>,
    /// Longest a client may take to finish its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// The credentials Harbor must send.
    pub auth: ProviderAuth,
    /// Platforms taken from an image index (`linux/amd64`); empty: the
    /// scheduler machine's own.
    pub platforms: Vec<String>,
    /// Nodes an `all_seed_peers` preheat warms (fewer when fewer are live).
    pub seed_peers: u32,
    /// Longest wait for the registry while resolving an image.
    pub resolve_timeout: Duration,
    /// How long a finished job stays queryable.
    pub keep_finished: Duration,
    /// Most jobs held at once.
    pub max_jobs: usize,
    /// PEM certificates trusted for the registry's HTTPS besides the
    /// built-in web roots (a Harbor with a private CA).
    pub ca_bundle: Option<Vec<u8>>,
}

impl Default for HarborConfig {
    fn default() -> Self {
        HarborConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 65007)),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
            auth: ProviderAuth::None,
            platforms: Vec::new(),
            seed_peers: 3,
            resolve_timeout: Duration::from_secs(30),
            keep_finished: Duration::from_secs(3600),
            max_jobs: 1024,
            ca_bundle: None,
        }
    }
}

/// Why the Harbor API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HarborError {
    /// No authentication on an address others can reach.
    #[error(
        "the Harbor preheat API would listen on {0}, which is not a loopback address, without authentication: \
         set --harbor-auth basic or bearer with --harbor-credentials-file (SHOAL_HARBOR_AUTH, \
         SHOAL_HARBOR_CREDENTIALS_FILE), or listen on 127.0.0.1"
    )]
    Unauthenticated(SocketAddr),
    /// A platform cannot be parsed.
    #[error("--harbor-platforms: {0}")]
    Platform(#[from] shoal_prewarm::PrewarmError),
    /// The CA bundle holds no usable certificate.
    #[error("--harbor-ca-bundle: {0}")]
    CaBundle(String),
    /// The listener's certificate cannot be used.
    #[error("--harbor-tls-cert: {0}")]
    TlsCert(String),
    /// The listener's private key cannot be used.
    #[error("--harbor-tls-key: {0}")]
    TlsKey(String),
}

impl HarborConfig {
    /// Refuses settings that would be unsafe or unusable; returns the
    /// platforms to resolve.
    pub fn check(&self) -> Result<Vec<Platform>, HarborError> {
        if self.auth == ProviderAuth::None && !self.listen.ip().is_loopback() {
            return Err(HarborError::Unauthenticated(self.listen));
        }
        self.roots()?;
        Ok(Platform::parse_all_or_host(&self.platforms)?)
    }

    /// Whether Harbor's credentials and pull tokens would cross a network
    /// in clear: plain HTTP on an address other hosts can reach. Allowed
    /// (TLS may end at a proxy in front) but worth a warning.
    pub fn clear_text_off_loopback(&self) -> bool {
        self.tls.is_none() && !self.listen.ip().is_loopback()
    }

    /// The certificates of [`HarborConfig::ca_bundle`].
    fn roots(&self) -> Result<Vec<reqwest::Certificate>, HarborError> {
        let Some(pem) = &self.ca_bundle else {
            return Ok(Vec::new());
        };
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| HarborError::CaBundle(format!("not a PEM certificate bundle ({e})")))?;
        if certs.is_empty() {
            return Err(HarborError::CaBundle(
                "holds no PEM certificates (expected -----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        Ok(certs)
    }
}

/// The Harbor API around a scheduler service. Cloning shares it.
#[derive(Clone)]
pub struct HarborApi {
    inner: Arc<Inner>,
}

struct Inner {
    config: HarborConfig,
    platforms: Vec<Platform>,
    service: SchedulerService,
    client: reqwest::Client,
    records: Mutex<Records>,
}

/// Why a create was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateError {
    #[error(transparent)]
    BadUrl(#[from] ResolveError),
    #[error(transparent)]
    TooMany(#[from] TooMany),
}

impl HarborApi {
    /// The API for `service`'s core, once `config` passed [`HarborConfig::check`].
    pub fn new(config: HarborConfig, service: SchedulerService) -> Result<HarborApi, HarborError> {
        let platforms = config.check()?;
        let records = Records::new(SystemTime::now(), config.keep_finished, config.max_jobs);
        let client = resolve::http_client(config.resolve_timeout, config.roots()?);
        Ok(HarborApi { inner: Arc::new(Inner { config, platforms, service, client, records: Mutex::new(records) }) })
    }

    /// The settings.
    pub fn config(&self) -> &HarborConfig {
        &self.inner.config
    }

    /// Serves on `listener` until `stop` fires: HTTPS only when
    /// [`HarborConfig::tls`] is set, else plain HTTP.
    pub async fn serve(self, listener: tokio::net::TcpListener, stop: CancellationToken) -> std::io::Result<()> {
        let router = self.router();
        let stopped = stop.cancelled_owned();
        match &self.inner.config.tls {
            Some(tls) => {
                let listener = tls::TlsListener::new(listener, tls, self.inner.config.tls_handshake_timeout)?;
                axum::serve(listener, router).with_graceful_shutdown(stopped).await
            }
            None => axum::serve(listener, router).with_graceful_shutdown(stopped).await,
        }
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        self.inner.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the job and starts resolving it; answers `PENDING`.
    pub(crate) fn create(&self, job: CreateJob) -> Result<JobResponse, CreateError> {
        let url = resolve::parse_manifest_url(&job.url)?;
        let now = SystemTime::now();
        let salt = rand::random::<u32>();
        let id = self.records().insert(now, |id| Record {
            internal: format!("harbor-{id}-{salt:08x}"),
            url: url.clone(),
            cluster_id: job.cluster_id,
            created: now,
            updated: now,
            phase: Phase::Resolving,
        })?;
        tracing::info!(id, url = %job.url, scope = ?job.scope, "harbor preheat job created");
        let response = self.records().get(id).map(|r| r.response(id)).expect("just inserted");
        tokio::spawn(self.clone().run(id, url, job.authorization, job.scope));
        Ok(response)
    }

    /// Resolves the image with Harbor's token and starts the core's job.
    async fn run(self, id: u64, url: ManifestUrl, authorization: Option<String>, scope: Scope) {
        let resolved = tokio::time::timeout(
            self.inner.config.resolve_timeout,
            resolve::resolve(&self.inner.client, &url, authorization.as_deref(), &self.inner.platforms),
        )
        .await
        .unwrap_or_else(|_| {
            Err(ResolveError::BadManifest {
                url: format!("{}/v2/{}/manifests/{}", url.base, url.repo, url.reference),
                reason: format!("the registry did not answer within {:?}", self.inner.config.resolve_timeout),
            })
        });
        let images = match resolved {
            Ok(images) => images,
            Err(e) => {
                tracing::warn!(id, error = %e, "harbor preheat job failed to resolve its image");
                if let Some(r) = self.records().get_mut(id) {
                    r.fail(SystemTime::now(), e.to_string());
                }
                return;
            }
        };
        let Some(internal) = self.records().get(id).map(|r| r.internal.clone()) else {
            return;
        };
        let spec =
            PrewarmSpec { images: images.iter().map(|i| table::node_image(&url, i)).collect(), platforms: vec![] };
        let submitted = {
            let core = self.inner.service.core();
            let mut core = core.lock().unwrap_or_else(|p| p.into_inner());
            let now = self.inner.service.now();
            let selector = match scope {
                Scope::SingleSeedPeer => NodeSelector::Count(1),
                Scope::AllSeedPeers => {
                    let live = u32::try_from(core.live_hosts(now)).unwrap_or(u32::MAX);
                    NodeSelector::Count(self.inner.config.seed_peers.min(live).max(1))
                }
                Scope::AllPeers => NodeSelector::All,
            };
            core.submit_own_prewarm(now, internal.clone(), spec, &selector, authorization.map(JobCredential::new))
        };
        let mut records = self.records();
        let Some(r) = records.get_mut(id) else {
            return;
        };
        match submitted {
            Ok(nodes) => {
                tracing::info!(id, job = %internal, nodes = nodes.len(), images = images.len(), "harbor preheat job running");
                r.phase = Phase::Running { images };
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "harbor preheat job found no nodes");
                r.fail(SystemTime::now(), e.to_string());
            }
        }
    }

    /// Where job `id` stands; `None` for an unknown id.
    pub(crate) fn status(&self, id: u64) -> Option<JobResponse> {
        let (internal, url, images, cluster_id) = {
            let mut records = self.records();
            records.prune(SystemTime::now());
            let r = records.get(id)?;
            match &r.phase {
                Phase::Running { images } => (r.internal.clone(), r.url.clone(), images.clone(), r.cluster_id),
                Phase::Resolving | Phase::Finished { .. } => return Some(r.response(id)),
            }
        };
        let finished = {
            let core = self.inner.service.core();
            let core = core.lock().unwrap_or_else(|p| p.into_inner());
            match core.prewarm_status(self.inner.service.now(), &internal) {
                Ok(job) if job.is_finished() => {
                    let ip = |h: &shoal_core::HostId| core.host_addr(h).map(|a| a.ip().to_string()).unwrap_or_default();
                    Some(Ok(table::outcome(&url, &images, &job, cluster_id, ip)))
                }
                Ok(_) => None,
                Err(e) => Some(Err(format!("the scheduler no longer holds this job ({e})"))),
            }
        };
        let mut records = self.records();
        let r = records.get_mut(id)?;
        if matches!(r.phase, Phase::Running { .. }) {
            match finished {
                Some(Ok((state, result))) => {
                    tracing::info!(id, state = ?state, "harbor preheat job finished");
                    r.finish(SystemTime::now(), state, result);
                }
                Some(Err(reason)) => r.fail(SystemTime::now(), reason),
                None => {}
            }
        }
        Some(r.response(id))
    }
}
