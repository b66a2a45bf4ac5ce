//! The blocking half of a download: writes arriving bytes at their offset,
//! hashes each piece with BLAKE3 and the whole blob with its OCI digest
//! algorithm, records finished pieces, and publishes progress.
//!
//! It runs on a blocking thread fed by a bounded channel, so disk writes and
//! hashing overlap with the network reads of the async driver. Bytes of a
//! piece are readable as soon as they are written (they are part of the
//! streaming frontier), but the piece is only *recorded* once all of it is
//! written and hashed; a crash in the middle of a piece leaves it
//! unrecorded, and it is fetched again.
//!
//! Records go to the store's group commit and the sink goes on writing;
//! a piece is published as held (to the scheduler and to peers, through
//! [`Progress`]) only once its record committed. The sink publishes the
//! committed records after each message, and waits for the records in
//! flight before it waits for more bytes, so no piece sits unpublished
//! while the download idles.

use shoal_core::{Digest, DigestHasher, PieceIndex, PieceLayout};
use shoal_storage::{BlobReader, BlobWriter};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};

use super::TaskError;
use super::progress::{Phase, Progress};
use crate::metrics::{Metrics, Verified, VerifyLabels};

/// Messages the driver may queue ahead of the sink. Each holds at most
/// half a MiB (or one piece), so this bounds a download's buffered bytes;
/// the sink no longer waits for each record's sync, so a short queue
/// keeps it busy.
pub const QUEUE: usize = 16;

/// Messages from the async driver.
pub enum SinkMsg {
    /// Consecutive bytes of the blob starting at `offset`.
    Chunks {
        /// Absolute blob offset of the first byte.
        offset: u64,
        /// The bytes, in order.
        chunks: Vec<bytes::Bytes>,
    },
    /// A whole piece from a peer, already checked against `hash`.
    Piece {
        /// The piece.
        index: shoal_core::PieceIndex,
        /// Its bytes.
        bytes: bytes::Bytes,
        /// Its BLAKE3.
        hash: [u8; 32],
    },
    /// Every missing byte was sent: verify and complete.
    Finish,
}

/// How the sink ended.
pub enum SinkEnd {
    /// Verified and complete.
    Complete,
    /// The driver stopped early; recorded pieces stay for a resume.
    Stopped,
}

/// State of the blocking writer.
pub struct Sink {
    /// The store writer.
    pub writer: BlobWriter,
    /// A reader of the same file, for hashing pieces written in earlier runs.
    pub reader: BlobReader,
    /// The digest the blob must hash to.
    pub digest: Digest,
    /// Registry name for error messages.
    pub registry: String,
    /// Where readers learn what is readable.
    pub progress: std::sync::Arc<watch::Sender<Progress>>,
    /// Metrics.
    pub metrics: Metrics,
}

struct State {
    layout: PieceLayout,
    whole: DigestHasher,
    hashed: u64,
    piece: Option<(PieceIndex, blake3::Hasher)>,
    cursor: u64,
    run_start: u64,
    /// The buffer `catch_up` reads pieces back into, kept across calls: a
    /// fresh one per piece would be a fresh allocation, zeroed.
    scratch: Vec<u8>,
}

impl Sink {
    /// Consume messages until `Finish` (verify) or the channel closes
    /// (stop). A failed write or record ends the download (see `fail`).
    pub fn run(mut self, mut rx: mpsc::Receiver<SinkMsg>) -> Result<SinkEnd, TaskError> {
        let layout = self.writer.layout();
        let mut st = State {
            layout,
            whole: self.digest.hasher(),
            hashed: 0,
            piece: None,
            cursor: u64::MAX,
            run_start: 0,
            scratch: Vec::new(),
        };
        loop {
            let msg = match rx.try_recv() {
                Ok(msg) => msg,
                Err(TryRecvError::Empty) if self.writer.has_pending() => {
                    match self.writer.wait_recorded() {
                        Ok(recorded) => self.publish(recorded),
                        Err(e) => return self.fail(e.into()),
                    }
                    continue;
                }
                Err(TryRecvError::Empty) => match rx.blocking_recv() {
                    Some(msg) => msg,
                    None => break,
                },
                Err(TryRecvError::Disconnected) => break,
            };
            let step = match msg {
                SinkMsg::Chunks { offset, chunks } => self.write_all(&mut st, offset, &chunks),
                SinkMsg::Piece { index, bytes, hash } => self.put_piece(&mut st, index, &bytes, hash),
                SinkMsg::Finish => return self.finish(st),
            };
            match step.and_then(|()| Ok(self.writer.take_recorded()?)) {
                Ok(recorded) => self.publish(recorded),
                Err(e) => return self.fail(e),
            }
        }
        // Stopped: what committed stays for a resume, and is published.
        let recorded = self.writer.wait_recorded()?;
        self.publish(recorded);
        Ok(SinkEnd::Stopped)
    }

    /// Ends the download with `e`. A write the store refuses for want of
    /// space also deletes the partial: a download that cannot finish must
    /// not keep the disk full for everything else (a resume would only
    /// meet the same full disk).
    fn fail(self, e: TaskError) -> Result<SinkEnd, TaskError> {
        if let TaskError::Store(s) = &e
            && s.is_no_space()
        {
            tracing::warn!(digest = %self.digest, error = %s, "store full while downloading; dropping the partial");
            if let Err(d) = self.writer.discard() {
                tracing::warn!(digest = %self.digest, error = %d, "could not drop the partial of a failed download");
            }
        }
        Err(e)
    }

    /// Publishes pieces whose records committed: from here on they are held.
    fn publish(&self, recorded: Vec<(PieceIndex, [u8; 32])>) {
        if recorded.is_empty() {
            return;
        }
        self.progress.send_modify(|p| {
            for (i, h) in recorded {
                p.record(i, h);
            }
        });
    }

    fn write_all(&mut self, st: &mut State, offset: u64, chunks: &[bytes::Bytes]) -> Result<(), TaskError> {
        let mut at = offset;
        for c in chunks {
            self.write(st, at, c)?;
            at += c.len() as u64;
        }
        let run = st.run_start..st.cursor;
        self.progress.send_modify(|p| p.frontier = run);
        Ok(())
    }

    fn write(&mut self, st: &mut State, offset: u64, bytes: &[u8]) -> Result<(), TaskError> {
        if offset != st.cursor {
            // A new run always starts on a piece boundary.
            debug_assert_eq!(offset % st.layout.piece_size, 0, "run must start on a piece boundary");
            st.piece = None;
            st.run_start = offset;
            st.cursor = offset;
        }
        self.catch_up(st)?;
        self.writer.write_at(offset, bytes)?;
        let mut off = offset;
        let mut rest = bytes;
        while !rest.is_empty() {
            let index = st.layout.index_of(off);
            let range = st.layout.range(index);
            let take = ((range.end - off) as usize).min(rest.len());
            let (_, hasher) = st.piece.get_or_insert_with(|| (index, blake3::Hasher::new()));
            hasher.update(&rest[..take]);
            if st.hashed == off {
                st.whole.update(&rest[..take]);
                st.hashed += take as u64;
            }
            off += take as u64;
            rest = &rest[take..];
            if off == range.end {
                let (i, h) = st.piece.take().expect("piece hasher present");
                self.writer.submit_piece(i, *h.finalize().as_bytes())?;
                tracing::debug!(digest = %self.digest, piece = i, from = "origin", "piece stored");
            }
        }
        st.cursor = off;
        Ok(())
    }

    /// Store a whole piece that arrived from a peer (in any order).
    fn put_piece(&mut self, st: &mut State, index: PieceIndex, bytes: &[u8], hash: [u8; 32]) -> Result<(), TaskError> {
        if self.written(index) {
            return Ok(());
        }
        let range = st.layout.range(index);
        self.writer.write_at(range.start, bytes)?;
        self.writer.submit_piece(index, hash)?;
        if st.hashed == range.start {
            st.whole.update(bytes);
            st.hashed = range.end;
        }
        self.catch_up(st)?;
        self.metrics.peer_received_bytes.inc_by(bytes.len() as u64);
        tracing::debug!(digest = %self.digest, piece = index, from = "peer", "piece stored");
        Ok(())
    }

    /// Whether piece `i` is written and hashed: recorded, or its record
    /// is committing. Its bytes on disk are then the verified ones.
    fn written(&self, i: PieceIndex) -> bool {
        self.writer.has_piece(i) || self.writer.is_pending(i)
    }

    /// Advance the whole-blob hasher over pieces already written on disk
    /// (from an earlier run, or pieces that arrived out of order), stopping
    /// at the first piece not yet written. Bytes are hashed strictly in
    /// order, so only a prefix of written pieces can be hashed from disk.
    fn catch_up(&self, st: &mut State) -> Result<(), TaskError> {
        let size = st.layout.blob_size;
        let mut buf = std::mem::take(&mut st.scratch);
        while st.hashed < size {
            let index = st.layout.index_of(st.hashed);
            if !self.written(index) {
                break;
            }
            let end = st.layout.range(index).end;
            buf.resize((end - st.hashed) as usize, 0);
            let mut filled = 0;
            while filled < buf.len() {
                let got = self.reader.read_at(st.hashed + filled as u64, &mut buf[filled..]).map_err(|e| {
                    TaskError::Internal {
                        digest: self.digest.clone(),
                        detail: format!("reading back piece {index}: {e}"),
                    }
                })?;
                if got == 0 {
                    return Err(TaskError::Internal {
                        digest: self.digest.clone(),
                        detail: format!("the partial file ends inside recorded piece {index}"),
                    });
                }
                filled += got;
            }
            st.whole.update(&buf);
            st.hashed = end;
        }
        st.scratch = buf;
        Ok(())
    }

    fn finish(mut self, mut st: State) -> Result<SinkEnd, TaskError> {
        match self.writer.wait_recorded() {
            Ok(recorded) => self.publish(recorded),
            Err(e) => return self.fail(e.into()),
        }
        self.catch_up(&mut st)?;
        if st.hashed != st.layout.blob_size {
            return Err(TaskError::Internal {
                digest: self.digest.clone(),
                detail: format!("finished with only {} of {} bytes recorded", st.hashed, st.layout.blob_size),
            });
        }
        let actual = st.whole.clone().finish();
        // A file keyed by its URL has no digest to match: its pieces were
        // each checked against the piece map of the node that read them
        // from the origin (or read from the origin here), and that is all
        // the trust there is (crate::files::key).
        if actual != self.digest && !crate::files::key::trusts_piece_map(&self.registry) {
            self.metrics.verification_failures.get_or_create(&VerifyLabels { kind: Verified::blob }).inc();
            tracing::error!(digest = %self.digest, %actual, registry = %self.registry, "blob failed verification; discarding it");
            self.writer.discard()?;
            return Err(TaskError::DigestMismatch { registry: self.registry, expected: self.digest, actual });
        }
        // Verified: every byte may go to clients now. Making the blob durable
        // (fdatasync of the whole file, then the record) is the store's
        // business and must not hold the last byte of every response.
        self.progress.send_modify(|p| p.phase = Phase::Done);
        self.writer.complete(&self.digest)?;
        Ok(SinkEnd::Complete)
    }
}
