//! Streaming blob bodies: read a (possibly still downloading) blob file and
//! send it as it becomes readable.
//!
//! A body follows the download's [`Progress`]: it sends what is readable,
//! waits for more, and is cut short (an error, so the client sees a broken
//! transfer, never a completed bad one) if the download fails or makes no
//! progress for the stall deadline. Bytes are read in chunks with one chunk
//! read ahead, so disk and socket overlap; [`BodyBuffers`] bounds what all
//! bodies together hold in memory.
//!
//! A stored blob's reader checks each piece before returning it. When a
//! piece fails, nothing of it is sent: the body condemns the copy and goes
//! on from the same byte with a fresh download ([`Refetch`]), so the
//! client still gets the right bytes, later.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use shoal_core::Digest;
use shoal_storage::{BlobReader, ReadError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::log::RequestLog;
use super::refetch::Refetch;
use crate::metrics::Source;
use crate::spare::Spares;
use crate::task::progress::{Phase, Progress};

/// Fresh downloads one response may switch to; a fresh copy found damaged
/// too (a failing disk) ends the response after this many.
const MAX_REFETCHES: u32 = 2;

/// What a body reads and how.
pub struct BlobBody {
    /// The blob file.
    pub reader: BlobReader,
    /// Progress of a download in flight; `None` for a complete blob.
    pub progress: Option<watch::Receiver<Progress>>,
    /// The bytes to send.
    pub range: Range<u64>,
    /// Longest wait for new bytes before giving up.
    pub stall: Duration,
    /// Where the bytes come from, for metrics.
    pub source: Source,
    /// The request's outcome record.
    pub log: RequestLog,
    /// How to fetch the blob again if the store's copy is damaged.
    pub refetch: Refetch,
    /// Chunk sizes and the memory budget shared by the mirror's bodies.
    pub buffers: BodyBuffers,
}

/// How much memory blob bodies hold: the chunk each response has read and
/// not yet handed to the socket, plus its read-ahead chunk.
///
/// A response reads large chunks while all bodies together hold less than
/// `budget`, and small ones beyond it. A few fast clients get the large
/// chunks that keep disk and socket busy; hundreds of slow clients (a node
/// pulling many layers at once, each connection blocked on its socket)
/// cost `2 * small_chunk` each instead of `2 * chunk`. Clones share one
/// count.
#[derive(Debug, Clone)]
pub struct BodyBuffers {
    /// The chunk size while under budget: large enough that a read and a
    /// socket write cost little per byte.
    pub chunk: u64,
    /// The chunk size over budget: small enough that many stalled
    /// connections stay cheap, large enough to fill a socket write.
    pub small_chunk: u64,
    /// Bytes all bodies may hold in large chunks.
    pub budget: u64,
    shared: Arc<Shared>,
}

/// What clones of one [`BodyBuffers`] share.
#[derive(Debug)]
struct Shared {
    /// Bytes of chunks alive now.
    held: AtomicU64,
    /// Large buffers ready for reuse: a fast client cycles through a few,
    /// and reusing them spares the allocator a large allocation (zeroed,
    /// often fresh pages) per chunk.
    spare: Spares,
}

impl Default for BodyBuffers {
    /// 16 large chunks: 8 clients reading at full speed, each with its
    /// read-ahead, before anyone is given small chunks. A small chunk
    /// matches the HTTP server's write buffer
    /// ([`ServeConfig::write_buffer`](crate::serve::ServeConfig::write_buffer)),
    /// so a stalled connection holds one chunk there and one read ahead.
    /// 4 large chunks are kept for reuse.
    fn default() -> Self {
        let chunk = 1 << 20;
        BodyBuffers {
            chunk,
            small_chunk: 32 << 10,
            budget: 16 << 20,
            shared: Arc::new(Shared { held: AtomicU64::new(0), spare: Spares::new(4 * chunk as usize) }),
        }
    }
}

impl BodyBuffers {
    /// Bytes of chunks alive now (read, not yet sent and dropped).
    pub fn held(&self) -> u64 {
        self.shared.held.load(Ordering::Relaxed)
    }

    /// A buffer of `n` bytes. Reads longer than a small chunk get a large
    /// one (a spare if there is one) whatever their length: a download's
    /// readable end advances a piece at a time, so such reads vary in
    /// length.
    fn buffer(&self, n: usize) -> Vec<u8> {
        if n as u64 > self.small_chunk { self.shared.spare.take(n, self.chunk as usize) } else { vec![0u8; n] }
    }

    /// The length of the next read, for `left` bytes readable.
    fn next_len(&self, left: u64) -> u64 {
        let size = if self.held() + self.chunk <= self.budget { self.chunk } else { self.small_chunk };
        left.min(size.max(1))
    }
}

/// A chunk's bytes, counted in [`BodyBuffers`] until the socket is done
/// with them (hyper drops the `Bytes`); then a large one becomes a spare.
struct Held {
    buf: Vec<u8>,
    buffers: BodyBuffers,
}

impl Held {
    fn new(buf: Vec<u8>, buffers: &BodyBuffers) -> Held {
        buffers.shared.held.fetch_add(buf.capacity() as u64, Ordering::Relaxed);
        Held { buf, buffers: buffers.clone() }
    }
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let b = &self.buffers;
        b.shared.held.fetch_sub(self.buf.capacity() as u64, Ordering::Relaxed);
        if self.buf.capacity() as u64 == b.chunk {
            b.shared.spare.give(std::mem::take(&mut self.buf));
        }
    }
}

struct State {
    body: BlobBody,
    pos: u64,
    prefetch: Option<(u64, JoinHandle<Result<Bytes, ReadError>>)>,
    refetches: u32,
    done: bool,
}

impl BlobBody {
    /// Turn into an HTTP body.
    pub fn into_body(mut self) -> Body {
        self.log.expect_body(self.range.end - self.range.start);
        let pos = self.range.start;
        let state = State { body: self, pos, prefetch: None, refetches: 0, done: false };
        Body::from_stream(futures_util::stream::unfold(state, step))
    }
}

async fn step(mut st: State) -> Option<(std::io::Result<Bytes>, State)> {
    loop {
        if st.done || st.pos >= st.body.range.end {
            return None;
        }
        let readable = match readable_end(&mut st.body, st.pos).await {
            Ok(end) => end.min(st.body.range.end),
            Err(e) => return Some(fail(st, e)),
        };
        let len = st.body.buffers.next_len(readable - st.pos);
        let chunk = match st.prefetch.take() {
            Some((at, job)) if at == st.pos => join(job, st.body.reader.digest().clone()).await,
            _ => read(st.body.reader.clone(), st.pos, len, st.body.buffers.clone()).await,
        };
        let bytes = match chunk {
            Ok(bytes) => bytes,
            Err(ReadError::Rotten { piece, .. }) if st.refetches < MAX_REFETCHES => {
                st.refetches += 1;
                // Read ahead from the damaged copy: dropped, not sent.
                st.prefetch = None;
                match st.body.refetch.recover(&st.body.reader, piece, st.body.stall).await {
                    Ok((reader, progress)) => {
                        st.body.reader = reader;
                        st.body.progress = Some(progress);
                        st.body.source = Source::origin;
                        continue;
                    }
                    Err(e) => return Some(fail(st, e)),
                }
            }
            Err(e) => return Some(fail(st, e.into())),
        };
        st.pos += bytes.len() as u64;
        st.body.log.sent(bytes.len() as u64, st.body.source);
        // Read ahead when the next chunk is already readable.
        if st.pos < readable {
            let n = st.body.buffers.next_len(readable - st.pos);
            let job = tokio::task::spawn_blocking({
                let r = st.body.reader.clone();
                let at = st.pos;
                let buffers = st.body.buffers.clone();
                move || read_exact(&r, at, n, &buffers)
            });
            st.prefetch = Some((st.pos, job));
        }
        return Some((Ok(bytes), st));
    }
}

/// End the body with `e`: the client sees a cut transfer.
fn fail(mut st: State, e: std::io::Error) -> (std::io::Result<Bytes>, State) {
    st.body.log.fail(&e);
    st.done = true;
    (Err(e), st)
}

/// Wait until at least one byte at `pos` is readable; return the end of
/// the readable stretch.
async fn readable_end(body: &mut BlobBody, pos: u64) -> std::io::Result<u64> {
    let stall = body.stall;
    let Some(rx) = body.progress.as_mut() else { return Ok(body.range.end) };
    loop {
        let (end, phase) = {
            let p = rx.borrow_and_update();
            (p.readable_end(pos), p.phase.clone())
        };
        if end > pos {
            return Ok(end);
        }
        if let Phase::Failed(e) = phase {
            return Err(std::io::Error::other(format!("download failed: {e}")));
        }
        match tokio::time::timeout(stall, rx.changed()).await {
            Ok(Ok(())) => {}
            // The download ended; its last state was read above.
            Ok(Err(_)) => {
                let p = rx.borrow();
                if p.readable_end(pos) > pos {
                    continue;
                }
                return Err(std::io::Error::other("download ended before these bytes arrived"));
            }
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no new bytes for {stall:?}; cutting the response"),
                ));
            }
        }
    }
}

async fn read(reader: BlobReader, at: u64, n: u64, buffers: BodyBuffers) -> Result<Bytes, ReadError> {
    let digest = reader.digest().clone();
    join(tokio::task::spawn_blocking(move || read_exact(&reader, at, n, &buffers)), digest).await
}

async fn join(job: JoinHandle<Result<Bytes, ReadError>>, digest: Digest) -> Result<Bytes, ReadError> {
    job.await.unwrap_or_else(|e| Err(ReadError::Io { digest, source: std::io::Error::other(e) }))
}

/// Reads `n` bytes at `at`. On a stored blob this is where pieces are
/// checked (BLAKE3, on the blocking pool). The bytes count in `buffers`
/// until the last reference to them is dropped.
fn read_exact(reader: &BlobReader, at: u64, n: u64, buffers: &BodyBuffers) -> Result<Bytes, ReadError> {
    let mut buf = buffers.buffer(n as usize);
    let mut filled = 0;
    while filled < buf.len() {
        let got = reader.read_at(at + filled as u64, &mut buf[filled..])?;
        if got == 0 {
            return Err(ReadError::Io {
                digest: reader.digest().clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("blob file ended at {}", at + filled as u64),
                ),
            });
        }
        filled += got;
    }
    Ok(Bytes::from_owner(Held::new(buf, buffers)))
}
