//! Members find each other's provider records, with host, address and
//! state, and stop finding them after `unprovide`.

mod support;

use std::time::Duration;

use shoal_discovery::{Discovery, ProviderState};
use support::*;

const WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_finds_complete_and_downloading_providers_until_unprovided() {
    let nodes = cluster(4, |_, _| {}).await;
    let (complete, downloading) = (task("layer-a"), task("layer-b"));
    let holder = provider("node-1", 65003, ProviderState::Complete);
    let fetcher = provider("node-1", 65003, ProviderState::Downloading);
    nodes[1].provide(&complete, holder.clone()).await.unwrap();
    nodes[1].provide(&downloading, fetcher.clone()).await.unwrap();

    for (i, node) in nodes.iter().enumerate() {
        let found = find_until(node, &complete, WITHIN, |f| !f.is_empty()).await;
        assert_eq!(found, vec![holder.clone()], "node {i}, complete");
        let found = find_until(node, &downloading, WITHIN, |f| !f.is_empty()).await;
        assert_eq!(found, vec![fetcher.clone()], "node {i}, downloading");
    }
    // Another registry's blob with the same digest is another task.
    let other = shoal_core::TaskId::new("ghcr.io", complete.digest().clone()).unwrap();
    assert!(nodes[2].find(&other, Duration::from_secs(2)).await.unwrap().is_empty());

    // The download ends: finders are told "complete" at once.
    nodes[1].provide(&downloading, holder.clone()).await.unwrap();
    for node in &nodes {
        assert_eq!(node.find(&downloading, WITHIN).await.unwrap(), vec![holder.clone()]);
    }

    // Evicted: no member reports it any more, although their stores
    // still hold the record until its TTL.
    assert!(nodes[1].unprovide(&complete).await.unwrap());
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node.find(&complete, WITHIN).await.unwrap(), vec![], "node {i} after unprovide");
    }
    assert_eq!(nodes[3].find(&downloading, WITHIN).await.unwrap(), vec![holder]);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_died_is_not_reported() {
    let mut nodes = cluster(3, |_, _| {}).await;
    let t = task("layer-c");
    let p = provider("node-2", 65003, ProviderState::Complete);
    nodes[2].provide(&t, p.clone()).await.unwrap();
    assert_eq!(find_until(&nodes[0], &t, WITHIN, |f| !f.is_empty()).await, vec![p]);
    nodes.pop().unwrap().shutdown().await;
    assert_eq!(nodes[0].find(&t, WITHIN).await.unwrap(), vec![]);
    assert_eq!(nodes[1].find(&t, WITHIN).await.unwrap(), vec![]);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_its_bootstrap_peer_joins_it_by_name() {
    // Reserve a port for the bootstrap peer, which starts two seconds late.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let early = Discovery::start(config(cluster_key(), vec![format!("localhost:{port}")])).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(early.stats().await.unwrap().connected_peers, 0);
    let mut late_config = config(cluster_key(), vec![]);
    late_config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let late = Discovery::start(late_config).await.unwrap();

    let t = task("layer-d");
    let p = provider("node-late", 65003, ProviderState::Downloading);
    late.provide(&t, p.clone()).await.unwrap();
    assert_eq!(find_until(&early, &t, WITHIN, |f| !f.is_empty()).await, vec![p]);
    shutdown(vec![early, late]).await;
}
