//! Harbor's preheat, replayed: the requests Harbor's "Dragonfly" provider
//! driver (goharbor/harbor `src/pkg/p2p/preheat/provider/dragonfly.go`,
//! through `provider/client/http_client.go`) sends, byte for byte, to a
//! `shoal scheduler --harbor-listen` with three `shoal daemon --swarm`
//! nodes and Debian's docker-registry behind a token server (Harbor's
//! registry hands out the same kind of short-lived pull token).
//!
//! Checked: the job goes PENDING -> SUCCESS; the result parses as Harbor
//! parses it, with one success task per blob and node; every node holds
//! every blob (digests match); the origin sent each blob about once; the
//! token shows in no log. A job whose token cannot read the manifest ends
//! FAILURE with the registry's reason; `single_seed_peer` warms one node;
//! wrong provider credentials get 401; bad bodies 400; unknown ids 404; the
//! API refuses to start off loopback without authentication; with
//! `--harbor-tls-cert`/`--harbor-tls-key` it answers HTTPS only, and one of
//! the two alone is refused.

use std::time::Duration;

use shoal_core::Digest;
use shoal_e2e::{Origin, Pki, complete_blobs, swarm_toml_at};
use shoal_testkit::client::basic_auth_value;
use shoal_testkit::{ChildGuard, Registry, ShoalDaemon, TokenServer, free_port, shoal_bin, wait_http_status};

const USER: &str = "harbor-admin";
const PASS: &str = "s3cret";
/// The token Harbor's instance is configured with (auth mode OAUTH).
const PROVIDER_TOKEN: &str = "provider-token-5d1e";

/// A `shoal scheduler` with the Harbor API on.
struct Scheduler {
    child: ChildGuard,
    quic: String,
    metrics: String,
    harbor: String,
    _dir: tempfile::TempDir,
}

impl Scheduler {
    /// Bearer-authenticated with [`PROVIDER_TOKEN`].
    async fn start(pki: &Pki, name: &str) -> Scheduler {
        Self::start_with(pki, name, "bearer", &format!("{PROVIDER_TOKEN}\n")).await
    }

    /// With `--harbor-auth mode` and a credentials file holding `creds`.
    async fn start_with(pki: &Pki, name: &str, mode: &str, creds_text: &str) -> Scheduler {
        Self::start_args(pki, name, mode, creds_text, &[]).await
    }

    /// As [`Scheduler::start_with`], plus `extra` args; `harbor` is an
    /// `https://` base when `extra` holds the TLS flags.
    async fn start_args(pki: &Pki, name: &str, mode: &str, creds_text: &str, extra: &[&str]) -> Scheduler {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("harbor-credentials");
        std::fs::write(&creds, creds_text).unwrap();
        let quic = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let harbor = format!("127.0.0.1:{}", free_port());
        let mut cmd = std::process::Command::new(shoal_bin().unwrap());
        cmd.args(["scheduler", "--listen", &quic, "--metrics-listen", &metrics, "--certs-dir"])
            .arg(pki.scheduler_certs(name))
            .args(["--harbor-listen", &harbor, "--harbor-auth", mode, "--harbor-credentials-file"])
            .arg(&creds)
            .args(extra)
            .env("RUST_LOG", "debug");
        let mut child = ChildGuard::spawn(name, cmd, dir.path()).unwrap();
        wait_http_status(&format!("http://{metrics}/readyz"), Duration::from_secs(20), |s| s == 200, Some(&mut child))
            .await
            .unwrap();
        let scheme = if extra.contains(&"--harbor-tls-cert") { "https" } else { "http" };
        Scheduler { child, quic, metrics, harbor: format!("{scheme}://{harbor}"), _dir: dir }
    }

    /// Waits until `n` hosts are registered.
    async fn wait_hosts(&self, n: usize) {
        let want = format!("shoal_scheduler_hosts {n}");
        for _ in 0..200 {
            let text = reqwest::get(format!("http://{}/metrics", self.metrics)).await.unwrap().text().await.unwrap();
            if text.lines().any(|l| l == want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{n} hosts never registered");
    }
}

/// Harbor's HTTP client: Go's net/http with the driver's headers.
fn harbor_client() -> reqwest::Client {
    reqwest::Client::builder().user_agent("Go-http-client/1.1").no_proxy().build().unwrap()
}

/// `dragonfly.go` GetHealth: `GET /healthy` with `Accept: application/json`.
async fn healthy(base: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = harbor_client().get(format!("{base}/healthy")).header("Accept", "application/json");
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap()
}

/// `dragonfly.go` Preheat: the body `json.Marshal` makes of
/// `dragonflyCreateJobRequest` (Go field order, zero values included).
fn preheat_body(url: &str, registry_token: &str, scope: &str) -> String {
    format!(
        r#"{{"type":"preheat","args":{{"type":"image","url":"{url}","tag":"","filtered_query_params":"","headers":{{"Authorization":"Bearer {registry_token}"}},"scope":"{scope}","concurrent_count":0,"timeout":0}},"scheduler_cluster_ids":[1]}}"#
    )
}

/// `http_client.go` post: Content-Type and Accept JSON, then the auth handler.
async fn post_job(base: &str, auth: &str, body: String) -> reqwest::Response {
    harbor_client()
        .post(format!("{base}/oapi/v1/jobs"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .header("Authorization", auth)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// `dragonfly.go` CheckProgress: `GET /oapi/v1/jobs/{id}`.
async fn get_job(base: &str, auth: &str, id: &str) -> reqwest::Response {
    harbor_client()
        .get(format!("{base}/oapi/v1/jobs/{id}"))
        .header("Accept", "application/json")
        .header("Authorization", auth)
        .send()
        .await
        .unwrap()
}

/// Submits a preheat and polls as Harbor does (faster) until it leaves
/// PENDING; returns the final body.
async fn preheat(base: &str, body: String) -> serde_json::Value {
    let auth = format!("Bearer {PROVIDER_TOKEN}");
    assert_eq!(healthy(base, Some(&auth)).await.status(), 200);
    let resp = post_job(base, &auth, body).await;
    assert_eq!(resp.status(), 200, "Harbor takes any 2xx but 208");
    let created: serde_json::Value = resp.json().await.unwrap();
    // Harbor unmarshals `id` into an int and the times into time.Time.
    let id = created["id"].as_u64().unwrap_or_else(|| panic!("id is not an integer: {created}"));
    assert_eq!(created["state"], "PENDING", "{created}");
    for key in ["created_at", "updated_at"] {
        let t = created[key].as_str().unwrap();
        humantime_ok(t);
    }
    for _ in 0..240 {
        let job: serde_json::Value = get_job(base, &auth, &id.to_string()).await.json().await.unwrap();
        assert_eq!(job["id"].as_u64(), Some(id));
        if job["state"] != "PENDING" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("job {id} still PENDING after 120 s");
}

/// An RFC 3339 UTC time as Go's `time.Time` reads it (`2026-12-07T05:16:54Z`).
fn humantime_ok(t: &str) {
    let b = t.as_bytes();
    let shape = b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && t.chars().filter(char::is_ascii_digit).count() == 14;
    assert!(shape, "{t:?} is not RFC 3339");
}

/// A pull token for `repo` from the registry's token server, as Harbor's
/// core makes one for the preheat (pull only, one repository).
async fn pull_token(tokens: &TokenServer, repo: &str) -> String {
    let url = format!("{}?service={}&scope=repository:{repo}:pull", tokens.realm(), tokens.service());
    let resp =
        reqwest::Client::new().get(url).header("Authorization", basic_auth_value(USER, PASS)).send().await.unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// (hostname, url) of each success task, sorted.
fn success_tasks(job: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = job["result"]["job_states"][0]["results"][0]["success_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["ip"], "127.0.0.1", "{t}");
            (t["hostname"].as_str().unwrap().to_owned(), t["url"].as_str().unwrap().to_owned())
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn harbors_preheat_warms_every_node_through_the_swarm() {
    let tokens = TokenServer::start(&[(USER, PASS)]).await.unwrap();
    let registry = Registry::builder().token_auth(&tokens).start().await.unwrap();
    let origin = Origin::around(registry).await;
    let image = origin.push_image("e2e/app:v1", &[4 << 20, 2 << 20], Some((USER, PASS))).await;
    let one = origin.push_image("e2e/one:v1", &[1 << 20], Some((USER, PASS))).await;
    let pki = Pki::new();
    let sched = Scheduler::start(&pki, "scheduler-0").await;
    let mut nodes = Vec::new();
    for (i, zone) in ["a", "a", "b"].iter().enumerate() {
        let host = format!("node-{i}");
        let node = ShoalDaemon::builder()
            .default_registry(&origin.front.host())
            .registry(&origin.front.host(), &origin.front.url())
            .config_toml(&swarm_toml_at(&pki, &host, &[&sched.quic], &format!("zone = {zone:?}")))
            .start()
            .await
            .unwrap_or_else(|e| panic!("start {host}: {e}"));
        nodes.push(node);
    }
    sched.wait_hosts(3).await;
    let base = sched.harbor.clone();
    let registry_host = origin.front.host();

    // all_peers: every node, through the swarm.
    let token = pull_token(&tokens, "e2e/app").await;
    let url = format!("http://{registry_host}/v2/e2e/app/manifests/v1");
    let job = preheat(&base, preheat_body(&url, &token, "all_peers")).await;
    assert_eq!(job["state"], "SUCCESS", "{job:#}");
    let state = &job["result"]["job_states"][0];
    assert_eq!(state["error"], "", "{job:#}");
    assert_eq!(state["results"][0]["scheduler_cluster_id"], 1);
    assert_eq!(state["results"][0]["failure_tasks"].as_array().map(Vec::len), Some(0), "{job:#}");
    let blobs = image.blob_digests();
    let mut want: Vec<(String, String)> = (0..3)
        .flat_map(|i| blobs.iter().map(move |d| (format!("node-{i}"), d.clone())))
        .map(|(h, d)| (h, format!("http://{registry_host}/v2/e2e/app/blobs/{d}")))
        .collect();
    want.sort();
    assert_eq!(success_tasks(&job), want, "one success task per blob and node");

    // The origin sent about one copy for three nodes.
    let sent = origin.front.total_blob_bytes();
    assert!(
        sent as f64 <= 1.1 * image.blob_bytes() as f64,
        "origin sent {sent} bytes for a {}-byte image warmed on 3 nodes",
        image.blob_bytes()
    );
    // Every node holds every blob, with the right bytes: served from its
    // store (the origin sends nothing more) to a client with the token.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for node in &nodes {
        assert_eq!(complete_blobs(node, blobs.len() as u64).await, blobs.len() as u64);
        for d in &blobs {
            let resp = client
                .get(format!("{}/v2/e2e/app/blobs/{d}?ns={registry_host}", node.mirror_url()))
                .header("Authorization", format!("Bearer {token}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let got = Digest::sha256_of(&resp.bytes().await.unwrap());
            assert_eq!(got.to_string(), *d);
        }
    }
    assert_eq!(origin.front.total_blob_bytes(), sent, "the nodes served every blob from their stores");
    // The warmed private blobs are still refused to a client without credentials.
    let anon = client.get(format!("{}/v2/e2e/app/blobs/{}?ns={registry_host}", nodes[2].mirror_url(), blobs[0]));
    assert_eq!(anon.send().await.unwrap().status(), 401, "a warmed private blob needs credentials");

    // single_seed_peer: exactly one node.
    let token_one = pull_token(&tokens, "e2e/one").await;
    let url_one = format!("http://{registry_host}/v2/e2e/one/manifests/v1");
    let job = preheat(&base, preheat_body(&url_one, &token_one, "single_seed_peer")).await;
    assert_eq!(job["state"], "SUCCESS", "{job:#}");
    let hosts: std::collections::BTreeSet<String> = success_tasks(&job).into_iter().map(|t| t.0).collect();
    assert_eq!(hosts.len(), 1, "single_seed_peer warms one node: {job:#}");
    assert_eq!(success_tasks(&job).len(), one.blob_digests().len());

    // A token that cannot read the manifest: FAILURE with the registry's reason.
    let url_other = format!("http://{registry_host}/v2/e2e/one/manifests/v1");
    let job = preheat(&base, preheat_body(&url_other, &token, "all_peers")).await;
    assert_eq!(job["state"], "FAILURE", "{job:#}");
    let error = job["result"]["job_states"][0]["error"].as_str().unwrap();
    assert!(error.contains("refused the token Harbor sent for e2e/one") && error.contains("HTTP 401"), "{error}");

    // The registry token shows in no log.
    let logs = [sched.child.log_tail(1 << 22)].into_iter().chain(nodes.iter().map(|n| n.log_tail(1 << 22)));
    for log in logs {
        assert!(!log.contains(&token) && !log.contains(&token_one), "a log holds Harbor's token");
    }

    // Wrong or missing provider credentials: 401 with a message Harbor shows.
    let resp = post_job(&base, "Bearer wrong", preheat_body(&url, &token, "all_peers")).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"shoal harbor preheat\"");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("wants OAUTH credentials"), "{body}");
    assert_eq!(healthy(&base, None).await.status(), 401);

    // Clear refusals: bad JSON, unknown type, unknown or malformed id.
    let auth = format!("Bearer {PROVIDER_TOKEN}");
    let resp = post_job(&base, &auth, "{\"type\":".into()).await;
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("not JSON"), "{body}");
    let resp = post_job(&base, &auth, preheat_body(&url, &token, "all_peers").replace("\"image\"", "\"file\"")).await;
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("unknown preheat type \"file\""), "{body}");
    let resp = get_job(&base, &auth, "12345").await;
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("no preheat job 12345"), "{body}");
    assert_eq!(get_job(&base, &auth, "abc").await.status(), 400);
}

/// With two scheduler replicas, a Harbor job lives on the replica Harbor
/// reached, whichever replica its id's rendezvous hash names: the nodes
/// report to every replica, so every job finishes. (Four jobs: were the
/// reports routed by hash, each would reach the other replica half the
/// time and stay PENDING.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_finish_on_the_replica_harbor_reached() {
    let tokens = TokenServer::start(&[(USER, PASS)]).await.unwrap();
    let registry = Registry::builder().token_auth(&tokens).start().await.unwrap();
    let origin = Origin::around(registry).await;
    let image = origin.push_image("e2e/small:v1", &[256 << 10], Some((USER, PASS))).await;
    let pki = Pki::new();
    let replicas = [Scheduler::start(&pki, "scheduler-0").await, Scheduler::start(&pki, "scheduler-1").await];
    let quic: Vec<&str> = replicas.iter().map(|r| r.quic.as_str()).collect();
    let mut nodes = Vec::new();
    for host in ["node-0", "node-1"] {
        let node = ShoalDaemon::builder()
            .default_registry(&origin.front.host())
            .registry(&origin.front.host(), &origin.front.url())
            .config_toml(&swarm_toml_at(&pki, host, &quic, ""))
            .start()
            .await
            .unwrap_or_else(|e| panic!("start {host}: {e}"));
        nodes.push(node);
    }
    for r in &replicas {
        r.wait_hosts(2).await;
    }
    let token = pull_token(&tokens, "e2e/small").await;
    let url = format!("http://{}/v2/e2e/small/manifests/v1", origin.front.host());
    for round in 0..4 {
        let job = preheat(&replicas[0].harbor, preheat_body(&url, &token, "all_peers")).await;
        assert_eq!(job["state"], "SUCCESS", "round {round}: {job:#}");
        assert_eq!(success_tasks(&job).len(), 2 * image.blob_digests().len(), "round {round}: {job:#}");
    }
}

/// Harbor's other auth modes: BASIC sends Go's `SetBasicAuth` header; NONE
/// sends nothing, which a loopback listener without auth accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_and_none_auth_modes() {
    let pki = Pki::new();
    let sched = Scheduler::start_with(&pki, "scheduler-0", "basic", "harbor:pa55\n").await;
    let ok = basic_auth_value("harbor", "pa55");
    assert_eq!(healthy(&sched.harbor, Some(ok.to_str().unwrap())).await.status(), 200);
    let wrong = basic_auth_value("harbor", "nope");
    let resp = healthy(&sched.harbor, Some(wrong.to_str().unwrap())).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Basic realm=\"shoal harbor preheat\"");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("wants BASIC credentials"), "{body}");
    assert_eq!(healthy(&sched.harbor, Some(&format!("Bearer {PROVIDER_TOKEN}"))).await.status(), 401);

    let open = Scheduler::start_with(&pki, "scheduler-1", "none", "").await;
    assert_eq!(healthy(&open.harbor, None).await.status(), 200);
}

#[tokio::test]
async fn the_api_refuses_to_listen_off_loopback_without_authentication() {
    let pki = Pki::new();
    let out = tokio::process::Command::new(shoal_bin().unwrap())
        .args(["scheduler", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port()), "--certs-dir"])
        .arg(pki.scheduler_certs("scheduler-0"))
        .args(["--harbor-listen", "0.0.0.0:0"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out).await.expect("refused at once").unwrap();
    assert!(!out.status.success(), "the scheduler started with an open Harbor API");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without authentication") && stderr.contains("--harbor-auth"), "{stderr}");
}

/// A certificate for 127.0.0.1 from its own CA, written to `dir`; returns
/// the CA certificate (PEM) and the cert and key paths.
fn harbor_tls_files(dir: &std::path::Path) -> (String, String, String) {
    let ca = shoal_transport::new_ca("harbor listener ca").unwrap();
    let cert = shoal_transport::issue(&ca, "shoal-harbor", &["127.0.0.1".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();
    std::fs::write(&key_path, &cert.key_pem).unwrap();
    (ca.cert_pem, cert_path.display().to_string(), key_path.display().to_string())
}

/// With a certificate and key the API speaks HTTPS only: a client trusting
/// the certificate's CA is served (and still checked for the token), and a
/// plain-HTTP request to the same port gets no HTTP answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_api_answers_https_only() {
    let pki = Pki::new();
    let tls_dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = harbor_tls_files(tls_dir.path());
    let tls = ["--harbor-tls-cert", cert.as_str(), "--harbor-tls-key", key.as_str()];
    let sched = Scheduler::start_args(&pki, "scheduler-0", "bearer", &format!("{PROVIDER_TOKEN}\n"), &tls).await;
    assert!(sched.harbor.starts_with("https://127.0.0.1:"), "{}", sched.harbor);
    let client = reqwest::Client::builder()
        .user_agent("Go-http-client/1.1")
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let healthy = format!("{}/healthy", sched.harbor);
    let resp = client.get(&healthy).bearer_auth(PROVIDER_TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(client.get(&healthy).send().await.unwrap().status(), 401, "no token");

    let plain = format!("http://{}/healthy", sched.harbor.trim_start_matches("https://"));
    let answer =
        tokio::time::timeout(Duration::from_secs(20), harbor_client().get(&plain).bearer_auth(PROVIDER_TOKEN).send())
            .await
            .expect("the TLS port closes a plain-HTTP connection");
    assert!(answer.is_err(), "plain HTTP got an HTTP answer from the TLS port: {answer:?}");
}

/// One of the two TLS flags alone: refused at once, naming the other.
#[tokio::test]
async fn one_tls_flag_alone_is_refused_naming_the_missing_one() {
    let pki = Pki::new();
    let tls_dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = harbor_tls_files(tls_dir.path());
    for (given, path, missing) in
        [("--harbor-tls-cert", &cert, "--harbor-tls-key"), ("--harbor-tls-key", &key, "--harbor-tls-cert")]
    {
        let out = tokio::process::Command::new(shoal_bin().unwrap())
            .args(["scheduler", "--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port()), "--certs-dir"])
            .arg(pki.scheduler_certs("scheduler-0"))
            .args(["--harbor-listen", &format!("127.0.0.1:{}", free_port()), given, path])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out).await.expect("refused at once").unwrap();
        assert!(!out.status.success(), "the scheduler started with only {given}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{given} needs {missing}")), "{stderr}");
    }
}
