//! The parts of OCI and Docker manifests that warming reads: which media
//! types are images and which are indexes, and an image's blobs.

use shoal_core::Digest;

/// Image manifest media types (one platform: a config and layers).
pub const IMAGE_TYPES: [&str; 2] =
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];

/// Index media types (a manifest per platform).
pub const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// An `Accept` header asking for any of them.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Whether a parsed manifest is an index.
pub fn is_index(manifest: &serde_json::Value) -> bool {
    manifest["manifests"].is_array() || manifest["mediaType"].as_str().is_some_and(|m| INDEX_TYPES.contains(&m))
}

/// An image manifest's config and layers, in order, without repeats, with
/// their sizes (0 where not given); or what is wrong with a descriptor.
pub fn blobs(manifest: &serde_json::Value) -> Result<Vec<(Digest, u64)>, String> {
    let descs = std::iter::once(&manifest["config"]).chain(manifest["layers"].as_array().into_iter().flatten());
    let mut out: Vec<(Digest, u64)> = Vec::new();
    for d in descs {
        let digest: Digest = d["digest"]
            .as_str()
            .ok_or("a descriptor has no digest")?
            .parse()
            .map_err(|e| format!("a descriptor has an invalid digest: {e}"))?;
        if !out.iter().any(|b| b.0 == digest) {
            out.push((digest, d["size"].as_u64().unwrap_or(0)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_names_its_config_and_layers_once() {
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let m = serde_json::json!({
            "config": {"digest": a.to_string(), "size": 1},
            "layers": [{"digest": b.to_string(), "size": 2}, {"digest": b.to_string(), "size": 2}],
        });
        assert_eq!(blobs(&m).unwrap(), vec![(a, 1), (b, 2)]);
        assert!(!is_index(&m));
        assert!(is_index(&serde_json::json!({"manifests": []})));
        let bad = serde_json::json!({"config": {"digest": "sha256:12"}});
        assert!(blobs(&bad).unwrap_err().contains("invalid digest"));
    }
}
