//! The scheduler service and its client over QUIC on 127.0.0.1, with
//! certificates from a test CA: the request kinds end to end, soft state
//! across a restart, identity checks (who a peer speaks for, which
//! certificate may act as the scheduler, which address a peer may
//! advertise), deadlines, expiry by the tick loop, and replica failover.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_core::{Digest, HostId, TaskId};
use shoal_proto::{
    HaveState, HostLabels, HostLoad, OriginGrant, SchedErrorCode, SchedulerRequest, SchedulerResponse, hello_client,
    read_frame,
};
use shoal_scheduler::{
    SchedulerClient, SchedulerConfig, SchedulerMetrics, SchedulerService, ServiceConfig, rendezvous,
};
use shoal_transport::{CaBundle, Endpoint, Identity, NodeCert, TransportTuning, issue, issue_scheduler, new_ca};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(1);

fn host(name: &str) -> HostId {
    name.parse().unwrap()
}

/// A node's endpoint on 127.0.0.1.
fn endpoint(ca: &CaBundle, name: &str) -> Endpoint {
    endpoint_with(ca, &issue(ca, name, &[]).unwrap(), "127.0.0.1:0")
}

/// A scheduler's endpoint on 127.0.0.1.
fn scheduler_endpoint(ca: &CaBundle, name: &str) -> Endpoint {
    endpoint_with(ca, &issue_scheduler(ca, name, &[]).unwrap(), "127.0.0.1:0")
}

fn endpoint_with(ca: &CaBundle, cert: &NodeCert, bind: &str) -> Endpoint {
    let identity = Identity::from_pem(&ca.cert_pem, &cert.cert_pem, &cert.key_pem).unwrap();
    // Not `TransportTuning::loopback()`: its 65507-byte minimum MTU makes
    // quinn-proto 0.11.19 panic when it pads a long-header (handshake-space)
    // close packet (length over 2^14; packet.rs:486).
    let tuning = TransportTuning { connect_timeout: DEADLINE, ..TransportTuning::default() };
    Endpoint::bind(bind.parse().unwrap(), &identity, &tuning).unwrap()
}

/// A running scheduler replica.
struct Replica {
    addr: SocketAddr,
    endpoint: Endpoint,
    service: SchedulerService,
    stop: CancellationToken,
    serving: JoinHandle<()>,
}

impl Replica {
    fn start(ca: &CaBundle, name: &str, core: SchedulerConfig, config: ServiceConfig) -> Replica {
        let endpoint = scheduler_endpoint(ca, name);
        Self::serve_on(endpoint, name, core, config)
    }

    fn serve_on(endpoint: Endpoint, name: &str, core: SchedulerConfig, config: ServiceConfig) -> Replica {
        let service = SchedulerService::new(host(name), core, SchedulerMetrics::unregistered()).with_config(config);
        let stop = CancellationToken::new();
        let serving = tokio::spawn(service.clone().serve(endpoint.clone(), stop.clone()));
        Replica { addr: endpoint.local_addr().unwrap(), endpoint, service, stop, serving }
    }

    /// Stops serving (closing its connections); the endpoint stays bound.
    async fn stop(self) -> Endpoint {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.serving).await.expect("serve drains").unwrap();
        self.endpoint
    }

    /// Stops serving and closes the endpoint: the replica is gone.
    async fn kill(self) {
        self.stop().await.close(Duration::from_millis(100)).await;
    }

    fn has_task(&self, peer: &str, task: &Digest) -> bool {
        self.service.core().lock().unwrap().holds_grant(&host(peer), &tid(task))
    }
}

/// A peer with its own endpoint and a client to `replicas`.
fn peer(ca: &CaBundle, name: &str, replicas: Vec<SocketAddr>) -> (SchedulerClient, SocketAddr) {
    let endpoint = endpoint(ca, name);
    let addr = endpoint.local_addr().unwrap();
    (SchedulerClient::new(endpoint, host(name), replicas, DEADLINE), addr)
}

fn register(name: &str, addr: SocketAddr) -> SchedulerRequest {
    SchedulerRequest::Register {
        host: host(name),
        addr,
        labels: HostLabels { node: name.into(), ..HostLabels::default() },
        upload_capacity: 100_000_000,
        max_uploads: 8,
    }
}

/// The task for `digest` from the registry these tests use; requests are
/// routed to replicas by its digest.
fn tid(digest: &Digest) -> TaskId {
    TaskId::new("docker.io", digest.clone()).unwrap()
}

fn join(name: &str, task: &Digest) -> SchedulerRequest {
    SchedulerRequest::Join { host: host(name), task: tid(task), have: HaveState::default(), want_map: false }
}

fn heartbeat(name: &str) -> SchedulerRequest {
    SchedulerRequest::Heartbeat { host: host(name), load: HostLoad::default() }
}

fn error_code(resp: &SchedulerResponse) -> Option<SchedErrorCode> {
    match resp {
        SchedulerResponse::Error(e) => Some(e.code),
        _ => None,
    }
}

#[tokio::test]
async fn register_join_progress_and_heartbeat() {
    let ca = new_ca("cluster").unwrap();
    let sched = Replica::start(&ca, "sched", SchedulerConfig::default(), ServiceConfig::default());
    let (a, a_addr) = peer(&ca, "node-a", vec![sched.addr]);
    let (b, b_addr) = peer(&ca, "node-b", vec![sched.addr]);
    let task = Digest::sha256_of(b"layer");

    let resp = a.call(None, register("node-a", a_addr)).await.unwrap();
    assert_eq!(resp, SchedulerResponse::Registered { heartbeat_ms: 10_000 });
    b.call(None, register("node-b", b_addr)).await.unwrap();

    let first = a.call(Some(&task), join("node-a", &task)).await.unwrap();
    assert_eq!(
        first,
        SchedulerResponse::Parents { parents: vec![], origin: OriginGrant::Granted, authorities: vec![], map: None }
    );
    let early = b.call(Some(&task), join("node-b", &task)).await.unwrap();
    let SchedulerResponse::Parents { parents, origin, authorities, map: None } = early else {
        panic!("expected parents: {early:?}");
    };
    assert_eq!((parents, origin), (vec![], OriginGrant::Wait { retry_after_ms: 200 }));
    let names: Vec<HostId> = authorities.into_iter().map(|a| a.host).collect();
    assert_eq!(names, vec![host("node-a")], "the grant holder vouches for the piece hashes");

    let have = HaveState { pieces_done: 2, pieces_total: Some(8), complete: false };
    let progress = SchedulerRequest::Progress { host: host("node-a"), task: tid(&task), have, map: None };
    assert_eq!(a.call(Some(&task), progress).await.unwrap(), SchedulerResponse::Ack);
    let SchedulerResponse::Parents { parents, .. } = b.call(Some(&task), join("node-b", &task)).await.unwrap() else {
        panic!("expected parents");
    };
    assert_eq!(parents.len(), 1);
    assert_eq!((parents[0].host.clone(), parents[0].addr, parents[0].pieces_done), (host("node-a"), a_addr, 2));

    assert_eq!(a.call(None, heartbeat("node-a")).await.unwrap(), SchedulerResponse::Ack);
    let leave = SchedulerRequest::Leave { host: host("node-a"), task: tid(&task) };
    assert_eq!(a.call(Some(&task), leave).await.unwrap(), SchedulerResponse::Ack);

    let metrics = sched.service.metrics();
    assert_eq!((metrics.requests("register", "ok"), metrics.requests("join", "ok")), (2, 3));
    sched.kill().await;
}

#[tokio::test]
async fn a_restarted_scheduler_answers_unknown_host() {
    let ca = new_ca("cluster").unwrap();
    let sched = Replica::start(&ca, "sched", SchedulerConfig::default(), ServiceConfig::default());
    let (a, a_addr) = peer(&ca, "node-a", vec![sched.addr]);
    a.call(None, register("node-a", a_addr)).await.unwrap();
    assert_eq!(a.call(None, heartbeat("node-a")).await.unwrap(), SchedulerResponse::Ack);

    // Same address, new process state: a fresh core.
    let endpoint = sched.stop().await;
    let sched = Replica::serve_on(endpoint, "sched", SchedulerConfig::default(), ServiceConfig::default());
    let resp = call_until_answered(&a, None, heartbeat("node-a")).await;
    assert_eq!(error_code(&resp), Some(SchedErrorCode::UnknownHost));
    // Registering again makes it whole.
    a.call(None, register("node-a", a_addr)).await.unwrap();
    assert_eq!(a.call(None, heartbeat("node-a")).await.unwrap(), SchedulerResponse::Ack);
    sched.kill().await;
}

/// The old connection's close may still be on its way: retry briefly.
async fn call_until_answered(c: &SchedulerClient, task: Option<&Digest>, req: SchedulerRequest) -> SchedulerResponse {
    for _ in 0..20 {
        if let Ok(resp) = c.call(task, req.clone()).await {
            return resp;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no answer after the restart");
}

#[tokio::test]
async fn a_peer_cannot_speak_for_another_host() {
    let ca = new_ca("cluster").unwrap();
    let sched = Replica::start(&ca, "sched", SchedulerConfig::default(), ServiceConfig::default());
    // Certificate node-a, request for node-b.
    let (a, _) = peer(&ca, "node-a", vec![sched.addr]);
    let resp = a.call(None, register("node-b", "127.0.0.1:1".parse().unwrap())).await.unwrap();
    let SchedulerResponse::Error(e) = resp else { panic!("accepted: {resp:?}") };
    assert_eq!(e.code, SchedErrorCode::BadRequest);
    assert!(e.message.contains("node-a") && e.message.contains("node-b"), "{}", e.message);

    // Certificate node-a, hello and request both claiming node-b.
    let imposter = SchedulerClient::new(endpoint(&ca, "node-a"), host("node-b"), vec![sched.addr], DEADLINE);
    let resp = imposter.call(None, heartbeat("node-b")).await.unwrap();
    assert_eq!(error_code(&resp), Some(SchedErrorCode::BadRequest));
    assert_eq!(sched.service.core().lock().unwrap().stats().hosts, 0);
    sched.kill().await;
}

#[tokio::test]
async fn a_silent_stream_is_reset_at_the_deadline() {
    let ca = new_ca("cluster").unwrap();
    let config = ServiceConfig { stream_deadline: Duration::from_millis(200), ..ServiceConfig::default() };
    let sched = Replica::start(&ca, "sched", SchedulerConfig::default(), config);
    let client = endpoint(&ca, "node-a");
    let conn = client.connect(sched.addr).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    hello_client(&mut send, &mut recv, &host("node-a")).await.unwrap();
    // No request follows: the server gives up and resets the stream.
    let read = tokio::time::timeout(Duration::from_secs(5), read_frame::<_, SchedulerResponse>(&mut recv)).await;
    assert!(read.expect("reset within the deadline").is_err());
    assert_eq!(sched.service.metrics().requests("invalid", "error"), 1);
    sched.kill().await;
}

#[tokio::test]
async fn the_tick_loop_expires_silent_hosts() {
    let ca = new_ca("cluster").unwrap();
    let core = SchedulerConfig { host_ttl: Duration::from_millis(300), ..SchedulerConfig::default() };
    let config = ServiceConfig { tick: Duration::from_millis(50), ..ServiceConfig::default() };
    let sched = Replica::start(&ca, "sched", core, config);
    let (a, a_addr) = peer(&ca, "node-a", vec![sched.addr]);
    a.call(None, register("node-a", a_addr)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sched.service.core().lock().unwrap().stats().hosts, 0);
    assert_eq!(error_code(&a.call(None, heartbeat("node-a")).await.unwrap()), Some(SchedErrorCode::UnknownHost));
    sched.kill().await;
}

#[tokio::test]
async fn tasks_stick_to_their_replica_and_fail_over_when_it_dies() {
    let ca = new_ca("cluster").unwrap();
    let one = Replica::start(&ca, "sched-1", SchedulerConfig::default(), ServiceConfig::default());
    let two = Replica::start(&ca, "sched-2", SchedulerConfig::default(), ServiceConfig::default());
    let replicas = vec![one.addr, two.addr];
    let (a, a_addr) = peer(&ca, "node-a", replicas.clone());
    let tasks: Vec<Digest> = (0..16u32).map(|i| Digest::sha256_of(&i.to_be_bytes())).collect();

    // Host-level requests reach every replica.
    a.call(None, register("node-a", a_addr)).await.unwrap();
    for r in [&one, &two] {
        assert_eq!(r.service.core().lock().unwrap().stats().hosts, 1);
    }

    // Each task lives on its rendezvous owner, and stays there; the other
    // replica only follows what the owner decided.
    for round in 0..2 {
        for task in &tasks {
            let resp = a.call(Some(task), join("node-a", task)).await.unwrap();
            assert!(matches!(resp, SchedulerResponse::Parents { origin: OriginGrant::Granted, .. }), "{resp:?}");
            let owner = rendezvous(&replicas, task.to_string().as_bytes())[0];
            let mine = if owner == one.addr { &one } else { &two };
            assert!(mine.has_task("node-a", task), "round {round}: task not on its owner");
        }
    }
    let on_one: Vec<&Digest> =
        tasks.iter().filter(|t| rendezvous(&replicas, t.to_string().as_bytes())[0] == one.addr).collect();
    assert!(!on_one.is_empty() && on_one.len() < tasks.len(), "both replicas should own tasks");
    // The other replica follows the owner's grants (copied in the background).
    for task in &tasks {
        eventually(|| one.has_task("node-a", task) && two.has_task("node-a", task)).await;
    }

    // Replica one dies: every call still succeeds, on replica two.
    let (one_addr, started) = (one.addr, tokio::time::Instant::now());
    one.kill().await;
    for task in &tasks {
        let resp = a.call(Some(task), join("node-a", task)).await.unwrap();
        assert!(matches!(resp, SchedulerResponse::Parents { .. }), "{resp:?}");
        assert!(two.has_task("node-a", task));
    }
    assert_eq!(a.call(None, heartbeat("node-a")).await.unwrap(), SchedulerResponse::Ack);
    // Only the first call waited for the dead replica: it is tried last now.
    assert!(started.elapsed() < DEADLINE * 4, "failover took {:?}", started.elapsed());
    assert_eq!(a.order(Some(on_one[0])), vec![two.addr, one_addr]);
    two.kill().await;
}

/// Waits up to 5 s for `cond` (copies to other replicas are sent in the
/// background).
async fn eventually(cond: impl Fn() -> bool) {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(tokio::time::Instant::now() < until, "the other replica never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Killing the replica that owns a task mid-download (the one rendezvous
/// hashing picks for its digest, not one at random) sends nobody else to
/// the origin: the replica that takes the task over was copied who joined,
/// who got the grant and how far each got.
#[tokio::test]
async fn the_replica_that_takes_a_task_over_knows_its_seed_and_downloaders() {
    let ca = new_ca("cluster").unwrap();
    let one = Replica::start(&ca, "sched-1", SchedulerConfig::default(), ServiceConfig::default());
    let two = Replica::start(&ca, "sched-2", SchedulerConfig::default(), ServiceConfig::default());
    let replicas = vec![one.addr, two.addr];
    let task = Digest::sha256_of(b"a layer in a rollout");
    let (owner, next) =
        if rendezvous(&replicas, task.to_string().as_bytes())[0] == one.addr { (one, two) } else { (two, one) };
    let mut peers = Vec::new();
    for name in ["node-a", "node-b", "node-c"] {
        let (client, addr) = peer(&ca, name, replicas.clone());
        client.call(None, register(name, addr)).await.unwrap();
        peers.push(client);
    }
    let resp = peers[0].call(Some(&task), join("node-a", &task)).await.unwrap();
    assert!(matches!(resp, SchedulerResponse::Parents { origin: OriginGrant::Granted, .. }), "{resp:?}");
    let resp = peers[1].call(Some(&task), join("node-b", &task)).await.unwrap();
    assert!(matches!(resp, SchedulerResponse::Parents { origin: OriginGrant::Wait { .. }, .. }), "{resp:?}");
    let have = HaveState { pieces_done: 10, pieces_total: Some(64), complete: false };
    let progress = SchedulerRequest::Progress { host: host("node-a"), task: tid(&task), have, map: None };
    assert_eq!(peers[0].call(Some(&task), progress).await.unwrap(), SchedulerResponse::Ack);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let have = HaveState { pieces_done: 2, pieces_total: Some(64), complete: false };
    let progress = SchedulerRequest::Progress { host: host("node-b"), task: tid(&task), have, map: None };
    assert_eq!(peers[1].call(Some(&task), progress).await.unwrap(), SchedulerResponse::Ack);
    // Past a tick of the other replica, which would hand a grant it thinks
    // free to the peer that reported last.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    eventually(|| next.has_task("node-a", &task)).await;
    assert!(owner.has_task("node-a", &task));

    owner.kill().await;
    let resp = call_until_answered(&peers[2], Some(&task), join("node-c", &task)).await;
    let SchedulerResponse::Parents { parents, origin, authorities, .. } = resp else {
        panic!("{resp:?}");
    };
    assert!(matches!(origin, OriginGrant::Wait { .. }), "node-c was sent to the origin beside the seed");
    assert!(parents.iter().any(|p| p.host == host("node-a") && p.pieces_done == 10), "{parents:?}");
    assert!(authorities.iter().any(|p| p.host == host("node-a")), "{authorities:?}");
    let resp = peers[1].call(Some(&task), join("node-b", &task)).await.unwrap();
    assert!(matches!(resp, SchedulerResponse::Parents { origin: OriginGrant::Wait { .. }, .. }), "{resp:?}");
    let resp = peers[0].call(Some(&task), join("node-a", &task)).await.unwrap();
    assert!(matches!(resp, SchedulerResponse::Parents { origin: OriginGrant::Granted, .. }), "the seed keeps it");
    next.kill().await;
}

#[tokio::test]
async fn replicas_can_be_given_as_names() {
    let ca = new_ca("cluster").unwrap();
    let sched = Replica::start(&ca, "sched", SchedulerConfig::default(), ServiceConfig::default());
    let name = sched.addr.to_string();
    let a = SchedulerClient::resolve(endpoint(&ca, "node-a"), host("node-a"), name.clone(), DEADLINE).await.unwrap();
    assert_eq!(a.replicas(), vec![sched.addr]);
    assert_eq!(a.refresh().await.unwrap(), vec![sched.addr]);
    let resp = a.call(None, register("node-a", "127.0.0.1:1".parse().unwrap())).await.unwrap();
    assert!(matches!(resp, SchedulerResponse::Registered { .. }), "{resp:?}");

    // Each name must resolve; the error names it.
    let err = SchedulerClient::resolve_all(
        endpoint(&ca, "node-b"),
        host("node-b"),
        vec![name.clone(), "sched".into()],
        DEADLINE,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("scheduler address sched:"), "{err}");

    // Resolved at the first call: a daemon starts before the Service has
    // ready pods. A name that never resolves fails each call, naming it.
    let later = SchedulerClient::resolve_later(endpoint(&ca, "node-c"), host("node-c"), vec![name], DEADLINE).unwrap();
    assert_eq!(later.replicas(), vec![]);
    let resp = later.call(None, register("node-c", "127.0.0.1:1".parse().unwrap())).await.unwrap();
    assert!(matches!(resp, SchedulerResponse::Registered { .. }), "{resp:?}");
    assert_eq!(later.replicas(), vec![sched.addr]);
    let missing = "shoal-scheduler.no-such-namespace.invalid:65004".to_string();
    let never =
        SchedulerClient::resolve_later(endpoint(&ca, "node-d"), host("node-d"), vec![missing], DEADLINE).unwrap();
    let err = never.call(None, register("node-d", "127.0.0.1:1".parse().unwrap())).await.unwrap_err();
    assert!(err.to_string().contains("could not resolve the scheduler address shoal-scheduler.no-such"), "{err}");
    // Only the form is checked up front.
    let err = SchedulerClient::resolve_later(endpoint(&ca, "node-e"), host("node-e"), vec!["sched".into()], DEADLINE)
        .map(|_| ())
        .unwrap_err();
    assert!(err.to_string().contains("sched") && err.to_string().contains("host:port"), "{err}");
    sched.kill().await;
}

#[tokio::test]
async fn prewarm_jobs_live_on_their_owner_and_every_poll_sees_them() {
    use shoal_proto::{NodeSelector, PrewarmSpec, prewarm::job_route};
    let ca = new_ca("cluster").unwrap();
    let one = Replica::start(&ca, "sched-1", SchedulerConfig::default(), ServiceConfig::default());
    let two = Replica::start(&ca, "sched-2", SchedulerConfig::default(), ServiceConfig::default());
    let replicas = vec![one.addr, two.addr];
    let (a, a_addr) = peer(&ca, "node-a", replicas.clone());
    a.call(None, register("node-a", a_addr)).await.unwrap();
    // Jobs with ids owned by each replica.
    let mut owned = [None, None];
    for i in 0..64 {
        let id = format!("pw-{i}");
        let slot = usize::from(rendezvous(&replicas, job_route(&id).to_string().as_bytes())[0] != one.addr);
        owned[slot].get_or_insert(id);
    }
    let [Some(first), Some(second)] = owned else { panic!("64 ids all hash to one replica") };
    for id in [&first, &second] {
        let req = SchedulerRequest::SubmitPrewarm {
            host: host("node-a"),
            job: id.clone(),
            spec: PrewarmSpec { images: vec!["img:1".into()], platforms: vec![] },
            selector: NodeSelector::All,
        };
        let resp = a.call(Some(&job_route(id)), req).await.unwrap();
        assert_eq!(resp, SchedulerResponse::PrewarmSubmitted { nodes: vec![host("node-a")] });
    }
    assert_eq!(one.service.core().lock().unwrap().prewarm_jobs(), (1, 1));
    assert_eq!(two.service.core().lock().unwrap().prewarm_jobs(), (1, 1));
    // One poll, broadcast, returns both replicas' jobs.
    let resp = a.call(None, SchedulerRequest::PollPrewarm { host: host("node-a") }).await.unwrap();
    let SchedulerResponse::PrewarmAssignments { jobs } = resp else { panic!("{resp:?}") };
    let mut got: Vec<&str> = jobs.iter().map(|j| j.job.as_str()).collect();
    got.sort_unstable();
    let mut want = vec![first.as_str(), second.as_str()];
    want.sort_unstable();
    assert_eq!(got, want);
    // Status goes to the owner.
    let status = SchedulerRequest::PrewarmStatus { host: host("node-a"), job: first.clone() };
    let resp = a.call(Some(&job_route(&first)), status).await.unwrap();
    assert!(matches!(resp, SchedulerResponse::PrewarmJob(ref j) if j.job == first), "{resp:?}");
    one.kill().await;
    two.kill().await;
}

#[tokio::test]
async fn a_node_certificate_cannot_act_as_the_scheduler() {
    let ca = new_ca("cluster").unwrap();
    // A service behind a node's certificate (say, a daemon's address in
    // the schedulers list, or a node's certificate mounted on a scheduler).
    let fake = Replica::serve_on(endpoint(&ca, "node-x"), "node-x", SchedulerConfig::default(), Default::default());
    let (a, a_addr) = peer(&ca, "node-a", vec![fake.addr]);
    let err = a.call(None, register("node-a", a_addr)).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("is not a scheduler") && msg.contains("node-x"), "{msg}");
    assert!(msg.contains("shoal certs scheduler"), "{msg}");
    // It got no request at all.
    assert_eq!(fake.service.metrics().requests("register", "ok"), 0);
    assert_eq!(fake.service.core().lock().unwrap().stats().hosts, 0);
    fake.kill().await;
}

#[tokio::test]
async fn a_replicas_hello_must_name_its_certificate() {
    let ca = new_ca("cluster").unwrap();
    let server = scheduler_endpoint(&ca, "sched");
    let addr = server.local_addr().unwrap();
    // A replica that answers every hello as someone else, and reports
    // whether a request followed.
    let fake = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().handshake().await.unwrap();
        let (mut send, mut recv) = conn.connection.accept_bi().await.unwrap();
        let _: Option<shoal_proto::Hello> = read_frame(&mut recv).await.unwrap();
        shoal_proto::write_frame(&mut send, &shoal_proto::Hello::ours(host("other-sched"))).await.unwrap();
        let request = read_frame::<_, SchedulerRequest>(&mut recv).await;
        (request.ok().flatten(), server)
    });
    let (a, a_addr) = peer(&ca, "node-a", vec![addr]);
    let err = a.call(None, register("node-a", a_addr)).await.unwrap_err().to_string();
    assert!(err.contains("other-sched") && err.contains("names sched"), "{err}");
    let (request, _server) = tokio::time::timeout(Duration::from_secs(5), fake).await.unwrap().unwrap();
    assert_eq!(request, None, "the lying replica got the request");
}

#[tokio::test]
async fn a_scheduler_certificate_cannot_register_as_a_node() {
    let ca = new_ca("cluster").unwrap();
    let sched = Replica::start(&ca, "sched", SchedulerConfig::default(), ServiceConfig::default());
    let other = scheduler_endpoint(&ca, "shoal-scheduler");
    let addr = other.local_addr().unwrap();
    let client = SchedulerClient::new(other, host("shoal-scheduler"), vec![sched.addr], DEADLINE);
    let resp = client.call(None, register("shoal-scheduler", addr)).await.unwrap();
    let SchedulerResponse::Error(e) = resp else { panic!("accepted: {resp:?}") };
    assert_eq!(e.code, SchedErrorCode::BadRequest);
    assert!(e.message.contains("scheduler certificate") && e.message.contains("shoal certs node"), "{}", e.message);
    assert_eq!(sched.service.core().lock().unwrap().stats().hosts, 0);
    sched.kill().await;
}

#[tokio::test]
async fn a_peer_may_advertise_only_where_it_is_or_what_its_certificate_lists() {
    let ca = new_ca("cluster").unwrap();
    let sched = Replica::start(&ca, "sched", SchedulerConfig::default(), ServiceConfig::default());
    let (a, a_addr) = peer(&ca, "node-a", vec![sched.addr]);
    // Another address than the one it connects from (127.0.0.1), which its
    // certificate does not list: others would be sent there for its pieces.
    for addr in ["10.9.9.9:65003", "127.0.0.2:65003", "0.0.0.0:65003"] {
        let resp = a.call(None, register("node-a", addr.parse().unwrap())).await.unwrap();
        let SchedulerResponse::Error(e) = resp else { panic!("{addr} accepted: {resp:?}") };
        assert_eq!(e.code, SchedErrorCode::BadRequest, "{addr}");
        assert!(e.message.contains(addr) && e.message.contains("[swarm] advertise"), "{}", e.message);
        assert_eq!(sched.service.core().lock().unwrap().stats().hosts, 0, "{addr} was registered");
    }
    assert_eq!(sched.service.metrics().requests("register", "bad_request"), 3);
    let resp = a.call(None, register("node-a", "10.9.9.9:65003".parse().unwrap())).await.unwrap();
    let SchedulerResponse::Error(e) = resp else { panic!("accepted: {resp:?}") };
    assert!(e.message.contains("127.0.0.1") && e.message.contains("--san 10.9.9.9"), "{}", e.message);

    // Its own address is fine, and so is one its certificate lists.
    assert!(matches!(a.call(None, register("node-a", a_addr)).await.unwrap(), SchedulerResponse::Registered { .. }));
    let listed = endpoint_with(&ca, &issue(&ca, "node-b", &["10.9.9.9".into()]).unwrap(), "127.0.0.1:0");
    let b = SchedulerClient::new(listed, host("node-b"), vec![sched.addr], DEADLINE);
    let resp = b.call(None, register("node-b", "10.9.9.9:65003".parse().unwrap())).await.unwrap();
    assert!(matches!(resp, SchedulerResponse::Registered { .. }), "{resp:?}");
    assert_eq!(sched.service.core().lock().unwrap().stats().hosts, 2);
    sched.kill().await;
}

/// A scheduler on a dual-stack socket sees an IPv4 peer as
/// `::ffff:127.0.0.1`: that is still the peer's own 127.0.0.1.
#[tokio::test]
async fn an_ipv4_peer_of_a_dual_stack_scheduler_registers_its_own_address() {
    let ca = new_ca("cluster").unwrap();
    let cert = issue_scheduler(&ca, "sched", &[]).unwrap();
    let endpoint = endpoint_with(&ca, &cert, "[::]:0");
    let port = endpoint.local_addr().unwrap().port();
    let sched = Replica::serve_on(endpoint, "sched", SchedulerConfig::default(), ServiceConfig::default());
    let (a, a_addr) = peer(&ca, "node-a", vec![SocketAddr::from(([127, 0, 0, 1], port))]);
    let resp = a.call(None, register("node-a", a_addr)).await.unwrap();
    assert!(matches!(resp, SchedulerResponse::Registered { .. }), "{resp:?}");
    let resp = a.call(None, register("node-a", "127.0.0.2:1".parse().unwrap())).await.unwrap();
    assert_eq!(error_code(&resp), Some(SchedErrorCode::BadRequest));
    sched.kill().await;
}
