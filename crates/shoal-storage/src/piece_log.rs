//! Group commit of piece records: one committer thread per store takes
//! every record queued since its last commit and writes them in one redb
//! transaction, so one sync covers a batch instead of one per piece.
//! Records that arrive while a commit is in flight go into the next one.
//!
//! A record's writer learns the outcome through its [`Inbox`]: the piece
//! counts as held (by the writer, by readers of the database, by anything
//! the writer tells) only once the commit that carried it returned. A
//! record still queued or in flight when the process dies is simply not
//! there after a restart, and its piece is fetched again.

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use shoal_core::{Digest, PieceIndex};

use crate::db::MetaDb;
use crate::error::StoreError;

/// The store's committer thread and its queue.
pub(crate) struct PieceLog {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    commits: AtomicU64,
}

#[derive(Default)]
struct Queue {
    records: Vec<Record>,
    closing: bool,
    /// Drop what is queued at close instead of committing it (a test's
    /// crash).
    crash: bool,
    /// The committer takes nothing while set (tests hold a batch open).
    #[cfg(test)]
    held: bool,
}

struct Record {
    digest: Digest,
    index: PieceIndex,
    hash: [u8; 32],
    inbox: Arc<Inbox>,
}

/// Where one writer's records are settled, committed or failed.
#[derive(Default)]
pub(crate) struct Inbox {
    state: Mutex<Settled>,
    done: Condvar,
}

/// Outcomes not yet taken by the writer.
#[derive(Default)]
pub(crate) struct Settled {
    /// Records queued or in a commit.
    pub(crate) outstanding: usize,
    /// Records whose commit returned, in commit order.
    pub(crate) durable: Vec<(PieceIndex, [u8; 32])>,
    /// Records whose commit failed (their pieces are not held).
    pub(crate) failed: Vec<(PieceIndex, StoreError)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inbox {
    /// The outcomes settled so far, without waiting.
    pub(crate) fn take(&self) -> Settled {
        let mut s = lock(&self.state);
        Settled {
            outstanding: s.outstanding,
            durable: std::mem::take(&mut s.durable),
            failed: std::mem::take(&mut s.failed),
        }
    }

    /// Waits until every record sent to this inbox is settled, then takes
    /// the outcomes.
    pub(crate) fn wait(&self) -> Settled {
        let mut s = lock(&self.state);
        while s.outstanding > 0 {
            s = self.done.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        drop(s);
        self.take()
    }

    /// Records queued or in a commit now.
    pub(crate) fn outstanding(&self) -> usize {
        lock(&self.state).outstanding
    }

    fn settle(&self, index: PieceIndex, hash: [u8; 32], outcome: Result<(), StoreError>) {
        let mut s = lock(&self.state);
        s.outstanding -= 1;
        match outcome {
            Ok(()) => s.durable.push((index, hash)),
            Err(e) => s.failed.push((index, e)),
        }
        drop(s);
        self.done.notify_all();
    }
}

impl PieceLog {
    /// Starts the committer thread over `db`.
    pub(crate) fn start(db: Arc<MetaDb>) -> Result<PieceLog, StoreError> {
        let shared = Arc::new(Shared { queue: Mutex::default(), wake: Condvar::new(), commits: AtomicU64::new(0) });
        let thread = std::thread::Builder::new()
            .name("shoal-piece-log".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || commit_loop(&shared, &db)
            })
            .map_err(|e| StoreError::Io {
                action: "start the piece-record thread",
                path: std::path::PathBuf::new(),
                source: e,
            })?;
        Ok(PieceLog { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Queues the record of piece `index` of `digest`; `inbox` hears when
    /// it committed or failed.
    pub(crate) fn submit(&self, digest: &Digest, index: PieceIndex, hash: [u8; 32], inbox: &Arc<Inbox>) {
        lock(&inbox.state).outstanding += 1;
        let record = Record { digest: digest.clone(), index, hash, inbox: Arc::clone(inbox) };
        lock(&self.shared.queue).records.push(record);
        self.shared.wake.notify_one();
    }

    /// Transactions that committed piece records since the store opened.
    pub(crate) fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Commits what is queued, then stops the thread.
    pub(crate) fn close(&self) {
        lock(&self.shared.queue).closing = true;
        self.shared.wake.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }

    /// Stops the thread, failing every queued record without committing
    /// it: what a crash leaves behind.
    #[cfg(test)]
    pub(crate) fn crash(&self) {
        lock(&self.shared.queue).crash = true;
        self.close();
    }

    /// While `on`, the committer lets records queue without committing.
    #[cfg(test)]
    pub(crate) fn hold(&self, on: bool) {
        lock(&self.shared.queue).held = on;
        self.shared.wake.notify_all();
    }
}

impl Drop for PieceLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Takes the whole queue, commits it as one transaction and settles each
/// record, until closed.
fn commit_loop(shared: &Shared, db: &MetaDb) {
    loop {
        let batch = {
            let mut q = lock(&shared.queue);
            loop {
                if q.closing && q.crash {
                    let lost = std::mem::take(&mut q.records);
                    drop(q);
                    settle(lost, |r| Err(closed(r)));
                    return;
                }
                #[cfg(test)]
                let held = q.held && !q.closing;
                #[cfg(not(test))]
                let held = false;
                if !q.records.is_empty() && !held {
                    break std::mem::take(&mut q.records);
                }
                if q.closing && q.records.is_empty() {
                    return;
                }
                q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let rows: Vec<(&Digest, PieceIndex, [u8; 32])> = batch.iter().map(|r| (&r.digest, r.index, r.hash)).collect();
        match db.record_pieces(&rows) {
            Ok(()) => {
                shared.commits.fetch_add(1, Ordering::Relaxed);
                settle(batch, |_| Ok(()));
            }
            Err(e) => {
                tracing::warn!(error = %e, records = batch.len(), "could not record verified pieces; they are fetched again");
                let reason = e.to_string();
                let no_space = e.is_no_space();
                settle(batch, |r| {
                    Err(StoreError::PieceRecord {
                        digest: r.digest.clone(),
                        index: r.index,
                        reason: reason.clone(),
                        no_space,
                    })
                });
            }
        }
    }
}

fn settle(batch: Vec<Record>, outcome: impl Fn(&Record) -> Result<(), StoreError>) {
    for r in batch {
        let o = outcome(&r);
        r.inbox.settle(r.index, r.hash, o);
    }
}

fn closed(r: &Record) -> StoreError {
    StoreError::PieceRecord {
        digest: r.digest.clone(),
        index: r.index,
        reason: "the store closed before the record was committed".into(),
        no_space: false,
    }
}
