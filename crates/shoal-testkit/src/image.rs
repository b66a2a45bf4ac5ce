//! Building and pushing real images: an OCI layout made with `umoci` (one
//! random, incompressible file per layer), pushed with `skopeo copy`, and the
//! manifest read back from the registry; plus `push_blob` for fast
//! blob-level tests and seeded `random_bytes`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use serde::Deserialize;
use tokio::process::Command;

use crate::client::RegistryClient;
use crate::command::run;
use crate::error::{Error, IoContext, Result};
use crate::tools::require_tool;

/// Deadline for each umoci / skopeo invocation.
pub const IMAGE_COMMAND_DEADLINE: Duration = Duration::from_secs(120);

/// `len` pseudo-random (incompressible) bytes, the same for the same seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

/// What image to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// Approximate uncompressed size of each layer (one random file each).
    pub layers: Vec<u64>,
    /// Seed of the random content (layer `i` uses `seed + i`).
    pub seed: u64,
}

/// An OCI image layout on disk with one tagged image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciLayout {
    /// The layout directory.
    pub dir: PathBuf,
    /// The tag inside the layout.
    pub tag: String,
}

/// A blob referenced by a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlobRef {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
}

/// An image as a registry serves it after a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// `HOST/REPO:TAG`.
    pub reference: String,
    /// Repository name.
    pub repo: String,
    /// Tag.
    pub tag: String,
    /// Digest of the manifest as served.
    pub manifest_digest: String,
    /// Media type of the manifest.
    pub manifest_media_type: String,
    /// The config blob.
    pub config: BlobRef,
    /// The layer blobs, base first.
    pub layers: Vec<BlobRef>,
}

impl PushedImage {
    /// Total size of config + layers.
    pub fn blob_bytes(&self) -> u64 {
        self.config.size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// Digests of config + layers.
    pub fn blob_digests(&self) -> Vec<String> {
        std::iter::once(&self.config).chain(&self.layers).map(|b| b.digest.clone()).collect()
    }

    /// `HOST/REPO@DIGEST`.
    pub fn reference_by_digest(&self) -> String {
        let host = self.reference.split('/').next().unwrap_or_default();
        format!("{host}/{}@{}", self.repo, self.manifest_digest)
    }
}

#[derive(Deserialize)]
struct Manifest {
    config: BlobRef,
    layers: Vec<BlobRef>,
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Builds an image with `umoci` in `dir` (created if needed): the layout is
/// `dir/layout` with tag `latest`, one layer per entry of `spec.layers`.
pub async fn build_oci_layout(spec: &ImageSpec, dir: &Path) -> Result<OciLayout> {
    let umoci = require_tool("umoci")?;
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    let tag = "latest";
    let image = format!("{}:{tag}", layout.display());
    std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let umoci_cmd = |args: &[&str]| {
        let mut c = Command::new(&umoci);
        c.args(args);
        c
    };
    run(umoci_cmd(&["init", "--layout", &layout.to_string_lossy()]), IMAGE_COMMAND_DEADLINE).await?;
    run(umoci_cmd(&["new", "--image", &image]), IMAGE_COMMAND_DEADLINE).await?;
    let mut unpack = umoci_cmd(&["unpack"]);
    if !is_root() {
        unpack.arg("--rootless");
    }
    unpack.args(["--image", &image]).arg(&bundle);
    run(unpack, IMAGE_COMMAND_DEADLINE).await?;
    for (i, size) in spec.layers.iter().enumerate() {
        let file = bundle.join("rootfs").join(format!("layer-{i}.bin"));
        let data = random_bytes(*size as usize, spec.seed.wrapping_add(i as u64));
        tokio::fs::write(&file, data).await.ctx(|| format!("writing {}", file.display()))?;
        let mut repack = umoci_cmd(&["repack", "--refresh-bundle", "--image", &image]);
        repack.arg(&bundle);
        run(repack, IMAGE_COMMAND_DEADLINE).await?;
    }
    Ok(OciLayout { dir: layout, tag: tag.to_string() })
}

/// Pushes `layout` to `registry_host` (e.g. `127.0.0.1:5000`) as
/// `repo_tag` (`repo:tag`) with `skopeo copy`, then reads the manifest back
/// from the registry.
pub async fn push(
    layout: &OciLayout,
    registry_host: &str,
    repo_tag: &str,
    creds: Option<(&str, &str)>,
) -> Result<PushedImage> {
    let (repo, tag) = repo_tag
        .rsplit_once(':')
        .ok_or_else(|| Error::invalid("image name", format!("{repo_tag}: expected REPO:TAG")))?;
    let skopeo = require_tool("skopeo")?;
    let mut cmd = Command::new(skopeo);
    cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false"]);
    if let Some((u, p)) = creds {
        cmd.arg(format!("--dest-creds={u}:{p}"));
    }
    cmd.arg(format!("oci:{}:{}", layout.dir.display(), layout.tag))
        .arg(format!("docker://{registry_host}/{repo}:{tag}"));
    run(cmd, IMAGE_COMMAND_DEADLINE).await?;
    inspect_pushed(&format!("http://{registry_host}"), registry_host, repo, tag, creds).await
}

/// Reads `repo:tag` back from the registry at `registry_url` and describes
/// it as a [`PushedImage`] (the reference uses `registry_host`).
pub async fn inspect_pushed(
    registry_url: &str,
    registry_host: &str,
    repo: &str,
    tag: &str,
    creds: Option<(&str, &str)>,
) -> Result<PushedImage> {
    let client = RegistryClient::new(registry_url, creds)?;
    let manifest = client.get_manifest(repo, tag).await?;
    if let Some(h) = &manifest.header_digest
        && h != &manifest.digest
    {
        return Err(Error::invalid(
            "manifest digest",
            format!("registry says {h} but the bytes hash to {}", manifest.digest),
        ));
    }
    let parsed: Manifest = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| Error::invalid("image manifest", format!("{e}: {}", String::from_utf8_lossy(&manifest.bytes))))?;
    Ok(PushedImage {
        reference: format!("{registry_host}/{repo}:{tag}"),
        repo: repo.to_string(),
        tag: tag.to_string(),
        manifest_digest: manifest.digest,
        manifest_media_type: manifest.media_type,
        config: parsed.config,
        layers: parsed.layers,
    })
}

/// Builds an image from `spec` in a temp dir and pushes it; a one-call
/// helper for tests.
pub async fn build_and_push(
    spec: &ImageSpec,
    registry_host: &str,
    repo_tag: &str,
    creds: Option<(&str, &str)>,
) -> Result<PushedImage> {
    let dir =
        tempfile::Builder::new().prefix("shoal-image-").tempdir().ctx(|| "creating the image temp dir".to_string())?;
    let layout = build_oci_layout(spec, dir.path()).await?;
    push(&layout, registry_host, repo_tag, creds).await
}

/// Uploads `bytes` as a blob of `repo` at `registry_url` through the
/// Distribution API (POST then PUT `?digest=`); returns the digest.
pub async fn push_blob(
    registry_url: &str,
    repo: &str,
    bytes: impl Into<Bytes>,
    creds: Option<(&str, &str)>,
) -> Result<String> {
    RegistryClient::new(registry_url, creds)?.push_blob(repo, bytes.into()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_seeded() {
        assert_eq!(random_bytes(64, 7), random_bytes(64, 7));
        assert_ne!(random_bytes(64, 7), random_bytes(64, 8));
        assert_eq!(random_bytes(1000, 1).len(), 1000);
    }
}
