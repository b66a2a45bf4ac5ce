//! Resolving an image to the blobs to fetch: the manifest by tag or digest
//! through the local mirror (so the daemon's credentials and upstream
//! settings apply), down an index to the wanted platforms, to each
//! platform's config and layers.

use anyhow::{Context, bail};
use shoal_core::Digest;

use super::image_ref::ImageRef;

const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A platform such as `linux/amd64` or `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Platform {
    pub(crate) os: String,
    pub(crate) arch: String,
    pub(crate) variant: Option<String>,
}

impl std::str::FromStr for Platform {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] => Ok(Platform { os: (*os).into(), arch: (*arch).into(), variant: None }),
            [os, arch, v] => Ok(Platform { os: (*os).into(), arch: (*arch).into(), variant: Some((*v).into()) }),
            _ => bail!("platform {s:?} is not os/arch[/variant], e.g. linux/amd64"),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// This machine's platform, as image indexes name it.
    pub(crate) fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform { os: std::env::consts::OS.into(), arch: arch.into(), variant: None }
    }

    fn matches(&self, p: &serde_json::Value) -> bool {
        p["os"] == self.os.as_str()
            && p["architecture"] == self.arch.as_str()
            && self.variant.as_deref().is_none_or(|v| p["variant"] == v)
    }
}

/// The blobs of an image for some platforms.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Unique blobs (configs and layers) with their sizes.
    pub(crate) blobs: Vec<(Digest, u64)>,
    /// Platforms resolved.
    pub(crate) platforms: Vec<String>,
}

impl Plan {
    /// Total bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.blobs.iter().map(|b| b.1).sum()
    }
}

async fn get_manifest(
    client: &reqwest::Client,
    mirror: &str,
    image: &ImageRef,
    reference: &str,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("{mirror}/v2/{}/manifests/{reference}?ns={}", image.repo, image.registry);
    let resp =
        client.get(&url).header("Accept", ACCEPT).send().await.with_context(|| {
            format!("cannot reach the local shoal daemon at {mirror}: is it running? (set --mirror)")
        })?;
    let status = resp.status();
    let body = resp.bytes().await.with_context(|| format!("reading the manifest of {image}"))?;
    if status.is_success() {
        return serde_json::from_slice(&body).with_context(|| format!("the manifest of {image} is not JSON"));
    }
    let detail = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    match status.as_u16() {
        404 => bail!("{image}: not found at {} ({detail})", image.registry),
        401 | 403 => bail!(
            "{image}: {} refused the credentials ({detail}); give the daemon credentials for it \
             ([registries.\"{}\"] username/password or docker_config)",
            image.registry,
            image.registry
        ),
        s => bail!("{image}: the mirror answered {s} ({detail})"),
    }
}

/// Resolve `image` for `platforms` through the mirror.
pub(crate) async fn plan(
    client: &reqwest::Client,
    mirror: &str,
    image: &ImageRef,
    platforms: &[Platform],
) -> anyhow::Result<Plan> {
    let top = get_manifest(client, mirror, image, &image.reference.to_string()).await?;
    let is_index = top["manifests"].is_array() || top["mediaType"].as_str().is_some_and(|m| INDEX_TYPES.contains(&m));
    let mut manifests = Vec::new();
    let mut resolved = Vec::new();
    if is_index {
        let entries = top["manifests"].as_array().cloned().unwrap_or_default();
        for want in platforms {
            let Some(entry) = entries.iter().find(|e| want.matches(&e["platform"])) else {
                let have: Vec<String> = entries
                    .iter()
                    .filter_map(|e| {
                        let p = &e["platform"];
                        Some(format!("{}/{}", p["os"].as_str()?, p["architecture"].as_str()?))
                    })
                    .collect();
                bail!("{image}: has no {want} manifest (it has: {})", have.join(", "));
            };
            let digest = entry["digest"].as_str().context("index entry without a digest")?;
            manifests.push(get_manifest(client, mirror, image, digest).await?);
            resolved.push(want.to_string());
        }
    } else {
        manifests.push(top);
        resolved.push("(single-platform image)".into());
    }
    let mut blobs: Vec<(Digest, u64)> = Vec::new();
    for m in &manifests {
        let descs = std::iter::once(&m["config"]).chain(m["layers"].as_array().into_iter().flatten());
        for d in descs {
            let digest: Digest = d["digest"]
                .as_str()
                .context("descriptor without a digest")?
                .parse()
                .with_context(|| format!("{image}: a descriptor has an invalid digest"))?;
            let size = d["size"].as_u64().unwrap_or(0);
            if !blobs.iter().any(|b| b.0 == digest) {
                blobs.push((digest, size));
            }
        }
    }
    Ok(Plan { blobs, platforms: resolved })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        assert_eq!("linux/arm64/v8".parse::<Platform>().unwrap().to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        let p: Platform = "linux/amd64".parse().unwrap();
        assert!(p.matches(&serde_json::json!({"os": "linux", "architecture": "amd64"})));
        assert!(!p.matches(&serde_json::json!({"os": "linux", "architecture": "arm64"})));
        let v: Platform = "linux/arm/v7".parse().unwrap();
        assert!(!v.matches(&serde_json::json!({"os": "linux", "architecture": "arm", "variant": "v6"})));
    }
}
