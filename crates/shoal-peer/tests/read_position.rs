//! A client reading a cold blob from the middle (a lazy-pulling
//! snapshotter's Range request) is served first from there: the swarm
//! download asks its parent for the pieces at the client's offset before
//! any other, and the bytes served are the blob's.

mod support;

use std::time::Duration;

use shoal_core::{PieceLayout, TaskId};
use shoal_testkit::{random_bytes, sha256_digest};
use support::fake_peer::{FakePeer, Script, piece_map};
use support::{Cluster, Daemon, Origin, get_all};

const MIB: usize = 1 << 20;
const REPO: &str = "swarm/lazy";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_range_request_into_a_cold_blob_is_fetched_from_its_offset_first() {
    let o = Origin::start().await;
    let data = random_bytes(8 * MIB, 61);
    let d = o.blob(REPO, data.clone()).await;
    let task: TaskId = format!("{}/{d}", o.front.host()).parse().unwrap();
    let layout = PieceLayout::for_blob(data.len() as u64);
    let pieces = layout.count();
    assert!(pieces >= 8, "enough pieces for a last quarter: {pieces}");
    let cluster = Cluster::new();
    // The only holder of the blob: it took the origin grant (so it is the
    // task's authority) and reported it complete with its piece map.
    let f = FakePeer::start(&cluster, "node-f", task.clone(), Script::holding(&data)).await;
    f.sched.take_origin_grant().await;
    f.sched.report_complete(pieces, Some(piece_map(layout, &data))).await;

    let c = Daemon::start_peer(&o.front, cluster.peer("node-c")).await;
    let offset = layout.range(pieces * 3 / 4).start + 1000;
    let range = format!("bytes={offset}-");
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(30), get_all(&c.blob_url(REPO, &d), Some(&range)))
        .await
        .expect("the range request ends")
        .expect("a whole body");
    assert_eq!(status, 206);
    assert!(body == data[offset as usize..], "the range's bytes are the blob's");

    let asked: Vec<u32> = f.asked().pieces.iter().map(|&(i, _)| i).collect();
    let first = layout.index_of(offset);
    assert_eq!(asked.first(), Some(&first), "the first piece asked is the client's: {asked:?}");
    let window = shoal_peer::swarm::SwarmTuning::default().window.min(pieces - first);
    assert!(
        asked.iter().take(window as usize).copied().eq(first..first + window),
        "the pieces from the client's offset come first, in order: {asked:?}"
    );

    // The rest of the blob arrives too, and the whole of it is right.
    let (status, _, whole) = get_all(&c.blob_url(REPO, &d), None).await.unwrap();
    assert_eq!((status, sha256_digest(&whole)), (200, d.clone()));
    assert_eq!(o.front.blob_gets(&d), 0, "every byte came from the peer");
}
