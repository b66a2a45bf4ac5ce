//! Resolving an image to the blobs to fetch: the manifest by tag or digest
//! through the local mirror (so the daemon's credentials and upstream
//! settings apply), down an index to the wanted platforms, to each
//! platform's config and layers.

use shoal_core::Digest;

use crate::PrewarmError;
use crate::image_ref::ImageRef;
use crate::manifest::{self, ACCEPT, INDEX_TYPES};
use crate::platform::Platform;

/// The blobs of an image for some platforms.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Unique blobs (configs and layers) with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Platforms resolved.
    pub platforms: Vec<String>,
}

impl Plan {
    /// Total bytes.
    pub fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.1).sum()
    }
}

/// The `message` of an OCI error body, else the body as text.
pub(crate) fn error_detail(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

fn manifest_url(mirror: &str, image: &ImageRef, reference: &str) -> String {
    format!("{mirror}/v2/{}/manifests/{reference}?ns={}", image.repo, image.registry)
}

/// The error for a non-2xx manifest answer.
fn status_error(image: &ImageRef, status: reqwest::StatusCode, detail: String) -> PrewarmError {
    let (name, registry) = (image.to_string(), image.registry.clone());
    match status.as_u16() {
        404 => PrewarmError::NotFound { image: name, registry, detail },
        401 | 403 => PrewarmError::Refused { image: name, registry, detail },
        s => PrewarmError::Mirror { image: name, status: s, detail },
    }
}

async fn get_manifest(
    client: &reqwest::Client,
    mirror: &str,
    image: &ImageRef,
    reference: &str,
) -> Result<serde_json::Value, PrewarmError> {
    let unreachable = |source| PrewarmError::Unreachable { mirror: mirror.to_owned(), source };
    let resp = client
        .get(manifest_url(mirror, image, reference))
        .header("Accept", ACCEPT)
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(unreachable)?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| PrewarmError::BadManifest {
            image: image.to_string(),
            reason: format!("the manifest is not JSON: {e}"),
        });
    }
    Err(status_error(image, status, error_detail(&body)))
}

/// The index entry for `want`, or the error naming the platforms there are.
fn find_platform<'a>(
    entries: &'a [serde_json::Value],
    want: &Platform,
    image: &ImageRef,
) -> Result<&'a serde_json::Value, PrewarmError> {
    entries.iter().find(|e| want.matches(&e["platform"])).ok_or_else(|| {
        let have: Vec<String> = entries
            .iter()
            .filter_map(|e| {
                let p = &e["platform"];
                Some(format!("{}/{}", p["os"].as_str()?, p["architecture"].as_str()?))
            })
            .collect();
        PrewarmError::MissingPlatform { image: image.to_string(), want: want.to_string(), have: have.join(", ") }
    })
}

/// Checks that `image` resolves, with the daemon's credentials, and has
/// `platforms`, without fetching an image manifest's body: serving one
/// makes the daemon prefetch the image's blobs, which a check for another
/// node's sake must not do. A HEAD, then (for an index only) the index.
pub async fn check(
    client: &reqwest::Client,
    mirror: &str,
    image: &ImageRef,
    platforms: &[Platform],
) -> Result<(), PrewarmError> {
    let reference = image.reference.to_string();
    let resp = client
        .head(manifest_url(mirror, image, &reference))
        .header("Accept", ACCEPT)
        .send()
        .await
        .map_err(|source| PrewarmError::Unreachable { mirror: mirror.to_owned(), source })?;
    let media_type = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if resp.status().is_success() && !INDEX_TYPES.contains(&media_type) {
        return Ok(());
    }
    // An index, or a failure: a HEAD answer has no body to say why, so ask
    // again with a GET (a failed one starts no prefetch).
    let index = get_manifest(client, mirror, image, &reference).await?;
    if !manifest::is_index(&index) {
        return Ok(());
    }
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    for want in platforms {
        find_platform(&entries, want, image)?;
    }
    Ok(())
}

/// Resolve `image` for `platforms` through the mirror.
pub async fn plan(
    client: &reqwest::Client,
    mirror: &str,
    image: &ImageRef,
    platforms: &[Platform],
) -> Result<Plan, PrewarmError> {
    let bad = |reason: &str| PrewarmError::BadManifest { image: image.to_string(), reason: reason.to_owned() };
    let top = get_manifest(client, mirror, image, &image.reference.to_string()).await?;
    let mut manifests = Vec::new();
    let mut resolved = Vec::new();
    if manifest::is_index(&top) {
        let entries = top["manifests"].as_array().cloned().unwrap_or_default();
        for want in platforms {
            let entry = find_platform(&entries, want, image)?;
            let digest = entry["digest"].as_str().ok_or_else(|| bad("an index entry has no digest"))?;
            manifests.push(get_manifest(client, mirror, image, digest).await?);
            resolved.push(want.to_string());
        }
    } else {
        manifests.push(top);
        resolved.push("(single-platform image)".into());
    }
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for m in &manifests {
        for b in manifest::blobs(m).map_err(|reason| bad(&reason))? {
            if !blobs.iter().any(|x| x.0 == b.0) {
                blobs.push(b);
            }
        }
    }
    Ok(Plan { blobs, platforms: resolved })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_come_from_oci_bodies() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert_eq!(error_detail(body), "manifest unknown");
        assert_eq!(error_detail(b"plain text\n"), "plain text");
    }
}
