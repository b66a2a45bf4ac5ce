//! Authentication flows against an in-process origin and token server:
//! anonymous and credentialed Bearer tokens, caching, expiry, refresh on a
//! 401, single flight, Basic, OAuth2 refresh tokens, and a client's own
//! `Authorization` passed through.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{AuthMode, Origin, bearer_challenge, fast_config};
use http::HeaderValue;
use shoal_core::{Reference, RepoName};
use shoal_origin::Caller;
use shoal_origin::{Credentials, OriginClient, OriginError, RegistryConfig};

const MT: &str = "application/vnd.oci.image.manifest.v1+json";
const SCOPE: &str = "repository:library/app:pull";

fn repo() -> RepoName {
    "library/app".parse().unwrap()
}

fn tag() -> Reference {
    "1.0".parse().unwrap()
}

async fn bearer_origin() -> Origin {
    let o = Origin::start(AuthMode::Bearer).await;
    *o.state.challenge.lock().unwrap() = bearer_challenge(&o.url, SCOPE);
    o.add_manifest("library/app", "1.0", MT, b"{}");
    o
}

fn auths(o: &Origin) -> Vec<Option<String>> {
    o.api_requests().into_iter().map(|s| s.authorization).collect()
}

#[tokio::test]
async fn anonymous_bearer_token_is_fetched_once_and_reused() {
    let o = bearer_origin().await;
    let c = o.client(fast_config());
    for _ in 0..3 {
        let m = c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
        assert_eq!(&m.body[..], b"{}");
    }
    assert_eq!(o.token_fetches(), 1);
    let t = &o.token_requests()[0];
    assert_eq!(t.authorization, None);
    assert_eq!(t.query, "service=test-registry&scope=repository%3Alibrary%2Fapp%3Apull");
    // One 401, then the token; later requests send it up front.
    let bearer = Some("Bearer tok-1".to_owned());
    assert_eq!(auths(&o), [None, bearer.clone(), bearer.clone(), bearer]);
}

#[tokio::test]
async fn an_anonymous_caller_never_gets_the_daemons_credentials() {
    let o = bearer_origin().await;
    let basic = Credentials::basic("alice", "pw").basic_header().unwrap();
    *o.state.token_basic.lock().unwrap() = Some(basic.to_str().unwrap().to_owned());
    let cfg = RegistryConfig { username: Some("alice".into()), password: Some("pw".into()), ..fast_config() };
    let c = o.client(cfg);
    // The daemon's own work gets a token with its credentials...
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    assert_eq!(o.token_requests()[0].authorization.as_deref(), Some("Basic YWxpY2U6cHc="));
    // ...and a client that sent none stays anonymous, even right after,
    // with the node's token in the cache: the token server refuses it.
    let e = c.get_manifest(&repo(), &tag(), &[], &Caller::Anonymous).await.unwrap_err();
    // Answered as the registry did, challenge included, so the client can
    // authenticate itself.
    match &e {
        OriginError::Unauthorized { status: 401, www_authenticate: Some(c), .. } => {
            assert_eq!(c, &bearer_challenge(&o.url, SCOPE));
        }
        other => panic!("{other}"),
    }
    assert_eq!(o.token_requests()[1].authorization, None, "no credentials went to the token server");
    assert!(!e.to_string().contains("alice"), "{e}");
    // Unless the operator shares them for this registry.
    assert_eq!(c.caller_for(None), Caller::Anonymous);
    let shared = RegistryConfig { share_credentials: true, ..RegistryConfig::default() };
    let shared = OriginClient::new("r", o.url.clone(), &shared, None).unwrap();
    assert_eq!(shared.caller_for(None), Caller::Node);
}

#[tokio::test]
async fn bearer_with_credentials_uses_basic_at_the_token_server() {
    let o = bearer_origin().await;
    let basic = Credentials::basic("alice", "pw").basic_header().unwrap();
    *o.state.token_basic.lock().unwrap() = Some(basic.to_str().unwrap().to_owned());
    let cfg = RegistryConfig { username: Some("alice".into()), password: Some("pw".into()), ..fast_config() };
    o.client(cfg).get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    let t = &o.token_requests()[0];
    assert_eq!(t.authorization.as_deref(), Some("Basic YWxpY2U6cHc="));
    assert!(t.query.ends_with("&account=alice"), "{}", t.query);

    // Anonymous against the same token server: refused, and said so.
    let e = o.client(fast_config()).get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap_err();
    match &e {
        OriginError::Token { status: Some(401), detail, .. } => {
            assert!(detail.contains("anonymous access refused"), "{detail}")
        }
        other => panic!("{other}"),
    }
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn expired_token_is_fetched_again() {
    let o = bearer_origin().await;
    // Two seconds of life: cached for one (half the life is the margin).
    o.state.expires_in.store(2, Ordering::SeqCst);
    let c = o.client(fast_config());
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    assert_eq!(o.token_fetches(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    assert_eq!(o.token_fetches(), 2);
    let last = o.api_requests().last().unwrap().authorization.clone();
    assert_eq!(last.as_deref(), Some("Bearer tok-2"));
}

#[tokio::test]
async fn refused_cached_token_is_replaced_once() {
    let o = bearer_origin().await;
    let c = o.client(fast_config());
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    o.state.valid_tokens.lock().unwrap().clear(); // revoke tok-1
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    assert_eq!(o.token_fetches(), 2);
    let b = |t: &str| Some(format!("Bearer {t}"));
    assert_eq!(auths(&o), [None, b("tok-1"), b("tok-1"), b("tok-2")]);
}

#[tokio::test]
async fn useless_tokens_end_in_unauthorized_after_one_refetch() {
    let o = bearer_origin().await;
    let c = o.client(fast_config());
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    // From now on every token is refused: one refetch, then the 401 goes
    // back with its challenge.
    o.state.reject_tokens.store(true, Ordering::SeqCst);
    let e = c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap_err();
    match &e {
        OriginError::Unauthorized { status: 401, www_authenticate, body, .. } => {
            assert_eq!(www_authenticate.as_deref(), Some(bearer_challenge(&o.url, SCOPE).as_str()));
            assert_eq!(&body[..], br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#);
        }
        other => panic!("{other}"),
    }
    assert_eq!(o.token_fetches(), 2);
    let b = |t: &str| Some(format!("Bearer {t}"));
    assert_eq!(auths(&o), [None, b("tok-1"), b("tok-1"), b("tok-2")]);
}

#[tokio::test]
async fn concurrent_requests_share_one_token_fetch() {
    let o = bearer_origin().await;
    let c = Arc::new(o.client(fast_config()));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(o.token_fetches(), 1);
}

#[tokio::test]
async fn basic_challenge_is_answered_with_credentials() {
    let basic = Credentials::basic("bob", "pw").basic_header().unwrap();
    let o = Origin::start(AuthMode::Basic(basic.to_str().unwrap().to_owned())).await;
    o.add_manifest("library/app", "1.0", MT, b"{}");
    let cfg = RegistryConfig { username: Some("bob".into()), password: Some("pw".into()), ..fast_config() };
    let c = o.client(cfg);
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    let b = Some("Basic Ym9iOnB3".to_owned());
    assert_eq!(auths(&o), [None, b.clone(), b]);
    assert_eq!(o.token_fetches(), 0);

    // Without credentials the challenge comes back.
    let e = o.client(fast_config()).get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap_err();
    assert!(
        matches!(&e, OriginError::Unauthorized { status: 401, www_authenticate: Some(w), .. } if w == r#"Basic realm="test-registry""#),
        "{e}"
    );
}

#[tokio::test]
async fn client_authorization_is_forwarded_verbatim() {
    let o = bearer_origin().await;
    o.state.valid_tokens.lock().unwrap().insert("from-containerd".into());
    let c = o.client(fast_config());
    let good = HeaderValue::from_static("Bearer from-containerd");
    c.get_manifest(&repo(), &tag(), &[], &Caller::Client(good.clone())).await.unwrap();
    assert_eq!(auths(&o), [Some("Bearer from-containerd".to_owned())]);

    // A refused client token: the challenge goes back; the daemon does not
    // fetch a token of its own.
    let bad = HeaderValue::from_static("Bearer stale");
    let e = c.get_manifest(&repo(), &tag(), &[], &Caller::Client(bad.clone())).await.unwrap_err();
    match &e {
        OriginError::Unauthorized { status, www_authenticate, body, .. } => {
            assert_eq!(*status, 401);
            assert_eq!(www_authenticate.as_deref(), Some(bearer_challenge(&o.url, SCOPE).as_str()));
            assert_eq!(&body[..], br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#);
        }
        other => panic!("{other}"),
    }
    assert_eq!(o.token_fetches(), 0);
    assert_eq!(o.api_requests().len(), 2);

    // No client header: the daemon authenticates itself.
    let d = o.add_blob(b"abc");
    assert_eq!(c.head_blob(&repo(), &d, &Caller::Node).await.unwrap(), 3);
    assert_eq!(o.token_fetches(), 1);
}

#[tokio::test]
async fn identity_token_from_docker_config_uses_the_oauth2_flow() {
    let o = bearer_origin().await;
    *o.state.refresh_token.lock().unwrap() = Some("refresh-me".into());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let key = o.addr.to_string();
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"https://{key}":{{"username":"<token>","identitytoken":"refresh-me"}}}}}}"#),
    )
    .unwrap();
    let mut cfg = shoal_origin::UpstreamsConfig { docker_config: Some(path), ..Default::default() };
    let rc = RegistryConfig { url: Some(o.url.clone()), ..fast_config() };
    cfg.registries.insert(key.clone(), rc);
    let up = shoal_origin::Upstreams::new(cfg).unwrap();
    let c: Arc<OriginClient> = up.resolve(Some(&key)).unwrap();
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    let t = &o.token_requests()[0];
    assert_eq!(t.method, http::Method::POST);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&t.body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("grant_type"), Some("refresh_token"));
    assert_eq!(get("refresh_token"), Some("refresh-me"));
    assert_eq!(get("service"), Some("test-registry"));
    assert_eq!(get("scope"), Some(SCOPE));
    assert_eq!(auths(&o).last().unwrap().as_deref(), Some("Bearer oauth-1"));
}

#[tokio::test]
async fn basic_credentials_from_docker_config_are_used() {
    let basic = Credentials::basic("carol", "pw").basic_header().unwrap();
    let o = Origin::start(AuthMode::Basic(basic.to_str().unwrap().to_owned())).await;
    o.add_manifest("library/app", "1.0", MT, b"{}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    // carol:pw
    std::fs::write(&path, format!(r#"{{"auths":{{"{}":{{"auth":"Y2Fyb2w6cHc="}}}}}}"#, o.addr)).unwrap();
    let cfg = shoal_origin::UpstreamsConfig { docker_config: Some(path), ..Default::default() };
    // Unlisted loopback registry: reached over http with default settings.
    let up = shoal_origin::Upstreams::new(cfg).unwrap();
    let c = up.resolve(Some(&o.addr.to_string())).unwrap();
    assert_eq!(c.base_url(), &o.url);
    c.get_manifest(&repo(), &tag(), &[], &Caller::Node).await.unwrap();
    assert_eq!(auths(&o), [None, Some(basic.to_str().unwrap().to_owned())]);
}
