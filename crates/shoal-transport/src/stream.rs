//! Moving a piece body over a QUIC stream with as few copies as quinn
//! allows, under a rate limit and a deadline.
//!
//! Sending hands quinn the caller's [`Bytes`] as they are
//! (`write_all_chunks`: quinn keeps the buffers, no copy). Receiving takes
//! quinn's chunks (`read_chunk`: no copy out of quinn) and lays them into
//! one buffer allocated at the piece's size ([`recv_exact`]): one copy, for
//! a caller that wants the piece contiguous. [`recv_chunks`] skips that
//! copy for a caller that can hash and write chunk by chunk.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, SendStream};

use crate::error::TransportError;
use crate::limits::RateLimiter;

/// The largest slice taken from the rate limiter at once when a limit is
/// set: each slice enters quinn at once, so it is kept to ~22 packets;
/// larger slices arrive at a shaped link as bursts its queue drops
/// (docs/design/swarm-lessons.md).
const LIMITED_SLICE: usize = 32 << 10;

/// Writes `chunks` to `send` in order (the stream stays open: the caller
/// `finish()`es it or writes more). Waits on `limiter` for every byte, and
/// fails with [`TransportError::Timeout`] if the whole write takes longer
/// than `deadline` (a peer that stopped reading). Returns the bytes sent.
pub async fn send_bytes(
    send: &mut SendStream,
    chunks: impl IntoIterator<Item = Bytes>,
    limiter: &RateLimiter,
    deadline: Duration,
) -> Result<u64, TransportError> {
    let id = send.id();
    let work = async {
        let mut total = 0u64;
        if limiter.is_unlimited() {
            let mut all: Vec<Bytes> = chunks.into_iter().collect();
            total = all.iter().map(|c| c.len() as u64).sum();
            send.write_all_chunks(&mut all).await?;
            return Ok(total);
        }
        for chunk in chunks {
            let mut rest = chunk;
            while !rest.is_empty() {
                let slice = rest.split_to(rest.len().min(LIMITED_SLICE));
                limiter.acquire(slice.len() as u64).await;
                total += slice.len() as u64;
                send.write_chunk(slice).await?;
            }
        }
        Ok(total)
    };
    with_deadline(work, deadline, || format!("sending on stream {id}")).await
}

/// Reads exactly `len` bytes from `recv` into one buffer. Waits on
/// `limiter` for every byte received; fails with
/// [`TransportError::Timeout`] if the whole read takes longer than
/// `deadline` (a stalled or too slow peer), and with
/// [`TransportError::ShortRead`] if the stream ends early.
pub async fn recv_exact(
    recv: &mut RecvStream,
    len: usize,
    deadline: Duration,
    limiter: &RateLimiter,
) -> Result<Bytes, TransportError> {
    let mut chunks = recv_chunks(recv, len, deadline, limiter).await?;
    if chunks.len() == 1 {
        return Ok(chunks.pop().unwrap_or_default());
    }
    let mut buf = BytesMut::with_capacity(len);
    for chunk in chunks {
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// [`recv_exact`] without the copy: the body as quinn's chunks, in order,
/// `len` bytes in all. For a consumer that takes pieces chunk by chunk
/// (an incremental hash, a vectored write).
pub async fn recv_chunks(
    recv: &mut RecvStream,
    len: usize,
    deadline: Duration,
    limiter: &RateLimiter,
) -> Result<Vec<Bytes>, TransportError> {
    let id = recv.id();
    let work = async {
        let mut chunks = Vec::new();
        let mut got = 0usize;
        while got < len {
            let Some(chunk) = recv.read_chunk(len - got, true).await? else {
                return Err(TransportError::ShortRead { expected: len, got });
            };
            limiter.acquire(chunk.bytes.len() as u64).await;
            got += chunk.bytes.len();
            chunks.push(chunk.bytes);
        }
        Ok(chunks)
    };
    with_deadline(work, deadline, || format!("receiving {len} bytes on stream {id}")).await
}

async fn with_deadline<T>(
    work: impl Future<Output = Result<T, TransportError>>,
    deadline: Duration,
    what: impl FnOnce() -> String,
) -> Result<T, TransportError> {
    match tokio::time::timeout(deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::Timeout { what: what(), after: deadline }),
    }
}
