//! Records are bounded: what one node announces, what one node stores,
//! and how many providers one find returns.

mod support;

use std::time::Duration;

use shoal_discovery::{DiscoveryError, ProviderState};
use support::*;
use tokio::time::Instant;

const WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providing_beyond_max_provided_is_refused_and_never_found() {
    let nodes = cluster(2, |i, c| {
        if i == 0 {
            c.limits.max_provided = 3;
        }
    })
    .await;
    let p = provider("node-0", 65003, ProviderState::Complete);
    for i in 0..3 {
        nodes[0].provide(&task(&format!("blob-{i}")), p.clone()).await.unwrap();
    }
    let err = nodes[0].provide(&task("blob-3"), p.clone()).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::TooManyProvided(3)), "{err}");
    assert!(err.to_string().contains("max_provided"), "{err}");
    // Re-providing a key already announced (a state change) is not a new one.
    nodes[0].provide(&task("blob-0"), provider("node-0", 65003, ProviderState::Downloading)).await.unwrap();

    for i in 0..3 {
        let found = find_until(&nodes[1], &task(&format!("blob-{i}")), WITHIN, |f| !f.is_empty()).await;
        assert_eq!(found.len(), 1, "blob-{i}");
    }
    assert_eq!(nodes[1].find(&task("blob-3"), WITHIN).await.unwrap(), vec![]);
    // Unproviding makes room again.
    nodes[0].unprovide(&task("blob-1")).await.unwrap();
    nodes[0].provide(&task("blob-3"), p).await.unwrap();
    assert_eq!(nodes[0].stats().await.unwrap().provided, 3);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_keeps_at_most_max_stored_keys() {
    let nodes = cluster(3, |i, c| {
        if i > 0 {
            c.limits.max_stored_keys = 3;
            c.limits.max_provided = 3;
        }
    })
    .await;
    let p = provider("node-0", 65003, ProviderState::Complete);
    for i in 0..8 {
        nodes[0].provide(&task(&format!("blob-{i}")), p.clone()).await.unwrap();
    }
    // Wait for the announcements to arrive, then for any stragglers.
    let deadline = Instant::now() + WITHIN;
    while nodes[1].stats().await.unwrap().stored_keys < 3 || nodes[2].stats().await.unwrap().stored_keys < 3 {
        assert!(Instant::now() < deadline, "announcements never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, node) in nodes.iter().enumerate().skip(1) {
        assert_eq!(node.stats().await.unwrap().stored_keys, 3, "node {i}");
    }
    assert_eq!(nodes[0].stats().await.unwrap().stored_keys, 8);
    // The provider itself still answers for every key.
    for i in 0..8 {
        let found = find_until(&nodes[2], &task(&format!("blob-{i}")), WITHIN, |f| !f.is_empty()).await;
        assert_eq!(found, vec![p.clone()], "blob-{i}");
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_find_returns_at_most_max_providers_per_key() {
    let nodes = cluster(5, |_, c| c.limits.max_providers_per_key = 2).await;
    let t = task("popular");
    for (i, node) in nodes.iter().enumerate().skip(1) {
        node.provide(&t, provider(&format!("node-{i}"), 65003, ProviderState::Downloading)).await.unwrap();
    }
    let found = find_until(&nodes[0], &t, WITHIN, |f| f.len() >= 2).await;
    assert_eq!(found.len(), 2, "{found:?}");
    for _ in 0..5 {
        let found = nodes[0].find(&t, WITHIN).await.unwrap();
        assert!(found.len() <= 2, "{found:?}");
    }
    shutdown(nodes).await;
}
