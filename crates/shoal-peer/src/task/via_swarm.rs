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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use shoal_core::{PieceLayout, TaskId};
use shoal_proto::{FailureKind, HaveState, OriginGrant};
use tokio::sync::{mpsc, watch};

use super::download::{Begin, Driver, runs_of};
use super::progress::{Phase, Progress};
use super::sink::SinkMsg;
use super::{Task, TaskError};
use crate::metrics::FailureLabels;
use crate::swarm::fetch::{Failure, FetchEnd, Fetcher, TaskState};
use crate::swarm::picker::Picker;
use crate::swarm::trust::TrustedMap;
use crate::swarm::{Joined, Swarm};

/// The shortest and longest pause before asking the scheduler again after
/// a round that made no progress (doubling in between): a parent that
/// refuses every connection must not turn into hundreds of joins.
const STUCK_BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(2));

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
        let mut picker = Picker::new(layout.count(), held);
        picker.salt = salt(sw.config.host.as_str());
        let task = self.task.id();
        let mut trust = TrustedMap::new(layout.count());
        let reporter = tokio::spawn(report(sw.clone(), self.task.clone(), progress.subscribe()));
        let fed = self.swarm_loop(sw, &task, layout, &mut picker, &mut trust, &tx).await;
        let ended = self.finish_sink(fed, tx, sink_job).await;
        let ended = self.blame(sw, &task, &trust, ended).await;
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
            self.count_failure(sw, task, &Failure { parent: p.clone(), piece: 0, kind: FailureKind::BadMap }).await;
        }
        tracing::error!(%task, ?peers, %actual, "pieces matched the peers' piece map but the blob has the wrong digest; reported them");
        Err(TaskError::BadPieceMap { digest: self.task.digest.clone(), peers, actual: actual.clone() })
    }

    async fn swarm_loop(
        &self,
        sw: &Arc<Swarm>,
        task: &TaskId,
        layout: PieceLayout,
        picker: &mut Picker,
        trust: &mut TrustedMap,
        tx: &mpsc::Sender<SinkMsg>,
    ) -> Result<(), TaskError> {
        let started = tokio::time::Instant::now();
        let mut excluded = HashSet::new();
        let mut pause = Duration::ZERO;
        loop {
            if picker.complete() {
                return Ok(());
            }
            let held = layout.count() - picker.missing().count() as u32;
            let have = HaveState { pieces_done: held, pieces_total: Some(layout.count()), complete: false };
            let joined = match sw.join(task, have, !trust.is_complete()).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(%task, error = %e, "scheduler unreachable; fetching the rest from the origin");
                    return self.origin_rest(picker, layout, tx).await;
                }
            };
            if joined.origin == OriginGrant::Granted {
                tracing::debug!(%task, "origin grant: this node seeds the task");
                return self.origin_rest(picker, layout, tx).await;
            }
            if started.elapsed() > sw.config.tuning.give_up_after {
                tracing::warn!(%task, after = ?sw.config.tuning.give_up_after, "the swarm did not deliver in time; fetching the rest from the origin");
                return self.origin_rest(picker, layout, tx).await;
            }
            if joined.parents.iter().all(|p| excluded.contains(&p.host)) {
                let wait = match joined.origin {
                    OriginGrant::Wait { retry_after_ms } => retry_after_ms.clamp(20, 2_000),
                    OriginGrant::Granted => 0,
                };
                tokio::time::sleep(Duration::from_millis(wait).max(pause)).await;
                continue;
            }
            let fetcher = Fetcher {
                me: &sw.config.host,
                endpoint: &sw.endpoint,
                limit: &sw.download_limit,
                downlink: &sw.downlink,
                config: &sw.config.tuning,
            };
            let (more_tx, mut more) = mpsc::channel(4);
            let refresher = tokio::spawn(refresh_parents(sw.clone(), task.clone(), self.task.subscribe(), more_tx));
            let before = picker.missing().count();
            let state = TaskState { task, layout, picker: &mut *picker, trust: &mut *trust, excluded: &mut excluded };
            let (end, failures) = fetcher.run(state, joined, &mut more, tx).await;
            refresher.abort();
            for f in &failures {
                self.count_failure(sw, task, f).await;
            }
            match end {
                FetchEnd::Complete => return Ok(()),
                FetchEnd::SinkGone => return Err(self.internal("the writer thread stopped".into())),
                FetchEnd::Stuck(why) => {
                    let progressed = picker.missing().count() < before;
                    pause =
                        if progressed { Duration::ZERO } else { (pause * 2).clamp(STUCK_BACKOFF.0, STUCK_BACKOFF.1) };
                    tracing::info!(%task, %why, ?pause, "parents cannot finish the blob; asking the scheduler again");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// Count a parent's failure (`shoal_piece_failures_total`) and tell
    /// the scheduler.
    async fn count_failure(&self, sw: &Arc<Swarm>, task: &TaskId, f: &Failure) {
        let kind = match f.kind {
            FailureKind::Corrupt => "corrupt",
            FailureKind::Timeout => "timeout",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Missing => "missing",
            FailureKind::BadMap => "bad_map",
        };
        self.manager.metrics.piece_failures.get_or_create(&FailureLabels { kind: kind.into() }).inc();
        sw.piece_failed(task, f).await;
    }

    /// Fetch every piece still missing from the origin.
    async fn origin_rest(
        &self,
        picker: &mut Picker,
        layout: PieceLayout,
        tx: &mpsc::Sender<SinkMsg>,
    ) -> Result<(), TaskError> {
        self.task.seeding.store(true, std::sync::atomic::Ordering::Relaxed);
        let missing: Vec<u32> = picker.missing().collect();
        let runs = runs_of(&missing, layout);
        self.feed(&runs, None, layout.blob_size, tx).await?;
        missing.into_iter().for_each(|i| picker.done(i));
        Ok(())
    }
}

/// A node's salt for the picker's tie-break (FNV-1a of its host id).
fn salt(host: &str) -> u64 {
    host.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// While a fetch runs, ask the scheduler again for parents, first after
/// [`FIRST_REFRESH`], then at doubling intervals up to every [`REFRESH`]:
/// peers that joined after us, or gained pieces since, become parents too,
/// so children trade with each other instead of all waiting on the seed's
/// upload. The first answers come early because at the start of a swarm
/// the seed hands each piece to one child only: until a child knows the
/// other children it gets a seventh of the seed's uplink (8 nodes). With a
/// flat 2 s interval the children of the 8-node benchmark held 0.02 of the
/// image 2 s in, when the origin had sent 0.09 (0.03-0.05 with these
/// early asks; docs/design/swarm-tuning-history.md).
async fn refresh_parents(
    sw: Arc<Swarm>,
    task: TaskId,
    progress: watch::Receiver<Progress>,
    more: mpsc::Sender<Joined>,
) {
    let mut wait = FIRST_REFRESH;
    loop {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(REFRESH);
        let have = {
            let p = progress.borrow();
            HaveState { pieces_done: p.pieces_done(), pieces_total: Some(p.pieces.len() as u32), complete: false }
        };
        if let Ok(j) = sw.join(&task, have, true).await
            && (!j.parents.is_empty() || !j.authorities.is_empty() || j.map.is_some())
            && more.send(j).await.is_err()
        {
            return;
        }
    }
}

/// How often a running fetch asks for more parents, once past the start.
const REFRESH: Duration = Duration::from_secs(2);
/// When a running fetch first asks for more parents.
const FIRST_REFRESH: Duration = Duration::from_millis(250);

/// Tell the scheduler about progress as pieces land (at most every 200 ms),
/// and about completion, with the final piece map when this node read the
/// blob from the origin (it is the task's authority).
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
        tokio::time::sleep(Duration::from_millis(200)).await;
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
