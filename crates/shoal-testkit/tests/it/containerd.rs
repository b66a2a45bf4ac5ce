//! containerd 1.6: pulls straight from a registry and through a mirror,
//! recording what it sends.

use shoal_testkit::{
    Containerd, CountingFront, Fault, ImageSpec, Registry, TokenServer, build_and_push, write_hosts_toml,
};

fn has_all(content: &[String], pushed: &shoal_testkit::PushedImage) {
    for d in pushed.blob_digests() {
        assert!(content.contains(&d), "{d} missing from {content:?}");
    }
    assert!(content.contains(&pushed.manifest_digest));
}

#[tokio::test]
async fn pull_straight_from_registry() {
    let registry = Registry::start().await.unwrap();
    let spec = ImageSpec { layers: vec![200 * 1024, 500 * 1024], seed: 3 };
    let pushed = build_and_push(&spec, &registry.host(), "c/straight:t", None).await.unwrap();
    let ctrd = Containerd::start().await.unwrap();
    assert!(ctrd.content_digests().await.unwrap().is_empty(), "fresh root");
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), &registry.host(), &registry.url(), None).unwrap();
    ctrd.pull(&pushed.reference, hosts.path(), None).await.unwrap();
    has_all(&ctrd.content_digests().await.unwrap(), &pushed);
    assert_eq!(ctrd.images().await.unwrap(), std::slice::from_ref(&pushed.reference));
}

#[tokio::test]
async fn pull_through_mirror_records_requests() {
    let registry = Registry::builder().htpasswd(&[("u", "p")]).start().await.unwrap();
    let spec = ImageSpec { layers: vec![100 * 1024, 100 * 1024], seed: 4 };
    let pushed = build_and_push(&spec, &registry.host(), "c/mirror:t", Some(("u", "p"))).await.unwrap();
    let mirror = CountingFront::start(&registry.url()).await.unwrap();
    let ctrd = Containerd::start().await.unwrap();
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), &registry.host(), &registry.url(), Some(&mirror.url())).unwrap();
    ctrd.pull(&pushed.reference, hosts.path(), Some("u:p")).await.unwrap();
    has_all(&ctrd.content_digests().await.unwrap(), &pushed);
    let reqs = mirror.requests();
    for r in &reqs {
        eprintln!(
            "containerd -> mirror: {} {}?{} -> {} range={:?} bytes={} accept={:?} auth={:?}",
            r.method,
            r.path,
            r.query.as_deref().unwrap_or(""),
            r.status,
            r.range,
            r.body_bytes,
            r.accept,
            r.authorization.as_deref().map(|a| a.split(' ').next().unwrap_or_default()),
        );
    }
    let ns = format!("ns={}", registry.host().replace(':', "%3A"));
    assert!(reqs.iter().all(|r| r.query.as_deref() == Some(ns.as_str())));
    assert!(reqs.iter().all(|r| r.path != "/v2/"), "no /v2/ ping");
    let first = &reqs[0];
    assert_eq!(first.method, "HEAD");
    assert_eq!(first.path, "/v2/c/mirror/manifests/t");
    assert_eq!(first.status, 401, "challenge first, then with credentials");
    let ok: Vec<_> = reqs.iter().filter(|r| r.status == 200).collect();
    assert_eq!(ok[0].method, "HEAD");
    assert!(
        ok.iter().any(|r| r.method == "GET" && r.path == format!("/v2/c/mirror/manifests/{}", pushed.manifest_digest))
    );
    for d in pushed.blob_digests() {
        assert_eq!(mirror.blob_gets(&d), 1, "{d}");
    }
    assert_eq!(mirror.total_blob_bytes(), pushed.blob_bytes());
    for r in reqs.iter().filter(|r| r.path.contains("/blobs/")) {
        assert!(r.authorization.as_deref().unwrap().starts_with("Basic "));
        assert!(r.range.is_none(), "whole blobs first: {r:?}");
        assert!(r.accept.as_deref().unwrap().ends_with("*/*"), "{r:?}");
    }
}

#[tokio::test]
async fn server_is_honoured_cut_bodies_resume_and_errors_fall_back() {
    let registry = Registry::start().await.unwrap();
    let spec = ImageSpec { layers: vec![2 << 20], seed: 5 };
    let pushed = build_and_push(&spec, &registry.host(), "c/exp:t", None).await.unwrap();
    let layer = pushed.layers[0].digest.clone();
    let origin = CountingFront::start(&registry.url()).await.unwrap();
    let mirror = CountingFront::start(&registry.url()).await.unwrap();

    // hosts.toml with only `server`: containerd uses it.
    let only_server = tempfile::tempdir().unwrap();
    write_hosts_toml(only_server.path(), &registry.host(), &origin.url(), None).unwrap();
    let ctrd = Containerd::start().await.unwrap();
    ctrd.pull(&pushed.reference, only_server.path(), None).await.unwrap();
    assert_eq!(origin.blob_gets(&layer), 1);
    assert_eq!(origin.manifest_requests(), 2, "HEAD by tag, GET by digest");
    drop(ctrd);
    origin.reset_counts();

    // A body cut at the mirror is resumed there with a Range request.
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), &registry.host(), &origin.url(), Some(&mirror.url())).unwrap();
    mirror.set_fault(&layer, Fault::Truncate { after: 100_000 }, 1);
    let ctrd = Containerd::start().await.unwrap();
    ctrd.pull(&pushed.reference, hosts.path(), None).await.unwrap();
    let gets: Vec<_> = mirror.requests().into_iter().filter(|r| r.path.ends_with(&layer)).collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!((gets[0].status, gets[0].body_bytes), (200, 100_000));
    assert_eq!(gets[1].range.as_deref(), Some("bytes=100000-"));
    assert_eq!(gets[1].status, 206);
    assert_eq!(origin.total_blob_gets(), 0);
    drop(ctrd);
    mirror.reset_counts();

    // A 5xx from the mirror makes containerd fetch that blob from `server`
    // (still with ?ns=).
    mirror.set_fault(&layer, Fault::Status(500), 10);
    let ctrd = Containerd::start().await.unwrap();
    ctrd.pull(&pushed.reference, hosts.path(), None).await.unwrap();
    assert_eq!(mirror.blob_gets(&layer), 1);
    assert_eq!(origin.blob_gets(&layer), 1);
    assert_eq!(origin.manifest_requests(), 0);
    let at_origin = &origin.requests()[0];
    assert_eq!(at_origin.query.as_deref(), Some(format!("ns={}", registry.host().replace(':', "%3A")).as_str()));
    has_all(&ctrd.content_digests().await.unwrap(), &pushed);
}

#[tokio::test]
async fn pull_from_token_registry_with_user() {
    let tokens = TokenServer::start(&[("tok", "en")]).await.unwrap();
    let registry = Registry::builder().token_auth(&tokens).start().await.unwrap();
    let spec = ImageSpec { layers: vec![50 * 1024], seed: 8 };
    let pushed = build_and_push(&spec, &registry.host(), "c/tok:t", Some(("tok", "en"))).await.unwrap();
    let hosts = tempfile::tempdir().unwrap();
    write_hosts_toml(hosts.path(), &registry.host(), &registry.url(), None).unwrap();
    let ctrd = Containerd::start().await.unwrap();
    let err = ctrd.pull(&pushed.reference, hosts.path(), None).await.unwrap_err();
    // Anonymous tokens carry no access: the registry answers
    // insufficient_scope.
    assert!(err.to_string().contains("insufficient_scope"), "{err}");
    let before = tokens.issued();
    ctrd.pull(&pushed.reference, hosts.path(), Some("tok:en")).await.unwrap();
    assert!(tokens.issued() > before);
    let reqs = tokens.requests();
    let last = reqs.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.user.as_deref(), last.status),
        ("POST", Some("tok"), 200),
        "containerd uses the OAuth2 password grant when it has creds: {reqs:?}"
    );
    assert_eq!(last.scopes, ["repository:c/tok:pull"]);
    has_all(&ctrd.content_digests().await.unwrap(), &pushed);
}
