//! A node with another cluster key can neither publish records members
//! find nor read members' records: it never completes a connection.

mod support;

use std::time::Duration;

use shoal_discovery::{ClusterKey, Discovery, ProviderState};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_with_another_key_can_neither_publish_nor_read() {
    let members = cluster(3, |_, _| {}).await;
    let seeds: Vec<String> = members.iter().map(|m| m.listen_addr().to_string()).collect();
    let stranger = Discovery::start(config(ClusterKey::derive(b"another cluster"), seeds)).await.unwrap();

    let mine = task("member-blob");
    let member = provider("node-1", 65003, ProviderState::Complete);
    members[1].provide(&mine, member.clone()).await.unwrap();
    let theirs = task("stranger-blob");
    let forged = provider("node-0", 65003, ProviderState::Complete);
    stranger.provide(&theirs, forged.clone()).await.unwrap();
    // Also a record under the members' own key, to shadow the real one.
    stranger.provide(&mine, forged.clone()).await.unwrap();

    // The members' own lookup works (so an empty answer below means refusal).
    assert_eq!(find_until(&members[2], &mine, Duration::from_secs(10), |f| !f.is_empty()).await, vec![member.clone()]);
    // Give the stranger's bootstrap several retries against every member.
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_eq!(stranger.find(&mine, Duration::from_secs(3)).await.unwrap(), vec![forged.clone()], "only its own");
    for (i, m) in members.iter().enumerate() {
        assert_eq!(
            m.find(&theirs, Duration::from_secs(3)).await.unwrap(),
            vec![],
            "member {i} found the stranger's record"
        );
        let found = m.find(&mine, Duration::from_secs(3)).await.unwrap();
        assert!(!found.contains(&forged), "member {i} found the stranger's record: {found:?}");
        assert_eq!(m.stats().await.unwrap().routing_peers, 2, "member {i} let the stranger in");
    }
    let s = stranger.stats().await.unwrap();
    assert_eq!((s.connected_peers, s.routing_peers), (0, 0), "the stranger got a connection");
    stranger.shutdown().await;
    shutdown(members).await;
}
