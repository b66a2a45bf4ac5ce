//! Private images pulled as kubelet pulls them: containerd 1.6's CRI plugin
//! gets `PullImage` with the pod's pull secret as `AuthConfig` and reads
//! `hosts.toml` from `config_path`, which lists shoal first and the origin
//! (docker-registry with htpasswd, or with bearer tokens from its own
//! issuer) second. Each case uses a fresh
//! containerd and records the pull's outcome, every request that reached
//! shoal (through a recording front: its Authorization, shoal's status, the
//! body bytes) and every request that reached the origin directly.
//!
//! What containerd 1.6 does with the `AuthConfig` (its
//! `pkg/cri/server/image_pull.go`): `registryHosts` hands
//! `config.ConfigureHosts` a `Credentials(host)` callback that calls
//! `ParseAuth(auth, host)` for whichever host sent a 401 challenge. With an
//! empty `server_address` (what kubelet sends) it returns the pull secret
//! for every host, the mirror included; with `server_address` set it
//! returns nothing for a host other than `url.Parse(server_address).Host`.
//! A mirror that still answers 401 makes the resolver
//! (`remotes/docker/resolver.go`, `Resolve`) and fetcher (`fetcher.go`)
//! try the next host: the origin. A wrong secret is tried (and refused) at
//! each host in turn; no secret ends at the origin's 401.
//!
//! `cached_private_image_by_digest_needs_credentials` fails while shoal
//! serves cached manifests and blobs by digest without asking the origin
//! whether the request's own credentials may read them.

use shoal_e2e::Origin;
use shoal_testkit::client::basic_auth_value;
use shoal_testkit::cri::basic_auth;
use shoal_testkit::{
    AuthConfig, Containerd, CountingFront, CriClient, PushedImage, Registry, RequestRecord, ShoalDaemon, TokenServer,
};

const USER: &str = "alice";
const PASS: &str = "s3cret";
const WRONG: &str = "not-her-password";

/// A private origin with one image, shoal, and a hosts dir that sends
/// containerd to shoal first and the origin second.
struct Rig {
    origin: Origin,
    /// shoal's upstream for the registry: a second front, so that what
    /// shoal fetched is told apart from what containerd fetched directly.
    upstream: CountingFront,
    _shoal: ShoalDaemon,
    /// containerd's mirror: records each request and forwards it to shoal.
    at_shoal: CountingFront,
    hosts: tempfile::TempDir,
    image: PushedImage,
    /// The token issuer when the registry wants bearer tokens.
    tokens: Option<TokenServer>,
}

/// What one pull did.
struct Pull {
    outcome: Result<String, String>,
    at_shoal: Vec<RequestRecord>,
    direct: Vec<RequestRecord>,
    upstream: Vec<RequestRecord>,
    repo_digests: Vec<String>,
    /// Image ids `ListImages` shows after the pull.
    listed: Vec<String>,
}

impl Rig {
    /// With an htpasswd registry.
    async fn start() -> Rig {
        let registry = Registry::builder().htpasswd(&[(USER, PASS)]).start().await.unwrap();
        Rig::around(registry, None).await
    }

    /// With a registry that wants bearer tokens from its own issuer.
    async fn start_with_tokens() -> Rig {
        let tokens = TokenServer::start(&[(USER, PASS)]).await.unwrap();
        let registry = Registry::builder().token_auth(&tokens).start().await.unwrap();
        Rig::around(registry, Some(tokens)).await
    }

    async fn around(registry: Registry, tokens: Option<TokenServer>) -> Rig {
        let origin = Origin::around(registry).await;
        let image = origin.push_image("private/app:v1", &[1 << 20], Some((USER, PASS))).await;
        let upstream = CountingFront::start(&origin.registry.url()).await.unwrap();
        let direct = origin.front.host();
        let shoal =
            ShoalDaemon::builder().default_registry(&direct).registry(&direct, &upstream.url()).start().await.unwrap();
        let at_shoal = CountingFront::start(&shoal.mirror_url()).await.unwrap();
        let hosts = shoal_e2e::hosts_dir(&origin.front, Some(&at_shoal.url()));
        Rig { origin, upstream, _shoal: shoal, at_shoal, hosts, image, tokens }
    }

    fn by_tag(&self) -> String {
        format!("{}/private/app:v1", self.origin.front.host())
    }

    /// The image by digest, named with the host containerd's hosts.toml
    /// covers (the image was pushed to the registry's own address).
    fn by_digest(&self) -> String {
        format!("{}/private/app@{}", self.origin.front.host(), self.image.manifest_digest)
    }

    /// Pulls `reference` through the CRI of a fresh containerd and records
    /// what reached shoal, the origin directly, and shoal's upstream.
    async fn pull(&self, case: &str, reference: &str, auth: Option<AuthConfig>) -> Pull {
        for f in [&self.at_shoal, &self.origin.front, &self.upstream] {
            f.reset_counts();
        }
        let tokens_before = self.tokens.as_ref().map_or(0, |t| t.requests().len());
        let containerd = Containerd::start_cri(self.hosts.path()).await.expect("start containerd with CRI");
        let mut cri = CriClient::connect(containerd.socket()).await.expect("CRI answers Version");
        let outcome = cri.pull_image(reference, auth).await.map_err(|s| s.message().to_string());
        let repo_digests = match cri.image_status(reference).await.expect("ImageStatus") {
            Some(image) => image.repo_digests,
            None => Vec::new(),
        };
        let listed = cri.list_images().await.expect("ListImages").into_iter().map(|i| i.id).collect();
        let pull = Pull {
            outcome,
            at_shoal: self.at_shoal.requests(),
            direct: self.origin.front.requests(),
            upstream: self.upstream.requests(),
            repo_digests,
            listed,
        };
        let token_requests: Vec<String> = match &self.tokens {
            Some(t) => t.requests()[tokens_before..].iter().map(|r| format!("  {r:?}")).collect(),
            None => vec!["  (no token server)".into()],
        };
        let log = containerd.log_tail(64 * 1024);
        let fallbacks: Vec<&str> = log.lines().filter(|l| l.contains("trying next host")).map(trim_log).collect();
        eprintln!(
            "== {case}: pull {reference}\noutcome: {:?}\nat shoal:\n{}\nat the origin directly:\n{}\nshoal's upstream:\n{}\ntoken server:\n{}\ncontainerd fell back:\n{}\n",
            pull.outcome,
            show(&pull.at_shoal),
            show(&pull.direct),
            show(&pull.upstream),
            token_requests.join("\n"),
            fallbacks.join("\n"),
        );
        pull
    }
}

/// containerd's log line without its timestamp.
fn trim_log(line: &str) -> &str {
    line.split_once(" level=").map_or(line, |(_, rest)| rest)
}

fn auth_name(r: &RequestRecord) -> &'static str {
    match r.authorization.as_deref() {
        None => "none",
        Some(a) if a == basic_auth_value(USER, PASS) => "alice:s3cret",
        Some(a) if a == basic_auth_value(USER, WRONG) => "alice:WRONG",
        Some(a) if a.starts_with("Bearer ") => "bearer",
        Some(_) => "other",
    }
}

fn show(records: &[RequestRecord]) -> String {
    if records.is_empty() {
        return "  (nothing)".into();
    }
    let line = |r: &RequestRecord| {
        format!("  {} {} -> {} auth={} body={}", r.method, r.path, r.status, auth_name(r), r.body_bytes)
    };
    records.iter().map(line).collect::<Vec<_>>().join("\n")
}

fn is_content_path(path: &str) -> bool {
    path.contains("/manifests/") || path.contains("/blobs/")
}

/// Responses that handed out a manifest's or blob's bytes.
fn content_answers(records: &[RequestRecord]) -> Vec<&RequestRecord> {
    records.iter().filter(|r| is_content_path(&r.path) && (200..300).contains(&r.status) && r.body_bytes > 0).collect()
}

fn served_blob(records: &[RequestRecord], digest: &str, auth: &str) -> bool {
    records.iter().any(|r| {
        r.method == "GET" && r.path.ends_with(&format!("/blobs/{digest}")) && r.status == 200 && auth_name(r) == auth
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_secret_without_server_address_goes_through_shoal() {
    let rig = Rig::start().await;
    let p = rig.pull("secret, no server_address", &rig.by_tag(), Some(basic_auth(USER, PASS, None))).await;

    assert_eq!(p.outcome.as_deref(), Ok(rig.image.config.digest.as_str()), "the pull succeeds");
    let want = format!("{}/private/app@{}", rig.origin.front.host(), rig.image.manifest_digest);
    assert!(p.repo_digests.contains(&want), "ImageStatus lists {want}: {:?}", p.repo_digests);
    assert!(p.listed.contains(&rig.image.config.digest), "ListImages shows the image: {:?}", p.listed);
    // containerd sends credentials only after a challenge: the first
    // request is anonymous and shoal relays the origin's 401.
    let first = p.at_shoal.first().expect("requests reached shoal");
    assert_eq!((first.status, auth_name(first)), (401, "none"), "first request at shoal: {first:?}");
    // Then the pull secret reaches shoal, and shoal serves every blob.
    for blob in rig.image.blob_digests() {
        assert!(served_blob(&p.at_shoal, &blob, "alice:s3cret"), "shoal served {blob} to the pull secret");
        assert!(served_blob(&p.upstream, &blob, "alice:s3cret"), "shoal fetched {blob} with the client's secret");
    }
    for r in content_answers(&p.at_shoal) {
        assert_eq!(auth_name(r), "alice:s3cret", "shoal served content only with the secret: {r:?}");
    }
    assert!(p.direct.is_empty(), "containerd never fell back to the origin:\n{}", show(&p.direct));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_secret_scoped_to_the_registry_skips_shoal() {
    let rig = Rig::start().await;
    let server = format!("http://{}", rig.origin.front.host());
    let p = rig
        .pull("secret, server_address=http://origin", &rig.by_tag(), Some(basic_auth(USER, PASS, Some(&server))))
        .await;

    assert_eq!(p.outcome.as_deref(), Ok(rig.image.config.digest.as_str()), "the pull succeeds");
    // ParseAuth gives the mirror's host no credentials: shoal sees only
    // anonymous requests, relays the origin's 401s, and containerd goes on
    // to the origin with the secret.
    assert!(!p.at_shoal.is_empty(), "containerd asked shoal first");
    for r in &p.at_shoal {
        assert_eq!((r.status, auth_name(r)), (401, "none"), "at shoal: {r:?}");
    }
    for blob in rig.image.blob_digests() {
        assert!(served_blob(&p.direct, &blob, "alice:s3cret"), "the origin served {blob} directly");
    }

    // A server_address without a scheme is no URL to ParseAuth
    // ("parse server address": host:port has a colon in its first path
    // segment), so the pull fails before any credentials are sent.
    let bare = rig.origin.front.host();
    let p =
        rig.pull("secret, server_address=host:port", &rig.by_tag(), Some(basic_auth(USER, PASS, Some(&bare)))).await;
    let err = p.outcome.expect_err("the pull fails");
    assert!(err.contains("parse server address"), "{err}");
    for r in p.at_shoal.iter().chain(&p.direct) {
        assert_eq!((r.status, auth_name(r)), (401, "none"), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_pull_secret_fails_at_shoal_and_at_the_origin() {
    let rig = Rig::start().await;
    let p = rig.pull("no secret", &rig.by_tag(), None).await;

    assert!(p.outcome.is_err(), "the pull fails: {:?}", p.outcome);
    assert!(p.listed.is_empty(), "containerd has no image: {:?}", p.listed);
    assert!(!p.at_shoal.is_empty(), "containerd asked shoal first");
    assert!(!p.direct.is_empty(), "then the origin");
    for r in p.at_shoal.iter().chain(&p.direct) {
        assert_eq!((r.status, auth_name(r)), (401, "none"), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_pull_secret_fails_at_shoal_and_at_the_origin() {
    let rig = Rig::start().await;
    let p = rig.pull("wrong secret", &rig.by_tag(), Some(basic_auth(USER, WRONG, None))).await;

    assert!(p.outcome.is_err(), "the pull fails: {:?}", p.outcome);
    assert!(p.listed.is_empty(), "containerd has no image: {:?}", p.listed);
    for records in [&p.at_shoal, &p.direct] {
        assert!(
            records.iter().any(|r| auth_name(r) == "alice:WRONG"),
            "the wrong secret was tried:\n{}",
            show(records)
        );
        for r in records {
            assert_eq!(r.status, 401, "{r:?}");
        }
    }
}

/// With a bearer-token registry, shoal relays the origin's challenge;
/// containerd fetches a token from the realm with the pull secret (it asks
/// `Credentials` for the host that challenged it: shoal's) and sends shoal
/// the token, never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_registry_pull_secret_goes_through_shoal() {
    let rig = Rig::start_with_tokens().await;
    let p = rig.pull("tokens: secret, no server_address", &rig.by_tag(), Some(basic_auth(USER, PASS, None))).await;

    assert_eq!(p.outcome.as_deref(), Ok(rig.image.config.digest.as_str()), "the pull succeeds");
    for blob in rig.image.blob_digests() {
        assert!(served_blob(&p.at_shoal, &blob, "bearer"), "shoal served {blob} to a bearer token");
    }
    for r in &p.at_shoal {
        assert!(matches!(auth_name(r), "none" | "bearer"), "only tokens reach shoal: {r:?}");
    }
    let tokens = rig.tokens.as_ref().expect("token server").requests();
    assert!(tokens.iter().any(|t| t.user.as_deref() == Some(USER) && t.status == 200), "{tokens:?}");
    assert!(p.direct.is_empty(), "containerd never fell back to the origin:\n{}", show(&p.direct));
}

/// With `server_address` naming the registry, containerd asks the realm
/// for an anonymous token for shoal's host; the origin refuses it
/// (`insufficient_scope`), shoal relays that 401, and containerd takes
/// everything from the origin with a token bought with the secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_registry_scoped_pull_secret_skips_shoal() {
    let rig = Rig::start_with_tokens().await;
    let server = format!("http://{}", rig.origin.front.host());
    let p = rig
        .pull(
            "tokens: secret, server_address=http://origin",
            &rig.by_tag(),
            Some(basic_auth(USER, PASS, Some(&server))),
        )
        .await;

    assert_eq!(p.outcome.as_deref(), Ok(rig.image.config.digest.as_str()), "the pull succeeds");
    assert!(!p.at_shoal.is_empty(), "containerd asked shoal first");
    for r in &p.at_shoal {
        assert_eq!(r.status, 401, "at shoal: {r:?}");
    }
    for blob in rig.image.blob_digests() {
        assert!(served_blob(&p.direct, &blob, "bearer"), "the origin served {blob} directly");
    }
    let tokens = rig.tokens.as_ref().expect("token server").requests();
    assert!(tokens.iter().any(|t| t.user.is_none()), "an anonymous token for shoal's host: {tokens:?}");
    assert!(tokens.iter().any(|t| t.user.as_deref() == Some(USER)), "a token for the origin: {tokens:?}");
}

/// The attack: a pod without the pull secret (or with a wrong one) names
/// the image by digest on a node where an authorized pull cached it.
/// containerd asks shoal first and sends credentials only after a 401, so
/// a mirror that serves cached content by digest without asking the origin
/// hands the private image over. The same holds for a legitimate pull whose
/// secret is scoped to the origin (`server_address`): shoal sees no
/// credentials and must send it on to the origin, not serve its cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_private_image_by_digest_needs_credentials() {
    let rig = Rig::start().await;
    let warm = rig.pull("authorized pull warms shoal", &rig.by_tag(), Some(basic_auth(USER, PASS, None))).await;
    assert!(warm.outcome.is_ok(), "the authorized pull succeeds: {:?}", warm.outcome);

    let mut violations = Vec::new();
    let server = format!("http://{}", rig.origin.front.host());
    let cases = [
        ("by digest, no secret", rig.by_digest(), None, false),
        ("by digest, wrong secret", rig.by_digest(), Some(basic_auth(USER, WRONG, None)), false),
        // The secret is scoped to the origin, so shoal gets no credentials;
        // the pull must still succeed, from the origin.
        ("by tag, secret for the origin only", rig.by_tag(), Some(basic_auth(USER, PASS, Some(&server))), true),
    ];
    for (case, reference, auth, should_pull) in cases {
        let p = rig.pull(case, &reference, auth).await;
        assert!(!p.at_shoal.is_empty(), "{case}: containerd asked shoal first");
        match (&p.outcome, should_pull) {
            (Ok(image_ref), false) => violations.push(format!("{case}: the pull succeeded ({image_ref})")),
            (Err(e), true) => violations.push(format!("{case}: the pull failed: {e}")),
            _ => {}
        }
        for r in content_answers(&p.at_shoal) {
            if auth_name(r) != "alice:s3cret" {
                violations.push(format!(
                    "{case}: shoal answered {} {} with {} and {} bytes (auth {})",
                    r.method,
                    r.path,
                    r.status,
                    r.body_bytes,
                    auth_name(r)
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "shoal handed a private image to a client the origin refuses:\n{}",
        violations.join("\n")
    );
}
