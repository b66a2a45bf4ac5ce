//! [`SchedulerService`]: the scheduler on the network. It accepts mutual-TLS
//! QUIC connections from peers, answers one request per bidirectional
//! stream (hello each way, one [`SchedulerRequest`] frame, one
//! [`SchedulerResponse`] frame, finish), and ticks the core every second.
//!
//! The core sits behind a `std::sync::Mutex`: a decision takes
//! microseconds and never awaits, so an async lock would only add cost.
//! Each connection is handshaken in its own task and each stream served in
//! its own task, every read under a deadline, so a slow or silent peer
//! holds up no one. The host a request may speak for is the one its
//! connection's certificate names (see [`crate::handler`]); what else a
//! connection may ask (its certificate's role, the address it registers)
//! is checked before the core sees the request (see `admission`).
//!
//! Shutdown: when `stop` fires, [`SchedulerService::serve`] stops accepting
//! connections and streams, lets the streams in flight finish (each is
//! bounded by the deadline), closes its connections so peers fail over to
//! another replica at once, and returns. The caller then closes the
//! endpoint with a grace period.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use shoal_core::HostId;
use shoal_proto::{FrameError, HelloError, SchedErrorCode, SchedulerRequest, hello_server, read_frame, write_frame};
use shoal_transport::{Endpoint, Incoming};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::admission::Caller;
use super::metrics::SchedulerMetrics;
use crate::config::SchedulerConfig;
use crate::handler::{self, Handled};
use crate::scheduler::Scheduler;
use crate::time::Millis;
use crate::types::Expired;

/// Application close code: the scheduler is shutting down.
const CLOSE_SHUTDOWN: u32 = 0;
/// Application close code: the peer's protocol version or identity is unusable.
const CLOSE_REFUSED: u32 = 1;

/// Timing knobs of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Deadline for a whole request stream: both hellos, the request and
    /// the answer (PROTOCOL.md: a scheduler answer takes at most 5 s).
    pub stream_deadline: Duration,
    /// How often the core's `tick` runs (expiry, grant hand-over).
    pub tick: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig { stream_deadline: Duration::from_secs(5), tick: Duration::from_secs(1) }
    }
}

/// The scheduler service. Cloning shares the core and metrics.
#[derive(Clone, Debug)]
pub struct SchedulerService {
    core: Arc<Mutex<Scheduler>>,
    epoch: Instant,
    metrics: SchedulerMetrics,
    me: HostId,
    config: ServiceConfig,
}

/// Why one request stream failed (logged at debug: peers retry).
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("hello: {0}")]
    Hello(#[from] HelloError),
    #[error("reading the request: {0}")]
    Frame(#[from] FrameError),
    #[error("the stream ended before a request")]
    NoRequest,
    #[error("no request and answer within {0:?}")]
    Timeout(Duration),
    #[error("finishing the stream: {0}")]
    Finish(#[from] quinn::ClosedStream),
}

impl SchedulerService {
    /// A service with a fresh core. `me` is the scheduler's host id (from
    /// its certificate), sent in every hello.
    pub fn new(me: HostId, core: SchedulerConfig, metrics: SchedulerMetrics) -> Self {
        SchedulerService {
            core: Arc::new(Mutex::new(Scheduler::new(core))),
            epoch: Instant::now(),
            metrics,
            me,
            config: ServiceConfig::default(),
        }
    }

    /// Replaces the timing knobs.
    pub fn with_config(mut self, config: ServiceConfig) -> Self {
        self.config = config;
        self
    }

    /// The core, for in-process queries (tests, an embedded scheduler).
    pub fn core(&self) -> Arc<Mutex<Scheduler>> {
        self.core.clone()
    }

    /// The metrics.
    pub fn metrics(&self) -> &SchedulerMetrics {
        &self.metrics
    }

    /// Now, as the core counts time: since the service was made.
    pub fn now(&self) -> Millis {
        Millis::from(self.epoch.elapsed())
    }

    /// Answers one request in-process (no I/O), with metrics.
    /// `peer_cert_host` is the host the caller's certificate names, `None`
    /// for a trusted in-process caller.
    pub fn answer(&self, req: SchedulerRequest, peer_cert_host: Option<&HostId>) -> shoal_proto::SchedulerResponse {
        let start = Instant::now();
        let (handled, stats) = {
            let mut core = self.lock();
            let handled = handler::handle_detailed(&mut core, self.now(), req, peer_cert_host);
            (handled, core.stats())
        };
        let Handled { response, kind, new_grant } = handled;
        self.metrics.observe_decision(start.elapsed().as_secs_f64());
        self.metrics.record_request(kind, handler::response_result(&response));
        self.metrics.record_grants(u64::from(new_grant));
        self.metrics.record_stats(stats);
        response
    }

    /// Refreshes the size gauges from the core (call before a scrape).
    pub fn refresh_metrics(&self) {
        let stats = self.lock().stats();
        self.metrics.record_stats(stats);
    }

    /// Runs one tick of the core now; returns what it changed.
    pub fn tick(&self) -> Vec<Expired> {
        let (changes, stats) = {
            let mut core = self.lock();
            let changes = core.tick(self.now());
            (changes, core.stats())
        };
        self.metrics.record_stats(stats);
        let mut expired = 0;
        let mut given = 0;
        for change in &changes {
            match change {
                Expired::Host(host) => {
                    expired += 1;
                    tracing::info!(%host, "host expired: nothing heard from it within host_ttl");
                }
                Expired::GrantRevoked { task, host } => {
                    tracing::info!(%task, %host, "origin grant revoked (holder stalled or gone)");
                }
                Expired::GrantGiven { task, host } => {
                    given += 1;
                    tracing::debug!(%task, %host, "origin grant handed to a waiting peer");
                }
            }
        }
        self.metrics.record_expired(expired);
        self.metrics.record_grants(given);
        changes
    }

    /// Serves peers on `endpoint` and ticks the core until `stop` fires,
    /// then drains (see the module docs) and returns.
    pub async fn serve(self, endpoint: Endpoint, stop: CancellationToken) {
        let ticker = tokio::spawn(self.clone().tick_loop(stop.clone()));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                incoming = endpoint.accept() => match incoming {
                    Some(incoming) => {
                        connections.spawn(self.clone().connection(incoming, stop.clone()));
                    }
                    None => break,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        stop.cancel();
        while connections.join_next().await.is_some() {}
        let _ = ticker.await;
    }

    async fn tick_loop(self, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.config.tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {
                    self.tick();
                }
            }
        }
    }

    /// Handshakes one connection and serves its streams until it closes or
    /// `stop` fires.
    async fn connection(self, incoming: Incoming, stop: CancellationToken) {
        let remote = incoming.remote_addr();
        let peer = match incoming.handshake().await {
            Ok(peer) => peer,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "scheduler handshake failed");
                return;
            }
        };
        let conn = peer.connection;
        let Some(host) = peer.host.as_deref().and_then(|h| h.parse::<HostId>().ok()) else {
            tracing::warn!(%remote, cert_host = ?peer.host, "certificate names no valid host id; closing");
            conn.close(CLOSE_REFUSED.into(), b"certificate names no valid host id");
            return;
        };
        let caller = Caller::new(host, peer.role, &peer.ips, conn.remote_address().ip());
        tracing::debug!(%remote, host = %caller.host, "peer connected");
        let mut streams = JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                accepted = conn.accept_bi() => match accepted {
                    Ok((send, recv)) => {
                        streams.spawn(self.clone().stream(conn.clone(), send, recv, caller.clone()));
                    }
                    Err(_) => break,
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
            }
        }
        while streams.join_next().await.is_some() {}
        if stop.is_cancelled() {
            conn.close(CLOSE_SHUTDOWN.into(), b"scheduler shutting down");
        }
    }

    /// One request stream, under the deadline.
    async fn stream(self, conn: Connection, mut send: SendStream, mut recv: RecvStream, caller: Caller) {
        let deadline = self.config.stream_deadline;
        let host = &caller.host;
        let result = match tokio::time::timeout(deadline, self.exchange(&mut send, &mut recv, &caller)).await {
            Ok(result) => result,
            Err(_) => Err(StreamError::Timeout(deadline)),
        };
        match result {
            Ok(()) => {}
            Err(StreamError::Hello(HelloError::Version(e))) => {
                tracing::warn!(%host, error = %e, "peer speaks no common protocol version; closing its connection");
                conn.close(CLOSE_REFUSED.into(), e.to_string().as_bytes());
            }
            Err(e) => {
                self.metrics.record_invalid();
                tracing::debug!(%host, error = %e, "scheduler stream failed");
                let _ = send.reset(0u32.into());
            }
        }
    }

    async fn exchange(&self, send: &mut SendStream, recv: &mut RecvStream, caller: &Caller) -> Result<(), StreamError> {
        let hello = hello_server(send, recv, &self.me).await?;
        let req: SchedulerRequest = read_frame(recv).await?.ok_or(StreamError::NoRequest)?;
        let response = match caller.admit(&hello.host, &req) {
            Ok(()) => self.answer(req, Some(&caller.host)),
            Err(message) => {
                let kind = handler::request_kind(&req);
                self.metrics.record_request(kind, "bad_request");
                tracing::warn!(host = %caller.host, remote = %caller.remote, kind, %message, "refused a request");
                handler::error(SchedErrorCode::BadRequest, message)
            }
        };
        write_frame(send, &response).await?;
        send.finish()?;
        Ok(())
    }

    /// The core. A decision that panicked poisons the lock and may have
    /// left the core half-updated; state is soft, so start over with an
    /// empty core (peers get `UnknownHost` and re-register) rather than
    /// serve from a broken one or fail every request.
    fn lock(&self) -> MutexGuard<'_, Scheduler> {
        match self.core.lock() {
            Ok(core) => core,
            Err(poisoned) => {
                let mut core = poisoned.into_inner();
                tracing::error!("a scheduler decision panicked; starting over with empty state (peers re-register)");
                *core = Scheduler::new(core.config().clone());
                self.core.clear_poison();
                core
            }
        }
    }
}
