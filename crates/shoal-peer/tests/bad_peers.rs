//! Peers that lie or fail, against real daemons over a real docker-registry
//! behind a counting front: a relay sending wrong bytes under a header that
//! matches them, relays announcing a wrong piece map, an authority whose
//! whole map is wrong, and a parent that cannot be reached. Each test says
//! what a user sees: the digest of the bytes a client gets, what the origin
//! was asked, the failure metrics, and what the scheduler was told.
//!
//! Where a test needs the child to ask a fake (or to run more than one
//! round), the child reaches the scheduler through a [`WatchedLink`] that
//! offers it only the fakes as parents until it reported them (the honest
//! daemon stays an authority of the task, which the child follows for its
//! hashes), and afterwards the scheduler's parents plus the fakes again, as
//! a scheduler that restarted and forgot the reports would. So the child
//! must deal with the fakes first, and only its own memory keeps it from
//! asking them again; nothing depends on which parent answers first.

mod support;

use std::sync::Arc;
use std::time::Duration;

use shoal_core::{HostId, PieceLayout, TaskId};
use shoal_peer::swarm::{SchedulerLink, SwarmTuning};
use shoal_proto::{FailureKind, HaveState, OriginGrant, ParentInfo, SchedulerResponse};
use shoal_testkit::{random_bytes, sha256_digest};
use support::fake_peer::{FakeHost, FakePeer, Script, dead_addr, piece_map, stranger_identity};
use support::watched_link::{WatchedLink, failures};
use support::{Cluster, Daemon, Origin, PeerSpec, get_all, sample};
use tokio::time::Instant;

const MIB: usize = 1 << 20;
const REPO: &str = "swarm/app";
/// Piece requests a daemon keeps in flight per parent (production's
/// setting, which the test daemons run).
fn per_parent() -> usize {
    shoal_peer::swarm::SwarmTuning::default().per_parent
}

/// An origin holding one random blob, and a cluster around it.
struct World {
    o: Origin,
    cluster: Cluster,
    data: Vec<u8>,
    d: String,
    task: TaskId,
    layout: PieceLayout,
}

impl World {
    async fn new(size: usize, seed: u64) -> World {
        let o = Origin::start().await;
        let data = random_bytes(size, seed);
        let d = o.blob(REPO, data.clone()).await;
        let task: TaskId = format!("{}/{d}", o.front.host()).parse().unwrap();
        let layout = PieceLayout::for_blob(size as u64);
        World { o, cluster: Cluster::new(), data, d, task, layout }
    }

    fn pieces(&self) -> u32 {
        self.layout.count()
    }

    /// The blob with the first byte of each of `pieces` flipped.
    fn spoiled(&self, pieces: impl IntoIterator<Item = u32>) -> Vec<u8> {
        let mut bad = self.data.clone();
        for i in pieces {
            bad[self.layout.range(i).start as usize] ^= 0xFF;
        }
        bad
    }

    /// A real daemon that joined first, fetched the blob from the origin
    /// (so the scheduler made it the task's authority) and reported its
    /// final piece map.
    async fn honest_authority(&self, host: &str) -> Daemon {
        let a = Daemon::start_peer(&self.o.front, self.cluster.peer(host)).await;
        let (status, _, body) = get_all(&a.blob_url(REPO, &self.d), None).await.unwrap();
        assert_eq!((status, sha256_digest(&body)), (200, self.d.clone()));
        within(Duration::from_secs(10), "the authority's final map reaches the scheduler", || async {
            self.cluster.scheduler.stats().piece_maps == 1
        })
        .await;
        assert_eq!(self.o.front.blob_gets(&self.d), 1);
        a
    }

    /// A peer spec for `host` whose scheduler calls go through a
    /// [`WatchedLink`].
    fn watched(&self, host: &str) -> (PeerSpec, Arc<WatchedLink>) {
        let link = WatchedLink::new(Arc::new(self.cluster.scheduler.clone()));
        let mut spec = self.cluster.peer(host);
        spec.link = link.clone();
        (spec, link)
    }

    fn link(&self) -> Arc<dyn SchedulerLink> {
        Arc::new(self.cluster.scheduler.clone())
    }
}

/// Polls `check` every 20 ms until it holds; panics after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// See the module docs: until the child reported every one of `fakes`,
/// its join answers offer only them; afterwards the scheduler's parents
/// and the fakes again.
fn offer_first(link: &WatchedLink, fakes: Vec<ParentInfo>) {
    link.rewrite_parents(move |log, mut parents| {
        let reported = failures(log);
        if fakes.iter().any(|f| !reported.iter().any(|r| r.parent == f.host)) {
            return fakes.clone();
        }
        for f in &fakes {
            if !parents.iter().any(|p| p.host == f.host) {
                parents.push(f.clone());
            }
        }
        parents
    });
}

fn failures_metric(m: &str, kind: &str) -> f64 {
    sample(m, &format!("shoal_piece_failures_total{{kind=\"{kind}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_sending_wrong_bytes_under_a_matching_header_is_excluded_for_the_whole_task() {
    let w = World::new(8 * MIB, 21).await;
    let a = w.honest_authority("node-a").await;
    // The relay announces the true hashes (so nothing gives it away before
    // a piece) but sends wrong bytes, each under a header hashing to them.
    let bad = w.spoiled(0..w.pieces());
    let f = FakePeer::start(&w.cluster, "node-f", w.task.clone(), Script::holding(&w.data).sending(&bad)).await;
    let joined = f.sched.join(HaveState::default()).await;
    assert_ne!(joined.origin, OriginGrant::Granted, "a complete authority exists: the relay gets no grant");
    assert!(!joined.trusts(f.host()));
    f.sched.report_complete(w.pieces(), None).await;

    let (spec, link) = w.watched("node-c");
    offer_first(&link, vec![f.sched.as_parent(w.pieces())]);
    let c = Daemon::start_peer(&w.o.front, spec).await;
    let got = tokio::time::timeout(Duration::from_secs(30), get_all(&c.blob_url(REPO, &w.d), None))
        .await
        .expect("the child's pull ends")
        .expect("a whole body");
    assert_eq!(got.0, 200);
    assert_eq!(sha256_digest(&got.2), w.d, "the child's client got wrong bytes");
    assert_eq!(w.o.front.blob_gets(&w.d), 1, "the child got the blob from the authority, not the origin");

    // The relay was asked (it was the only parent of the first round) until
    // it had sent `corrupt_strikes` bad pieces, each reported, and never
    // after the report that excluded it.
    let strikes = SwarmTuning::default().corrupt_strikes as usize;
    let asked = f.asked().pieces;
    let indices: Vec<u32> = asked.iter().map(|&(i, _)| i).collect();
    let reported = link.failures();
    assert!(
        reported.iter().all(|r| &r.parent == f.host() && r.kind == FailureKind::Corrupt),
        "only the relay is blamed, for corrupt pieces: {reported:?}"
    );
    assert!(reported.iter().all(|r| r.answer == SchedulerResponse::Ack), "the scheduler took the reports");
    assert!((strikes..strikes + per_parent()).contains(&reported.len()), "reports: {reported:?}");
    let excluding = &reported[strikes - 1];
    assert!(
        asked.iter().all(|&(_, at)| at < excluding.at),
        "the relay was asked again after the child excluded it: {indices:?}"
    );
    assert!(asked.len() < strikes + per_parent(), "the relay was asked for pieces {indices:?}");
    let first_report = &reported[0];
    // Later rounds offered the relay again, and the child did not ask it.
    let offered_later = link
        .joined()
        .iter()
        .filter(|j| j.at > first_report.at)
        .filter(|j| matches!(&j.answer, SchedulerResponse::Parents { parents, .. } if parents.iter().any(|p| &p.host == f.host())))
        .count();
    assert!(offered_later >= 1, "no later join offered the relay: the test proves nothing about later rounds");

    let m = c.metrics().await;
    assert_eq!(failures_metric(&m, "corrupt"), reported.len() as f64, "{m}");
    assert!(failures_metric(&m, "corrupt") >= 1.0);
    assert_eq!(failures_metric(&m, "bad_map"), 0.0, "the honest authority was blamed:\n{m}");
    drop(a);
}

/// A bit flipped once on the way costs that piece, not the blob: the only
/// complete copy (the task's authority) sends one piece spoiled; the child
/// reports it, asks for it again, and gets everything from that copy. The
/// origin is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_bad_piece_from_the_only_complete_copy_costs_that_piece_not_the_blob() {
    let w = World::new(8 * MIB, 27).await;
    let script = Script::holding(&w.data).spoiling_once(vec![3]);
    let f = FakePeer::start(&w.cluster, "node-f", w.task.clone(), script).await;
    f.sched.take_origin_grant().await;
    f.sched.report_complete(w.pieces(), Some(piece_map(w.layout, &w.data))).await;

    let (spec, link) = w.watched("node-c");
    let c = Daemon::start_peer(&w.o.front, spec).await;
    let got = tokio::time::timeout(Duration::from_secs(30), get_all(&c.blob_url(REPO, &w.d), None))
        .await
        .expect("the child's pull ends")
        .expect("a whole body");
    assert_eq!((got.0, sha256_digest(&got.2)), (200, w.d.clone()));
    assert_eq!(w.o.front.blob_gets(&w.d), 0, "one bad piece sent the child to the origin");
    let reported = link.failures();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!((&reported[0].parent, reported[0].kind), (f.host(), FailureKind::Corrupt));
    let asked_for_3 = f.asked().pieces.iter().filter(|&&(i, _)| i == 3).count();
    assert_eq!(asked_for_3, 2, "the bad piece is asked again");
    assert_eq!(f.asked().pieces.len() as u32, w.pieces() + 1, "every other piece came from the copy once");
    let m = c.metrics().await;
    assert_eq!(failures_metric(&m, "corrupt"), 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_announcing_a_wrong_piece_map_are_excluded_before_they_are_asked() {
    let w = World::new(8 * MIB, 22).await;
    let a = w.honest_authority("node-a").await;
    // Both hold a blob whose odd pieces differ from the origin's and
    // announce its true hashes: one in its bitfield (claiming everything),
    // the other in a `Have` for piece 1 after an empty bitfield.
    let bad = w.spoiled((1..w.pieces()).step_by(2));
    let f1 = FakePeer::start(&w.cluster, "node-f1", w.task.clone(), Script::holding(&bad)).await;
    let f2_script = Script::holding(&bad).claiming(vec![], vec![1]).complete(false);
    let f2 = FakePeer::start(&w.cluster, "node-f2", w.task.clone(), f2_script).await;
    f1.sched.report_complete(w.pieces(), None).await;
    f2.sched.report(HaveState { pieces_done: 1, pieces_total: Some(w.pieces()), complete: false }, None).await;

    let (spec, link) = w.watched("node-c");
    offer_first(&link, vec![f1.sched.as_parent(w.pieces()), f2.sched.as_parent(1)]);
    let c = Daemon::start_peer(&w.o.front, spec).await;
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(30), get_all(&c.blob_url(REPO, &w.d), None))
        .await
        .expect("the child's pull ends")
        .expect("a whole body");
    assert_eq!(status, 200);
    assert_eq!(sha256_digest(&body), w.d, "the child's client got wrong bytes");
    assert_eq!(w.o.front.blob_gets(&w.d), 1, "the child got the blob from the authority, not the origin");

    for f in [&f1, &f2] {
        let asked = f.asked();
        let indices: Vec<u32> = asked.pieces.iter().map(|&(i, _)| i).collect();
        assert!(asked.interests >= 1, "{} was never followed: the test proves nothing", f.host());
        assert!(indices.is_empty(), "{} was asked for pieces {indices:?} after announcing a wrong map", f.host());
    }
    let reported = link.failures();
    for f in [&f1, &f2] {
        assert!(reported.iter().any(|r| &r.parent == f.host() && r.answer == SchedulerResponse::Ack), "{reported:?}");
    }
    assert!(!reported.iter().any(|r| r.parent.as_str() == "node-a"), "the authority was blamed: {reported:?}");
    let m = c.metrics().await;
    assert!(failures_metric(&m, "corrupt") >= 2.0, "both relays count as failures:\n{m}");
    drop(a);
}

/// The child hears a relay's hashes before the authority's: the relay
/// claims pieces the authority has not read from the origin yet, announcing
/// wrong hashes for the second half. Once the authority announces those
/// pieces, the relay's claims contradict the trusted map, and it must be
/// dropped before it is asked for one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_whose_earlier_claims_contradict_hashes_learned_later_is_not_asked_for_them() {
    let w = World::new(4 * MIB, 25).await;
    let half = w.pieces() / 2;
    // A slow origin: the authority holds few pieces when the child starts.
    w.o.front.set_rate_limit(Some(MIB as u64));
    let a = Daemon::start_peer(&w.o.front, w.cluster.peer("node-a")).await;
    let seed = tokio::spawn(get_all_owned(a.blob_url(REPO, &w.d)));
    within(Duration::from_secs(10), "the authority takes the origin grant", || async {
        w.cluster.scheduler.stats().grants == 1
    })
    .await;
    let bad = w.spoiled(half..w.pieces());
    let f = FakePeer::start(&w.cluster, "node-f", w.task.clone(), Script::holding(&bad)).await;
    f.sched.report_complete(w.pieces(), None).await;

    let (spec, link) = w.watched("node-c");
    offer_first(&link, vec![f.sched.as_parent(w.pieces())]);
    let c = Daemon::start_peer(&w.o.front, spec).await;
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(30), get_all(&c.blob_url(REPO, &w.d), None))
        .await
        .expect("the child's pull ends")
        .expect("a whole body");
    assert_eq!((status, sha256_digest(&body)), (200, w.d.clone()));
    let (status, _, body) = seed.await.unwrap().unwrap();
    assert_eq!((status, sha256_digest(&body)), (200, w.d.clone()));

    let asked: Vec<u32> = f.asked().pieces.iter().map(|&(i, _)| i).collect();
    assert!(asked.iter().any(|&i| i < half), "the relay was never asked for a true piece: the test proves nothing");
    assert!(
        asked.iter().all(|&i| i < half),
        "the relay was asked for pieces {asked:?}, though it announced hashes for pieces {half}.. that contradict \
         the ones the authority announced before they were asked"
    );
    drop(a);
}

async fn get_all_owned(url: String) -> Result<(u16, reqwest::header::HeaderMap, Vec<u8>), String> {
    get_all(&url, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_authority_with_a_wrong_map_is_blamed_and_the_daemon_fetches_the_blob_again() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let w = World::new(8 * MIB, 23).await;
        // The fake joins first, takes the origin grant (so the scheduler makes
        // it the authority), and reports a final map of bytes that are not the
        // blob; it serves those bytes, each piece matching that map.
        let bad = w.spoiled([3]);
        let f = FakePeer::start(&w.cluster, "node-f", w.task.clone(), Script::holding(&bad)).await;
        f.sched.take_origin_grant().await;
        f.sched.report_complete(w.pieces(), Some(piece_map(w.layout, &bad))).await;
        assert_eq!(w.cluster.scheduler.stats().piece_maps, 1, "the scheduler keeps the lying authority's map");

        let (spec, link) = w.watched("node-c");
        let c = Daemon::start_peer(&w.o.front, spec).await;
        let url = c.blob_url(REPO, &w.d);
        let first = tokio::time::timeout(Duration::from_secs(20), get_all(&url, None))
            .await
            .expect("the first response was neither completed nor cut within 20 s");
        match &first {
            Err(_) => {}
            Ok((status, _, body)) => assert!(
                *status != 200 || body.len() < w.data.len(),
                "the first response completed ({status}, {} bytes) with bytes that are not the blob",
                body.len()
            ),
        }
        let reported = link.failures();
        assert!(
            reported
                .iter()
                .any(|r| r.parent == *f.host() && r.kind == FailureKind::BadMap && r.answer == SchedulerResponse::Ack),
            "the child did not report the authority's map: {reported:?}"
        );
        let m = c.metrics().await;
        assert!(failures_metric(&m, "bad_map") >= 1.0, "{m}");

        // Nobody asks again: the daemon fetches the blob again by itself.
        within(Duration::from_secs(10), "the daemon fetches the blob from the origin again", || async {
            w.o.front.blob_gets(&w.d) >= 1
        })
        .await;
        let (status, _, body) = get_all(&url, None).await.expect("the retry gets a whole body");
        assert_eq!((status, sha256_digest(&body)), (200, w.d.clone()), "the retry got wrong bytes");
        assert_eq!(w.o.front.blob_gets(&w.d), 1);

        // The scheduler no longer offers the fake, nor trusts its hashes.
        let probe = FakeHost::register(w.link(), "node-probe", dead_addr(), w.task.clone()).await;
        let seen = probe.join(HaveState::default()).await;
        assert!(!seen.offers(f.host()) && !seen.trusts(f.host()), "the scheduler still names the liar: {seen:?}");
        assert!(seen.map.as_ref().is_none_or(|m| m.from != *f.host()), "the liar's map is still handed out");
        probe.leave().await;
    })
    .await
    .expect("the lying authority's test runs in time");
}

/// `ghost` is registered as holding the blob complete; the child's client
/// must get it from the origin quickly, the child must not loop, and the
/// failure must be reported.
async fn an_unreachable_parent_costs_seconds(w: &World, ghost: &HostId) {
    let (spec, link) = w.watched("node-c");
    let c = Daemon::start_peer(&w.o.front, spec).await;
    let started = Instant::now();
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(30), get_all(&c.blob_url(REPO, &w.d), None))
        .await
        .expect("the pull ends")
        .unwrap_or_else(|e| panic!("the pull failed after {:?}: {e}", started.elapsed()));
    let took = started.elapsed();
    assert_eq!((status, sha256_digest(&body)), (200, w.d.clone()));
    assert!(took < Duration::from_secs(8), "a 4 MiB pull behind an unreachable parent took {took:?}");
    assert_eq!(w.o.front.blob_gets(&w.d), 1, "the child got the blob from the origin");
    let reported = link.failures();
    let report = reported
        .iter()
        .find(|r| &r.parent == ghost && r.kind == FailureKind::Unreachable)
        .unwrap_or_else(|| panic!("the unreachable parent was not reported: {reported:?}"));
    // Told, the scheduler stops counting the ghost's copy and grants the
    // child the origin.
    let granted = link.joined().iter().any(|j| {
        j.at > report.at && matches!(j.answer, SchedulerResponse::Parents { origin: OriginGrant::Granted, .. })
    });
    assert!(granted, "no join after the report was granted the origin");
    let m = c.metrics().await;
    assert!(failures_metric(&m, "unreachable") >= 1.0, "{m}");
    let joins = link.joins();
    assert!(joins <= 6, "the child joined {joins} times for one blob");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(link.joins(), joins, "the child kept joining after its pull");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parent_with_another_cas_certificate_is_reported_and_the_child_goes_to_the_origin() {
    let w = World::new(4 * MIB, 24).await;
    let ghost = FakePeer::start_as(
        stranger_identity("node-ghost"),
        w.link(),
        "node-ghost",
        w.task.clone(),
        Script::holding(&w.data),
    )
    .await;
    ghost.sched.report_complete(w.pieces(), None).await;
    an_unreachable_parent_costs_seconds(&w, ghost.host()).await;
    assert_eq!(ghost.asked().interests, 0, "a stranger's endpoint completed a stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parent_where_nothing_listens_is_reported_and_the_child_goes_to_the_origin() {
    let w = World::new(4 * MIB, 26).await;
    let ghost = FakeHost::register(w.link(), "node-ghost", dead_addr(), w.task.clone()).await;
    ghost.report_complete(w.pieces(), None).await;
    an_unreachable_parent_costs_seconds(&w, &ghost.host).await;
}
