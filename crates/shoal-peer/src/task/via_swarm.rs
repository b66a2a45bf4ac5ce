//! The download path when the node is part of a swarm.
//!
//! 1. Learn the blob's size: from the manifest that listed it (prefetch),
//!    else a HEAD with the client's credentials. (The client's access was
//!    checked before the task was started or joined: `crate::access`.)
//! 2. Join the task, (registry, digest), at the scheduler. With the origin
//!    grant, fetch the missing runs from the origin (this node is a seed,
//!    and an authority for the task's piece hashes). Otherwise fetch pieces
//!    from the parents offered, checked against the hashes of the task's
//!    authorities (or the scheduler's final map); when they cannot make
//!    progress, ask again (new parents, or the grant once a seed died or
//!    stalled), waiting longer each time a round made none.
//! 3. If the scheduler is unreachable, or the swarm has not delivered for
//!    `give_up_after`, fetch the rest from the origin: a pull never fails
//!    because the swarm did.
//! 4. If every piece matched its trusted hash but the blob has the wrong
//!    digest, the authorities that vouched for those pieces lied or erred:
//!    they are reported (`BadMap`), lose their authority, and the blob is
//!    fetched again (see `download.rs`).
//!
//! Progress is reported to the scheduler as pieces land, so peers joining
//! later get this node as a parent while it is still downloading; a seed
//! that completes reports its final piece map.

use std::sync::Arc;

use shoal_core::{PieceIndex, PieceLayout, TaskId};
use shoal_proto::{FailureKind, HaveState};
use tokio::sync::{mpsc, watch};

use super::download::{Begin, Driver, runs_of};
use super::progress::{Phase, Progress};
use super::sink::SinkMsg;
use super::{Task, TaskError};
use crate::metrics::{FailureLabels, Metrics};
use crate::swarm::Swarm;
use crate::swarm::fetch::{self, End, Failure, PieceSink, ToOrigin, WriterGone};
use crate::swarm::trust::TrustedMap;

impl Driver {
    pub(super) async fn drive_swarm(
        &self,
        sw: &Arc<Swarm>,
        progress: Arc<watch::Sender<Progress>>,
    ) -> Result<(), TaskError> {
        let store = self.manager.store.clone();
        let digest = self.task.digest.clone();
        let info = self.blocking(move || store.blob_info(&digest)).await?;
        let size = match &info {
            Some(i) if i.complete => return self.already_complete(&progress).await,
            Some(i) => i.size,
            None => match self.size_hint {
                Some(size) => size,
                None => self.origin.head_blob(&self.task.repo, &self.task.digest, &self.caller).await?,
            },
        };
        let writer = match self.begin(size).await? {
            Begin::Write(w) => w,
            Begin::AlreadyComplete => return self.already_complete(&progress).await,
        };
        let (layout, held, tx, sink_job) = self.start_sink(writer, &progress);
        let task = self.task.id();
        let reporter = tokio::spawn(report(sw.clone(), self.task.clone(), progress.subscribe()));
        let sink = Sink { tx: &tx, sw, task: &task, metrics: &self.manager.metrics };
        let (ended, core) = fetch::fetch(sw, &task, layout, held, &sink, self.task.read_position()).await;
        let fed = match ended {
            Ok(End::Complete) => Ok(()),
            Ok(End::Origin(why)) => {
                match &why {
                    ToOrigin::Granted => tracing::debug!(%task, "origin grant: this node seeds the task"),
                    ToOrigin::SchedulerUnreachable(e) => {
                        tracing::warn!(%task, error = %e, "scheduler unreachable; fetching the rest from the origin")
                    }
                    ToOrigin::GaveUp(after) => {
                        tracing::warn!(%task, ?after, "the swarm did not deliver in time; fetching the rest from the origin")
                    }
                }
                self.origin_rest(&core.missing(), layout, &tx).await
            }
            Err(WriterGone) => Err(self.internal("the writer thread stopped".into())),
        };
        let ended = self.finish_sink(fed, tx, sink_job).await;
        let ended = self.blame(sw, &task, core.trust(), ended).await;
        if ended.is_err() {
            // The reporter waits for the task's final phase, which is
            // published only once this returns: stop it, and leave here.
            reporter.abort();
            sw.leave(&task).await;
        } else {
            let _ = reporter.await;
        }
        ended
    }

    /// A digest mismatch after pieces matched the trusted map: the map was
    /// wrong. Report who vouched for those pieces and say so.
    async fn blame(
        &self,
        sw: &Arc<Swarm>,
        task: &TaskId,
        trust: &TrustedMap,
        ended: Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        let Err(TaskError::DigestMismatch { actual, .. }) = &ended else { return ended };
        let peers = trust.blame();
        if peers.is_empty() {
            return ended; // every byte came from the origin
        }
        for p in &peers {
            let f = Failure { parent: p.clone(), piece: 0, kind: FailureKind::BadMap };
            count_failure(&self.manager.metrics, &f);
            sw.piece_failed(task, &f).await;
        }
        tracing::error!(%task, ?peers, %actual, "pieces matched the peers' piece map but the blob has the wrong digest; reported them");
        Err(TaskError::BadPieceMap { digest: self.task.digest.clone(), peers, actual: actual.clone() })
    }

    /// Fetch the `missing` pieces from the origin.
    async fn origin_rest(
        &self,
        missing: &[PieceIndex],
        layout: PieceLayout,
        tx: &mpsc::Sender<SinkMsg>,
    ) -> Result<(), TaskError> {
        self.task.seeding.store(true, std::sync::atomic::Ordering::Relaxed);
        let runs = runs_of(missing, layout);
        self.feed(&runs, None, layout.blob_size, tx).await
    }
}

/// The download as the swarm's fetch driver sees it: verified pieces go
/// to the writer thread; failures are counted and reported.
struct Sink<'a> {
    tx: &'a mpsc::Sender<SinkMsg>,
    sw: &'a Arc<Swarm>,
    task: &'a TaskId,
    metrics: &'a Metrics,
}

impl PieceSink for Sink<'_> {
    async fn store(&self, index: u32, bytes: bytes::Bytes, hash: [u8; 32]) -> Result<(), WriterGone> {
        self.tx.send(SinkMsg::Piece { index, bytes, hash }).await.map_err(|_| WriterGone)
    }

    fn failed(&self, failure: Failure) {
        count_failure(self.metrics, &failure);
        let (sw, task) = (self.sw.clone(), self.task.clone());
        tokio::spawn(async move { sw.piece_failed(&task, &failure).await });
    }
}

/// Count a parent's failure (`shoal_piece_failures_total`).
fn count_failure(metrics: &Metrics, f: &Failure) {
    let kind = match f.kind {
        FailureKind::Corrupt => "corrupt",
        FailureKind::Timeout => "timeout",
        FailureKind::Unreachable => "unreachable",
        FailureKind::Missing => "missing",
        FailureKind::BadMap => "bad_map",
    };
    metrics.piece_failures.get_or_create(&FailureLabels { kind: kind.into() }).inc();
}

/// Tell the scheduler about progress as pieces land (at most every
/// `progress_every`), and about completion, with the final piece map when
/// this node read the blob from the origin (it is the task's authority).
async fn report(sw: Arc<Swarm>, t: Arc<Task>, mut rx: watch::Receiver<Progress>) {
    let task = t.id();
    let final_map = |p: &Progress| t.seeding().then(|| p.hashes.clone());
    let mut last = None;
    loop {
        let (done, total, phase, map) = {
            let p = rx.borrow_and_update();
            let map = matches!(p.phase, Phase::Done).then(|| final_map(&p)).flatten();
            (p.pieces_done(), p.pieces.len() as u32, p.phase.clone(), map)
        };
        let complete = matches!(phase, Phase::Done);
        if matches!(phase, Phase::Failed(_)) {
            sw.leave(&task).await;
            return;
        }
        if last != Some((done, complete)) && !matches!(phase, Phase::Starting) {
            sw.progress(&task, HaveState { pieces_done: done, pieces_total: Some(total), complete }, map).await;
            last = Some((done, complete));
        }
        if complete {
            return;
        }
        tokio::time::sleep(sw.config.tuning.progress_every).await;
        if rx.changed().await.is_err() {
            let (done, total, phase, map) = {
                let p = rx.borrow();
                (p.pieces_done(), p.pieces.len() as u32, p.phase.clone(), final_map(&p))
            };
            match phase {
                Phase::Done => {
                    let have = HaveState { pieces_done: done, pieces_total: Some(total), complete: true };
                    sw.progress(&task, have, map).await
                }
                _ => sw.leave(&task).await,
            }
            return;
        }
    }
}
