//! [`FallbackLink`] against a real one-node DHT on loopback: what it
//! announces, answers and withdraws.

use std::sync::Arc;
use std::time::Duration;

use shoal_core::{Digest, HostId, TaskId};
use shoal_discovery::{ClusterKey, Discovery, DiscoveryConfig, Limits, ProviderState};
use shoal_proto::{HaveState, OriginGrant, SchedulerRequest, SchedulerResponse};

use super::FallbackLink;
use crate::swarm::link::SchedulerLink;

fn me() -> HostId {
    "node-a".parse().unwrap()
}

fn task(n: u8) -> TaskId {
    TaskId::new("docker.io", Digest::sha256_of(&[n])).unwrap()
}

async fn dht(max_provided: usize) -> Arc<Discovery> {
    let config = DiscoveryConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        cluster_key: Some(ClusterKey::new([7; 32])),
        limits: Limits { max_provided, ..Limits::default() },
        ..DiscoveryConfig::default()
    };
    Arc::new(Discovery::start(config).await.unwrap())
}

fn link(dht: &Arc<Discovery>) -> FallbackLink {
    FallbackLink::new(None, dht.clone(), me(), "127.0.0.1:65003".parse().unwrap())
}

async fn states(dht: &Discovery, t: &TaskId) -> Vec<ProviderState> {
    dht.find(t, Duration::from_secs(2)).await.unwrap().into_iter().map(|p| p.state).collect()
}

#[tokio::test]
async fn without_a_scheduler_a_lone_node_seeds_and_says_so_and_completes() {
    let dht = dht(16).await;
    let link = link(&dht);
    let t = task(1);
    let join = SchedulerRequest::Join { host: me(), task: t.clone(), have: HaveState::default(), want_map: true };
    let first = link.call(Some(t.digest()), join.clone()).await.unwrap();
    assert!(
        matches!(first, SchedulerResponse::Parents { origin: OriginGrant::Wait { .. }, .. }),
        "a node that just asked waits for others' announcements first: {first:?}"
    );
    assert_eq!(states(&dht, &t).await, [ProviderState::Downloading]);
    tokio::time::sleep(super::Rules::default().settle).await;
    let again = link.call(Some(t.digest()), join).await.unwrap();
    assert!(matches!(again, SchedulerResponse::Parents { origin: OriginGrant::Granted, .. }), "{again:?}");
    assert_eq!(states(&dht, &t).await, [ProviderState::Origin]);
    let done = HaveState { pieces_done: 4, pieces_total: Some(4), complete: true };
    let progress = SchedulerRequest::Progress { host: me(), task: t.clone(), have: done, map: None };
    assert_eq!(link.call(Some(t.digest()), progress).await.unwrap(), SchedulerResponse::Ack);
    assert_eq!(states(&dht, &t).await, [ProviderState::Complete]);
    let leave = SchedulerRequest::Leave { host: me(), task: t.clone() };
    assert_eq!(link.call(Some(t.digest()), leave).await.unwrap(), SchedulerResponse::Ack);
    assert!(states(&dht, &t).await.is_empty());
    // Host-level requests are answered here when there is no scheduler.
    let hb = SchedulerRequest::Heartbeat { host: me(), load: Default::default() };
    assert_eq!(link.call(None, hb).await.unwrap(), SchedulerResponse::Ack);
}

#[tokio::test]
async fn at_the_dhts_bound_the_oldest_complete_blob_makes_way() {
    let dht = dht(2).await;
    let link = link(&dht);
    let done = HaveState { pieces_done: 4, pieces_total: Some(4), complete: true };
    for n in 1..=3 {
        let t = task(n);
        let progress = SchedulerRequest::Progress { host: me(), task: t.clone(), have: done, map: None };
        assert_eq!(link.call(Some(t.digest()), progress).await.unwrap(), SchedulerResponse::Ack);
    }
    assert!(states(&dht, &task(1)).await.is_empty(), "the oldest was not withdrawn");
    assert_eq!(states(&dht, &task(2)).await, [ProviderState::Complete]);
    assert_eq!(states(&dht, &task(3)).await, [ProviderState::Complete]);
}
