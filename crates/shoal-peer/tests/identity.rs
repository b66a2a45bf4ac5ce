//! Peers hold each other to their certificates on every piece stream: a
//! daemon answers nothing to a hello that names another host than the
//! opener's certificate, and an opener refuses a parent whose certificate
//! is not the host it meant to reach, or whose hello names another host.

mod support;

use std::time::Duration;

use shoal_core::HostId;
use shoal_peer::swarm::wire::{self, WireError};
use shoal_proto::{Hello, PeerEvent, PeerRequest, encode, read_frame, write_frame};
use shoal_testkit::random_bytes;
use shoal_transport::Endpoint;
use support::{Cluster, Daemon, Origin, get_all};

const LONG: Duration = Duration::from_secs(5);

fn host(name: &str) -> HostId {
    name.parse().unwrap()
}

fn bind(cluster: &Cluster, name: &str) -> Endpoint {
    Endpoint::bind("127.0.0.1:0".parse().unwrap(), &cluster.identity(name), &Default::default()).unwrap()
}

/// Opens a raw stream to a daemon, sends a hello naming `claimed` and an
/// interest in `task`, and returns the first frame that comes back.
async fn ask_as(conn: &shoal_transport::quinn::Connection, claimed: &str, task: &str) -> Option<Hello> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut out = encode(&Hello::ours(host(claimed))).unwrap().to_vec();
    out.extend_from_slice(&encode(&PeerRequest::Interest { task: task.parse().unwrap() }).unwrap());
    send.write_all(&out).await.unwrap();
    tokio::time::timeout(LONG, read_frame::<_, Hello>(&mut recv)).await.expect("an answer or a reset").ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_daemon_answers_no_hello_that_names_another_host() {
    let o = Origin::start().await;
    let d = o.blob("swarm/app", random_bytes(1 << 20, 11)).await;
    let cluster = Cluster::new();
    let a = Daemon::start_peer(&o.front, cluster.peer("node-a")).await;
    get_all(&a.blob_url("swarm/app", &d), None).await.unwrap();
    let task = format!("{}/{d}", o.front.host());

    // node-b holds a valid cluster certificate, but speaks as node-c.
    let b = bind(&cluster, "node-b");
    let conn = b.connect(a.quic.unwrap()).await.unwrap();
    assert_eq!(ask_as(&conn, "node-c", &task).await, None, "a lying hello got an answer");

    // The same connection, honest: node-a answers and offers the blob.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut out = encode(&Hello::ours(host("node-b"))).unwrap().to_vec();
    out.extend_from_slice(&encode(&PeerRequest::Interest { task: task.parse().unwrap() }).unwrap());
    send.write_all(&out).await.unwrap();
    let hello: Hello = read_frame(&mut recv).await.unwrap().expect("node-a's hello");
    assert_eq!(hello.host, host("node-a"));
    let offer: PeerEvent = read_frame(&mut recv).await.unwrap().expect("node-a's bitfield");
    assert!(matches!(offer, PeerEvent::Bitfield { ref have, .. } if have.count() > 0), "{offer:?}");
}

/// A parent whose certificate is node-a. It answers the streams it gets in
/// turn with a hello naming each of `hellos`, then `Gone`; returns how
/// many streams it got.
fn fake_parent(endpoint: Endpoint, hellos: Vec<&'static str>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let conn = endpoint.accept().await.unwrap().handshake().await.unwrap();
        let mut got = 0;
        for name in hellos {
            let Ok((mut send, mut recv)) = conn.connection.accept_bi().await else { break };
            got += 1;
            let _: Option<Hello> = read_frame(&mut recv).await.unwrap();
            let _: Option<PeerRequest> = read_frame(&mut recv).await.unwrap();
            write_frame(&mut send, &Hello::ours(host(name))).await.unwrap();
            let _ = write_frame(&mut send, &PeerEvent::Gone).await;
            let _ = send.finish();
        }
        // Any stream past the expected ones counts too.
        while tokio::time::timeout(Duration::from_millis(300), conn.connection.accept_bi())
            .await
            .is_ok_and(|s| s.is_ok())
        {
            got += 1;
        }
        got
    })
}

#[tokio::test]
async fn an_opener_holds_the_parent_to_its_certificate_and_to_whom_it_meant() {
    let cluster = Cluster::new();
    let parent = bind(&cluster, "node-a");
    let parent_addr = parent.local_addr().unwrap();
    // First stream: node-a's certificate, but a hello naming node-x. Second:
    // honest.
    let served = fake_parent(parent, vec!["node-x", "node-a"]);
    let child = bind(&cluster, "node-b");
    let conn = child.connect(parent_addr).await.unwrap();
    let me = host("node-b");
    let ask = PeerRequest::Interest { task: format!("docker.io/sha256:{}", "cd".repeat(32)).parse().unwrap() };

    let err = wire::open(&conn, &me, &host("node-a"), &ask, LONG).await.unwrap_err();
    assert!(
        matches!(&err, WireError::HelloMismatch { hello, certificate, .. }
        if hello == "node-x" && certificate == "node-a"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("node-x") && msg.contains("node-a"), "{msg}");

    // The scheduler said node-z listens here: node-a's certificate answers,
    // and it gets no stream at all.
    let err = wire::open(&conn, &me, &host("node-z"), &ask, LONG).await.unwrap_err();
    assert!(
        matches!(&err, WireError::WrongPeer { expected, certificate, .. }
        if expected == "node-z" && certificate == "node-a"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("node-z") && msg.contains("node-a") && msg.contains("nothing was sent"), "{msg}");

    // Whom it meant, speaking for itself: the stream works.
    let (_send, mut recv, theirs) = wire::open(&conn, &me, &host("node-a"), &ask, LONG).await.expect("honest parent");
    assert_eq!(theirs.host, host("node-a"));
    assert_eq!(read_frame::<_, PeerEvent>(&mut recv).await.unwrap(), Some(PeerEvent::Gone));
    conn.close(0u32.into(), b"done");
    assert_eq!(tokio::time::timeout(LONG, served).await.unwrap().unwrap(), 2, "node-z's open reached the parent");
}
