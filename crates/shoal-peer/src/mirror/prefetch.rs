//! Prefetching an image's blobs when its manifest is served.
//!
//! A client that asked for an image manifest (not an index) asks for its
//! config and layers next; containerd fetches several at once, skopeo and
//! some others one after another. Starting every missing blob's download as
//! soon as the manifest goes out means each layer's swarm starts at once on
//! every node pulling the image, instead of layer by layer behind the
//! slowest client, and the client's later requests join downloads already
//! under way (one download per blob, as always). The downloads use the
//! client's credentials, exactly as its own blob requests would (they
//! fill the store; a blob still goes to a client only past its own access
//! check).
//!
//! Off with `[mirror] prefetch = false` (for mirrors whose clients read
//! manifests without pulling, such as scanners).

use std::sync::Arc;

use shoal_core::{Digest, RepoName};
use shoal_origin::{Caller, OriginClient};
use shoal_prewarm::manifest::{self, IMAGE_TYPES};

use super::Mirror;

/// Most blobs one manifest starts.
pub const MAX_BLOBS: usize = 128;

/// The config and layer digests of an image manifest with their sizes, in
/// order, without repeats; nothing for an index, a list or anything
/// unparsable.
pub fn blobs_of(media_type: &str, body: &[u8]) -> Vec<(Digest, u64)> {
    if !IMAGE_TYPES.contains(&media_type) {
        return Vec::new();
    }
    let blobs = serde_json::from_slice(body).ok().and_then(|m| manifest::blobs(&m).ok()).unwrap_or_default();
    blobs.into_iter().take(MAX_BLOBS).collect()
}

/// Starts, in the background, the download of every blob of the manifest
/// (`media_type`, `body`) that the store does not hold complete.
pub fn start(m: &Mirror, origin: Arc<OriginClient>, repo: &RepoName, media_type: &str, body: &[u8], caller: Caller) {
    if !m.config.prefetch {
        return;
    }
    let blobs = blobs_of(media_type, body);
    if blobs.is_empty() {
        return;
    }
    let (m, repo) = (m.clone(), repo.clone());
    tokio::spawn(async move {
        let mut started = 0;
        for (d, size) in blobs {
            if m.tasks.get(&d).is_some() {
                continue;
            }
            let key = d.clone();
            match m.blocking(move |s| s.blob_info(&key)).await {
                Ok(Some(info)) if info.complete => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(digest = %d, error = %e, "prefetch: store lookup failed");
                    continue;
                }
            }
            // The descriptor's size spares the swarm path its HEAD; a wrong
            // one fails the download (the origin announces another size).
            let hint = (size > 0).then_some(size);
            m.tasks.start_sized(origin.clone(), &repo, &d, caller.clone(), hint);
            started += 1;
        }
        if started > 0 {
            tracing::info!(%repo, blobs = started, "prefetching the image's blobs");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_manifests_name_their_config_and_layers_once() {
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        let body = serde_json::json!({
            "schemaVersion": 2,
            "config": {"digest": a.to_string(), "size": 1},
            "layers": [{"digest": b.to_string(), "size": 2}, {"digest": b.to_string(), "size": 2}],
        })
        .to_string();
        assert_eq!(blobs_of(IMAGE_TYPES[0], body.as_bytes()), vec![(a.clone(), 1), (b.clone(), 2)]);
        assert_eq!(blobs_of(IMAGE_TYPES[1], body.as_bytes()), vec![(a, 1), (b, 2)]);
        assert!(blobs_of("application/vnd.oci.image.index.v1+json", body.as_bytes()).is_empty());
        assert!(blobs_of(IMAGE_TYPES[0], b"not json").is_empty());
    }
}
