//! Blob downloads: one task per digest, shared by every request for it.
//!
//! The [`TaskManager`] is the single-flight map: the first request for a
//! cold blob starts a task, later ones join it and read the same partial
//! file as it fills. A task outlives the request that started it (another
//! client may be reading, and the bytes are worth keeping), ends on its own
//! when the blob is complete or has failed, and is then removed so the next
//! request sees the store (or retries).
//!
//! - [`progress`]: what a download has made readable (pure data).
//! - [`download`]: the async driver that talks to the origin, with retries.
//! - [`sink`]: the blocking side that writes, hashes and records pieces.
//! - `via_swarm`: the download path through the scheduler and parents.
//! - `swarm_view`: the downloads as the swarm's piece server sees them.

pub mod download;
pub mod progress;
pub mod sink;
mod swarm_view;
mod via_swarm;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use shoal_core::{Digest, PieceLayout, RepoName, TaskId};
use shoal_origin::{Caller, OriginClient, OriginError};
use shoal_storage::{BlobReader, Store, StoreError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use progress::{Phase, Progress};

/// Why a blob download failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The origin refused or failed (after retries where retrying helps).
    #[error(transparent)]
    Origin(#[from] OriginError),
    /// The bytes did not hash to the blob's digest; nothing was kept.
    #[error("origin {registry} sent bytes for {expected} that hash to {actual}; discarded them (nothing was kept)")]
    DigestMismatch {
        /// Registry name.
        registry: String,
        /// The digest asked for.
        expected: Digest,
        /// What the bytes hashed to.
        actual: Digest,
    },
    /// The origin announced a different size than the one recorded.
    #[error(
        "origin {registry} now announces {announced} bytes for {digest}, not {size}; the partial download was dropped"
    )]
    SizeChanged {
        /// Registry name.
        registry: String,
        /// The blob.
        digest: Digest,
        /// Size recorded earlier.
        size: u64,
        /// Size the origin announced.
        announced: u64,
    },
    /// Every piece matched the piece map that peers vouched for, but the
    /// blob has the wrong digest: those peers' map was wrong. They were
    /// reported (and lose their authority); the blob is fetched again.
    #[error(
        "pieces of {digest} matched the piece map vouched for by peer(s) {}, but the blob hashes to {actual}: \
         their map was wrong; reported them, nothing was kept, and the blob is being fetched again",
        peers.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    )]
    BadPieceMap {
        /// The blob.
        digest: Digest,
        /// The peers that vouched for the pieces.
        peers: Vec<shoal_core::HostId>,
        /// What the bytes hashed to.
        actual: Digest,
    },
    /// The task's registry did not prove it holds the stored bytes (they
    /// came from another registry).
    #[error(transparent)]
    Unproved(#[from] crate::access::proof::ProofError),
    /// The local store failed.
    #[error("piece store: {0}")]
    Store(#[from] StoreError),
    /// The daemon is shutting down.
    #[error("download of {0} stopped: the daemon is shutting down")]
    Cancelled(Digest),
    /// A blocking job panicked or was aborted.
    #[error("internal error in the download of {digest}: {detail}")]
    Internal {
        /// The blob.
        digest: Digest,
        /// What went wrong.
        detail: String,
    },
}

/// Download tuning shared by all tasks.
#[derive(Debug, Clone)]
pub struct DownloadConfig {
    /// How long to keep retrying a failing origin before giving up on a blob.
    pub retries: u32,
    /// First backoff between retries (doubles, capped at 5 s).
    pub backoff: Duration,
    /// Times an origin download whose bytes failed the blob's digest is
    /// fetched again before the blob's download fails for good. With no
    /// piece map from the origin no piece is verified before the whole
    /// blob is, so each retry is a fresh download from byte 0 (in a new
    /// task: responses that streamed the bad bytes are cut).
    pub corrupt_retries: u32,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig { retries: 4, backoff: Duration::from_millis(200), corrupt_retries: 2 }
    }
}

/// One blob download.
pub struct Task {
    /// The blob.
    pub digest: Digest,
    /// Repository it was asked for under.
    pub repo: RepoName,
    /// Registry name.
    pub registry: String,
    /// When it started.
    pub started: SystemTime,
    progress: watch::Receiver<Progress>,
    reader: OnceLock<BlobReader>,
    /// This node fetches (part of) the blob from the origin: its pieces
    /// enter the swarm here.
    seeding: AtomicBool,
    /// Where the client reads from (a byte offset): a Range request into
    /// the blob while it downloads moves the swarm's window there.
    read_at: watch::Sender<u64>,
}

impl Task {
    /// The swarm task: this blob as fetched from this registry.
    pub fn id(&self) -> TaskId {
        TaskId::new(&self.registry, self.digest.clone()).expect("registry names are canonical host[:port]")
    }

    /// Whether this node fetches (part of) the blob from the origin, so its
    /// fresh pieces exist nowhere else in the swarm yet.
    pub fn seeding(&self) -> bool {
        self.seeding.load(Ordering::Relaxed)
    }

    /// A receiver of this task's progress.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// A client reads the blob from byte `offset` on (a Range request):
    /// the download fetches from there first.
    pub fn read_from(&self, offset: u64) {
        self.read_at.send_if_modified(|at| std::mem::replace(at, offset) != offset);
    }

    /// The client's read position (a byte offset), as it changes.
    pub fn read_position(&self) -> watch::Receiver<u64> {
        self.read_at.subscribe()
    }

    /// A reader of the (partial or complete) blob file, once it exists.
    pub fn reader(&self) -> Option<BlobReader> {
        self.reader.get().cloned()
    }

    /// Wait until the origin answered (size known) or the task failed.
    pub async fn wait_started(&self, deadline: Duration) -> Result<PieceLayout, StartError> {
        let mut rx = self.progress.clone();
        let wait = rx.wait_for(|p| !matches!(p.phase, Phase::Starting));
        match tokio::time::timeout(deadline, wait).await {
            Err(_) => Err(StartError::Timeout(deadline)),
            Ok(Err(_)) => Err(StartError::Gone),
            Ok(Ok(p)) => match &p.phase {
                Phase::Failed(e) => Err(StartError::Failed(e.clone())),
                _ => Ok(p.layout.expect("layout known once started")),
            },
        }
    }
}

/// Why waiting for a task to start failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The task failed.
    #[error(transparent)]
    Failed(Arc<TaskError>),
    /// The origin did not answer in time.
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    /// The task vanished without a final state (a bug or a panic).
    #[error("the download ended without a result")]
    Gone,
}

/// A task as shown by `shoal status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskSnapshot {
    /// The blob.
    pub digest: Digest,
    /// Repository.
    pub repo: String,
    /// Registry.
    pub registry: String,
    /// Blob size, once known.
    pub size: Option<u64>,
    /// Bytes written so far.
    pub bytes_done: u64,
    /// Seconds since it started.
    pub age_secs: u64,
}

/// The single-flight map of downloads.
pub struct TaskManager {
    tasks: Mutex<HashMap<Digest, Arc<Task>>>,
    store: Store,
    metrics: Metrics,
    config: DownloadConfig,
    cancel: CancellationToken,
    swarm: Option<Arc<crate::swarm::Swarm>>,
}

impl TaskManager {
    /// A manager writing into `store`.
    pub fn new(
        store: Store,
        metrics: Metrics,
        config: DownloadConfig,
        swarm: Option<Arc<crate::swarm::Swarm>>,
    ) -> Arc<TaskManager> {
        Arc::new(TaskManager {
            tasks: Mutex::new(HashMap::new()),
            store,
            metrics,
            config,
            cancel: CancellationToken::new(),
            swarm,
        })
    }

    /// The running task for `digest`, or a new one fetching it from `origin`
    /// on behalf of `caller` (whose credentials go to the origin). One
    /// download per digest: a request naming another registry than the
    /// running task's must have that registry prove it holds the blob first
    /// (`crate::access::proof`).
    pub fn get_or_start(
        self: &Arc<Self>,
        origin: Arc<OriginClient>,
        repo: &RepoName,
        digest: &Digest,
        caller: Caller,
    ) -> Arc<Task> {
        self.start_sized(origin, repo, digest, caller, None)
    }

    /// [`get_or_start`](Self::get_or_start) knowing the blob's size from a
    /// manifest's descriptor (`size`), which spares a new download its
    /// `HEAD` for the size.
    pub fn start_sized(
        self: &Arc<Self>,
        origin: Arc<OriginClient>,
        repo: &RepoName,
        digest: &Digest,
        caller: Caller,
        size: Option<u64>,
    ) -> Arc<Task> {
        self.start_attempt(origin, repo, digest, caller, size, 0)
    }

    /// [`start_sized`](Self::start_sized) for the `attempt`-th fetch of a
    /// blob whose earlier fetches had the wrong digest (0: the first).
    fn start_attempt(
        self: &Arc<Self>,
        origin: Arc<OriginClient>,
        repo: &RepoName,
        digest: &Digest,
        caller: Caller,
        size: Option<u64>,
        attempt: u32,
    ) -> Arc<Task> {
        let mut tasks = self.tasks.lock().expect("task map poisoned");
        if let Some(t) = tasks.get(digest) {
            return t.clone();
        }
        let (tx, rx) = watch::channel(Progress::starting());
        let task = Arc::new(Task {
            digest: digest.clone(),
            repo: repo.clone(),
            registry: origin.registry().to_owned(),
            started: SystemTime::now(),
            progress: rx,
            reader: OnceLock::new(),
            seeding: AtomicBool::new(false),
            read_at: watch::Sender::new(0),
        });
        tasks.insert(digest.clone(), task.clone());
        drop(tasks);
        let job = download::Download {
            manager: self.clone(),
            task: task.clone(),
            origin,
            caller,
            size,
            progress: tx,
            attempt,
        };
        tokio::spawn(job.run());
        task
    }

    /// The store downloads write into.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The download of `digest`, if one is running.
    pub fn get(&self, digest: &Digest) -> Option<Arc<Task>> {
        self.tasks.lock().expect("task map poisoned").get(digest).cloned()
    }

    /// Snapshots of the downloads in progress.
    pub fn snapshot(&self) -> Vec<TaskSnapshot> {
        let tasks = self.tasks.lock().expect("task map poisoned");
        let mut out: Vec<TaskSnapshot> = tasks
            .values()
            .map(|t| {
                let p = t.progress.borrow();
                TaskSnapshot {
                    digest: t.digest.clone(),
                    repo: t.repo.to_string(),
                    registry: t.registry.clone(),
                    size: p.size(),
                    bytes_done: p.bytes_done(),
                    age_secs: t.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
                }
            })
            .collect();
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        out
    }

    /// Stop every download (shutdown); partial pieces stay for resume.
    pub fn cancel_all(&self) {
        self.cancel.cancel();
    }

    fn finished(&self, task: &Arc<Task>) {
        let mut tasks = self.tasks.lock().expect("task map poisoned");
        if tasks.get(&task.digest).is_some_and(|t| Arc::ptr_eq(t, task)) {
            tasks.remove(&task.digest);
        }
    }
}
