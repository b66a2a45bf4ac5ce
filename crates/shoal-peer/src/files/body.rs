//! The streamed body of a `shoal get` response: reads the blob file as the
//! download makes it readable, and is cut (an error, so the client sees a
//! broken transfer and resumes) when the download fails or stalls. The
//! last byte is readable only once the download is complete (verified).

use std::ops::Range;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use shoal_storage::BlobReader;
use tokio::sync::watch;

use crate::task::progress::{Phase, Progress};

const CHUNK: u64 = 1 << 20;

struct State {
    reader: BlobReader,
    progress: watch::Receiver<Progress>,
    range: Range<u64>,
    stall: Duration,
    done: bool,
}

/// A body sending `range` of the blob `reader` reads, following `progress`.
pub(super) fn stream(
    reader: BlobReader,
    progress: watch::Receiver<Progress>,
    range: Range<u64>,
    stall: Duration,
) -> Body {
    let st = State { reader, progress, range, stall, done: false };
    Body::from_stream(futures_util::stream::unfold(st, step))
}

async fn step(mut st: State) -> Option<(std::io::Result<Bytes>, State)> {
    if st.done || st.range.start >= st.range.end {
        return None;
    }
    let pos = st.range.start;
    let end = match readable_end(&mut st, pos).await {
        Ok(end) => end.min(st.range.end),
        Err(e) => {
            st.done = true;
            return Some((Err(e), st));
        }
    };
    let n = (end - pos).min(CHUNK) as usize;
    let reader = st.reader.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; n];
        let mut filled = 0;
        while filled < n {
            match reader.read_at(pos + filled as u64, &mut buf[filled..]) {
                Ok(0) => return Err(std::io::Error::other("the blob file ended early")),
                Ok(got) => filled += got,
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        }
        Ok(Bytes::from(buf))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match read {
        Ok(bytes) => {
            st.range.start += bytes.len() as u64;
            Some((Ok(bytes), st))
        }
        Err(e) => {
            st.done = true;
            Some((Err(e), st))
        }
    }
}

/// Wait until a byte at `pos` is readable; the end of the readable stretch.
async fn readable_end(st: &mut State, pos: u64) -> std::io::Result<u64> {
    loop {
        let (end, phase) = {
            let p = st.progress.borrow_and_update();
            (p.readable_end(pos), p.phase.clone())
        };
        if end > pos {
            return Ok(end);
        }
        if let Phase::Failed(e) = phase {
            return Err(std::io::Error::other(format!("download failed: {e}")));
        }
        match tokio::time::timeout(st.stall, st.progress.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                if st.progress.borrow().readable_end(pos) > pos {
                    continue;
                }
                return Err(std::io::Error::other("download ended before these bytes arrived"));
            }
            Err(_) => return Err(std::io::Error::other(format!("no new bytes for {:?}", st.stall))),
        }
    }
}
