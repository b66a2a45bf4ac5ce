//! The prewarm job rules, driven with virtual time and plain host lists.

use super::*;

fn labels(node: &str, zone: Option<&str>, rack: Option<&str>) -> Labels {
    Labels { node: node.into(), zone: zone.map(Into::into), rack: rack.map(Into::into) }
}

struct Fleet {
    ids: Vec<HostId>,
    labels: Vec<Labels>,
}

impl Fleet {
    /// `n{i}` in zone `zones[i]`.
    fn new(zones: &[Option<&str>]) -> Fleet {
        let ids: Vec<HostId> = (0..zones.len()).map(|i| format!("n{i}").parse().unwrap()).collect();
        let labels = zones.iter().enumerate().map(|(i, z)| labels(&format!("n{i}"), *z, Some("r1"))).collect();
        Fleet { ids, labels }
    }

    fn views(&self) -> Vec<HostView<'_>> {
        self.ids.iter().zip(&self.labels).map(|(id, labels)| HostView { id, labels }).collect()
    }
}

fn spec(images: &[&str]) -> PrewarmSpec {
    PrewarmSpec { images: images.iter().map(|s| s.to_string()).collect(), platforms: vec![] }
}

fn ids(v: &[HostId]) -> Vec<&str> {
    v.iter().map(HostId::as_str).collect()
}

fn progress(image: &str, done: u64, total: u64, error: Option<&str>) -> ImageProgress {
    ImageProgress {
        image: image.into(),
        bytes_done: done,
        bytes_total: total,
        blobs_done: 0,
        blobs_total: 0,
        finished: error.is_none() && done == total,
        error: error.map(Into::into),
    }
}

#[test]
fn all_nodes_gets_every_live_host() {
    let fleet = Fleet::new(&[Some("a"), Some("b"), None]);
    let picked = select_nodes(&NodeSelector::All, &fleet.views()).unwrap();
    assert_eq!(ids(&picked), ["n0", "n1", "n2"]);
    let err = select_nodes(&NodeSelector::All, &[]).unwrap_err();
    assert!(err.to_string().contains("no node is registered"), "{err}");
}

#[test]
fn a_count_spreads_over_zones() {
    let fleet = Fleet::new(&[Some("a"), Some("a"), Some("a"), Some("b"), Some("b"), None]);
    let picked = select_nodes(&NodeSelector::Count(3), &fleet.views()).unwrap();
    // One from each zone first (no zone last), not the first three ids.
    assert_eq!(ids(&picked), ["n0", "n3", "n5"]);
    let picked = select_nodes(&NodeSelector::Count(6), &fleet.views()).unwrap();
    assert_eq!(picked.len(), 6);
    let err = select_nodes(&NodeSelector::Count(7), &fleet.views()).unwrap_err();
    assert_eq!(err.to_string(), "7 nodes were asked for but only 6 are registered with the scheduler");
    assert!(matches!(select_nodes(&NodeSelector::Count(0), &fleet.views()), Err(JobError::BadSelector(_))));
}

#[test]
fn labels_select_and_explain_a_miss() {
    let fleet = Fleet::new(&[Some("a"), Some("b"), Some("a"), None]);
    let sel = |pairs: &[(&str, &str)]| {
        NodeSelector::Labels(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    };
    assert_eq!(ids(&select_nodes(&sel(&[("zone", "a")]), &fleet.views()).unwrap()), ["n0", "n2"]);
    assert_eq!(ids(&select_nodes(&sel(&[("topology.kubernetes.io/zone", "b")]), &fleet.views()).unwrap()), ["n1"]);
    assert_eq!(ids(&select_nodes(&sel(&[("zone", "a"), ("node", "n2")]), &fleet.views()).unwrap()), ["n2"]);
    let err = select_nodes(&sel(&[("zone", "c")]), &fleet.views()).unwrap_err();
    assert_eq!(err.to_string(), "no registered node matches zone=c (the nodes' zone values: a, b)");
    let err = select_nodes(&sel(&[("region", "x")]), &fleet.views()).unwrap_err();
    assert!(err.to_string().contains("unknown selector key \"region\""), "{err}");
}

#[test]
fn a_job_runs_until_each_node_reports_finished() {
    let fleet = Fleet::new(&[Some("a"), Some("b")]);
    let mut jobs = Jobs::new(JobLimits::default());
    let t0 = Millis(1_000);
    let picked = jobs.submit(t0, "j1".into(), spec(&["img"]), &NodeSelector::All, &fleet.views()).unwrap();
    assert_eq!(picked.len(), 2);
    let n0 = &fleet.ids[0];
    let n1 = &fleet.ids[1];
    assert_eq!(jobs.poll(n0), vec![PrewarmAssignment { job: "j1".into(), spec: spec(&["img"]), credential: None }]);
    let st = jobs.status(t0, "j1").unwrap();
    assert!(st.nodes.iter().all(|n| n.state == NodeJobState::Queued));
    assert!(!st.is_finished());

    jobs.report(Millis(2_000), n0, "j1", vec![progress("img", 5, 10, None)], false);
    let st = jobs.status(Millis(2_500), "j1").unwrap();
    assert_eq!(st.nodes[0].state, NodeJobState::Running);
    assert_eq!(st.nodes[0].images[0].bytes_done, 5);
    assert_eq!(st.nodes[0].quiet_ms, 500);
    assert_eq!(st.age_ms, 1_500);
    // Still handed out while running: a daemon that restarted picks it up.
    assert_eq!(jobs.poll(n0).len(), 1);

    jobs.report(Millis(3_000), n0, "j1", vec![progress("img", 10, 10, None)], true);
    assert!(jobs.poll(n0).is_empty());
    assert_eq!(jobs.active(), 1);
    jobs.report(Millis(3_000), n1, "j1", vec![progress("img", 1, 10, Some("img: not found at r"))], true);
    let st = jobs.status(Millis(3_000), "j1").unwrap();
    assert_eq!(st.nodes[0].state, NodeJobState::Done);
    assert_eq!(st.nodes[1].state, NodeJobState::Failed { reason: "img: not found at r".into() });
    assert!(st.is_finished());
    assert_eq!(jobs.active(), 0);
}

#[test]
fn a_node_that_goes_away_fails_its_part() {
    let fleet = Fleet::new(&[None, None]);
    let mut jobs = Jobs::new(JobLimits::default());
    jobs.submit(Millis(0), "j".into(), spec(&["img"]), &NodeSelector::All, &fleet.views()).unwrap();
    let gone = fleet.ids[1].clone();
    jobs.tick(Millis(1_000), |h| h != &gone);
    let st = jobs.status(Millis(1_000), "j").unwrap();
    assert_eq!(st.nodes[0].state, NodeJobState::Queued);
    match &st.nodes[1].state {
        NodeJobState::Failed { reason } => assert!(reason.contains("n1 stopped heartbeating"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(jobs.poll(&gone).is_empty());
}

#[test]
fn jobs_expire_and_are_bounded() {
    let fleet = Fleet::new(&[None]);
    let n0 = fleet.ids[0].clone();
    let limits = JobLimits { keep_finished: Duration::from_secs(10), max_age: Duration::from_secs(100), max_jobs: 2 };
    let mut jobs = Jobs::new(limits);
    let all = NodeSelector::All;
    jobs.submit(Millis(0), "done".into(), spec(&["i"]), &all, &fleet.views()).unwrap();
    jobs.report(Millis(1_000), &n0, "done", vec![progress("i", 1, 1, None)], true);
    jobs.submit(Millis(0), "open".into(), spec(&["i"]), &all, &fleet.views()).unwrap();
    assert!(matches!(
        jobs.submit(Millis(0), "open".into(), spec(&["i"]), &all, &fleet.views()),
        Err(JobError::Exists(_))
    ));
    // At the cap: the finished job makes room.
    jobs.submit(Millis(2_000), "third".into(), spec(&["i"]), &all, &fleet.views()).unwrap();
    assert!(matches!(jobs.status(Millis(2_000), "done"), Err(JobError::NotFound(_))));
    // At the cap with nothing finished: refused.
    let err = jobs.submit(Millis(2_000), "fourth".into(), spec(&["i"]), &all, &fleet.views()).unwrap_err();
    assert_eq!(err, JobError::TooMany(2));
    // Finished jobs go after keep_finished, unfinished ones after max_age.
    jobs.report(Millis(3_000), &n0, "third", vec![progress("i", 1, 1, None)], true);
    jobs.tick(Millis(12_999), |_| true);
    assert_eq!(jobs.len(), 2);
    jobs.tick(Millis(13_000), |_| true);
    assert_eq!(jobs.len(), 1);
    jobs.tick(Millis(100_000), |_| true);
    assert!(jobs.is_empty());
    assert!(matches!(jobs.submit(Millis(0), "x".into(), spec(&[]), &all, &fleet.views()), Err(JobError::NoImages)));
}

#[test]
fn reports_for_unknown_jobs_or_hosts_are_ignored() {
    let fleet = Fleet::new(&[None]);
    let mut jobs = Jobs::new(JobLimits::default());
    jobs.submit(Millis(0), "j".into(), spec(&["i"]), &NodeSelector::All, &fleet.views()).unwrap();
    let stranger: HostId = "stranger".parse().unwrap();
    jobs.report(Millis(1), &stranger, "j", vec![], true);
    jobs.report(Millis(1), &fleet.ids[0], "nope", vec![], true);
    let st = jobs.status(Millis(1), "j").unwrap();
    assert_eq!(st.nodes.len(), 1);
    assert_eq!(st.nodes[0].state, NodeJobState::Queued);
}

#[test]
fn a_credential_goes_only_to_the_jobs_nodes_and_only_until_they_finish() {
    let fleet = Fleet::new(&[Some("a"), Some("b")]);
    let mut jobs = Jobs::new(JobLimits::default());
    let t0 = Millis(1_000);
    let picked = jobs.submit(t0, "h1".into(), spec(&["img"]), &NodeSelector::Count(1), &fleet.views()).unwrap();
    assert!(jobs.attach_credential("h1", shoal_proto::JobCredential::new("Bearer t")));
    assert!(!jobs.attach_credential("nope", shoal_proto::JobCredential::new("Bearer t")));
    let (on, off) =
        if picked[0] == fleet.ids[0] { (&fleet.ids[0], &fleet.ids[1]) } else { (&fleet.ids[1], &fleet.ids[0]) };
    let handed = jobs.poll(on);
    assert_eq!(handed[0].credential.as_ref().map(|c| c.expose()), Some("Bearer t"));
    assert!(jobs.poll(off).is_empty(), "a node the job does not name gets nothing");
    assert!(!format!("{:?}", jobs.status(t0, "h1").unwrap()).contains("Bearer t"), "status shows no credential");
    jobs.report(Millis(2_000), on, "h1", vec![progress("img", 10, 10, None)], true);
    assert!(!jobs.attach_credential("h1", shoal_proto::JobCredential::new("Bearer t")), "finished jobs take none");
}
