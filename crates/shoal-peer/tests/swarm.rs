//! Several peers in one process, each with its own store, mirror and QUIC
//! endpoint, sharing a scheduler and pulling from a real docker-registry
//! behind a counting front: the origin's bytes are measured at the origin.

mod support;

use std::time::Duration;

use shoal_testkit::random_bytes;
use support::{Cluster, Daemon, Origin, get_all, sample};

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_pulling_at_once_share_one_origin_download() {
    let o = Origin::start().await;
    let data = random_bytes(40 * MIB, 1);
    let d = o.blob("swarm/app", data.clone()).await;
    // A slow origin, so the seed is still downloading when the others ask:
    // they must pipeline from it rather than wait for it to finish.
    o.front.set_rate_limit(Some(40 * MIB as u64));
    let cluster = Cluster::new();
    let mut peers = Vec::new();
    for i in 0..4 {
        peers.push(Daemon::start_peer(&o.front, cluster.peer(&format!("node-{i}"))).await);
    }
    let clients: Vec<_> = peers
        .iter()
        .map(|p| {
            let url = p.blob_url("swarm/app", &d);
            tokio::spawn(async move { get_all(&url, None).await })
        })
        .collect();
    for c in clients {
        let (status, _, body) = c.await.unwrap().unwrap();
        assert_eq!(status, 200);
        assert!(body == data, "a peer served different bytes");
    }
    let origin_bytes = o.front.total_blob_bytes();
    assert!(
        origin_bytes as f64 <= 1.1 * data.len() as f64,
        "the origin sent {origin_bytes} bytes for a {}-byte blob to 4 peers",
        data.len()
    );
    let mut from_peers = 0.0;
    for p in &peers {
        from_peers += sample(&p.metrics().await, "shoal_peer_received_bytes_total");
    }
    assert!(from_peers >= 2.0 * data.len() as f64, "peers got {from_peers} bytes from each other");
    // The upload paths' health is counted too, once each connection's next
    // sample is taken: every byte that crossed went in some packet.
    tokio::time::sleep(shoal_peer::swarm::path_stats::SAMPLE + Duration::from_millis(300)).await;
    let (mut sent, mut lost, mut rtts) = (0.0, 0.0, 0.0);
    for p in &peers {
        let m = p.metrics().await;
        sent += sample(&m, "shoal_peer_quic_sent_packets_total");
        lost += sample(&m, "shoal_peer_quic_lost_packets_total");
        rtts += sample(&m, "shoal_peer_quic_rtt_seconds_count");
    }
    assert!(sent >= from_peers / 65_536.0, "{sent} QUIC packets counted for {from_peers} bytes sent");
    assert!(lost <= sent, "{lost} packets lost of {sent} sent");
    assert!(rtts > 0.0, "no round-trip time sampled");
}

/// Pull `repo:tag` through `mirror` like a registry client: the manifest by
/// tag, then every blob; returns (digest, bytes) of each blob.
async fn pull_image(mirror: &str, repo: &str, tag: &str) -> Vec<(String, Vec<u8>)> {
    let client = reqwest::Client::new();
    let manifest: serde_json::Value = client
        .get(format!("{mirror}/v2/{repo}/manifests/{tag}"))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for l in manifest["layers"].as_array().unwrap() {
        digests.push(l["digest"].as_str().unwrap().to_owned());
    }
    let mut out = Vec::new();
    for d in digests {
        let (status, _, body) = get_all(&format!("{mirror}/v2/{repo}/blobs/{d}"), None).await.unwrap();
        assert_eq!(status, 200, "{d}");
        out.push((d, body));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_peers_pull_a_64_mib_image_and_the_origin_sends_it_about_once() {
    let o = Origin::start().await;
    let spec = shoal_testkit::ImageSpec { layers: vec![24 << 20, 40 << 20], seed: 3 };
    let image = shoal_testkit::build_and_push(&spec, &o.registry.host(), "swarm/image:v1", None).await.unwrap();
    o.front.set_rate_limit(Some(64 * MIB as u64));
    let cluster = Cluster::new();
    let mut peers = Vec::new();
    for i in 0..8 {
        peers.push(Daemon::start_peer(&o.front, cluster.peer(&format!("node-{i}"))).await);
    }
    let pulls: Vec<_> = peers
        .iter()
        .map(|p| {
            let mirror = p.mirror.clone();
            tokio::spawn(async move { pull_image(&mirror, "swarm/image", "v1").await })
        })
        .collect();
    for pull in pulls {
        let blobs = pull.await.unwrap();
        assert_eq!(blobs.len(), image.layers.len() + 1);
        for (d, bytes) in blobs {
            assert_eq!(shoal_testkit::sha256_digest(&bytes), d, "a peer served a blob whose digest does not match");
        }
    }
    let sent = o.front.total_blob_bytes();
    let size = image.blob_bytes();
    assert!(sent as f64 <= 1.1 * size as f64, "the origin served {sent} bytes for {size} bytes of blobs to 8 peers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_piece_on_one_peers_disk_is_never_passed_on() {
    let o = Origin::start().await;
    let data = random_bytes(20 * MIB, 5);
    let d = o.blob("swarm/app", data.clone()).await;
    let cluster = Cluster::new();
    let a = Daemon::start_peer(&o.front, cluster.peer("node-a")).await;
    let (status, _, body) = get_all(&a.blob_url("swarm/app", &d), None).await.unwrap();
    assert_eq!((status, body == data), (200, true));
    // The blob is recorded complete (and renamed) right after its last byte
    // is verified and sent: wait for that before touching the file.
    tokio::time::timeout(Duration::from_secs(10), async {
        while a.status().await["store"]["complete_blobs"] != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("A's store records the blob complete");
    // Rot one byte of piece 2 in A's store.
    let hex = d.strip_prefix("sha256:").unwrap();
    let file = a.dir.path().join("store/blobs/sha256").join(hex);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[9 * MIB] ^= 0xFF;
    std::fs::write(&file, bytes).unwrap();

    let b = Daemon::start_peer(&o.front, cluster.peer("node-b")).await;
    let (status, _, body) = get_all(&b.blob_url("swarm/app", &d), None).await.unwrap();
    assert_eq!(status, 200);
    assert!(body == data, "B must get the right bytes despite A's rotten piece");
    let m = b.metrics().await;
    assert!(sample(&m, "shoal_piece_failures_total{kind=\"corrupt\"}") >= 1.0, "B saw A refuse the piece:\n{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parent_that_dies_mid_transfer_does_not_stop_the_child() {
    let o = Origin::start().await;
    let data = random_bytes(32 * MIB, 6);
    let d = o.blob("swarm/app", data.clone()).await;
    o.front.set_rate_limit(Some(8 * MIB as u64));
    let cluster = Cluster::new();
    let a = Daemon::start_peer(&o.front, cluster.peer("node-a")).await;
    let b = Daemon::start_peer(&o.front, cluster.peer("node-b")).await;
    let seed = tokio::spawn({
        let url = a.blob_url("swarm/app", &d);
        async move { get_all(&url, None).await }
    });
    // Let A seed a few pieces, then B joins and pipelines from A.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let child = tokio::spawn({
        let url = b.blob_url("swarm/app", &d);
        async move { get_all(&url, None).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(a); // the parent (and seed) dies mid-transfer
    let _ = seed.await;
    o.front.set_rate_limit(None);
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(60), child).await.unwrap().unwrap().unwrap();
    assert_eq!(status, 200);
    assert!(body == data, "B completes with the right bytes from the origin after its parent died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_with_another_cas_certificate_gets_nothing() {
    let o = Origin::start().await;
    let d = o.blob("swarm/app", random_bytes(MIB, 7)).await;
    let cluster = Cluster::new();
    let a = Daemon::start_peer(&o.front, cluster.peer("node-a")).await;
    get_all(&a.blob_url("swarm/app", &d), None).await.unwrap();

    let stranger = Cluster::new();
    let id = stranger.identity("intruder");
    let ep = shoal_transport::Endpoint::bind("127.0.0.1:0".parse().unwrap(), &id, &Default::default()).unwrap();
    let refused = ep.connect(a.quic.unwrap()).await;
    let refused = match refused {
        Err(e) => e.to_string(),
        // With TLS 1.3 the client may finish first; the server's refusal
        // then closes the connection before any stream gets an answer.
        Ok(conn) => {
            let me: shoal_core::HostId = "intruder".parse().unwrap();
            let ask = shoal_proto::PeerRequest::Interest { task: format!("{}/{d}", o.front.host()).parse().unwrap() };
            let them: shoal_core::HostId = "node-a".parse().unwrap();
            match shoal_peer::swarm::wire::open(&conn, &me, &them, &ask, Duration::from_secs(5)).await {
                Ok(_) => panic!("a stranger completed a stream to a peer"),
                Err(e) => e.to_string(),
            }
        }
    };
    assert!(!refused.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_scheduler_restart_complete_blobs_are_offered_again() {
    let o = Origin::start().await;
    let data = random_bytes(12 * MIB, 8);
    let d = o.blob("swarm/app", data.clone()).await;
    let cluster = Cluster::new();
    let a = Daemon::start_peer(&o.front, cluster.peer("node-a")).await;
    let (status, _, _) = get_all(&a.blob_url("swarm/app", &d), None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(o.front.blob_gets(&d), 1);

    // Let A's completion report land before the restart, so only the
    // re-announce can tell the new scheduler what A holds.
    tokio::time::timeout(Duration::from_secs(10), async {
        while cluster.scheduler.stats().peer_tasks == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.scheduler.restart();
    assert_eq!(cluster.scheduler.stats().peer_tasks, 0);
    // A's next heartbeat (every second) finds itself forgotten, registers
    // again and re-announces what it holds.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let b = Daemon::start_peer(&o.front, cluster.peer("node-b")).await;
    let (status, _, body) = get_all(&b.blob_url("swarm/app", &d), None).await.unwrap();
    assert_eq!(status, 200);
    assert!(body == data);
    assert_eq!(o.front.blob_gets(&d), 1, "B got the blob from A, not from the origin");
    assert_eq!(sample(&b.metrics().await, "shoal_peer_received_bytes_total"), data.len() as f64);
}

/// A stream's request travels with the opener's hello: a receiver that
/// reads both before it answers anything gets them (an opener that waited
/// for the answering hello first would deadlock here and time out), and
/// the opener still reads and checks that hello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_goes_out_with_the_hello() {
    use shoal_proto::{Hello, PeerEvent, PeerRequest, read_frame, write_frame};
    let cluster = Cluster::new();
    let bind = |host: &str| {
        shoal_transport::Endpoint::bind("127.0.0.1:0".parse().unwrap(), &cluster.identity(host), &Default::default())
            .unwrap()
    };
    let (server, client) = (bind("node-a"), bind("node-b"));
    let addr = server.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        let conn = server.accept().await.unwrap().handshake().await.unwrap();
        let (mut send, mut recv) = conn.connection.accept_bi().await.unwrap();
        let hello: Hello = read_frame(&mut recv).await.unwrap().unwrap();
        // Nothing has been answered yet: the request must be here already.
        let request: PeerRequest = read_frame(&mut recv).await.unwrap().unwrap();
        write_frame(&mut send, &Hello::ours("node-a".parse().unwrap())).await.unwrap();
        write_frame(&mut send, &PeerEvent::Gone).await.unwrap();
        let _ = send.finish();
        let _ = conn.connection.closed().await;
        (hello.host, request)
    });
    let task: shoal_core::TaskId = format!("docker.io/sha256:{}", "ab".repeat(32)).parse().unwrap();
    let ask = PeerRequest::GetPiece { task, index: 7 };
    let conn = client.connect(addr).await.unwrap();
    let me: shoal_core::HostId = "node-b".parse().unwrap();
    let (_send, mut recv, theirs) =
        shoal_peer::swarm::wire::open(&conn, &me, &"node-a".parse().unwrap(), &ask, Duration::from_secs(3))
            .await
            .expect("stream set up");
    assert_eq!(theirs.host.as_str(), "node-a");
    let reply: PeerEvent = read_frame(&mut recv).await.unwrap().unwrap();
    assert_eq!(reply, PeerEvent::Gone);
    conn.close(0u32.into(), b"done");
    let (host, request) = tokio::time::timeout(Duration::from_secs(5), serve).await.unwrap().unwrap();
    assert_eq!(host.as_str(), "node-b");
    assert_eq!(request, ask);
}

/// A scheduler Service with no ready pods (its name does not resolve) at
/// the daemon's start: the mirror serves at once, from the origin, and
/// `/readyz` says what is missing without failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_whose_schedulers_do_not_resolve_serves_from_the_origin_and_says_so() {
    let o = Origin::start().await;
    let data = random_bytes(3 * MIB, 9);
    let d = o.blob("swarm/alone", data.clone()).await;
    let cluster = Cluster::new();
    let identity = cluster.identity("node-a");
    let endpoint = shoal_transport::Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        &identity,
        &shoal_transport::TransportTuning::default(),
    )
    .unwrap();
    let missing = ["shoal-scheduler.no-such-namespace.invalid:65004".to_string()];
    let link = shoal_peer::swarm::RemoteScheduler::connect(endpoint, "node-a".parse().unwrap(), &missing)
        .await
        .expect("a name that does not resolve yet is not fatal");
    let spec = support::PeerSpec { host: "node-a".into(), identity, link: std::sync::Arc::new(link) };
    let daemon = Daemon::start_peer(&o.front, spec).await;

    let (code, _, body) = get_all(&daemon.blob_url("swarm/alone", &d), None).await.unwrap();
    assert_eq!(code, 200);
    assert!(body == data, "the blob's bytes");
    assert_eq!(o.front.blob_gets(&d), 1);
    let ready = reqwest::get(format!("{}/readyz", daemon.admin)).await.unwrap();
    assert_eq!(ready.status(), 200);
    let text = ready.text().await.unwrap();
    assert!(text.contains("schedulers are not reachable"), "{text}");
    daemon.stop().await;

    // A daemon that reached its scheduler says only "ready".
    let other = Daemon::start_peer(&o.front, cluster.peer("node-b")).await;
    let mut text = String::new();
    for _ in 0..50 {
        text = reqwest::get(format!("{}/readyz", other.admin)).await.unwrap().text().await.unwrap();
        if text == "ready\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text, "ready\n");
    other.stop().await;
}
