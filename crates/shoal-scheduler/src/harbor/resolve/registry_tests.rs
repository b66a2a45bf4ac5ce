//! [`resolve`] against a registry stub on loopback: an index followed to
//! the wanted platform, the token checked, refusals and bad bytes named.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::*;

/// Path -> body; every request needs `Authorization: Bearer good`.
type Files = Arc<HashMap<String, Vec<u8>>>;

async fn serve(State(files): State<Files>, headers: HeaderMap, uri: Uri) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer good") {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        return (StatusCode::UNAUTHORIZED, body).into_response();
    }
    match files.get(uri.path()) {
        Some(b) => (StatusCode::OK, b.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#)
            .into_response(),
    }
}

fn image(layer: &[u8]) -> Vec<u8> {
    let (config, layer) = (Digest::sha256_of(b"config"), Digest::sha256_of(layer));
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"digest": config.to_string(), "size": 6},
        "layers": [{"digest": layer.to_string(), "size": 5}],
    }))
    .unwrap()
}

/// A registry with `p/app:v1` an index of amd64 and arm64, and
/// `p/app:bad` an index whose entry's bytes do not match its digest.
async fn registry() -> (String, Digest, Digest) {
    let (amd, arm) = (image(b"amd64"), image(b"arm64"));
    let (amd_d, arm_d) = (Digest::sha256_of(&amd), Digest::sha256_of(&arm));
    let entry = |d: &Digest, arch: &str| serde_json::json!({"digest": d.to_string(), "size": 1, "platform": {"os": "linux", "architecture": arch}});
    let index = |entries: Vec<serde_json::Value>| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }))
        .unwrap()
    };
    let liar = Digest::sha256_of(b"not these bytes");
    let mut files = HashMap::new();
    files.insert("/v2/p/app/manifests/v1".to_owned(), index(vec![entry(&amd_d, "amd64"), entry(&arm_d, "arm64")]));
    files.insert("/v2/p/app/manifests/bad".to_owned(), index(vec![entry(&liar, "amd64")]));
    files.insert(format!("/v2/p/app/manifests/{amd_d}"), amd);
    files.insert(format!("/v2/p/app/manifests/{arm_d}"), arm);
    files.insert(format!("/v2/p/app/manifests/{liar}"), image(b"other"));
    let app = axum::Router::new().fallback(serve).with_state(Arc::new(files));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), amd_d, arm_d)
}

fn platforms(p: &[&str]) -> Vec<Platform> {
    p.iter().map(|s| s.parse().unwrap()).collect()
}

#[tokio::test]
async fn an_index_resolves_to_the_wanted_platforms_manifests() {
    let (base, amd, arm) = registry().await;
    let client = http_client(Duration::from_secs(5), Vec::new());
    let url = parse_manifest_url(&format!("{base}/v2/p/app/manifests/v1")).unwrap();
    let pinned = resolve(&client, &url, Some("Bearer good"), &platforms(&["linux/arm64"])).await.unwrap();
    assert_eq!(pinned.len(), 1);
    assert_eq!(pinned[0].manifest, arm);
    assert_eq!(pinned[0].blobs, vec![(Digest::sha256_of(b"config"), 6), (Digest::sha256_of(b"arm64"), 5)]);
    let both = resolve(&client, &url, Some("Bearer good"), &platforms(&["linux/amd64", "linux/arm64"])).await.unwrap();
    assert_eq!(both.iter().map(|p| p.manifest.clone()).collect::<Vec<_>>(), vec![amd, arm]);
}

#[tokio::test]
async fn refusals_missing_platforms_and_bad_bytes_are_named() {
    let (base, _, _) = registry().await;
    let client = http_client(Duration::from_secs(5), Vec::new());
    let url = parse_manifest_url(&format!("{base}/v2/p/app/manifests/v1")).unwrap();
    let e = resolve(&client, &url, Some("Bearer expired"), &platforms(&["linux/amd64"])).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ResolveError::Refused { status: 401, .. }), "{msg}");
    assert!(
        msg.contains("refused the token Harbor sent for p/app") && msg.contains("authentication required"),
        "{msg}"
    );
    assert!(!msg.contains("expired\""), "{msg}");

    let e = resolve(&client, &url, Some("Bearer good"), &platforms(&["linux/s390x"])).await.unwrap_err();
    assert!(e.to_string().contains("has no linux/s390x manifest (it has: linux/amd64, linux/arm64)"), "{e}");

    let bad = parse_manifest_url(&format!("{base}/v2/p/app/manifests/bad")).unwrap();
    let e = resolve(&client, &bad, Some("Bearer good"), &platforms(&["linux/amd64"])).await.unwrap_err();
    assert!(e.to_string().contains("not to the digest it was asked by"), "{e}");

    let gone = parse_manifest_url(&format!("{base}/v2/p/gone/manifests/v1")).unwrap();
    let e = resolve(&client, &gone, Some("Bearer good"), &platforms(&["linux/amd64"])).await.unwrap_err();
    assert!(matches!(e, ResolveError::NotFound { .. }) && e.to_string().contains("manifest unknown"), "{e}");
}
