//! The mapping, one request kind at a time, against a real core.

use std::net::SocketAddr;

use shoal_core::{Digest, TaskId};
use shoal_proto::{FailureKind, HaveState, HostLabels, HostLoad};

use super::*;
use crate::SchedulerConfig;

fn host(name: &str) -> HostId {
    name.parse().unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn task() -> TaskId {
    TaskId::new("docker.io", Digest::sha256_of(b"layer")).unwrap()
}

fn register(name: &str, port: u16) -> SchedulerRequest {
    SchedulerRequest::Register {
        host: host(name),
        addr: addr(port),
        labels: HostLabels { node: name.into(), zone: Some("a".into()), rack: None },
        upload_capacity: 1_000_000,
        max_uploads: 8,
    }
}

fn join(name: &str, have: HaveState) -> SchedulerRequest {
    SchedulerRequest::Join { host: host(name), task: task(), have, want_map: false }
}

fn core() -> Scheduler {
    Scheduler::new(SchedulerConfig::default())
}

fn code(resp: &SchedulerResponse) -> Option<SchedErrorCode> {
    match resp {
        SchedulerResponse::Error(e) => Some(e.code),
        _ => None,
    }
}

const T0: Millis = Millis(1_000);

#[test]
fn register_answers_the_heartbeat_interval() {
    let mut c = core();
    let resp = handle(&mut c, T0, register("a", 1), Some(&host("a")));
    // host_ttl 30 s by default: heartbeat every 10 s.
    assert_eq!(resp, SchedulerResponse::Registered { heartbeat_ms: 10_000 });
    assert_eq!(c.stats().hosts, 1);
}

#[test]
fn heartbeat_acks_a_known_host_and_refuses_an_unknown_one() {
    let mut c = core();
    let hb = |name: &str| SchedulerRequest::Heartbeat { host: host(name), load: HostLoad::default() };
    assert_eq!(code(&handle(&mut c, T0, hb("a"), None)), Some(SchedErrorCode::UnknownHost));
    handle(&mut c, T0, register("a", 1), None);
    assert_eq!(handle(&mut c, T0, hb("a"), None), SchedulerResponse::Ack);
}

#[test]
fn first_joiner_is_granted_and_the_second_gets_it_as_parent() {
    let mut c = core();
    handle(&mut c, T0, register("a", 1), None);
    handle(&mut c, T0, register("b", 2), None);

    let first = handle_detailed(&mut c, T0, join("a", HaveState::default()), None);
    let granted =
        SchedulerResponse::Parents { parents: vec![], origin: WireGrant::Granted, authorities: vec![], map: None };
    assert_eq!(first.response, granted);
    assert!(first.new_grant);
    assert_eq!(first.kind, "join");
    // Joining again keeps the grant; it is not a new one.
    let again = handle_detailed(&mut c, T0, join("a", HaveState::default()), None);
    assert!(matches!(again.response, SchedulerResponse::Parents { origin: WireGrant::Granted, .. }));
    assert!(!again.new_grant);

    // Before `a` has pieces, `b` gets no parent and a short wait.
    let early = handle(&mut c, T0, join("b", HaveState::default()), None);
    let a = ParentInfo { host: host("a"), addr: addr(1), pieces_done: 0, complete: false };
    let wait = WireGrant::Wait { retry_after_ms: 200 };
    assert_eq!(early, SchedulerResponse::Parents { parents: vec![], origin: wait, authorities: vec![a], map: None });

    let have = HaveState { pieces_done: 3, pieces_total: Some(10), complete: false };
    let progress = SchedulerRequest::Progress { host: host("a"), task: task(), have, map: None };
    assert_eq!(handle(&mut c, T0, progress, None), SchedulerResponse::Ack);
    let SchedulerResponse::Parents { parents, origin, .. } = handle(&mut c, T0, join("b", HaveState::default()), None)
    else {
        panic!("expected parents");
    };
    assert_eq!(parents, vec![ParentInfo { host: host("a"), addr: addr(1), pieces_done: 3, complete: false }]);
    assert_eq!(origin, WireGrant::Wait { retry_after_ms: 5_000 });
}

#[test]
fn progress_and_join_of_an_unknown_host_say_register_again() {
    let mut c = core();
    let progress = SchedulerRequest::Progress { host: host("a"), task: task(), have: HaveState::default(), map: None };
    let resp = handle(&mut c, T0, progress, None);
    assert_eq!(code(&resp), Some(SchedErrorCode::UnknownHost));
    assert_eq!(response_result(&resp), "unknown_host");
    let SchedulerResponse::Error(e) = handle(&mut c, T0, join("a", HaveState::default()), None) else {
        panic!("expected an error");
    };
    assert!(e.message.contains("register"), "{}", e.message);
}

#[test]
fn piece_failed_acks_and_needs_a_registered_reporter() {
    let mut c = core();
    let failed = SchedulerRequest::PieceFailed {
        host: host("b"),
        task: task(),
        parent: host("a"),
        piece: 4,
        kind: FailureKind::Corrupt,
    };
    assert_eq!(code(&handle(&mut c, T0, failed.clone(), None)), Some(SchedErrorCode::UnknownHost));
    handle(&mut c, T0, register("b", 2), None);
    // An unknown parent or task is ignored: state is soft.
    let handled = handle_detailed(&mut c, T0, failed, None);
    assert_eq!((handled.response, handled.kind), (SchedulerResponse::Ack, "piece_failed"));
}

#[test]
fn leave_acks_and_frees_the_grant() {
    let mut c = core();
    handle(&mut c, T0, register("a", 1), None);
    handle(&mut c, T0, register("b", 2), None);
    handle(&mut c, T0, join("a", HaveState::default()), None);
    let leave = SchedulerRequest::Leave { host: host("a"), task: task() };
    assert_eq!(handle(&mut c, T0, leave.clone(), None), SchedulerResponse::Ack);
    assert_eq!(c.stats().grants, 0);
    let next = handle(&mut c, T0, join("b", HaveState::default()), None);
    assert!(matches!(next, SchedulerResponse::Parents { origin: WireGrant::Granted, .. }));
    // Leaving twice, or as an unknown host, is still fine.
    assert_eq!(handle(&mut c, T0, leave, None), SchedulerResponse::Ack);
    let stranger = SchedulerRequest::Leave { host: host("zz"), task: task() };
    assert_eq!(handle(&mut c, T0, stranger, None), SchedulerResponse::Ack);
}

#[test]
fn a_peer_cannot_speak_for_another_host() {
    let mut c = core();
    handle(&mut c, T0, register("a", 1), None);
    let requests = [
        register("a", 1),
        SchedulerRequest::Heartbeat { host: host("a"), load: HostLoad::default() },
        join("a", HaveState::default()),
        SchedulerRequest::Progress { host: host("a"), task: task(), have: HaveState::default(), map: None },
        SchedulerRequest::PieceFailed {
            host: host("a"),
            task: task(),
            parent: host("b"),
            piece: 0,
            kind: FailureKind::Timeout,
        },
        SchedulerRequest::Leave { host: host("a"), task: task() },
    ];
    for req in requests {
        let resp = handle(&mut c, T0, req.clone(), Some(&host("mallory")));
        let SchedulerResponse::Error(e) = &resp else { panic!("{req:?} was accepted: {resp:?}") };
        assert_eq!(e.code, SchedErrorCode::BadRequest);
        assert!(e.message.contains("mallory") && e.message.contains("speak for itself"), "{}", e.message);
        assert_eq!(response_result(&resp), "bad_request");
    }
    // Nothing reached the core.
    assert_eq!(c.stats().tasks, 0);
}

#[test]
fn kinds_and_hosts_are_named() {
    let kinds: Vec<_> = [
        register("a", 1),
        SchedulerRequest::Heartbeat { host: host("a"), load: HostLoad::default() },
        join("a", HaveState::default()),
        SchedulerRequest::Leave { host: host("a"), task: task() },
    ]
    .iter()
    .map(|r| {
        assert_eq!(request_host(r), &host("a"));
        request_kind(r)
    })
    .collect();
    assert_eq!(kinds, ["register", "heartbeat", "join", "leave"]);
    assert_eq!(response_result(&SchedulerResponse::Ack), "ok");
    assert_eq!(response_result(&error(SchedErrorCode::Internal, "x")), "internal");
}

#[test]
fn the_heartbeat_interval_has_a_floor() {
    let c = Scheduler::new(SchedulerConfig { host_ttl: Duration::from_millis(600), ..SchedulerConfig::default() });
    assert_eq!(heartbeat_interval(&c), Duration::from_secs(1));
}

#[test]
fn prewarm_jobs_round_trip_through_the_handler() {
    use shoal_proto::{NodeJobState, NodeSelector, PrewarmSpec};
    let mut c = core();
    handle(&mut c, T0, register("a", 1), None);
    handle(&mut c, T0, register("b", 2), None);
    let spec = PrewarmSpec { images: vec!["nginx:1".into()], platforms: vec![] };
    let submit = |selector| SchedulerRequest::SubmitPrewarm {
        host: host("a"),
        job: "pw-1".into(),
        spec: spec.clone(),
        selector,
    };
    let resp = handle(&mut c, T0, submit(NodeSelector::Labels(vec![("zone".into(), "z".into())])), None);
    assert_eq!(code(&resp), Some(SchedErrorCode::BadRequest));
    let resp = handle(&mut c, T0, submit(NodeSelector::All), None);
    assert_eq!(resp, SchedulerResponse::PrewarmSubmitted { nodes: vec![host("a"), host("b")] });
    let resp = handle(&mut c, T0, SchedulerRequest::PollPrewarm { host: host("b") }, Some(&host("b")));
    let SchedulerResponse::PrewarmAssignments { jobs } = resp else { panic!("{resp:?}") };
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job, "pw-1");
    let report =
        SchedulerRequest::ReportPrewarm { host: host("b"), job: "pw-1".into(), images: vec![], finished: true };
    // A peer reports only for itself.
    assert_eq!(code(&handle(&mut c, T0, report.clone(), Some(&host("a")))), Some(SchedErrorCode::BadRequest));
    assert_eq!(handle(&mut c, T0, report, Some(&host("b"))), SchedulerResponse::Ack);
    let status = SchedulerRequest::PrewarmStatus { host: host("a"), job: "pw-1".into() };
    let SchedulerResponse::PrewarmJob(job) = handle(&mut c, T0, status, None) else { panic!() };
    assert_eq!(job.nodes[1].state, NodeJobState::Done);
    assert_eq!(job.nodes[0].state, NodeJobState::Queued);
    let missing = SchedulerRequest::PrewarmStatus { host: host("a"), job: "nope".into() };
    assert_eq!(code(&handle(&mut c, T0, missing, None)), Some(SchedErrorCode::NotFound));
    // An unregistered host is told to register.
    let poll = SchedulerRequest::PollPrewarm { host: host("zz") };
    assert_eq!(code(&handle(&mut c, T0, poll, None)), Some(SchedErrorCode::UnknownHost));
}
