//! What a manifest lists: the digests a client that may read the manifest
//! may read next without a check of its own (see `crate::access`).
//!
//! An image manifest lists its config and layers (and an artifact's
//! `blobs`); an index or manifest list lists its manifests. A registry
//! accepts a manifest only when the repository holds everything it lists,
//! so the listing is the origin's own word that the repository holds them.

use serde_json::Value;
use shoal_core::Digest;

/// Most digests taken from one manifest.
pub const MAX_LISTED: usize = 1024;

/// The digests `body` (a manifest of `media_type`) lists; nothing for a
/// body that is not a JSON manifest.
pub fn listed(body: &[u8]) -> Vec<Digest> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return Vec::new() };
    let mut out: Vec<Digest> = Vec::new();
    let mut push = |d: &Value| {
        if let Some(d) = d.get("digest").and_then(Value::as_str).and_then(|s| s.parse::<Digest>().ok())
            && !out.contains(&d)
            && out.len() < MAX_LISTED
        {
            out.push(d);
        }
    };
    if let Some(c) = v.get("config") {
        push(c);
    }
    for key in ["layers", "manifests", "blobs"] {
        if let Some(list) = v.get(key).and_then(Value::as_array) {
            list.iter().for_each(&mut push);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_list_config_and_layers_indexes_their_manifests() {
        let (a, b, c) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"), Digest::sha256_of(b"c"));
        let image = serde_json::json!({
            "schemaVersion": 2,
            "config": {"digest": a.to_string(), "size": 1},
            "layers": [{"digest": b.to_string(), "size": 2}, {"digest": b.to_string(), "size": 2}],
        });
        assert_eq!(listed(image.to_string().as_bytes()), vec![a.clone(), b.clone()]);
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": c.to_string(), "size": 3}]});
        assert_eq!(listed(index.to_string().as_bytes()), vec![c]);
        assert!(listed(b"not json").is_empty());
        let bad = serde_json::json!({"layers": [{"digest": "sha256:zz"}]});
        assert!(listed(bad.to_string().as_bytes()).is_empty());
    }
}
