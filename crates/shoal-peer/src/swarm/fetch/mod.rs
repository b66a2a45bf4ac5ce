//! Fetching a task's missing pieces from the swarm: the pure [`core`]
//! decides, this driver carries its actions out.
//!
//! The driver starts the core, runs its joins through [`Swarm::join`],
//! follows parents' availability and fetches pieces over QUIC
//! ([`peer_io`]), hands each piece that matched its trusted hash to the
//! download ([`PieceSink`]) before telling the core, and feeds the
//! client's read position in. It waits on those inputs and the core's
//! `deadline()`. Piece bytes never enter the core. The download (`task`)
//! is reached only through [`PieceSink`] and a read-position watch, so
//! this module does not know the task's internals.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shoal_core::{PieceLayout, TaskId};
use shoal_proto::HaveState;
use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

pub mod core;
mod events;
mod holdings;
mod pace;
mod parents;
mod peer_io;
mod rarity;
mod rounds;
#[cfg(test)]
mod tests;

pub use self::core::{Action, End, Failure, FetchCore, Input, Pace, ParentId, PieceError, ToOrigin};
pub use self::parents::host_key;
use self::peer_io::{Ev, PeerIo};
use super::Swarm;

/// The download's writer stopped (it failed, or the task was cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the download's writer stopped")]
pub struct WriterGone;

/// What the driver needs from the download it feeds.
pub trait PieceSink: Send + Sync {
    /// Store piece `index`, whose bytes matched its trusted `hash`.
    fn store(
        &self,
        index: u32,
        bytes: bytes::Bytes,
        hash: [u8; 32],
    ) -> impl Future<Output = Result<(), WriterGone>> + Send;
    /// A parent failed: count it and tell the scheduler (without holding
    /// the fetch up).
    fn failed(&self, failure: Failure);
}

/// How often a fetch logs its [`super::picker::Outlook`] (at debug level):
/// `benches/swarm/outlook.py` turns these lines into a table.
const OUTLOOK_EVERY: Duration = Duration::from_secs(1);

/// Fetch what `task` lacks (of `layout`, `held` already stored) from the
/// swarm into `sink`, asking first for the pieces from the client's read
/// position (`read_at`, a byte offset) on. Returns how the swarm part
/// ended (the rest then comes from the origin: [`FetchCore::missing`]) and
/// the core, whose trusted map names whom to blame for a bad digest.
pub async fn fetch<S: PieceSink>(
    sw: &Arc<Swarm>,
    task: &TaskId,
    layout: PieceLayout,
    held: Vec<u32>,
    sink: &S,
    mut read_at: watch::Receiver<u64>,
) -> (Result<End, WriterGone>, FetchCore) {
    let tuning = &sw.config.tuning;
    let me = sw.config.host.clone();
    let salt = parents::host_key(&me);
    let mut core = FetchCore::new(Instant::now(), tuning, me.clone(), layout, held, salt);
    let missing: u64 = core.missing().iter().map(|&i| layout.len_of(i)).sum();
    let mut owed = sw.downlink.owe_peers(missing);
    let mut pace = sw.downlink.clone();
    let io = PeerIo {
        endpoint: sw.endpoint.clone(),
        me,
        task: task.clone(),
        connect: tuning.connect_timeout,
        piece_deadline: tuning.piece_deadline,
        limit: sw.download_limit.clone(),
    };
    let piece_of = |offset: u64| layout.index_of(offset.min(layout.blob_size.saturating_sub(1)));
    if layout.blob_size > 0 {
        core.handle(Instant::now(), Input::ReadAt(piece_of(*read_at.borrow_and_update())));
    }
    let (tx, mut rx) = mpsc::channel::<Ev>(256);
    // Dropped (aborting every job) when the fetch ends.
    let mut jobs = JoinSet::new();
    let mut watchers: HashMap<ParentId, AbortHandle> = HashMap::new();
    let mut outlook_at = Instant::now();
    let end = 'run: loop {
        let now = Instant::now();
        while let Some(action) = core.poll(now, &mut pace) {
            match action {
                Action::Join { want_map, held } => {
                    let (sw, task, tx) = (sw.clone(), task.clone(), tx.clone());
                    let have = HaveState { pieces_done: held, pieces_total: Some(layout.count()), complete: false };
                    jobs.spawn(async move {
                        let input = match sw.join(&task, have, want_map).await {
                            Ok(j) => Input::Joined(j),
                            Err(e) => Input::JoinFailed(e.to_string()),
                        };
                        let _ = tx.send(Ev::Input(input)).await;
                    });
                }
                Action::Follow(id, info) => {
                    let watcher = jobs.spawn(io.clone().watch(id, info, tx.clone()));
                    watchers.insert(id, watcher);
                }
                Action::Unfollow(id) => {
                    if let Some(w) = watchers.remove(&id) {
                        w.abort();
                    }
                }
                Action::Request { parent, peer, piece, len, expected } => {
                    let (io, tx) = (io.clone(), tx.clone());
                    jobs.spawn(async move {
                        let result = io.get_piece((parent, &peer), (piece, len, expected), &tx).await;
                        let _ = tx.send(Ev::Piece { parent, piece, expected, result }).await;
                    });
                }
                Action::Report(f) => sink.failed(f),
                Action::End(end) => break 'run Ok(end),
            }
        }
        if now >= outlook_at && tracing::enabled!(tracing::Level::DEBUG) {
            outlook_at = now + OUTLOOK_EVERY;
            let o = core.outlook(now);
            tracing::debug!(
                %task, inflight = core.inflight(), missing = o.missing, offered = o.offered,
                withheld = o.withheld, free_slots = o.free_slots, trusted = core.trust().known().count(),
                "fetch outlook"
            );
        }
        let deadline = core.deadline();
        tokio::select! {
            Some(ev) = rx.recv() => match ev {
                Ev::Input(input) => core.handle(Instant::now(), input),
                // A dropped parent's late piece: asked elsewhere meanwhile,
                // so not stored twice.
                Ev::Piece { parent, piece, .. } if !core.awaits(parent, piece) => {}
                Ev::Piece { parent, piece, expected, result: Ok(bytes) } => {
                    if sink.store(piece, bytes, expected).await.is_err() {
                        break 'run Err(WriterGone);
                    }
                    owed.arrived(layout.len_of(piece));
                    core.handle(Instant::now(), Input::PieceArrived(parent, piece));
                }
                Ev::Piece { parent, piece, result: Err(e), .. } => {
                    core.handle(Instant::now(), Input::PieceFailed(parent, piece, e));
                }
            },
            () = sleep_until(deadline) => {}
            // Finished jobs are reaped, or a long download keeps one entry
            // per piece request it ever made.
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            Ok(()) = read_at.changed(), if layout.blob_size > 0 => {
                let piece = piece_of(*read_at.borrow_and_update());
                core.handle(Instant::now(), Input::ReadAt(piece));
            }
        }
    };
    jobs.abort_all();
    (end, core)
}

/// Sleep until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
