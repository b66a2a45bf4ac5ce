//! The mirror's front door: connection limits against slow and hoarding
//! clients, the drain on shutdown, and the requests it refuses before any
//! content handler runs (over-long URLs, malformed or unlisted `?ns=`), and
//! `/v2/` answered as the origin answers it.

mod support;

use std::time::Duration;

use prometheus_client::registry::Registry as PromRegistry;
use shoal_origin::{RegistryConfig, Upstreams, UpstreamsConfig};
use shoal_peer::DaemonConfig;
use shoal_storage::{Store, StoreConfig};
use shoal_testkit::client::basic_auth_value;
use shoal_testkit::{CountingFront, Registry, random_bytes};
use support::{Daemon, Origin, get_all, sample};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const MIB: usize = 1 << 20;

fn addr(url: &str) -> &str {
    url.strip_prefix("http://").unwrap()
}

/// Read until the end of a response head; the head.
async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a response head: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a response head within 10 s");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Wait (at most `limit`) for the server to close the connection; how long
/// it took. Bytes still arriving are read and dropped.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut chunk = vec![0u8; 64 << 10];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the connection was still open after {limit:?}"));
    t0.elapsed()
}

async fn head_v2(s: &mut TcpStream) -> String {
    s.write_all(b"HEAD /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    read_head(s).await
}

fn tight(cfg: &mut DaemonConfig) {
    cfg.mirror.http.header_read_timeout = Duration::from_millis(400);
    cfg.mirror.http.idle_timeout = Duration::from_millis(1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn headers_trickled_byte_by_byte_are_cut_at_the_header_deadline() {
    let o = Origin::start().await;
    let daemon = Daemon::start(&o.front, |cfg, _| tight(cfg)).await;
    let mut s = TcpStream::connect(addr(&daemon.mirror)).await.unwrap();
    let (mut rd, mut wr) = s.split();
    // A byte every 50 ms: bytes keep coming, the headers never end.
    let trickle = async {
        for b in b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".iter().cycle().take(200) {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let t0 = Instant::now();
    let mut one = [0u8; 1];
    let closed = tokio::select! {
        r = rd.read(&mut one) => matches!(r, Ok(0) | Err(_)),
        _ = trickle => false,
    };
    let took = t0.elapsed();
    assert!(closed, "the server answered or kept the connection through 10 s of trickled headers");
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(3), "closed after {took:?}");
    let m = daemon.metrics().await;
    assert_eq!(sample(&m, "shoal_http_connections_closed_total{listener=\"mirror\",reason=\"header_timeout\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_limit_not_the_header_deadline() {
    let o = Origin::start().await;
    let daemon = Daemon::start(&o.front, |cfg, _| tight(cfg)).await;
    let mut s = TcpStream::connect(addr(&daemon.mirror)).await.unwrap();
    assert!(head_v2(&mut s).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header deadline: still open, still served.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(head_v2(&mut s).await.starts_with("HTTP/1.1 200"));
    let took = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(1400), "closed after {took:?}, before the 1.5 s idle limit");
    let m = daemon.metrics().await;
    assert_eq!(sample(&m, "shoal_http_connections_closed_total{listener=\"mirror\",reason=\"idle\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_over_the_limit_is_closed_at_once_and_a_freed_slot_is_served() {
    let o = Origin::start().await;
    let daemon = Daemon::start(&o.front, |cfg, _| cfg.mirror.http.max_connections = 2).await;
    let open = || async {
        let m = daemon.metrics().await;
        sample(&m, "shoal_http_connections{listener=\"mirror\"}")
    };
    let mut a = TcpStream::connect(addr(&daemon.mirror)).await.unwrap();
    let b = TcpStream::connect(addr(&daemon.mirror)).await.unwrap();
    let t0 = Instant::now();
    while open().await < 2.0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "the daemon never counted two connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = TcpStream::connect(addr(&daemon.mirror)).await.unwrap();
    let _ = c.write_all(b"HEAD /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    let took = closed_within(&mut c, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "the third connection waited {took:?}");
    // The two within the limit are served.
    assert!(head_v2(&mut a).await.starts_with("HTTP/1.1 200"));
    drop(b);
    while open().await > 1.0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "the closed connection was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut d = TcpStream::connect(addr(&daemon.mirror)).await.unwrap();
    assert!(head_v2(&mut d).await.starts_with("HTTP/1.1 200"));
    let m = daemon.metrics().await;
    assert_eq!(sample(&m, "shoal_http_connections_closed_total{listener=\"mirror\",reason=\"over_limit\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_a_blob_is_cut() {
    let o = Origin::start().await;
    let size = 48 * MIB;
    let d = o.blob("front/big", random_bytes(size, 3)).await;
    let daemon = Daemon::start(&o.front, |cfg, _| cfg.mirror.http.client_stall = Duration::from_millis(500)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr(&daemon.mirror).parse().unwrap()).await.unwrap();
    let req = format!("GET /v2/front/big/blobs/{d} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    assert!(read_head(&mut s).await.starts_with("HTTP/1.1 200"));
    // Read nothing for a while: the socket buffers fill and stay full.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut got = 0usize;
    let mut chunk = vec![0u8; 1 << 20];
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            got += n;
        }
    })
    .await
    .expect("the cut connection ends");
    assert!(got < size / 2, "the client got {got} of {size} bytes: the stalled response was not cut");
    let m = daemon.metrics().await;
    assert_eq!(sample(&m, "shoal_http_connections_closed_total{listener=\"mirror\",reason=\"client_stall\"}"), 1.0);
}

/// A blob, a daemon, and a client streaming it slowly from a rate-limited
/// origin when the daemon is told to stop.
async fn stop_mid_response(grace: Duration) -> (Result<Vec<u8>, String>, Vec<u8>, Duration, bool) {
    let o = Origin::start().await;
    let data = random_bytes(4 * MIB, 4);
    let d = o.blob("front/drain", data.clone()).await;
    o.front.set_rate_limit(Some(4 * MIB as u64));
    let daemon = Daemon::start(&o.front, |cfg, _| cfg.shutdown_grace = grace).await;
    let url = daemon.blob_url("front/drain", &d);
    let mirror = addr(&daemon.mirror).to_owned();
    let client = tokio::spawn(async move { get_all(&url, None).await.map(|r| r.2) });
    let t0 = Instant::now();
    while o.front.blob_bytes(&d) < MIB as u64 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the download never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t0 = Instant::now();
    let stopping = tokio::spawn(daemon.stop());
    // The listener closes at once (allow a loaded machine a second).
    let mut refused = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if TcpStream::connect(&mirror).await.is_err() {
            refused = true;
            break;
        }
    }
    let body = client.await.unwrap();
    stopping.await.unwrap();
    (body, data, t0.elapsed(), refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_shutdown_a_response_in_flight_finishes_within_the_grace_and_new_connections_are_refused() {
    let (body, data, took, refused) = stop_mid_response(Duration::from_secs(10)).await;
    assert!(refused, "a new connection was accepted while draining");
    assert!(body.expect("the response finished") == data, "the drained response is the whole blob");
    assert!(took < Duration::from_secs(9), "stopping took {took:?}: it waited for more than the response");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_shutdown_a_response_longer_than_the_grace_is_cut() {
    let (body, data, took, _) = stop_mid_response(Duration::from_millis(300)).await;
    assert!(body.is_err() || body.unwrap() != data, "a response cut by shutdown must not look complete");
    assert!(took < Duration::from_secs(3), "stopping took {took:?} with a 300 ms grace");
}

/// The OCI error code and message of a response body.
fn oci(body: &[u8]) -> (String, String) {
    let v: serde_json::Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
    (v["errors"][0]["code"].as_str().unwrap().to_owned(), v["errors"][0]["message"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_long_urls_get_414_with_an_oci_body() {
    let o = Origin::start().await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let long = format!("{}/v2/{}/manifests/latest", daemon.mirror, "a".repeat(5000));
    let (code, _, body) = get_all(&long, None).await.unwrap();
    assert_eq!(code, 414);
    let (err, msg) = oci(&body);
    assert_eq!(err, "NAME_INVALID");
    assert!(msg.contains("at most 4096"), "{msg}");
    // The query counts too.
    let long_query = format!("{}/v2/library/x/manifests/latest?ns=docker.io&pad={}", daemon.mirror, "p".repeat(4096));
    assert_eq!(get_all(&long_query, None).await.unwrap().0, 414);
    // Just under the limit, the name itself is what is wrong.
    let under = format!("{}/v2/{}/manifests/latest", daemon.mirror, "a".repeat(4000));
    let (code, _, body) = get_all(&under, None).await.unwrap();
    assert_eq!((code, oci(&body).0.as_str()), (400, "NAME_INVALID"));
    assert_eq!(o.front.requests().len(), 0, "nothing reached the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_ns_is_the_clients_400_not_a_502() {
    let o = Origin::start().await;
    let data = random_bytes(1000, 5);
    let d = o.blob("front/ns", data.clone()).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    // Cached first, so the refusal cannot come from a failed origin fetch.
    assert_eq!(get_all(&daemon.blob_url("front/ns", &d), None).await.unwrap().2, data);
    let t0 = Instant::now();
    while daemon.status().await["store"]["complete_blobs"] != 1 {
        assert!(t0.elapsed() < Duration::from_secs(10), "the blob was never recorded complete");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for ns in ["a%2Fb", "u%40host", "https%3A%2F%2Fx", "host%3A99999", "a%20b"] {
        for path in ["/v2/".to_owned(), "/v2/front/ns/manifests/v1".into(), format!("/v2/front/ns/blobs/{d}")] {
            let url = format!("{}{path}?ns={ns}", daemon.mirror);
            let (code, _, body) = get_all(&url, None).await.unwrap();
            assert_eq!(code, 400, "{url}");
            let (err, msg) = oci(&body);
            assert_eq!(err, "NAME_INVALID", "{url}");
            assert!(msg.contains("host[:port]"), "{msg}");
        }
    }
}

/// A daemon whose upstreams are exactly `upstreams`.
struct Custom {
    mirror: String,
    admin: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn custom(upstreams: UpstreamsConfig) -> Custom {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path().join("store"))).unwrap();
    let mirror_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mirror = format!("http://{}", mirror_l.local_addr().unwrap());
    let admin = format!("http://{}", admin_l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let upstreams = Upstreams::new(upstreams).unwrap();
    tokio::spawn(shoal_peer::run(
        DaemonConfig::default(),
        store,
        upstreams,
        PromRegistry::default(),
        mirror_l,
        admin_l,
        None,
        async move {
            let _ = rx.await;
        },
    ));
    Custom { mirror, admin, _dir: dir, _stop: tx }
}

fn listed(front: &CountingFront) -> (String, RegistryConfig) {
    (front.host(), RegistryConfig { url: Some(front.url().parse().unwrap()), ..RegistryConfig::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unlisted_registry_is_refused_with_a_4xx_naming_allow_unlisted() {
    let o = Origin::start().await;
    let data = random_bytes(1000, 7);
    let d = o.blob("front/unlisted", data.clone()).await;
    let daemon = custom(UpstreamsConfig {
        default_registry: o.front.host(),
        registries: [listed(&o.front)].into_iter().collect(),
        allow_unlisted: false,
        ..UpstreamsConfig::default()
    })
    .await;
    // Cached through the listed registry first: the refusal holds for
    // content in the store too.
    let cached = format!("/v2/front/unlisted/blobs/{d}");
    assert_eq!(get_all(&format!("{}{cached}", daemon.mirror), None).await.unwrap().2, data);
    let t0 = Instant::now();
    loop {
        let status: serde_json::Value =
            reqwest::get(format!("{}/api/v1/status", daemon.admin)).await.unwrap().json().await.unwrap();
        if status["store"]["complete_blobs"] == 1 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the blob was never recorded complete: {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for path in ["/v2/", "/v2/library/nginx/manifests/1.27", "/v2/library/nginx/tags/list", &cached] {
        let url = format!("{}{path}?ns=ghcr.io", daemon.mirror);
        let (code, _, body) = get_all(&url, None).await.unwrap();
        assert_eq!(code, 403, "{url}");
        let (err, msg) = oci(&body);
        assert_eq!(err, "DENIED");
        assert!(msg.contains("allow_unlisted") && msg.contains("ghcr.io"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_answers_as_the_origin_does() {
    let plain = Origin::start().await;
    let registry = Registry::builder().htpasswd(&[("alice", "s3cret")]).start().await.unwrap();
    let private = CountingFront::start(&registry.url()).await.unwrap();
    // The daemon holds credentials for the private registry: the ping must
    // not use them.
    let (name, mut cfg) = listed(&private);
    cfg.username = Some("alice".into());
    cfg.password = Some("s3cret".into());
    let daemon = custom(UpstreamsConfig {
        default_registry: plain.front.host(),
        registries: [listed(&plain.front), (name.clone(), cfg)].into_iter().collect(),
        ..UpstreamsConfig::default()
    })
    .await;
    let client = reqwest::Client::new();
    let ping = |method: reqwest::Method, ns: Option<&str>, auth: Option<(&str, &str)>| {
        let mut url = format!("{}/v2/", daemon.mirror);
        if let Some(ns) = ns {
            url.push_str(&format!("?ns={ns}"));
        }
        let mut req = client.request(method, url);
        if let Some((u, p)) = auth {
            req = req.header("Authorization", basic_auth_value(u, p));
        }
        async move {
            let r = req.send().await.unwrap();
            let h = r.headers().clone();
            (r.status().as_u16(), h, r.text().await.unwrap())
        }
    };

    // An open origin: 200 {}.
    let (code, h, body) = ping(reqwest::Method::GET, None, None).await;
    assert_eq!((code, body.as_str()), (200, "{}"));
    assert_eq!(h["docker-distribution-api-version"], "registry/2.0");
    assert!(plain.front.requests().iter().any(|r| r.method == "GET" && r.path == "/v2/"), "the origin was asked");

    // A private origin, asked anonymously: its challenge, unchanged.
    let (code, h, body) = ping(reqwest::Method::GET, Some(&name), None).await;
    assert_eq!(code, 401);
    assert!(h["www-authenticate"].to_str().unwrap().starts_with("Basic realm="), "{h:?}");
    assert_eq!(h["docker-distribution-api-version"], "registry/2.0");
    assert!(body.contains("UNAUTHORIZED"), "{body}");
    let asked = private.requests();
    assert!(asked.iter().all(|r| r.authorization.is_none()), "the daemon's credentials went out: {asked:?}");
    let (code, h, body) = ping(reqwest::Method::HEAD, Some(&name), None).await;
    assert_eq!((code, body.as_str()), (401, ""));
    assert!(h.contains_key("www-authenticate"));

    // With the client's credentials: passed on; good ones are a 200, bad ones
    // the origin's 401.
    let (code, _, body) = ping(reqwest::Method::GET, Some(&name), Some(("alice", "s3cret"))).await;
    assert_eq!((code, body.as_str()), (200, "{}"));
    let last = private.requests().pop().unwrap();
    assert_eq!(last.authorization.as_deref(), Some(basic_auth_value("alice", "s3cret").to_str().unwrap()));
    assert_eq!(ping(reqwest::Method::GET, Some(&name), Some(("alice", "wrong"))).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v2_is_200_when_the_origin_cannot_be_reached() {
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = gone.local_addr().unwrap().to_string();
    drop(gone);
    let cfg = RegistryConfig { url: Some(format!("http://{host}").parse().unwrap()), ..RegistryConfig::default() };
    let daemon = custom(UpstreamsConfig {
        default_registry: host.clone(),
        registries: [(host, cfg)].into_iter().collect(),
        ..UpstreamsConfig::default()
    })
    .await;
    let (code, _, body) = get_all(&format!("{}/v2/", daemon.mirror), None).await.unwrap();
    assert_eq!((code, body.as_slice()), (200, b"{}".as_slice()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_store_is_named_without_its_paths() {
    let o = Origin::start().await;
    let d = o.blob("front/store", random_bytes(1000, 6)).await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    // The blob directory becomes a file: creating the download's file fails.
    let blobs = daemon.dir.path().join("store").join("blobs").join("sha256");
    std::fs::remove_dir_all(&blobs).unwrap();
    std::fs::write(&blobs, b"not a directory").unwrap();
    let (code, _, body) = get_all(&daemon.blob_url("front/store", &d), None).await.unwrap();
    assert_eq!(code, 500);
    let (err, msg) = oci(&body);
    assert_eq!(err, "UNKNOWN");
    assert!(msg.contains("piece store") && msg.contains("daemon log"), "{msg}");
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(daemon.dir.path().to_str().unwrap()) && !text.contains("sha256/"), "{text}");
}
