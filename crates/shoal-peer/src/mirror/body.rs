//! Streaming blob bodies: read a (possibly still downloading) blob file and
//! send it as it becomes readable.
//!
//! A body follows the download's [`Progress`]: it sends what is readable,
//! waits for more, and is cut short (an error, so the client sees a broken
//! transfer, never a completed bad one) if the download fails or makes no
//! progress for the stall deadline. Complete blobs are read in 1 MiB chunks
//! with one chunk read ahead, so disk and socket overlap.

use std::ops::Range;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use shoal_storage::BlobReader;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::log::RequestLog;
use crate::metrics::Source;
use crate::task::progress::{Phase, Progress};

const CHUNK: u64 = 1 << 20;

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
}

struct State {
    body: BlobBody,
    pos: u64,
    prefetch: Option<(u64, JoinHandle<std::io::Result<Bytes>>)>,
    done: bool,
}

impl BlobBody {
    /// Turn into an HTTP body.
    pub fn into_body(mut self) -> Body {
        self.log.expect_body(self.range.end - self.range.start);
        let pos = self.range.start;
        let state = State { body: self, pos, prefetch: None, done: false };
        Body::from_stream(futures_util::stream::unfold(state, step))
    }
}

async fn step(mut st: State) -> Option<(std::io::Result<Bytes>, State)> {
    if st.done || st.pos >= st.body.range.end {
        return None;
    }
    let readable = match readable_end(&mut st.body, st.pos).await {
        Ok(end) => end.min(st.body.range.end),
        Err(e) => {
            st.body.log.fail(&e);
            st.done = true;
            return Some((Err(e), st));
        }
    };
    let len = (readable - st.pos).min(CHUNK);
    let chunk = match st.prefetch.take() {
        Some((at, job)) if at == st.pos => join(job).await,
        _ => read(st.body.reader.clone(), st.pos, len).await,
    };
    match chunk {
        Ok(bytes) => {
            st.pos += bytes.len() as u64;
            st.body.log.sent(bytes.len() as u64, st.body.source);
            // Read ahead when the next chunk is already readable.
            if st.pos < readable {
                let n = (readable - st.pos).min(CHUNK);
                let job = tokio::task::spawn_blocking({
                    let r = st.body.reader.clone();
                    let at = st.pos;
                    move || read_exact(&r, at, n)
                });
                st.prefetch = Some((st.pos, job));
            }
            Some((Ok(bytes), st))
        }
        Err(e) => {
            st.body.log.fail(&e);
            st.done = true;
            Some((Err(e), st))
        }
    }
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

async fn read(reader: BlobReader, at: u64, n: u64) -> std::io::Result<Bytes> {
    join(tokio::task::spawn_blocking(move || read_exact(&reader, at, n))).await
}

async fn join(job: JoinHandle<std::io::Result<Bytes>>) -> std::io::Result<Bytes> {
    job.await.map_err(std::io::Error::other)?
}

fn read_exact(reader: &BlobReader, at: u64, n: u64) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; n as usize];
    let mut filled = 0;
    while filled < buf.len() {
        let got = reader.read_at(at + filled as u64, &mut buf[filled..])?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("blob file {} ended at {}", reader.digest(), at + filled as u64),
            ));
        }
        filled += got;
    }
    Ok(Bytes::from(buf))
}
