//! Endpoints talking over 127.0.0.1: mutual TLS from one CA, refusal of a
//! foreign CA in both roles, connection reuse, deadlines, rate limits and
//! both congestion controllers.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use shoal_transport::quinn;
use shoal_transport::{
    CaBundle, CongestionControl, Endpoint, Identity, PeerConnection, RateLimiter, TransportError, TransportTuning,
    issue, new_ca, recv_exact, send_bytes,
};
use tokio::time::Instant;

const LONG: Duration = Duration::from_secs(10);

fn identity(ca: &CaBundle, host: &str) -> Identity {
    let node = issue(ca, host, &[]).unwrap();
    Identity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).unwrap()
}

fn tuning() -> TransportTuning {
    TransportTuning { connect_timeout: Duration::from_secs(5), ..TransportTuning::loopback() }
}

fn endpoint(ca: &CaBundle, host: &str) -> Endpoint {
    endpoint_with(ca, host, &tuning())
}

fn endpoint_with(ca: &CaBundle, host: &str, tuning: &TransportTuning) -> Endpoint {
    Endpoint::bind("127.0.0.1:0".parse().unwrap(), &identity(ca, host), tuning).unwrap()
}

fn addr(e: &Endpoint) -> SocketAddr {
    e.local_addr().unwrap()
}

/// Accepts one connection attempt and handshakes it.
async fn accept_one(server: &Endpoint) -> Result<PeerConnection, TransportError> {
    let incoming = tokio::time::timeout(LONG, server.accept()).await.expect("an attempt").expect("endpoint open");
    incoming.handshake().await
}

#[tokio::test]
async fn same_ca_exchanges_data_and_names_peers() {
    echo_3_mib(&tuning()).await;
}

#[tokio::test]
async fn bbr_connections_carry_the_same_bytes() {
    echo_3_mib(&TransportTuning { congestion: CongestionControl::Bbr, ..tuning() }).await;
}

/// Node a sends 3 MiB to node b, which echoes it back; both check the
/// other's name and the bytes, and a its congestion controller.
async fn echo_3_mib(tuning: &TransportTuning) {
    let ca = new_ca("cluster").unwrap();
    let (a, b) = (endpoint_with(&ca, "node-a", tuning), endpoint_with(&ca, "node-b", tuning));
    let b_addr = addr(&b);
    let server = tokio::spawn(async move {
        let peer = accept_one(&b).await.unwrap();
        assert_eq!(peer.host.as_deref(), Some("node-a"));
        let (mut send, mut recv) = peer.connection.accept_bi().await.unwrap();
        let body = recv_exact(&mut recv, 3 << 20, LONG, &RateLimiter::unlimited()).await.unwrap();
        // Echo it back in two chunks, zero-copy slices of what arrived.
        let halves = [body.slice(..1 << 20), body.slice(1 << 20..)];
        send_bytes(&mut send, halves, &RateLimiter::unlimited(), LONG).await.unwrap();
        send.finish().unwrap();
        peer.connection.closed().await;
        b
    });

    let conn = a.connect(b_addr).await.unwrap();
    assert_eq!(shoal_transport::peer_host(&conn).as_deref(), Some("node-b"));
    // The connection runs the controller the tuning names.
    let cc = conn.congestion_state().into_any();
    match tuning.congestion {
        CongestionControl::Cubic => assert!(cc.is::<quinn::congestion::Cubic>(), "expected Cubic"),
        CongestionControl::Bbr => assert!(cc.is::<quinn::congestion::Bbr>(), "expected BBR"),
    }
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let body: Bytes = (0..3u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
    let sent = send_bytes(&mut send, [body.clone()], &RateLimiter::unlimited(), LONG).await.unwrap();
    assert_eq!(sent, 3 << 20);
    send.finish().unwrap();
    let echoed = recv_exact(&mut recv, body.len(), LONG, &RateLimiter::unlimited()).await.unwrap();
    assert_eq!(echoed, body);
    a.close(Duration::from_secs(1)).await;
    let b = server.await.unwrap();
    b.close(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_with_foreign_ca_is_refused_by_client() {
    let ca = new_ca("cluster").unwrap();
    let rogue_ca = new_ca("rogue").unwrap();
    let (a, rogue) = (endpoint(&ca, "node-a"), endpoint(&rogue_ca, "rogue"));
    let rogue_addr = addr(&rogue);
    let server = tokio::spawn(async move { accept_one(&rogue).await });

    let err = a.connect(rogue_addr).await.unwrap_err();
    assert!(matches!(err, TransportError::Handshake { .. }), "{err:?}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    let server_side = server.await.unwrap();
    assert!(server_side.is_err(), "the rogue server must not get a connection");
}

#[tokio::test]
async fn client_with_foreign_ca_is_refused_by_server() {
    let ca = new_ca("cluster").unwrap();
    let rogue_ca = new_ca("rogue").unwrap();
    let b = endpoint(&ca, "node-b");
    let b_addr = addr(&b);
    let server = tokio::spawn(async move { accept_one(&b).await });

    // The rogue's certificate comes from another CA, but it trusts the
    // cluster CA, so it does not abort first: b must be the one refusing.
    let rogue_node = issue(&rogue_ca, "rogue", &[]).unwrap();
    let rogue_id = Identity::from_pem(&ca.cert_pem, &rogue_node.cert_pem, &rogue_node.key_pem).unwrap();
    let rogue = Endpoint::bind("127.0.0.1:0".parse().unwrap(), &rogue_id, &tuning()).unwrap();
    let client_side = rogue.connect(b_addr).await;

    let err = server.await.unwrap().unwrap_err();
    assert!(matches!(err, TransportError::Handshake { .. }), "{err:?}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // In TLS 1.3 the client finishes its half of the handshake before the
    // server checks the client certificate, so the client may see the
    // refusal only as an immediate close with the TLS alert.
    match client_side {
        Err(e) => assert!(matches!(e, TransportError::Handshake { .. }), "{e:?}"),
        Ok(conn) => {
            let reason = tokio::time::timeout(LONG, conn.closed()).await.expect("closed by b");
            assert!(reason.to_string().contains("certificate"), "{reason}");
            let err = conn.open_bi().await.expect_err("no streams on a refused connection");
            assert!(err.to_string().contains("certificate"), "{err}");
        }
    }
}

#[tokio::test]
async fn connections_are_reused_until_closed() {
    let ca = new_ca("cluster").unwrap();
    let (a, b) = (endpoint(&ca, "node-a"), endpoint(&ca, "node-b"));
    let b_addr = addr(&b);
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(incoming) = b.accept().await {
            held.push(incoming.handshake().await.unwrap());
        }
        held.len()
    });

    let first = a.connect(b_addr).await.unwrap();
    let again = a.connect(b_addr).await.unwrap();
    assert_eq!(first.stable_id(), again.stable_id(), "second connect must reuse the connection");
    // Concurrent callers share one dial too.
    let (x, y) = tokio::join!(a.connect(b_addr), a.connect(b_addr));
    assert_eq!(x.unwrap().stable_id(), first.stable_id());
    assert_eq!(y.unwrap().stable_id(), first.stable_id());

    first.close(0u32.into(), b"test");
    let fresh = a.connect(b_addr).await.unwrap();
    assert_ne!(fresh.stable_id(), first.stable_id(), "a closed connection must be replaced");
    assert_eq!(a.connect(b_addr).await.unwrap().stable_id(), fresh.stable_id());
    a.close(Duration::from_secs(1)).await;
    server.abort();
}

/// Two endpoints and one connection between them: (client endpoint, the
/// server's side of the connection, the client's side, server endpoint).
/// The endpoints are returned so they live as long as the test.
async fn pair() -> (Endpoint, PeerConnection, quinn::Connection, Endpoint) {
    let ca = new_ca("cluster").unwrap();
    let (a, b) = (endpoint(&ca, "node-a"), endpoint(&ca, "node-b"));
    let b_addr = addr(&b);
    let (conn, peer) = tokio::join!(a.connect(b_addr), accept_one(&b));
    (a, peer.unwrap(), conn.unwrap(), b)
}

#[tokio::test]
async fn stalled_stream_hits_the_deadline() {
    let (_a, peer, conn, _b) = pair().await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&[7u8; 10]).await.unwrap(); // 10 of the 100 promised bytes, then silence
    let (_send, mut recv) = peer.connection.accept_bi().await.unwrap();
    let start = Instant::now();
    let err = recv_exact(&mut recv, 100, Duration::from_millis(300), &RateLimiter::unlimited()).await.unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
}

#[tokio::test]
async fn early_end_is_a_short_read() {
    let (_a, peer, conn, _b) = pair().await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&[7u8; 10]).await.unwrap();
    send.finish().unwrap();
    let (_send, mut recv) = peer.connection.accept_bi().await.unwrap();
    let err = recv_exact(&mut recv, 100, LONG, &RateLimiter::unlimited()).await.unwrap_err();
    assert!(matches!(err, TransportError::ShortRead { expected: 100, got: 10 }), "{err:?}");
}

#[tokio::test]
async fn rate_limits_slow_both_directions() {
    let (_a, peer, conn, _b) = pair().await;
    const LEN: usize = 1 << 20;
    // 4 MiB/s with a 64 KiB burst: 1 MiB takes at least ~0.23 s each way.
    let upload = RateLimiter::new(4 << 20, 64 << 10);
    let download = RateLimiter::new(4 << 20, 64 << 10);
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let start = Instant::now();
    let sender = async {
        send_bytes(&mut send, [Bytes::from(vec![1u8; LEN])], &upload, LONG).await.unwrap();
        send.finish().unwrap();
        start.elapsed()
    };
    let receiver = async {
        let (_send, mut recv) = peer.connection.accept_bi().await.unwrap();
        recv_exact(&mut recv, LEN, LONG, &download).await.unwrap();
        start.elapsed()
    };
    let (sent_in, received_in) = tokio::join!(sender, receiver);
    let floor = Duration::from_millis(230);
    assert!(sent_in >= floor, "upload limit ignored: {sent_in:?}");
    assert!(received_in >= floor && received_in < Duration::from_secs(5), "{received_in:?}");

    // The download limit alone paces too.
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let start = Instant::now();
    send_bytes(&mut send, [Bytes::from(vec![2u8; LEN])], &RateLimiter::unlimited(), LONG).await.unwrap();
    send.finish().unwrap();
    let (_send, mut recv) = peer.connection.accept_bi().await.unwrap();
    recv_exact(&mut recv, LEN, LONG, &RateLimiter::new(4 << 20, 64 << 10)).await.unwrap();
    assert!(start.elapsed() >= floor, "download limit ignored: {:?}", start.elapsed());
}

#[tokio::test]
async fn silent_peer_hits_the_connect_deadline() {
    let ca = new_ca("cluster").unwrap();
    let quick = TransportTuning { connect_timeout: Duration::from_millis(300), ..TransportTuning::loopback() };
    let a = Endpoint::bind("127.0.0.1:0".parse().unwrap(), &identity(&ca, "node-a"), &quick).unwrap();
    // A socket that receives and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let err = a.connect(silent.local_addr().unwrap()).await.unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
}
