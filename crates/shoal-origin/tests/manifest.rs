//! Manifest GET/HEAD, pass-through GETs and retries against an in-process
//! origin.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{AuthMode, BlobMode, Origin, fast_config};
use shoal_core::{Reference, RepoName};
use shoal_origin::Caller;
use shoal_origin::{DEFAULT_MANIFEST_ACCEPT, OriginError, RegistryConfig};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const BODY: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;

fn repo() -> RepoName {
    "library/app".parse().unwrap()
}

fn tag(t: &str) -> Reference {
    t.parse().unwrap()
}

#[tokio::test]
async fn get_passes_accept_and_returns_media_type_and_digest() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_manifest("library/app", "1.0", &format!("{OCI_MANIFEST}; charset=utf-8"), BODY);
    let c = o.client(fast_config());
    let accept = vec![OCI_MANIFEST.to_owned(), "application/vnd.oci.image.index.v1+json".to_owned()];
    let m = c.get_manifest(&repo(), &tag("1.0"), &accept, &Caller::Node).await.unwrap();
    assert_eq!(m.media_type, OCI_MANIFEST);
    assert_eq!(m.digest, Some(d.clone()));
    assert_eq!(&m.body[..], BODY);
    let seen = o.api_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v2/library/app/manifests/1.0");
    assert_eq!(
        seen[0].accept.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
    );
    assert_eq!(seen[0].authorization, None);

    // By digest, with the default Accept list.
    let m = c.get_manifest(&repo(), &Reference::Digest(d.clone()), &[], &Caller::Node).await.unwrap();
    assert_eq!(&m.body[..], BODY);
    let seen = o.api_requests();
    assert_eq!(seen[1].path, format!("/v2/library/app/manifests/{d}"));
    assert_eq!(seen[1].accept.as_deref(), Some(DEFAULT_MANIFEST_ACCEPT.join(", ").as_str()));
}

#[tokio::test]
async fn head_reports_type_digest_and_size() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_manifest("library/app", "1.0", OCI_MANIFEST, BODY);
    let h = o.client(fast_config()).head_manifest(&repo(), &tag("1.0"), &[], &Caller::Node).await.unwrap();
    assert_eq!(h.media_type, OCI_MANIFEST);
    assert_eq!(h.digest, Some(d));
    assert_eq!(h.size, Some(BODY.len() as u64));
    assert_eq!(o.api_requests()[0].method, http::Method::HEAD);
}

#[tokio::test]
async fn wrong_digest_header_is_caught() {
    let o = Origin::start(AuthMode::None).await;
    o.add_manifest("library/app", "1.0", OCI_MANIFEST, BODY);
    *o.state.wrong_digest_header.lock().unwrap() = true;
    let e = o.client(fast_config()).get_manifest(&repo(), &tag("1.0"), &[], &Caller::Node).await.unwrap_err();
    assert!(matches!(e, OriginError::DigestMismatch { .. }), "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn missing_manifest_is_not_found_with_body_and_not_retried() {
    let o = Origin::start(AuthMode::None).await;
    let e = o.client(fast_config()).get_manifest(&repo(), &tag("nope"), &[], &Caller::Node).await.unwrap_err();
    match &e {
        OriginError::NotFound { body, url, .. } => {
            assert_eq!(&body[..], br#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#);
            assert!(url.ends_with("/v2/library/app/manifests/nope"), "{url}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(o.api_requests().len(), 1);
}

#[tokio::test]
async fn oversized_manifest_is_refused() {
    let o = Origin::start(AuthMode::None).await;
    let big = vec![b' '; (4 << 20) + 1];
    o.add_manifest("library/app", "big", OCI_MANIFEST, &big);
    let e = o.client(fast_config()).get_manifest(&repo(), &tag("big"), &[], &Caller::Node).await.unwrap_err();
    assert!(matches!(e, OriginError::TooLarge { limit: 4194304, .. }), "{e}");
}

#[tokio::test]
async fn retryable_statuses_are_retried_then_surface() {
    let o = Origin::start(AuthMode::None).await;
    o.add_manifest("library/app", "1.0", OCI_MANIFEST, BODY);
    let c = o.client(RegistryConfig { retries: 2, ..fast_config() });
    let fail = |n| o.state.fail_next.store(n, Ordering::SeqCst);

    fail(2);
    let m = c.get_manifest(&repo(), &tag("1.0"), &[], &Caller::Node).await.unwrap();
    assert_eq!(&m.body[..], BODY);
    assert_eq!(o.api_requests().len(), 3);

    fail(5);
    let e = c.head_manifest(&repo(), &tag("1.0"), &[], &Caller::Node).await.unwrap_err();
    assert!(matches!(e, OriginError::Status { status: 503, .. }), "{e}");
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::ZERO));
    assert_eq!(o.api_requests().len(), 6);
}

#[tokio::test]
async fn blob_get_is_one_attempt() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(b"0123456789");
    o.set_blob_mode(BlobMode::Status(503));
    let e = o.client(fast_config()).get_blob(&repo(), &d, 0, &Caller::Node).await.unwrap_err();
    assert!(matches!(&e, OriginError::Status { status: 503, body, .. } if &body[..] == b"try later"), "{e}");
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(o.api_requests().len(), 1);
}

#[tokio::test]
async fn raw_get_passes_status_headers_and_body() {
    let o = Origin::start(AuthMode::None).await;
    let c = o.client(fast_config());
    let r = c.get_raw("/v2/library/app/tags/list?n=1", &Caller::Node).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["link"], r#"</v2/library/app/tags/list?n=1&last=a>; rel="next""#);
    assert_eq!(&r.body[..], br#"{"name":"library/app","tags":["a"]}"#);
    let seen = o.api_requests();
    assert_eq!((seen[0].path.as_str(), seen[0].query.as_str()), ("/v2/library/app/tags/list", "n=1"));
    for bad in ["/v1/x", "v2/x", "/v2/../x", "/v2//x", "/v2/a/./b"] {
        assert!(matches!(c.get_raw(bad, &Caller::Node).await, Err(OriginError::BadPath(_))), "{bad}");
    }
}

#[tokio::test]
async fn slow_headers_time_out() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(b"x");
    o.set_blob_mode(BlobMode::SlowHeaders(Duration::from_secs(3)));
    let cfg = RegistryConfig { timeout: shoal_core::HumanDuration(Duration::from_millis(300)), ..fast_config() };
    let start = tokio::time::Instant::now();
    let e = o.client(cfg).get_blob(&repo(), &d, 0, &Caller::Node).await.unwrap_err();
    assert!(matches!(e, OriginError::Timeout { .. }), "{e}");
    assert!(e.is_retryable());
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn connection_refused_is_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url: url::Url = format!("http://{}/", listener.local_addr().unwrap()).parse().unwrap();
    drop(listener);
    let cfg = RegistryConfig { retries: 0, ..fast_config() };
    let c = shoal_origin::OriginClient::new("dead", url, &cfg, None).unwrap();
    let e = c.get_manifest(&repo(), &tag("1"), &[], &Caller::Node).await.unwrap_err();
    assert!(matches!(e, OriginError::Connect { .. }), "{e}");
    assert!(e.is_retryable());
    let msg = e.to_string();
    assert!(msg.contains("registry dead") && msg.contains("refused"), "{msg}");
}
