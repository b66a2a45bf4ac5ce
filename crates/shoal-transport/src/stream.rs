//! Moving a piece body over a QUIC stream with as few copies as quinn
//! allows, under a rate limit and a deadline.
//!
//! Sending hands quinn the caller's [`Bytes`] as they are
//! (`write_all_chunks`: quinn keeps the buffers, no copy). Receiving takes
//! quinn's chunks (`read_chunk`: no copy out of quinn) and lays them into
//! one buffer allocated at the piece's size: one copy, needed so the piece
//! is contiguous for hashing and writing. A body that arrives as a single
//! chunk is returned without any copy.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, SendStream};

use crate::error::TransportError;
use crate::limits::RateLimiter;

/// The largest slice taken from the rate limiter at once when a limit is
/// set: small enough that a limited upload is smooth, large enough that
/// the limiter's lock is taken rarely.
const LIMITED_SLICE: usize = 256 << 10;

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
    let id = recv.id();
    let work = async {
        let mut buf: Option<BytesMut> = None;
        let mut got = 0usize;
        while got < len {
            let Some(chunk) = recv.read_chunk(len - got, true).await? else {
                return Err(TransportError::ShortRead { expected: len, got });
            };
            let bytes = chunk.bytes;
            limiter.acquire(bytes.len() as u64).await;
            if got == 0 && bytes.len() == len {
                return Ok(bytes);
            }
            got += bytes.len();
            buf.get_or_insert_with(|| BytesMut::with_capacity(len)).extend_from_slice(&bytes);
        }
        Ok(buf.map(BytesMut::freeze).unwrap_or_default())
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
