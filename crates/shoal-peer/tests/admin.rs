//! The admin endpoint's refusals: requests addressed to unknown host names
//! (DNS rebinding), `/api/v1/*` from beyond loopback, prewarm jobs over
//! their limits; and a status report that names no repository.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use hyper::service::Service as _;
use hyper_util::service::TowerToHyperService;
use shoal_peer::admin::{self, Admin};
use shoal_testkit::random_bytes;
use support::{Daemon, Origin};

const MIB: usize = 1 << 20;

async fn get_with_host(url: &str, host: &str) -> (u16, String) {
    let r = reqwest::Client::new().get(url).header("Host", host).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_addressed_to_unknown_names_are_refused() {
    let o = Origin::start().await;
    let daemon = Daemon::start(&o.front, |cfg, _| cfg.admin.hosts = vec!["scrape.example".into()]).await;
    let port = daemon.admin.rsplit(':').next().unwrap().to_owned();
    for path in ["/metrics", "/api/v1/status", "/api/v1/prewarm/pw-1"] {
        let url = format!("{}{path}", daemon.admin);
        for host in ["rebind.attacker.example".to_owned(), format!("rebind.attacker.example:{port}")] {
            let (code, body) = get_with_host(&url, &host).await;
            assert_eq!(code, 403, "{path} for Host {host}");
            let e = error_of(&body);
            assert!(e.contains("admin_hosts") && e.contains("DNS rebinding"), "{e}");
        }
    }
    for host in [format!("127.0.0.1:{port}"), format!("[::1]:{port}"), "localhost".into(), "scrape.example".into()] {
        let (code, body) = get_with_host(&format!("{}/metrics", daemon.admin), &host).await;
        assert_eq!(code, 200, "Host {host}: {body}");
    }
    // Probes answer whatever the name.
    for path in ["/healthz", "/readyz"] {
        let (code, _) = get_with_host(&format!("{}{path}", daemon.admin), "probe.example").await;
        assert_eq!(code, 200, "{path}");
    }
}

/// The admin router of a fresh store, called as from `peer`.
async fn call_as(peer: &str, method: &str, path: &str, body: &str) -> (StatusCode, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = shoal_storage::Store::open(shoal_storage::StoreConfig::new(dir.path().join("store"))).unwrap();
    let metrics = shoal_peer::Metrics::unregistered();
    let tasks = shoal_peer::task::TaskManager::new(store.clone(), metrics.clone(), Default::default(), None);
    let router = admin::router(Admin {
        registry: Arc::new(Default::default()),
        store,
        tasks,
        metrics,
        ready: Arc::new(AtomicBool::new(true)),
        swarm: None,
        hosts: Default::default(),
    });
    let peer: SocketAddr = peer.parse().unwrap();
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "10.0.0.5:65002")
        .header("Content-Type", "application/json")
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    let resp = TowerToHyperService::new(router).call(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn the_api_answers_loopback_only_and_metrics_the_network() {
    let job = r#"{"spec":{"images":["nginx:1.27"],"platforms":[]},"selector":"all"}"#;
    for peer in ["10.0.0.7:40000", "[fd00::7]:40000", "[::ffff:10.0.0.7]:40000"] {
        for (method, path, body) in
            [("GET", "/api/v1/status", ""), ("POST", "/api/v1/prewarm", job), ("GET", "/api/v1/prewarm/pw-1", "")]
        {
            let (status, text) = call_as(peer, method, path, body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} from {peer}");
            let e = error_of(&text);
            assert!(e.contains("the node itself") && e.contains("127.0.0.1"), "{e}");
        }
        assert_eq!(call_as(peer, "GET", "/metrics", "").await.0, StatusCode::OK, "{peer}");
        assert_eq!(call_as(peer, "GET", "/readyz", "").await.0, StatusCode::OK, "{peer}");
    }
    for peer in ["127.0.0.1:40000", "[::1]:40000", "[::ffff:127.0.0.1]:40000"] {
        assert_eq!(call_as(peer, "GET", "/api/v1/status", "").await.0, StatusCode::OK, "{peer}");
        // Past the guard: this daemon is in no swarm.
        assert_eq!(call_as(peer, "POST", "/api/v1/prewarm", job).await.0, StatusCode::CONFLICT, "{peer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prewarm_jobs_over_their_limits_are_refused_naming_the_limit() {
    let o = Origin::start().await;
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let url = format!("{}/api/v1/prewarm", daemon.admin);
    let post = |body: String, content_type: &'static str| {
        let req = reqwest::Client::new().post(&url).header("Content-Type", content_type).body(body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let job = |images: usize, platforms: usize, labels: usize| {
        serde_json::json!({
            "spec": {
                "images": (0..images).map(|i| format!("nginx:{i}")).collect::<Vec<_>>(),
                "platforms": (0..platforms).map(|i| format!("linux/a{i}")).collect::<Vec<_>>(),
            },
            "selector": {"labels": (0..labels).map(|i| (format!("k{i}"), "v")).collect::<Vec<_>>()},
        })
        .to_string()
    };

    let (code, body) = post(format!("{{\"pad\":\"{}\"}}", "x".repeat(100 << 10)), "application/json").await;
    assert_eq!(code, 413);
    assert!(error_of(&body).contains("65536 bytes"), "{body}");
    for (body, says) in [
        (job(65, 1, 1), "65 images; a job may name at most 64"),
        (job(1, 17, 1), "17 platforms; a job may name at most 16"),
        (job(1, 1, 17), "17 selector labels; a job may name at most 16"),
    ] {
        let (code, text) = post(body, "application/json").await;
        assert_eq!(code, 400);
        assert!(error_of(&text).contains(says), "{text}");
    }
    let (code, text) = post(job(1, 1, 1), "text/plain").await;
    assert_eq!(code, 415, "{text}");
    // Within every limit the job gets as far as the swarm (there is none).
    let (code, text) = post(job(64, 16, 16), "application/json").await;
    assert_eq!(code, 409, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_lists_downloads_by_digest_not_repository() {
    let o = Origin::start().await;
    let d = o.blob("secret-team/payroll-app", random_bytes(4 * MIB, 8)).await;
    o.front.set_rate_limit(Some(MIB as u64));
    let daemon = Daemon::start(&o.front, |_, _| {}).await;
    let url = daemon.blob_url("secret-team/payroll-app", &d);
    let client = tokio::spawn(async move { support::get_all(&url, None).await });
    let t0 = tokio::time::Instant::now();
    let status = loop {
        let s = daemon.status().await;
        if s["downloads"][0]["size"].is_u64() {
            break s;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "no download showed up: {s}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let dl = &status["downloads"][0];
    assert_eq!(dl["digest"], d.as_str());
    assert_eq!(dl["registry"], o.front.host().as_str());
    assert_eq!(dl["size"], 4 * MIB);
    assert!(!status.to_string().contains("payroll"), "the repository is in the report: {status}");
    o.front.set_rate_limit(None);
    client.abort();
}
