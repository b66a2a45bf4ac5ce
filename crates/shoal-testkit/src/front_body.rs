//! The response body and connection wrapper behind [`CountingFront`]'s fault
//! injection: `ShapedBody` streams an upstream body while counting bytes as
//! they go out, corrupting / truncating / padding / stalling / pacing them;
//! `ResetIo` lets a body abort its TCP connection with a real RST.
//!
//! [`CountingFront`]: crate::front::CountingFront

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Boxed error type of front bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A fault applied to the next matching blob GETs at a [`CountingFront`].
///
/// [`CountingFront`]: crate::front::CountingFront
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Flip (xor 0xFF) the byte at this absolute blob offset, if the response
    /// covers it.
    CorruptByte {
        /// Absolute offset in the blob.
        offset: u64,
    },
    /// Send only this many body bytes, then close the connection.
    Truncate {
        /// Body bytes sent before closing.
        after: u64,
    },
    /// Declare `Content-Length` = real + `count` and append `count` junk bytes.
    ExtraBytes {
        /// Junk bytes appended.
        count: u64,
    },
    /// Drop the request's `Range` header so the upstream answers 200 with
    /// the full body.
    IgnoreRange,
    /// Answer this status with an empty body instead of forwarding.
    Status(u16),
    /// Abort the connection with a TCP RST after this many body bytes.
    ResetAfter {
        /// Body bytes sent before the reset.
        bytes: u64,
    },
    /// After this many body bytes, send nothing for `for_`, then go on.
    StallAfter {
        /// Body bytes sent before the stall.
        bytes: u64,
        /// How long to stall.
        for_: Duration,
    },
}

/// The response body type the front serves.
pub(crate) type FrontBody = ShapedBody;

/// Streams `inner` with counting, faults and pacing.
pub(crate) struct ShapedBody {
    inner: UnsyncBoxBody<Bytes, BoxError>,
    /// Absolute blob offset of the next byte.
    offset: u64,
    /// Bytes of this response sent so far.
    sent: u64,
    fault: Option<Fault>,
    counter: Arc<AtomicU64>,
    /// Bytes per second; 0 = unlimited. `None` = never paced.
    rate: Option<Arc<AtomicU64>>,
    reset: Arc<AtomicBool>,
    pending: Option<Bytes>,
    sleep: Option<Pin<Box<Sleep>>>,
    stalled: bool,
    extra_left: u64,
    upstream_done: bool,
    /// Whether the pause that lets hyper flush before an abort happened.
    flushed: bool,
}

/// Pause before a Truncate/ResetAfter abort so the allowed bytes go out.
const FLUSH_BEFORE_ABORT: Duration = Duration::from_millis(50);

impl ShapedBody {
    pub(crate) fn new(
        inner: UnsyncBoxBody<Bytes, BoxError>,
        start_offset: u64,
        fault: Option<Fault>,
        counter: Arc<AtomicU64>,
        rate: Option<Arc<AtomicU64>>,
        reset: Arc<AtomicBool>,
    ) -> Self {
        let extra_left = match fault {
            Some(Fault::ExtraBytes { count }) => count,
            _ => 0,
        };
        ShapedBody {
            inner,
            offset: start_offset,
            sent: 0,
            fault,
            counter,
            rate,
            reset,
            pending: None,
            sleep: None,
            stalled: false,
            extra_left,
            upstream_done: false,
            flushed: false,
        }
    }

    fn current_rate(&self) -> u64 {
        self.rate.as_ref().map(|r| r.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Emits `chunk` (already cut to size): corrupt, count, schedule pacing.
    fn emit(&mut self, chunk: Bytes) -> Bytes {
        let len = chunk.len() as u64;
        let chunk = match self.fault {
            Some(Fault::CorruptByte { offset }) if offset >= self.offset && offset < self.offset + len => {
                let mut m = BytesMut::from(&chunk[..]);
                m[(offset - self.offset) as usize] ^= 0xFF;
                m.freeze()
            }
            _ => chunk,
        };
        self.offset += len;
        self.sent += len;
        self.counter.fetch_add(len, Ordering::SeqCst);
        let rate = self.current_rate();
        if rate > 0 {
            let secs = len as f64 / rate as f64;
            self.sleep = Some(Box::pin(tokio::time::sleep(Duration::from_secs_f64(secs))));
        }
        chunk
    }

    /// The most bytes that may go out now given the fault and the rate.
    fn allowance(&self) -> u64 {
        let mut limit = u64::MAX;
        match self.fault {
            Some(Fault::Truncate { after }) => limit = after.saturating_sub(self.sent),
            Some(Fault::ResetAfter { bytes }) => limit = bytes.saturating_sub(self.sent),
            Some(Fault::StallAfter { bytes, .. }) if !self.stalled => limit = bytes.saturating_sub(self.sent),
            _ => {}
        }
        let rate = self.current_rate();
        if rate > 0 {
            limit = limit.min((rate / 20).max(1));
        }
        limit
    }
}

impl Body for ShapedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            if this.pending.is_none() && !this.upstream_done {
                match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if data.is_empty() => continue,
                        Ok(data) => this.pending = Some(data),
                        Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                    },
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    None => this.upstream_done = true,
                }
            }
            if this.pending.is_none() && this.extra_left == 0 {
                return Poll::Ready(None);
            }
            let allowance = this.allowance();
            if allowance == 0 {
                let aborting = matches!(this.fault, Some(Fault::Truncate { .. } | Fault::ResetAfter { .. }));
                if aborting && !this.flushed {
                    // Be pending once so hyper flushes the bytes already
                    // yielded; an error right away would drop its buffer.
                    this.flushed = true;
                    this.sleep = Some(Box::pin(tokio::time::sleep(FLUSH_BEFORE_ABORT)));
                    continue;
                }
                match this.fault.clone() {
                    Some(Fault::Truncate { after }) => {
                        return Poll::Ready(Some(Err(
                            format!("fault injected: body truncated after {after} bytes").into()
                        )));
                    }
                    Some(Fault::ResetAfter { bytes }) => {
                        this.reset.store(true, Ordering::SeqCst);
                        return Poll::Ready(Some(Err(
                            format!("fault injected: connection reset after {bytes} bytes").into()
                        )));
                    }
                    Some(Fault::StallAfter { for_, .. }) => {
                        this.stalled = true;
                        this.sleep = Some(Box::pin(tokio::time::sleep(for_)));
                        continue;
                    }
                    _ => unreachable!("only byte-limiting faults give a zero allowance"),
                }
            }
            if let Some(mut data) = this.pending.take() {
                let cut = (data.len() as u64).min(allowance) as usize;
                let chunk = data.split_to(cut);
                if !data.is_empty() {
                    this.pending = Some(data);
                }
                return Poll::Ready(Some(Ok(Frame::data(this.emit(chunk)))));
            }
            // Upstream finished: append the junk asked for.
            let n = this.extra_left.min(allowance).min(64 * 1024);
            this.extra_left -= n;
            let junk = Bytes::from(vec![0xA5u8; n as usize]);
            return Poll::Ready(Some(Ok(Frame::data(this.emit(junk)))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.upstream_done && self.pending.is_none() && self.extra_left == 0
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let more = self.pending.as_ref().map_or(0, |p| p.len() as u64) + self.extra_left;
        match inner.exact() {
            Some(n) => SizeHint::with_exact(n + more),
            None => SizeHint::default(),
        }
    }
}

/// A TCP stream that, if its `reset` flag was raised, sets `SO_LINGER` 0
/// before closing so the peer sees a connection reset instead of a FIN.
pub(crate) struct ResetIo {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl ResetIo {
    pub(crate) fn new(inner: TcpStream, reset: Arc<AtomicBool>) -> Self {
        ResetIo { inner, reset }
    }

    fn check(&self) -> std::io::Result<()> {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
            return Err(std::io::ErrorKind::ConnectionReset.into());
        }
        Ok(())
    }
}

impl Drop for ResetIo {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResetIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
