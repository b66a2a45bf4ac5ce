//! The async driver of one blob download: decides which byte runs are
//! missing, streams them from the origin with bounded retries (resuming at
//! the exact byte where a stream broke), and feeds the blocking [`Sink`].
//!
//! Failure handling: retryable origin errors (connect failures, resets,
//! stalls, short bodies, 5xx, 429) are retried from the current offset with
//! exponential backoff; after `retries` failures without progress the task
//! fails and every waiting response is cut short. Non-retryable answers
//! (401, 404, …) fail the task at once so they can be passed back.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::FutureExt;
use shoal_core::{PieceIndex, PieceLayout};
use shoal_origin::{BlobStream, Caller, OriginClient, OriginError};
use shoal_storage::{BlobReader, BlobWriter, StoreError};
use tokio::sync::{mpsc, watch};

use super::progress::{Phase, Progress};
use super::sink::{Sink, SinkEnd, SinkMsg};
use super::{Task, TaskError, TaskManager};
use crate::access::proof::{self, ProofError};
use crate::metrics::{Kind, KindLabels};
use crate::swarm::downlink::Owed;

/// The blocking sink's job handle.
pub(super) type SinkJob = tokio::task::JoinHandle<Result<SinkEnd, TaskError>>;

/// Progress made since the last failure that earns a fresh retry budget.
const PROGRESS_RESETS_RETRIES: u64 = 1 << 20;
/// Most bytes handed to the sink in one message.
const BATCH: usize = 512 << 10;

/// Everything one download needs.
pub struct Download {
    /// The owning manager (store, metrics, config).
    pub manager: Arc<TaskManager>,
    /// The task being driven.
    pub task: Arc<Task>,
    /// The origin to fetch from.
    pub origin: Arc<OriginClient>,
    /// On whose behalf (with whose credentials) the origin is asked: the
    /// first client's.
    pub caller: Caller,
    /// The blob's size, when a manifest's descriptor gave it.
    pub size: Option<u64>,
    /// Where progress is published.
    pub progress: watch::Sender<Progress>,
    /// Earlier fetches of this blob whose bytes had the wrong digest.
    pub attempt: u32,
}

impl Download {
    /// Drive the download to its end and publish the outcome.
    pub async fn run(self) {
        let manager = self.manager.clone();
        let task = self.task.clone();
        manager.metrics.active_downloads.inc();
        let cancel = manager.cancel.clone();
        let progress = Arc::new(self.progress);
        let (origin, caller) = (self.origin.clone(), self.caller.clone());
        let driver = Driver {
            manager: manager.clone(),
            task: task.clone(),
            origin: self.origin,
            caller: self.caller,
            size_hint: self.size,
        };
        let started = Instant::now();
        let result = tokio::select! {
            r = driver.drive(progress.clone()) => r,
            _ = cancel.cancelled() => Err(TaskError::Cancelled(task.digest.clone())),
        };
        let refetch = matches!(result, Err(TaskError::BadPieceMap { .. }));
        // The origin sent bytes that failed the digest (a flipped bit on
        // the way, a bad cache in front of it): fetch again, a bounded
        // number of times, in a new task so that responses which streamed
        // the bad bytes are cut while later ones get the new fetch.
        // Not for a `shoal get` file: its digest came from the user, whose
        // typo must not cost the origin the file several times over.
        let corrupt = matches!(result, Err(TaskError::DigestMismatch { .. }))
            && self.attempt < manager.config.corrupt_retries
            && !crate::files::key::is_file(&task.registry);
        match result {
            Ok(()) => {
                tracing::info!(digest = %task.digest, repo = %task.repo, secs = started.elapsed().as_secs_f64(), "blob complete")
            }
            Err(e) => {
                tracing::warn!(digest = %task.digest, repo = %task.repo, error = %e, "blob download failed");
                progress.send_modify(|p| p.phase = Phase::Failed(Arc::new(e)));
            }
        }
        manager.metrics.active_downloads.dec();
        manager.finished(&task);
        // Peers' map was wrong and they were reported: fetch the blob again
        // at once (the scheduler now grants the origin or names another
        // authority), so the client's retry finds it under way.
        if refetch {
            manager.get_or_start(origin, &task.repo, &task.digest, caller);
        } else if corrupt {
            let attempt = self.attempt + 1;
            manager.metrics.origin_retries.inc();
            tracing::warn!(digest = %task.digest, attempt, "fetching the blob again after a digest mismatch");
            tokio::time::sleep(backoff(manager.config.backoff, attempt)).await;
            manager.start_attempt(origin, &task.repo, &task.digest, caller, self.size, attempt);
        }
    }
}

pub(super) struct Driver {
    pub(super) manager: Arc<TaskManager>,
    pub(super) task: Arc<Task>,
    pub(super) origin: Arc<OriginClient>,
    pub(super) caller: Caller,
    pub(super) size_hint: Option<u64>,
}

pub(super) enum Begin {
    Write(BlobWriter),
    AlreadyComplete,
}

impl Driver {
    async fn drive(&self, progress: Arc<watch::Sender<Progress>>) -> Result<(), TaskError> {
        if let Some(swarm) = self.manager.swarm.clone() {
            return self.drive_swarm(&swarm, progress).await;
        }
        let store = self.manager.store.clone();
        let digest = self.task.digest.clone();
        let info = self.blocking(move || store.blob_info(&digest)).await?;
        let mut first = None;
        let begin = match info {
            Some(i) if i.complete => Begin::AlreadyComplete,
            Some(i) => self.begin(i.size).await?,
            None => {
                let stream = self.open_retrying(0).await?;
                let size = stream.total_size;
                first = Some(stream);
                self.begin(size).await?
            }
        };
        let writer = match begin {
            Begin::Write(w) => w,
            Begin::AlreadyComplete => return self.already_complete(&progress).await,
        };
        let runs = runs_of(&writer.missing_pieces(), writer.layout());
        let (layout, _, tx, sink_job) = self.start_sink(writer, &progress);
        let fed = self.feed(&runs, first, layout.blob_size, &tx).await;
        self.finish_sink(fed, tx, sink_job).await
    }

    /// Publish the writer's state as running and start the blocking sink.
    /// Returns the layout, the pieces already held, the sink's inbox and
    /// its job.
    pub(super) fn start_sink(
        &self,
        writer: BlobWriter,
        progress: &Arc<watch::Sender<Progress>>,
    ) -> (PieceLayout, Vec<PieceIndex>, mpsc::Sender<SinkMsg>, SinkJob) {
        let mut writer = writer;
        writer.add_source(&self.task.registry);
        let layout = writer.layout();
        let reader = writer.reader();
        let _ = self.task.reader.set(reader.clone());
        let verified: Vec<_> =
            writer.verified_pieces().into_iter().filter_map(|i| writer.piece_hash(i).map(|h| (i, h))).collect();
        progress.send_replace(Progress::running(layout, &verified));
        let (tx, rx) = mpsc::channel(super::sink::QUEUE);
        let sink = Sink {
            writer,
            reader,
            digest: self.task.digest.clone(),
            registry: self.task.registry.clone(),
            progress: progress.clone(),
            metrics: self.manager.metrics.clone(),
        };
        let job = tokio::task::spawn_blocking(move || sink.run(rx));
        (layout, verified.into_iter().map(|v| v.0).collect(), tx, job)
    }

    /// Tell the sink to verify and complete (if feeding succeeded), wait for
    /// it, and say how the download ended; the sink's own error explains a
    /// feed that found it gone.
    pub(super) async fn finish_sink(
        &self,
        fed: Result<(), TaskError>,
        tx: mpsc::Sender<SinkMsg>,
        job: SinkJob,
    ) -> Result<(), TaskError> {
        if fed.is_ok() {
            let _ = tx.send(SinkMsg::Finish).await;
        }
        drop(tx);
        let sunk = job.await.map_err(|e| self.internal(format!("writer thread: {e}")));
        match (fed, sunk) {
            (Ok(()), Ok(Ok(SinkEnd::Complete))) => Ok(()),
            (Ok(()), Ok(Ok(SinkEnd::Stopped))) => Err(self.internal("writer stopped before the end".into())),
            (_, Ok(Err(e))) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), Err(e)) => Err(e),
        }
    }

    pub(super) async fn feed(
        &self,
        runs: &[Range<u64>],
        mut first: Option<BlobStream>,
        size: u64,
        tx: &mpsc::Sender<SinkMsg>,
    ) -> Result<(), TaskError> {
        let cfg = &self.manager.config;
        // Counted in the swarm's downlink share (peer fetches pace
        // themselves against it).
        let total: u64 = runs.iter().map(|r| r.end - r.start).sum();
        let mut owed = self.manager.swarm.as_ref().map(|s| s.downlink.owe_origin(total));
        for run in runs {
            let mut pos = run.start;
            let mut failures = 0u32;
            let mut since_failure = 0u64;
            let mut stream = first.take().filter(|s| s.start == run.start);
            while pos < run.end {
                let step = match stream.take() {
                    Some(s) => Ok(s),
                    // A run short of the blob's end asks for just that
                    // range, so the origin stops sending where it ends.
                    None => self.open(pos, (run.end < size).then_some(run.end)).await,
                };
                let result = match step {
                    Ok(mut s) => {
                        if s.total_size != size {
                            return Err(TaskError::SizeChanged {
                                registry: self.task.registry.clone(),
                                digest: self.task.digest.clone(),
                                size,
                                announced: s.total_size,
                            });
                        }
                        self.pump(&mut s, &mut pos, run.end, &mut since_failure, &mut owed, tx).await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {}
                    Err(TaskError::Origin(e)) if e.is_retryable() => {
                        if since_failure >= PROGRESS_RESETS_RETRIES {
                            failures = 0;
                        }
                        since_failure = 0;
                        failures += 1;
                        if failures > cfg.retries {
                            return Err(TaskError::Origin(e));
                        }
                        self.manager.metrics.origin_retries.inc();
                        let wait = backoff(cfg.backoff, failures);
                        tracing::info!(digest = %self.task.digest, offset = pos, attempt = failures, error = %e, ?wait, "retrying origin blob stream");
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Copy one origin stream into the sink until `end` or an error. Chunks
    /// already buffered behind the first are batched (up to [`BATCH`]) so
    /// the sink, and the responses following it, wake once per batch rather
    /// than once per network read.
    async fn pump(
        &self,
        s: &mut BlobStream,
        pos: &mut u64,
        end: u64,
        since_failure: &mut u64,
        owed: &mut Option<Owed>,
        tx: &mpsc::Sender<SinkMsg>,
    ) -> Result<(), TaskError> {
        while *pos < end {
            let first = match s.next_chunk().await {
                Some(Ok(bytes)) => bytes,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    return Err(OriginError::BodyTooShort {
                        url: format!("{}/v2/{}/blobs/{}", self.origin.base_url(), self.task.repo, self.task.digest),
                        expected: end,
                        got: *pos,
                    }
                    .into());
                }
            };
            let mut batch = vec![first];
            let mut len = batch[0].len();
            let mut deferred = None;
            while len < BATCH && (*pos + len as u64) < end {
                match s.next_chunk().now_or_never() {
                    Some(Some(Ok(bytes))) => {
                        len += bytes.len();
                        batch.push(bytes);
                    }
                    Some(Some(Err(e))) => {
                        deferred = Some(e);
                        break;
                    }
                    Some(None) | None => break,
                }
            }
            self.manager.metrics.origin_bytes.inc_by(len as u64);
            let mut room = end - *pos;
            for bytes in batch.iter_mut() {
                let keep = (bytes.len() as u64).min(room);
                bytes.truncate(keep as usize);
                room -= keep;
            }
            batch.retain(|b| !b.is_empty());
            let n: u64 = batch.iter().map(|b| b.len() as u64).sum();
            if tx.send(SinkMsg::Chunks { offset: *pos, chunks: batch }).await.is_err() {
                return Err(self.internal("the writer thread stopped".into()));
            }
            *pos += n;
            *since_failure += n;
            if let Some(o) = owed.as_mut() {
                o.arrived(n);
            }
            if let Some(e) = deferred {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Open a stream, retrying retryable failures with backoff.
    pub(super) async fn open_retrying(&self, start: u64) -> Result<BlobStream, TaskError> {
        let cfg = &self.manager.config;
        let mut failures = 0;
        loop {
            match self.open(start, None).await {
                Err(TaskError::Origin(e)) if e.is_retryable() && failures < cfg.retries => {
                    failures += 1;
                    self.manager.metrics.origin_retries.inc();
                    let wait = backoff(cfg.backoff, failures);
                    tracing::info!(digest = %self.task.digest, attempt = failures, error = %e, ?wait, "retrying origin blob request");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn open(&self, start: u64, end: Option<u64>) -> Result<BlobStream, TaskError> {
        let t0 = Instant::now();
        let r = self.origin.get_blob_range(&self.task.repo, &self.task.digest, start, end, &self.caller).await;
        self.manager
            .metrics
            .origin_duration
            .get_or_create(&KindLabels { kind: Kind::blob })
            .observe(t0.elapsed().as_secs_f64());
        Ok(r?)
    }

    /// Open the blob's writer (resuming a partial), recording this task's
    /// registry as the partial's source. A partial left by a download for
    /// another registry is resumed only once this one proved it holds the
    /// same bytes (`crate::access::proof`): its verified pieces would
    /// otherwise go to this task's clients under this registry's name.
    /// Otherwise it is dropped and the blob starts afresh.
    pub(super) async fn begin(&self, size: u64) -> Result<Begin, TaskError> {
        let store = self.manager.store.clone();
        let digest = self.task.digest.clone();
        let opened = self
            .blocking(move || {
                let w = store.begin_write(&digest, size)?;
                let sources = store.blob_info(&digest)?.map(|i| i.sources).unwrap_or_default();
                Ok((w, sources))
            })
            .await;
        let (w, sources) = match opened {
            Ok(found) => found,
            Err(TaskError::Store(StoreError::AlreadyComplete { .. })) => return Ok(Begin::AlreadyComplete),
            Err(e) => return Err(e),
        };
        let registry = self.task.registry.clone();
        let verified = w.verified_pieces();
        let w = if sources.contains(&registry) || verified.is_empty() {
            w
        } else {
            let digest = &self.task.digest;
            match self.establish(&w.reader(), &verified).await {
                Ok(()) => w,
                Err(ProofError::Unreachable(e)) => return Err(TaskError::Origin(e)),
                Err(e) => {
                    tracing::warn!(%digest, %registry, error = %e, "partial download from another registry not resumed; starting afresh");
                    let (store, d) = (self.manager.store.clone(), digest.clone());
                    self.blocking(move || {
                        w.discard()?;
                        store.begin_write(&d, size)
                    })
                    .await?
                }
            }
        };
        let (store, d) = (self.manager.store.clone(), self.task.digest.clone());
        self.blocking(move || store.add_blob_source(&d, &registry)).await?;
        Ok(Begin::Write(w))
    }

    /// The blob is complete in the store: the task ends at once, once this
    /// task's registry is known to hold those bytes (or proved it does).
    pub(super) async fn already_complete(&self, progress: &watch::Sender<Progress>) -> Result<(), TaskError> {
        let store = self.manager.store.clone();
        let digest = self.task.digest.clone();
        let found = self.blocking(move || Ok((store.open_blob(&digest)?, store.blob_info(&digest)?))).await?;
        let (Some(reader), info) = found else {
            return Err(self.internal("blob vanished from the store while being opened".into()));
        };
        if !info.is_some_and(|i| i.complete_from(&self.task.registry)) {
            let all: Vec<PieceIndex> = (0..reader.layout().count()).collect();
            self.establish(&reader, &all).await?;
        }
        let layout = reader.layout();
        let _ = self.task.reader.set(reader);
        progress.send_replace(Progress { phase: Phase::Done, ..Progress::running(layout, &[]) });
        Ok(())
    }

    /// This task's registry must prove it holds the `verified` pieces of
    /// `reader` (bytes fetched for another registry) before they go to its
    /// clients; it is then recorded as a source (`crate::access::proof`).
    async fn establish(&self, reader: &BlobReader, verified: &[PieceIndex]) -> Result<(), ProofError> {
        let ledger = proof::Ledger { store: &self.manager.store, metrics: &self.manager.metrics };
        let claim = proof::Claim { origin: &self.origin, repo: &self.task.repo, caller: &self.caller };
        proof::establish(ledger, claim, reader, verified, self.origin.read_timeout()).await
    }

    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, TaskError> {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => Ok(r?),
            Err(e) => Err(self.internal(format!("store job: {e}"))),
        }
    }

    pub(super) fn internal(&self, detail: String) -> TaskError {
        TaskError::Internal { digest: self.task.digest.clone(), detail }
    }
}

/// Coalesce missing pieces into contiguous byte runs.
pub fn runs_of(missing: &[PieceIndex], layout: PieceLayout) -> Vec<Range<u64>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for &i in missing {
        let r = layout.range(i);
        match runs.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => runs.push(r),
        }
    }
    runs
}

pub(super) fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(10);
    (base * factor).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_coalesce() {
        let l = PieceLayout::with_piece_size(95, 10);
        assert_eq!(runs_of(&[], l), Vec::<Range<u64>>::new());
        assert_eq!(runs_of(&[0, 1, 2], l), vec![0..30]);
        assert_eq!(runs_of(&[1, 3, 4, 9], l), vec![10..20, 30..50, 90..95]);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_millis(200);
        assert_eq!(backoff(b, 1), Duration::from_millis(200));
        assert_eq!(backoff(b, 2), Duration::from_millis(400));
        assert_eq!(backoff(b, 30), Duration::from_secs(5));
    }
}
