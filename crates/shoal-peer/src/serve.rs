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

mod watch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http::Request;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use watch::{Busy, Tracked, Watch, Watched};

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
    /// Response bytes hyper queues for one connection before it stops
    /// asking the body for more (also the longest request head it reads).
    /// Small, so a connection whose client reads slowly holds about one
    /// body chunk, not several; request heads are a few KiB.
    pub write_buffer: usize,
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
            write_buffer: 32 << 10,
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
            let setting = match which {
                Listener::mirror => "raise mirror.max_connections only if this is real load",
                Listener::admin => "the admin listener allows this many; look for a scraper or script that leaks them",
            };
            tracing::warn!(
                listener = ?which, limit, refused = n,
                "connection limit reached: closing new connections at once (a client is holding connections open; \
                 {setting})"
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
        let conn = hyper::server::conn::http1::Builder::new()
            .max_buf_size(self.config.write_buffer.max(8192))
            .serve_connection(io, service);
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
