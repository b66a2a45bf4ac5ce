//! The join answer without a scheduler, one rule per test, with time
//! passed in.

use std::time::Duration;

use shoal_core::{Digest, HostId, TaskId};
use shoal_discovery::{Provider, ProviderState};
use shoal_proto::{HaveState, OriginGrant, SchedulerResponse};
use tokio::time::Instant;

use super::{Rules, TaskView, answer};

fn host(name: &str) -> HostId {
    name.parse().unwrap()
}

fn task() -> TaskId {
    TaskId::new("docker.io", Digest::sha256_of(b"a layer")).unwrap()
}

fn provider(name: &str, state: ProviderState) -> Provider {
    Provider { host: host(name), addr: "10.0.0.1:65003".parse().unwrap(), state }
}

const FRESH: HaveState = HaveState { pieces_done: 0, pieces_total: Some(64), complete: false };

struct Answer {
    parents: Vec<String>,
    authorities: Vec<String>,
    granted: bool,
}

fn ask(now: Instant, me: &str, found: &[Provider], view: &mut TaskView) -> Answer {
    ask_with(now, me, FRESH, found, view)
}

fn ask_with(now: Instant, me: &str, have: HaveState, found: &[Provider], view: &mut TaskView) -> Answer {
    match answer(now, &host(me), &task(), have, found, view, &Rules::default()) {
        SchedulerResponse::Parents { parents, origin, authorities, map } => {
            assert!(map.is_none());
            Answer {
                parents: parents.iter().map(|p| p.host.to_string()).collect(),
                authorities: authorities.iter().map(|p| p.host.to_string()).collect(),
                granted: origin == OriginGrant::Granted,
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn nodes_that_start_together_wait_to_see_each_other_then_exactly_one_goes_to_the_origin() {
    let t0 = Instant::now();
    let names = ["node-a", "node-b", "node-c", "node-d"];
    let found: Vec<Provider> = names.iter().map(|n| provider(n, ProviderState::Downloading)).collect();
    let mut views: Vec<TaskView> = names.iter().map(|_| TaskView::new(t0)).collect();
    for (name, view) in names.iter().zip(&mut views) {
        let a = ask(t0 + Duration::from_millis(100), name, &found, view);
        assert!(!a.granted, "{name} went to the origin before the others' announcements could arrive");
        assert_eq!(a.parents.len(), 3, "the other downloaders are parents");
        assert!(a.authorities.is_empty(), "a downloader that is not the seed is never an authority");
    }
    let settled = t0 + Rules::default().settle;
    let mut granted = Vec::new();
    for (name, view) in names.iter().zip(&mut views) {
        if ask(settled, name, &found, view).granted {
            granted.push(*name);
        }
    }
    assert_eq!(granted.len(), 1, "{granted:?}");
    // The winner keeps its grant; asking again changes nobody's answer.
    for (name, view) in names.iter().zip(&mut views) {
        assert_eq!(ask(settled + Duration::from_secs(1), name, &found, view).granted, *name == granted[0]);
    }
}

#[test]
fn a_seed_or_a_complete_copy_keeps_everyone_else_from_the_origin() {
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(5);
    let found = [
        provider("node-d", ProviderState::Downloading),
        provider("node-s", ProviderState::Origin),
        provider("node-c", ProviderState::Complete),
    ];
    // node-x would win the election among these: it still waits.
    let mut everyone: Vec<HostId> = found.iter().map(|p| p.host.clone()).collect();
    everyone.push(host("node-x"));
    let x = (0..100)
        .map(|i| format!("node-x{i}"))
        .find(|name| {
            *everyone.last_mut().unwrap() = host(name);
            shoal_discovery::elect(&task(), &everyone, &Default::default()) == Some(&host(name))
        })
        .unwrap();
    let a = ask(later, &x, &found, &mut TaskView::new(t0));
    assert!(!a.granted);
    assert_eq!(a.parents, ["node-c", "node-s", "node-d"], "complete first, then the seed, then downloaders");
    assert_eq!(a.authorities, ["node-c", "node-s"]);
    let a = ask(later, &x, &found[..2], &mut TaskView::new(t0));
    assert!(!a.granted, "a live seed is enough");
    // A complete node never goes to the origin, even as the only one.
    let done = HaveState { pieces_done: 64, pieces_total: Some(64), complete: true };
    assert!(!ask_with(later, "node-x", done, &[], &mut TaskView::new(t0)).granted);
    // Alone, after the settle time, a node is its own seed.
    assert!(ask(later, "node-x", &[provider("node-x", ProviderState::Downloading)], &mut TaskView::new(t0)).granted);
}

#[test]
fn a_seed_reported_dead_is_replaced_and_counted_again_once_the_report_is_old() {
    let t0 = Instant::now();
    let rules = Rules::default();
    let found = [
        provider("node-s", ProviderState::Origin),
        provider("node-a", ProviderState::Downloading),
        provider("node-b", ProviderState::Downloading),
    ];
    let mut a_view = TaskView::new(t0);
    let mut b_view = TaskView::new(t0);
    let now = t0 + Duration::from_secs(2);
    a_view.failed(now, host("node-s"));
    b_view.failed(now, host("node-s"));
    let a = ask(now, "node-a", &found, &mut a_view);
    let b = ask(now, "node-b", &found, &mut b_view);
    assert!(!a.parents.contains(&"node-s".to_owned()), "a dead seed is no parent");
    assert!(a.granted ^ b.granted, "exactly one of the two takes over: {} {}", a.granted, b.granted);
    // Once the report is older than dead_for, the seed counts again (it
    // may have been slow, not dead), and nobody new is sent to the origin.
    let much_later = now + rules.dead_for;
    let mut c_view = TaskView::new(t0);
    c_view.failed(now, host("node-s"));
    let c = ask(much_later, "node-c", &found, &mut c_view);
    assert!(c.parents.contains(&"node-s".to_owned()) && !c.granted);
}

#[test]
fn this_node_and_duplicates_are_never_parents() {
    let t0 = Instant::now();
    let found = [
        provider("node-a", ProviderState::Downloading),
        provider("node-b", ProviderState::Downloading),
        provider("node-b", ProviderState::Downloading),
    ];
    let a = ask(t0, "node-a", &found, &mut TaskView::new(t0));
    assert_eq!(a.parents, ["node-b"]);
}
