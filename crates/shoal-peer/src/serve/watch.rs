//! The deadlines of one connection: which phase it is in (new, between
//! requests, reading a request's headers, answering), fed by its socket
//! ([`Watched`]: bytes read, writes refused) and its requests ([`Busy`],
//! held by the response body, [`Tracked`]), and which limit has run out.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{CloseReason, ServeConfig};

/// Where a connection is between its requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Accepted at this instant; its first request's headers are due
    /// within the header deadline of it.
    Fresh(Instant),
    /// Its last response ended at this instant; no byte since.
    Idle(Instant),
    /// The first byte of a request arrived at this instant.
    Headers(Instant),
    /// A request is being answered.
    Busy,
}

struct WatchState {
    phase: Phase,
    /// Requests being answered (hyper answers one at a time; counted so an
    /// overlap can never mark a busy connection idle).
    busy: usize,
    /// Since when the socket has refused to take response bytes.
    write_blocked: Option<Instant>,
}

/// The deadlines of one connection, fed by its socket ([`Watched`]) and its
/// requests ([`Busy`]).
pub(super) struct Watch {
    state: Mutex<WatchState>,
    /// Woken when a deadline may have moved earlier.
    pub(super) changed: Notify,
}

impl Watch {
    pub(super) fn new(accepted: Instant) -> Watch {
        Watch {
            state: Mutex::new(WatchState { phase: Phase::Fresh(accepted), busy: 0, write_blocked: None }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next instant a limit may run out (`None`: none can until the
    /// state changes, which notifies).
    pub(super) fn deadline(&self, c: &ServeConfig) -> Option<Instant> {
        let s = self.lock();
        let phase = match s.phase {
            Phase::Fresh(t) | Phase::Headers(t) => Some(t + c.header_read_timeout),
            Phase::Idle(t) => Some(t + c.idle_timeout),
            Phase::Busy => None,
        };
        let stall = s.write_blocked.map(|t| t + c.client_stall);
        match (phase, stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Which limit ran out at `now`, if any.
    pub(super) fn expired(&self, now: Instant, c: &ServeConfig) -> Option<CloseReason> {
        let s = self.lock();
        if s.write_blocked.is_some_and(|t| now >= t + c.client_stall) {
            return Some(CloseReason::client_stall);
        }
        match s.phase {
            Phase::Fresh(t) | Phase::Headers(t) if now >= t + c.header_read_timeout => {
                Some(CloseReason::header_timeout)
            }
            Phase::Idle(t) if now >= t + c.idle_timeout => Some(CloseReason::idle),
            _ => None,
        }
    }

    fn read_bytes(&self) {
        let mut s = self.lock();
        if let Phase::Idle(_) = s.phase {
            s.phase = Phase::Headers(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    fn write_blocked(&self, blocked: bool) {
        let mut s = self.lock();
        match (blocked, s.write_blocked) {
            (true, None) => {
                s.write_blocked = Some(Instant::now());
                drop(s);
                self.changed.notify_one();
            }
            (false, Some(_)) => s.write_blocked = None,
            _ => {}
        }
    }
}

/// A request in progress on a connection; its end (the response body
/// finished or dropped) makes the connection idle.
pub(super) struct Busy(Arc<Watch>);

impl Busy {
    pub(super) fn start(watch: Arc<Watch>) -> Busy {
        let mut s = watch.lock();
        s.busy += 1;
        s.phase = Phase::Busy;
        drop(s);
        Busy(watch)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.busy -= 1;
        if s.busy == 0 {
            s.phase = Phase::Idle(Instant::now());
            drop(s);
            self.0.changed.notify_one();
        }
    }
}

/// A response body that keeps its connection busy until it is done.
pub(super) struct Tracked {
    pub(super) body: axum::body::Body,
    pub(super) _busy: Busy,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, reporting reads and blocked writes to the [`Watch`].
pub(super) struct Watched {
    pub(super) inner: TcpStream,
    pub(super) watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read_bytes();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.watch.write_blocked(r.is_pending());
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch.write_blocked(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> ServeConfig {
        ServeConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            client_stall: Duration::from_secs(30),
            max_connections: 4,
            write_buffer: 32 << 10,
        }
    }

    #[test]
    fn a_fresh_connection_owes_its_headers_from_the_accept() {
        let t0 = Instant::now();
        let c = config();
        let w = Watch::new(t0);
        assert_eq!(w.deadline(&c), Some(t0 + c.header_read_timeout));
        // Bytes of the first request do not restart the clock (slowloris).
        w.read_bytes();
        assert_eq!(w.deadline(&c), Some(t0 + c.header_read_timeout));
        assert_eq!(w.expired(t0 + Duration::from_secs(9), &c), None);
        assert_eq!(w.expired(t0 + Duration::from_secs(10), &c), Some(CloseReason::header_timeout));
    }

    #[test]
    fn busy_has_no_deadline_until_the_client_stops_reading() {
        let c = config();
        let w = Arc::new(Watch::new(Instant::now()));
        let busy = Busy::start(w.clone());
        assert_eq!(w.deadline(&c), None);
        w.write_blocked(true);
        let blocked = w.lock().write_blocked.unwrap();
        assert_eq!(w.deadline(&c), Some(blocked + c.client_stall));
        assert_eq!(w.expired(blocked + c.client_stall, &c), Some(CloseReason::client_stall));
        w.write_blocked(false);
        assert_eq!(w.deadline(&c), None);
        drop(busy);
        let idle_since = match w.lock().phase {
            Phase::Idle(t) => t,
            p => panic!("{p:?}"),
        };
        assert_eq!(w.deadline(&c), Some(idle_since + c.idle_timeout));
        assert_eq!(w.expired(idle_since + c.idle_timeout, &c), Some(CloseReason::idle));
        // The next request's first byte starts its header clock.
        w.read_bytes();
        assert!(matches!(w.lock().phase, Phase::Headers(_)));
    }
}
