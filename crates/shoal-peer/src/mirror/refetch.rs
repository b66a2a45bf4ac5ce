//! Mending a response whose stored blob turned out damaged: the copy is
//! condemned (counted once, as `shoal_verification_failures_total{kind="stored"}`)
//! and the response goes on from a fresh download of the blob, started or
//! joined through the task manager like any cold request.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use shoal_core::{PieceIndex, RepoName};
use shoal_origin::{Caller, Upstreams};
use shoal_storage::BlobReader;
use tokio::sync::watch;

use super::{Ctx, Mirror};
use crate::metrics::{Verified, VerifyLabels};
use crate::task::TaskManager;
use crate::task::progress::Progress;

/// Tasks that still hold the condemned copy (they opened it just before)
/// are waited out this many times before the response gives up.
const STALE_TASKS: u32 = 3;

/// What a response needs to fetch its blob again.
pub struct Refetch {
    tasks: Arc<TaskManager>,
    upstreams: Arc<Upstreams>,
    ns: Option<String>,
    repo: RepoName,
    caller: Caller,
    origin_wait: Duration,
    failures: Family<VerifyLabels, Counter>,
}

impl Refetch {
    /// For a response to `ctx`, a request for a blob of `repo` (which
    /// passed its access check): the fresh download goes to the same
    /// registry on behalf of the same caller.
    pub fn new(m: &Mirror, ctx: &Ctx, repo: &RepoName) -> Refetch {
        let caller = m.origin(ctx).map(|o| m.caller(&o, ctx)).unwrap_or(Caller::Anonymous);
        Refetch {
            tasks: m.tasks.clone(),
            upstreams: m.upstreams.clone(),
            ns: ctx.ns.clone(),
            repo: repo.clone(),
            caller,
            origin_wait: m.config.origin_wait,
            failures: m.metrics.verification_failures.clone(),
        }
    }

    /// `old` refused `piece`: condemn its copy, then start (or join) the
    /// blob's download and hand back its reader and progress, to follow
    /// like any download in flight. Waits `stall` at most for a task that
    /// still holds the condemned copy to end.
    pub async fn recover(
        &self,
        old: &BlobReader,
        piece: PieceIndex,
        stall: Duration,
    ) -> io::Result<(BlobReader, watch::Receiver<Progress>)> {
        let digest = old.digest().clone();
        self.condemn(old, piece).await?;
        let origin = self.upstreams.resolve(self.ns.as_deref()).map_err(io::Error::other)?;
        for _ in 0..STALE_TASKS {
            let task = self.tasks.get_or_start(origin.clone(), &self.repo, &digest, self.caller.clone());
            task.wait_started(self.origin_wait)
                .await
                .map_err(|e| io::Error::other(format!("fetching damaged blob {digest} again: {e}")))?;
            let Some(reader) = task.reader() else {
                return Err(io::Error::other(format!("the new download of {digest} started without a file")));
            };
            if !reader.same_file(old) {
                if reader.size() != old.size() {
                    return Err(io::Error::other(format!(
                        "blob {digest} came back with {} bytes, not {}",
                        reader.size(),
                        old.size()
                    )));
                }
                return Ok((reader, task.subscribe()));
            }
            // This task opened the damaged copy before it was condemned;
            // once it ends, the next one starts from the origin or peers.
            let mut rx = task.subscribe();
            let _ = tokio::time::timeout(stall, async { while rx.changed().await.is_ok() {} }).await;
        }
        Err(io::Error::other(format!("blob {digest} kept coming back damaged from the store")))
    }

    /// Drops the damaged copy, counting it only when this response is the
    /// one that dropped it (others reading the same copy find it gone).
    async fn condemn(&self, old: &BlobReader, piece: PieceIndex) -> io::Result<()> {
        let store = self.tasks.store().clone();
        let r = old.clone();
        let dropped = tokio::task::spawn_blocking(move || store.condemn(&r))
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        if dropped {
            self.failures.get_or_create(&VerifyLabels { kind: Verified::stored }).inc();
            tracing::warn!(digest = %old.digest(), piece, "stored blob failed verification while serving; fetching it again");
        }
        Ok(())
    }
}
