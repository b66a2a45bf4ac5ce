//! umoci build + skopeo push: digests match what the registry serves.

use shoal_testkit::{ImageSpec, Registry, build_oci_layout, push, sha256_digest};

#[tokio::test]
async fn built_image_matches_registry() {
    let registry = Registry::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = ImageSpec { layers: vec![300 * 1024, 1 << 20], seed: 42 };
    let layout = build_oci_layout(&spec, dir.path()).await.unwrap();
    let pushed = push(&layout, &registry.host(), "demo/img:1.0", None).await.unwrap();
    assert_eq!(pushed.reference, format!("{}/demo/img:1.0", registry.host()));
    assert_eq!(pushed.layers.len(), 2);
    assert_eq!(pushed.manifest_media_type, "application/vnd.oci.image.manifest.v1+json");

    // skopeo kept the layout's manifest byte for byte.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], pushed.manifest_digest.as_str());

    let client = registry.client(None).unwrap();
    let by_digest = client.get_manifest("demo/img", &pushed.manifest_digest).await.unwrap();
    assert_eq!(by_digest.digest, pushed.manifest_digest);
    assert_eq!(by_digest.header_digest.as_deref(), Some(pushed.manifest_digest.as_str()));
    let mut total = 0;
    for blob in std::iter::once(&pushed.config).chain(&pushed.layers) {
        let bytes = client.get_blob("demo/img", &blob.digest).await.unwrap();
        assert_eq!(sha256_digest(&bytes), blob.digest);
        assert_eq!(bytes.len() as u64, blob.size);
        total += blob.size;
    }
    assert_eq!(pushed.blob_bytes(), total);
    // Random data does not compress: each layer is at least its file size.
    assert!(pushed.layers[0].size > 300 * 1024);
    assert!(pushed.layers[1].size > 1 << 20);
    assert!(pushed.layers[1].size < (1 << 20) + 64 * 1024, "one file per layer");
}
