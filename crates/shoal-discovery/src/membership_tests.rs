//! A node that speaks shoal's DHT protocols but has no cluster key at all
//! (no pnet layer) is refused by members: it can neither publish nor read.
//! In the crate because only the crate can start a node without a key.

use std::time::Duration;

use shoal_core::{Digest, TaskId};
use tokio::time::Instant;

use crate::{ClusterKey, Discovery, DiscoveryConfig, Provider, ProviderState};

fn config(key: Option<ClusterKey>, bootstrap: Vec<String>) -> DiscoveryConfig {
    DiscoveryConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        bootstrap,
        cluster_key: key,
        query_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(2),
        resolve_interval: Duration::from_secs(1),
        bootstrap_backoff: Duration::from_millis(100),
        bootstrap_backoff_max: Duration::from_secs(1),
        ..DiscoveryConfig::default()
    }
}

fn provider(host: &str) -> Provider {
    Provider { host: host.parse().unwrap(), addr: "10.0.0.9:65003".parse().unwrap(), state: ProviderState::Complete }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_cluster_key_can_neither_publish_nor_read() {
    let key = ClusterKey::derive(b"members");
    let a = Discovery::start(config(Some(key.clone()), vec![])).await.unwrap();
    let b = Discovery::start(config(Some(key.clone()), vec![a.listen_addr().to_string()])).await.unwrap();
    let plain = Discovery::start_with(config(None, vec![a.listen_addr().to_string()]), None).await.unwrap();
    // The keyless node is also dialled by a member, both directions tried.
    let a2 = Discovery::start(config(Some(key), vec![plain.listen_addr().to_string()])).await.unwrap();

    let mine = TaskId::new("docker.io", Digest::sha256_of(b"member")).unwrap();
    let theirs = TaskId::new("docker.io", Digest::sha256_of(b"keyless")).unwrap();
    a.provide(&mine, provider("node-a")).await.unwrap();
    plain.provide(&theirs, provider("intruder")).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while b.find(&mine, Duration::from_secs(2)).await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "members never found each other");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_eq!(plain.find(&mine, Duration::from_secs(3)).await.unwrap(), vec![]);
    for m in [&a, &b, &a2] {
        assert_eq!(m.find(&theirs, Duration::from_secs(3)).await.unwrap(), vec![]);
    }
    let s = plain.stats().await.unwrap();
    assert_eq!((s.connected_peers, s.routing_peers), (0, 0), "the keyless node got a connection");
    for d in [plain, a2, b, a] {
        d.shutdown().await;
    }
}
