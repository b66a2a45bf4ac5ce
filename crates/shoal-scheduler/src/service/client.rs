//! [`SchedulerClient`]: how a peer reaches the scheduler replicas.
//!
//! Every call is one bidirectional stream on a pooled connection to one
//! replica: hello each way, one request, one answer, each attempt under the
//! call's deadline. A replica must hold a scheduler certificate
//! ([`Endpoint::connect_scheduler`]: a node answering at a scheduler's
//! address gets no request) and its hello must name the host in that
//! certificate.
//!
//! Which replica:
//! - A task's requests (`task = Some(digest)`) go to the replicas in
//!   [`rendezvous`] order of (replica address, task digest), so every peer
//!   of a task meets at the same replica while it is up. A replica that
//!   fails is skipped for that call and marked down for a few seconds, so
//!   later calls try the next one first; after that it is probed again.
//!   Replicas marked down are still tried last, never skipped outright.
//! - Once a replica answered a task's request, the other replicas (those
//!   not marked down) get a copy in the background: a join's outcome as
//!   `Follow`, and `Progress`, `PieceFailed` and `Leave` as they are. So
//!   when the replica that owns a task dies, the next one in rendezvous
//!   order already knows who is downloading the blob, who holds it and who
//!   fetches it from the origin, and sends nobody else to the origin. A
//!   copy that fails only marks its replica down; the call does not wait
//!   for copies.
//! - Host-level requests (`task = None`: register, heartbeat) go to every
//!   replica at once (but those marked down, unless no other answers),
//!   because every replica must know the host before it can answer that
//!   host's joins for the tasks it owns. The answer
//!   returned is `UnknownHost` if any replica gave it (so the peer
//!   registers again, everywhere), else, for a prewarm poll, every
//!   replica's jobs together (each owns its own), else that of the first
//!   replica in rendezvous order of the host id that answered.
//!
//! Replica lists: give addresses, or a name with a port
//! ([`SchedulerClient::resolve`]). A Kubernetes headless Service's DNS name
//! (`shoal-scheduler.shoal.svc:65004`, `clusterIP: None`) resolves to the
//! addresses of all its ready pods, i.e. every replica. The name is
//! resolved at construction ([`SchedulerClient::resolve_later`]: at the
//! first call), again whenever every known replica failed a call, and
//! before a host-level request (the heartbeats) once the last resolution
//! is [`DEFAULT_REFRESH_EVERY`] old, so scale-ups and rescheduled pods are
//! followed; [`SchedulerClient::refresh`] re-resolves on demand.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_core::{Digest, HostId};
use shoal_proto::{
    FrameError, HelloError, OriginGrant, SchedErrorCode, SchedulerRequest, SchedulerResponse, hello_client, read_frame,
    write_frame,
};
use shoal_transport::{Endpoint, TransportError};
use tokio::time::Instant;

use crate::rendezvous::rendezvous;

/// How long a failed replica is tried last, by default.
pub const DEFAULT_DOWN_FOR: Duration = Duration::from_secs(3);

/// How old the replica list may get before a host-level request (a
/// heartbeat) resolves the names again, by default.
pub const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(30);

/// A call reached no replica.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The replica list is empty.
    #[error(
        "no scheduler replicas are known: give the scheduler as host:port, or a headless Service name with a port \
         that resolves to its pods"
    )]
    NoReplicas,
    /// The replicas' name could not be resolved.
    #[error("could not resolve the scheduler address {name}: {source} (is the name right and DNS reachable?)")]
    Resolve {
        /// The name as given.
        name: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// Every replica tried failed.
    #[error("no scheduler replica answered: {}", list(.failures))]
    AllFailed {
        /// Each replica tried and how it failed, in the order tried.
        failures: Vec<ReplicaFailure>,
    },
}

/// One replica's failure within a call.
#[derive(Debug, thiserror::Error)]
#[error("{addr}: {error}")]
pub struct ReplicaFailure {
    /// The replica.
    pub addr: SocketAddr,
    /// What went wrong.
    #[source]
    pub error: AttemptError,
}

/// Why one attempt at one replica failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// No connection (unreachable, handshake refused, connect timeout).
    #[error(transparent)]
    Connect(#[from] TransportError),
    /// The connection would not open a stream (it closed meanwhile).
    #[error("opening a stream: {0}")]
    Open(#[from] quinn::ConnectionError),
    /// The hello exchange failed.
    #[error(transparent)]
    Hello(#[from] HelloError),
    /// The replica's hello names another host than its certificate.
    #[error("the replica's hello names host {hello} but its certificate names {certificate}")]
    HelloMismatch {
        /// The host its hello names.
        hello: String,
        /// The host its certificate names.
        certificate: String,
    },
    /// Sending the request or reading the answer failed.
    #[error("sending the request or reading the answer: {0}")]
    Frame(#[from] FrameError),
    /// The replica closed the stream without answering.
    #[error("the replica closed the stream without answering")]
    NoAnswer,
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A replica that is not who it must be is a configuration error worth a
/// warning; anything else is routine (the next replica is tried).
fn log_failure(addr: SocketAddr, error: &AttemptError) {
    match error {
        AttemptError::Connect(TransportError::NotScheduler { .. }) | AttemptError::HelloMismatch { .. } => {
            tracing::warn!(%addr, %error, "refused a scheduler replica");
        }
        _ => tracing::debug!(%addr, %error, "scheduler replica failed"),
    }
}

fn list(failures: &[ReplicaFailure]) -> String {
    failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// A peer's way to the scheduler replicas. Share it (`Arc`): the down
/// marks and the connection pool are per client.
#[derive(Debug)]
pub struct SchedulerClient {
    shared: Arc<Shared>,
    /// Names (host:port) to resolve the replicas from; empty for fixed
    /// addresses.
    names: Vec<String>,
    refresh_every: Duration,
}

/// What the background copies to other replicas need too.
#[derive(Debug)]
struct Shared {
    endpoint: Endpoint,
    me: HostId,
    deadline: Duration,
    down_for: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    replicas: Vec<SocketAddr>,
    /// Replicas that failed, with when they are probed first again.
    down: HashMap<SocketAddr, Instant>,
    /// When the names were last resolved.
    resolved_at: Option<Instant>,
}

impl SchedulerClient {
    /// A client for fixed replica addresses. `deadline` bounds each
    /// attempt at one replica (connect, hello, request, answer).
    pub fn new(endpoint: Endpoint, me: HostId, replicas: Vec<SocketAddr>, deadline: Duration) -> Self {
        let state = State { replicas: dedup(replicas), ..State::default() };
        let shared = Shared { endpoint, me, deadline, down_for: DEFAULT_DOWN_FOR, state: Mutex::new(state) };
        SchedulerClient { shared: Arc::new(shared), names: Vec::new(), refresh_every: DEFAULT_REFRESH_EVERY }
    }

    /// A client for the replicas `name_with_port` resolves to (e.g. a
    /// headless Service: `shoal-scheduler.shoal.svc:65004`), resolved now
    /// and again when every known replica fails a call.
    pub async fn resolve(
        endpoint: Endpoint,
        me: HostId,
        name_with_port: impl Into<String>,
        deadline: Duration,
    ) -> Result<Self, ClientError> {
        Self::resolve_all(endpoint, me, vec![name_with_port.into()], deadline).await
    }

    /// [`SchedulerClient::resolve`] for several names (or `ip:port`
    /// strings): the replicas are all the addresses they resolve to.
    pub async fn resolve_all(
        endpoint: Endpoint,
        me: HostId,
        names_with_port: Vec<String>,
        deadline: Duration,
    ) -> Result<Self, ClientError> {
        let client = Self::resolve_later(endpoint, me, names_with_port, deadline)?;
        client.refresh().await?;
        Ok(client)
    }

    /// A client for `names_with_port` (host:port each) that resolves them
    /// at its first call, and again whenever every known replica failed,
    /// rather than now: a daemon starts while the scheduler Service has no
    /// ready pods yet. Only the form of each name is checked here.
    pub fn resolve_later(
        endpoint: Endpoint,
        me: HostId,
        names_with_port: Vec<String>,
        deadline: Duration,
    ) -> Result<Self, ClientError> {
        if names_with_port.is_empty() {
            return Err(ClientError::NoReplicas);
        }
        for name in &names_with_port {
            let port = name.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(_))) if !host.is_empty()) {
                let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "write host:port");
                return Err(ClientError::Resolve { name: name.clone(), source });
            }
        }
        let mut client = Self::new(endpoint, me, Vec::new(), deadline);
        client.names = names_with_port;
        Ok(client)
    }

    /// Sets how long a failed replica is tried last (default
    /// [`DEFAULT_DOWN_FOR`]).
    pub fn with_down_for(mut self, down_for: Duration) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.down_for = down_for;
        }
        self
    }

    /// Sets how old the replica list may get before a heartbeat resolves
    /// the names again (default [`DEFAULT_REFRESH_EVERY`]).
    pub fn with_refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
    }

    /// Re-resolves the names given to [`SchedulerClient::resolve`] and
    /// returns the replicas now known (unchanged for fixed addresses).
    pub async fn refresh(&self) -> Result<Vec<SocketAddr>, ClientError> {
        if !self.names.is_empty() {
            let replicas = lookup(&self.names).await?;
            let mut state = self.lock();
            state.down.retain(|addr, _| replicas.contains(addr));
            state.replicas = replicas;
            state.resolved_at = Some(Instant::now());
        }
        Ok(self.replicas())
    }

    /// The replicas now known.
    pub fn replicas(&self) -> Vec<SocketAddr> {
        self.lock().replicas.clone()
    }

    /// The order a call about `task` tries the replicas in now: rendezvous
    /// order, with replicas marked down moved to the end.
    pub fn order(&self, task: Option<&Digest>) -> Vec<SocketAddr> {
        let key = match task {
            Some(task) => task.to_string().into_bytes(),
            None => self.shared.me.as_str().as_bytes().to_vec(),
        };
        let state = self.lock();
        let now = Instant::now();
        let (up, down): (Vec<_>, Vec<_>) = rendezvous(&state.replicas, &key)
            .into_iter()
            .partition(|addr| state.down.get(addr).is_none_or(|until| *until <= now));
        up.into_iter().chain(down).collect()
    }

    /// Sends `req` and returns the answer (see the module docs for which
    /// replicas are asked). An `Error` answer is an answer, not a failure.
    pub async fn call(&self, task: Option<&Digest>, req: SchedulerRequest) -> Result<SchedulerResponse, ClientError> {
        if self.lock().replicas.is_empty() && self.names.is_empty() {
            return Err(ClientError::NoReplicas);
        }
        if task.is_none() {
            self.refresh_if_old().await;
        }
        let mut failures = Vec::new();
        let mut tried = HashSet::new();
        let mut resolved = false;
        loop {
            let order: Vec<_> = self.order(task).into_iter().filter(|a| !tried.contains(a)).collect();
            tried.extend(order.iter().copied());
            let answer = match task {
                Some(_) => self.failover(&order, &req, &mut failures).await.map(|(addr, answer)| {
                    self.copy_to_others(addr, &req, &answer);
                    answer
                }),
                None => self.broadcast(&order, &req, &mut failures).await,
            };
            if let Some(answer) = answer {
                return Ok(answer);
            }
            // Every known replica failed: the set may have changed.
            if resolved || self.names.is_empty() {
                break;
            }
            resolved = true;
            if let Err(e) = self.refresh().await {
                tracing::debug!(error = %e, "re-resolving the scheduler replicas failed");
                if tried.is_empty() {
                    // Never resolved: say why, not "no replicas".
                    return Err(e);
                }
                break;
            }
            if self.replicas().iter().all(|a| tried.contains(a)) {
                break;
            }
        }
        if failures.is_empty() {
            return Err(ClientError::NoReplicas);
        }
        Err(ClientError::AllFailed { failures })
    }

    /// Re-resolves the names if the last resolution is older than
    /// `refresh_every`; a failure keeps the list as it was.
    async fn refresh_if_old(&self) {
        let old = self.lock().resolved_at.is_none_or(|at| at.elapsed() >= self.refresh_every);
        if old
            && !self.names.is_empty()
            && let Err(e) = self.refresh().await
        {
            tracing::debug!(error = %e, "re-resolving the scheduler replicas failed; keeping the known ones");
        }
    }

    /// Tries `order` one at a time; the first answer wins, with the
    /// replica that gave it.
    async fn failover(
        &self,
        order: &[SocketAddr],
        req: &SchedulerRequest,
        failures: &mut Vec<ReplicaFailure>,
    ) -> Option<(SocketAddr, SchedulerResponse)> {
        for &addr in order {
            match self.shared.attempt(addr, req).await {
                Ok(answer) => {
                    self.shared.mark_up(addr);
                    return Some((addr, answer));
                }
                Err(error) => {
                    log_failure(addr, &error);
                    self.shared.mark_down(addr);
                    failures.push(ReplicaFailure { addr, error });
                }
            }
        }
        None
    }

    /// Sends the copy of a task request that `answered` took (see the
    /// module docs) to every other replica not marked down, in the
    /// background.
    fn copy_to_others(&self, answered: SocketAddr, req: &SchedulerRequest, answer: &SchedulerResponse) {
        let Some(copy) = copy_of(req, answer) else {
            return;
        };
        let others: Vec<_> = self.replicas().into_iter().filter(|&a| a != answered && !self.is_down(a)).collect();
        if others.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for addr in others {
            let (shared, copy) = (Arc::clone(&self.shared), copy.clone());
            runtime.spawn(async move {
                match shared.attempt(addr, &copy).await {
                    Ok(_) => shared.mark_up(addr),
                    // A replica that cannot be reached is down for the
                    // real requests too; one that refused only the copy
                    // (an older version that cannot decode it) is not.
                    Err(error @ (AttemptError::Connect(_) | AttemptError::Open(_) | AttemptError::Timeout(_))) => {
                        log_failure(addr, &error);
                        shared.mark_down(addr);
                    }
                    Err(error) => log_failure(addr, &error),
                }
            });
        }
    }

    /// Asks every replica in `order` that is not marked down at once (all
    /// of them if all are down, or if none of the others answered), and
    /// merges the answers. Skipping the replicas marked down keeps a
    /// heartbeat from waiting a whole deadline on a dead one each time; they
    /// are asked again once their mark runs out.
    async fn broadcast(
        &self,
        order: &[SocketAddr],
        req: &SchedulerRequest,
        failures: &mut Vec<ReplicaFailure>,
    ) -> Option<SchedulerResponse> {
        let (up, down): (Vec<_>, Vec<_>) = order.iter().partition(|&&addr| !self.is_down(addr));
        for group in [up, down] {
            let results =
                futures_util::future::join_all(group.iter().map(|&addr| self.shared.attempt(addr, req))).await;
            let mut answers = Vec::new();
            for (addr, result) in group.into_iter().zip(results) {
                match result {
                    Ok(answer) => {
                        self.shared.mark_up(addr);
                        answers.push(answer);
                    }
                    Err(error) => {
                        log_failure(addr, &error);
                        self.shared.mark_down(addr);
                        failures.push(ReplicaFailure { addr, error });
                    }
                }
            }
            let unknown = answers
                .iter()
                .position(|a| matches!(a, SchedulerResponse::Error(e) if e.code == SchedErrorCode::UnknownHost));
            let answer = match unknown {
                Some(i) => Some(answers.swap_remove(i)),
                None => merge(answers),
            };
            if answer.is_some() {
                return answer;
            }
        }
        None
    }

    fn is_down(&self, addr: SocketAddr) -> bool {
        self.lock().down.get(&addr).is_some_and(|until| *until > Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Shared {
    /// One request to one replica, under the deadline.
    async fn attempt(&self, addr: SocketAddr, req: &SchedulerRequest) -> Result<SchedulerResponse, AttemptError> {
        let work = async {
            let conn = self.endpoint.connect_scheduler(addr).await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            // The request goes out after the replica's hello: a replica
            // that names another host than its certificate gets none.
            let hello = hello_client(&mut send, &mut recv, &self.me).await?;
            let certificate = shoal_transport::peer_host(&conn).unwrap_or_default();
            if hello.host.as_str() != certificate {
                let _ = send.reset(0u32.into());
                return Err(AttemptError::HelloMismatch { hello: hello.host.to_string(), certificate });
            }
            write_frame(&mut send, req).await?;
            // The answer is all we wait for; a finish that fails because the
            // replica already reset the stream shows up in the read.
            let _ = send.finish();
            read_frame(&mut recv).await?.ok_or(AttemptError::NoAnswer)
        };
        match tokio::time::timeout(self.deadline, work).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::Timeout(self.deadline)),
        }
    }

    fn mark_down(&self, addr: SocketAddr) {
        let until = Instant::now() + self.down_for;
        self.lock().down.insert(addr, until);
    }

    fn mark_up(&self, addr: SocketAddr) {
        self.lock().down.remove(&addr);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The copy the other replicas get of a task request the owner answered
/// with `answer`: a join's outcome, or the report itself. Nothing for a
/// join that was refused, or for requests only the owner keeps (prewarm
/// jobs).
fn copy_of(req: &SchedulerRequest, answer: &SchedulerResponse) -> Option<SchedulerRequest> {
    match (req, answer) {
        (SchedulerRequest::Join { host, task, have, .. }, SchedulerResponse::Parents { origin, .. }) => {
            Some(SchedulerRequest::Follow {
                host: host.clone(),
                task: task.clone(),
                have: *have,
                granted: *origin == OriginGrant::Granted,
            })
        }
        (
            SchedulerRequest::Progress { .. } | SchedulerRequest::PieceFailed { .. } | SchedulerRequest::Leave { .. },
            _,
        ) if !matches!(answer, SchedulerResponse::Error(_)) => Some(req.clone()),
        _ => None,
    }
}

/// One answer from several replicas' answers to a host-level request: the
/// prewarm jobs of all of them (each replica owns its own jobs), else the
/// first.
fn merge(answers: Vec<SchedulerResponse>) -> Option<SchedulerResponse> {
    if answers.len() > 1 && answers.iter().all(|a| matches!(a, SchedulerResponse::PrewarmAssignments { .. })) {
        let mut all = Vec::new();
        for a in answers {
            if let SchedulerResponse::PrewarmAssignments { jobs } = a {
                for j in jobs {
                    if !all.iter().any(|x: &shoal_proto::PrewarmAssignment| x.job == j.job) {
                        all.push(j);
                    }
                }
            }
        }
        return Some(SchedulerResponse::PrewarmAssignments { jobs: all });
    }
    answers.into_iter().next()
}

/// Resolves each of `names` (host:port) to its addresses; all of them,
/// sorted, without duplicates. Every name must resolve to something.
async fn lookup(names: &[String]) -> Result<Vec<SocketAddr>, ClientError> {
    let mut all = Vec::new();
    for name in names {
        let resolve = |source| ClientError::Resolve { name: name.clone(), source };
        let before = all.len();
        all.extend(tokio::net::lookup_host(name.as_str()).await.map_err(resolve)?);
        if all.len() == before {
            return Err(resolve(std::io::Error::other("it has no addresses (does the Service have ready pods?)")));
        }
    }
    Ok(dedup(all))
}

fn dedup(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    addrs.sort();
    addrs.dedup();
    addrs
}
