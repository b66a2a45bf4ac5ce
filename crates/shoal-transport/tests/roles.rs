//! Certificate roles over 127.0.0.1: a server dialled as a scheduler must
//! hold a scheduler certificate (a node certificate gets no stream), and
//! what a peer's certificate says (host, role, IP SANs) reaches the server.

use std::time::Duration;

use shoal_transport::{
    CaBundle, Endpoint, Identity, NodeCert, Role, SCHEDULER_ROLE_NAME, TransportError, TransportTuning, issue,
    issue_scheduler, new_ca,
};

const LONG: Duration = Duration::from_secs(10);

fn endpoint(ca: &CaBundle, cert: &NodeCert) -> Endpoint {
    let identity = Identity::from_pem(&ca.cert_pem, &cert.cert_pem, &cert.key_pem).unwrap();
    let tuning = TransportTuning { connect_timeout: Duration::from_secs(5), ..TransportTuning::default() };
    Endpoint::bind("127.0.0.1:0".parse().unwrap(), &identity, &tuning).unwrap()
}

/// Serves `server` until the test ends, counting the streams peers open.
fn count_streams(server: Endpoint) -> tokio::sync::watch::Receiver<usize> {
    let (tx, rx) = tokio::sync::watch::channel(0);
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let Ok(conn) = incoming.handshake().await else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                while conn.connection.accept_bi().await.is_ok() {
                    tx.send_modify(|n| *n += 1);
                }
            });
        }
    });
    rx
}

#[tokio::test]
async fn a_node_certificate_cannot_answer_as_the_scheduler() {
    let ca = new_ca("cluster").unwrap();
    let client = endpoint(&ca, &issue(&ca, "node-a", &[]).unwrap());
    let impostor = endpoint(&ca, &issue(&ca, "node-b", &[]).unwrap());
    let impostor_addr = impostor.local_addr().unwrap();
    let streams = count_streams(impostor);

    let err = client.connect_scheduler(impostor_addr).await.unwrap_err();
    assert!(matches!(&err, TransportError::NotScheduler { host: Some(h), .. } if h == "node-b"), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&impostor_addr.to_string()) && msg.contains("node-b"), "{msg}");
    assert!(msg.contains(SCHEDULER_ROLE_NAME) && msg.contains("shoal certs scheduler"), "{msg}");
    // The same server is still a good peer: a plain connection works.
    client.connect(impostor_addr).await.expect("a node is still a cluster member");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*streams.borrow(), 0, "the impostor got a stream");
}

#[tokio::test]
async fn a_scheduler_certificate_answers_as_the_scheduler() {
    let ca = new_ca("cluster").unwrap();
    let client = endpoint(&ca, &issue(&ca, "node-a", &[]).unwrap());
    let scheduler = endpoint(&ca, &issue_scheduler(&ca, "shoal-scheduler", &[]).unwrap());
    let scheduler_addr = scheduler.local_addr().unwrap();
    let mut streams = count_streams(scheduler);

    let conn = client.connect_scheduler(scheduler_addr).await.expect("a scheduler certificate is accepted");
    assert_eq!(shoal_transport::peer_host(&conn).as_deref(), Some("shoal-scheduler"));
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(b"hi").await.unwrap();
    tokio::time::timeout(LONG, streams.wait_for(|n| *n == 1)).await.expect("the stream arrives").unwrap();
}

#[tokio::test]
async fn the_server_learns_the_clients_role_and_ip_sans() {
    let ca = new_ca("cluster").unwrap();
    let server = endpoint(&ca, &issue(&ca, "node-a", &[]).unwrap());
    let server_addr = server.local_addr().unwrap();
    let node = endpoint(&ca, &issue(&ca, "node-b", &["10.0.0.7".into(), "::ffff:10.0.0.8".into()]).unwrap());
    let sched = endpoint(&ca, &issue_scheduler(&ca, "shoal-scheduler", &[]).unwrap());

    let accepted = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let conn = server.accept().await.unwrap().handshake().await.unwrap();
            seen.push((conn.host.clone(), conn.role, conn.ips.clone()));
        }
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        seen
    });
    let _a = node.connect(server_addr).await.unwrap();
    let _b = sched.connect(server_addr).await.unwrap();
    let seen = tokio::time::timeout(LONG, accepted).await.unwrap().unwrap();
    let ips = vec!["10.0.0.7".parse().unwrap(), "10.0.0.8".parse().unwrap()];
    assert_eq!(
        seen,
        vec![
            (Some("node-b".to_string()), Role::Node, ips),
            (Some("shoal-scheduler".to_string()), Role::Scheduler, vec![]),
        ]
    );
}
