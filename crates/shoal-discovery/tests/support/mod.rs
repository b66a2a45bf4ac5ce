//! Test support: small clusters of discovery nodes on 127.0.0.1.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use shoal_core::{Digest, TaskId};
use shoal_discovery::{ClusterKey, Discovery, DiscoveryConfig, Provider, ProviderState};
use tokio::time::Instant;

pub fn cluster_key() -> ClusterKey {
    ClusterKey::derive(b"test cluster secret")
}

/// A node config on an ephemeral loopback port with short test timings.
pub fn config(key: ClusterKey, bootstrap: Vec<String>) -> DiscoveryConfig {
    DiscoveryConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        bootstrap,
        cluster_key: Some(key),
        query_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(2),
        resolve_interval: Duration::from_secs(1),
        bootstrap_backoff: Duration::from_millis(100),
        bootstrap_backoff_max: Duration::from_secs(1),
        ..DiscoveryConfig::default()
    }
}

/// `n` nodes, every one bootstrapped from the first, each with `tweak`
/// applied to its config; returns once each has the others in its routing table.
pub async fn cluster(n: usize, tweak: impl Fn(usize, &mut DiscoveryConfig)) -> Vec<Discovery> {
    let mut c0 = config(cluster_key(), vec![]);
    tweak(0, &mut c0);
    let first = Discovery::start(c0).await.unwrap();
    let seed = first.listen_addr().to_string();
    let mut nodes = vec![first];
    for i in 1..n {
        let mut c = config(cluster_key(), vec![seed.clone()]);
        tweak(i, &mut c);
        nodes.push(Discovery::start(c).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for (i, node) in nodes.iter().enumerate() {
        loop {
            let s = node.stats().await.unwrap();
            if s.routing_peers >= n - 1 {
                break;
            }
            assert!(Instant::now() < deadline, "node {i} knows only {} of {} peers", s.routing_peers, n - 1);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    nodes
}

pub fn task(name: &str) -> TaskId {
    TaskId::new("docker.io", Digest::sha256_of(name.as_bytes())).unwrap()
}

pub fn provider(host: &str, port: u16, state: ProviderState) -> Provider {
    Provider { host: host.parse().unwrap(), addr: format!("10.0.0.1:{port}").parse().unwrap(), state }
}

/// Finds `task` from `node` until `done` holds of the result or `within`
/// passes; returns the last result.
pub async fn find_until(
    node: &Discovery,
    task: &TaskId,
    within: Duration,
    done: impl Fn(&[Provider]) -> bool,
) -> Vec<Provider> {
    let deadline = Instant::now() + within;
    loop {
        let found = node.find(task, Duration::from_secs(2)).await.unwrap();
        if done(&found) || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn shutdown(nodes: Vec<Discovery>) {
    for n in nodes {
        n.shutdown().await;
    }
}
