//! HTTP/1 serving for the mirror and the admin listener: one task per
//! connection, limits that keep slow or hoarding clients from holding the
//! daemon's connections, and the drain on shutdown.
//!
//! Each connection is closed by the daemon when:
//! - its request headers are not complete [`ServeConfig::header_read_timeout`]
//!   after their first byte (for a new connection: after it was accepted), so
//!   a client trickling header bytes (slowloris) holds nothing for long;
//! - it sits between requests for [`ServeConfig::idle_timeout`];
//! - the client reads nothing of a response for [`ServeConfig::client_stall`]
//!   (the socket accepts no byte), so a client that stopped reading does not
//!   pin a connection and a store reader forever;
//! - it would be connection number [`ServeConfig::max_connections`] + 1: it
//!   is closed at once (see that field for why it is not queued).
//!
//! A request being handled (headers read, response not yet sent) has no
//! deadline here: the handlers bound their own waits (`origin_wait`,
//! `body_stall`).
//!
//! Shutdown: once `stop` is cancelled no connection is accepted, every
//! connection finishes the response it is sending and closes (idle ones at
//! once), and after `grace` the ones still open are cut.
//!
//! Every request carries the client's address as
//! `axum::extract::ConnectInfo<SocketAddr>`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Limits of one listener's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// How long a request's headers may take to arrive, from their first
    /// byte (for a connection's first request, from the accept). Headers are
    /// a few hundred bytes to a few KiB (a bearer token) and arrive in one
    /// segment on loopback; 10 s leaves room for a busy client process.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request. 60 s
    /// keeps containerd's connections through a pull (requests follow each
    /// other within milliseconds); Go clients retry an idempotent request
    /// whose idle connection was closed under it.
    pub idle_timeout: Duration,
    /// How long the client may accept no byte of a response before the
    /// connection is cut.
    pub client_stall: Duration,
    /// Open connections at most. One more is closed as soon as it is
    /// accepted, not left waiting in the kernel's queue: a waiting
    /// connection looks to containerd like a hung registry (no error, no
    /// fallback, a stuck pull), while a closed one fails at once, so
    /// containerd tries the next host in hosts.toml (the origin) and the
    /// kubelet retries. A node that needs this many connections to its own
    /// mirror has a client leaking or hoarding them.
    pub max_connections: usize,
}

impl Default for ServeConfig {
    /// The mirror's limits. containerd opens one connection per blob it
    /// fetches at once (3 per image by default), so 512 is far above a
    /// node's real need and far below the process's file limit.
    fn default() -> Self {
        ServeConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            client_stall: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// Which listener a connection came to.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Listener {
    /// The registry mirror.
    mirror,
    /// `/metrics`, health and the admin API.
    admin,
}

/// Why the daemon closed a connection itself.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CloseReason {
    /// It was over [`ServeConfig::max_connections`].
    over_limit,
    /// Its request headers took longer than the header deadline.
    header_timeout,
    /// It waited for a next request longer than the idle limit.
    idle,
    /// Its client read nothing of a response for the stall limit.
    client_stall,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: Listener,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    listener: Listener,
    reason: CloseReason,
}

/// Connection metrics of both listeners.
#[derive(Clone, Default)]
pub struct ServeMetrics {
    open: Family<ListenerLabels, Gauge>,
    closed: Family<CloseLabels, Counter>,
}

impl ServeMetrics {
    /// Create them and register them under `shoal_` in `registry`.
    pub fn register(registry: &mut Registry) -> ServeMetrics {
        let m = ServeMetrics::default();
        let r = registry.sub_registry_with_prefix("shoal");
        r.register("http_connections", "Open HTTP connections to the daemon's listeners", m.open.clone());
        r.register("http_connections_closed", "HTTP connections the daemon closed itself", m.closed.clone());
        m
    }

    fn closed(&self, listener: Listener, reason: CloseReason) {
        self.closed.get_or_create(&CloseLabels { listener, reason }).inc();
    }
}

/// Serve `router` on `listener` until `stop` is cancelled, then drain for
/// at most `grace` (see the module docs). Returns when every connection is
/// closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
    which: Listener,
    metrics: ServeMetrics,
    stop: CancellationToken,
    grace: Duration,
) {
    let open_gauge = metrics.open.get_or_create(&ListenerLabels { listener: which }).clone();
    let open = Arc::new(AtomicUsize::new(0));
    let refusals = RefusalLog::default();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                };
                if open.load(Ordering::SeqCst) >= config.max_connections {
                    drop(stream);
                    metrics.closed(which, CloseReason::over_limit);
                    refusals.note(which, config.max_connections);
                    continue;
                }
                let slot = Slot::take(&open, &open_gauge);
                let conn = Connection {
                    router: router.clone(),
                    config: config.clone(),
                    which,
                    metrics: metrics.clone(),
                    stop: stop.clone(),
                };
                conns.spawn(async move {
                    conn.run(stream, peer).await;
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    let left = open.load(Ordering::SeqCst);
    if left > 0 {
        tracing::debug!(listener = ?which, connections = left, ?grace, "draining connections");
    }
    let drained = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(listener = ?which, connections = conns.len(), "grace period over: cutting the remaining responses");
        conns.shutdown().await;
    }
}

/// An accept error: a client that went away before the accept is nothing;
/// anything else (no file descriptors left) is logged and retried after a
/// pause, as the condition usually outlasts a few attempts.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One open connection counted in `open` and its gauge.
struct Slot {
    open: Arc<AtomicUsize>,
    gauge: Gauge,
}

impl Slot {
    fn take(open: &Arc<AtomicUsize>, gauge: &Gauge) -> Slot {
        open.fetch_add(1, Ordering::SeqCst);
        gauge.inc();
        Slot { open: open.clone(), gauge: gauge.clone() }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
        self.gauge.dec();
    }
}

/// Logs refused connections at most once per [`RefusalLog::EVERY`], with
/// how many there were since the last line.
#[derive(Default)]
struct RefusalLog {
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&self, which: Listener, limit: usize) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Self::EVERY) {
            *last = Some(Instant::now());
            self.count.store(0, Ordering::Relaxed);
            tracing::warn!(
                listener = ?which, limit, refused = n,
                "connection limit reached: closing new connections at once (a client on this node is holding \
                 connections open; raise mirror.max_connections only if this is real load)"
            );
        }
    }
}

/// What a connection task needs.
struct Connection {
    router: Router,
    config: ServeConfig,
    which: Listener,
    metrics: ServeMetrics,
    stop: CancellationToken,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let watch = Arc::new(Watch::new(Instant::now()));
        let io = TokioIo::new(Watched { inner: stream, watch: watch.clone() });
        // The router as a hyper service: every request carries the peer's
        // address and keeps the connection busy until its response ends.
        let router = TowerToHyperService::new(self.router);
        let busy_watch = watch.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let busy = Busy::start(busy_watch.clone());
            let answer = router.call(req);
            async move {
                let resp = answer.await?;
                Ok::<_, Infallible>(resp.map(|body| Tracked { body, _busy: busy }))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            let deadline = watch.deadline(&self.config);
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(listener = ?self.which, %peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stop.cancelled(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = watch.changed.notified() => {}
                _ = sleep_until(deadline) => {
                    if let Some(reason) = watch.expired(Instant::now(), &self.config) {
                        tracing::debug!(listener = ?self.which, %peer, ?reason, "closing the connection");
                        self.metrics.closed(self.which, reason);
                        return;
                    }
                }
            }
        }
    }
}

/// Sleep until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

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
struct Watch {
    state: Mutex<WatchState>,
    /// Woken when a deadline may have moved earlier.
    changed: Notify,
}

impl Watch {
    fn new(accepted: Instant) -> Watch {
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
    fn deadline(&self, c: &ServeConfig) -> Option<Instant> {
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
    fn expired(&self, now: Instant, c: &ServeConfig) -> Option<CloseReason> {
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
struct Busy(Arc<Watch>);

impl Busy {
    fn start(watch: Arc<Watch>) -> Busy {
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
pub struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
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
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
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
    use super::*;

    fn config() -> ServeConfig {
        ServeConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            client_stall: Duration::from_secs(30),
            max_connections: 4,
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
