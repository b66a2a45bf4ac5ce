//! Provider records live while their provider re-publishes them, and lapse
//! at the other nodes a TTL after it stopped.

mod support;

use std::time::Duration;

use shoal_discovery::{Discovery, ProviderState};
use support::*;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(2);

async fn stored(node: &Discovery) -> usize {
    node.stats().await.unwrap().stored_keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_republished_while_provided_and_lapse_after_the_provider_stops() {
    let mut nodes = cluster(3, |_, c| {
        c.record_ttl = TTL;
        c.republish_interval = Duration::from_millis(500);
    })
    .await;
    let t = task("short-lived");
    nodes[2].provide(&t, provider("node-2", 65003, ProviderState::Complete)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored(&nodes[0]).await != 1 || stored(&nodes[1]).await != 1 {
        assert!(Instant::now() < deadline, "the record never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Well past one TTL, re-publication has kept the records alive.
    tokio::time::sleep(TTL * 3).await;
    assert_eq!((stored(&nodes[0]).await, stored(&nodes[1]).await), (1, 1), "records lapsed while provided");

    // The provider stops without unproviding (a crash): the records it
    // left lapse within a TTL and a sweep period.
    nodes.pop().unwrap().shutdown().await;
    tokio::time::sleep(TTL + TTL / 4 + Duration::from_secs(1)).await;
    assert_eq!((stored(&nodes[0]).await, stored(&nodes[1]).await), (0, 0), "records outlived their TTL");
    shutdown(nodes).await;
}
