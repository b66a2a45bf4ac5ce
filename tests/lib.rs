//! End-to-end tests of shoal: the `shoal` binary as a process, Debian's
//! docker-registry as the origin (behind a counting front that measures
//! what the origin really sent), and Debian's containerd pulling through
//! the mirror via `hosts.toml`.
//!
//! The helpers here assemble those parts; each test file is one scenario.

use std::path::{Path, PathBuf};

use shoal_testkit::{Containerd, CountingFront, ImageSpec, PushedImage, Registry, ShoalDaemon, write_hosts_toml};

/// An origin registry, a front counting its traffic, and a pushed image.
pub struct Origin {
    /// The registry process.
    pub registry: Registry,
    /// What shoal and containerd talk to.
    pub front: CountingFront,
}

impl Origin {
    /// A plain registry with a front.
    pub async fn start() -> Origin {
        let registry = Registry::start().await.expect("start docker-registry");
        Origin::around(registry).await
    }

    /// A front around an already started registry.
    pub async fn around(registry: Registry) -> Origin {
        let front = CountingFront::start(&registry.url()).await.expect("start the counting front");
        Origin { registry, front }
    }

    /// Build an image of `layers` (bytes each) with umoci and push it with
    /// skopeo as `repo:tag`.
    pub async fn push_image(&self, repo_tag: &str, layers: &[u64], creds: Option<(&str, &str)>) -> PushedImage {
        let spec = ImageSpec { layers: layers.to_vec(), seed: 7 };
        shoal_testkit::build_and_push(&spec, &self.registry.host(), repo_tag, creds)
            .await
            .expect("build and push an image")
    }
}

/// A shoal daemon whose upstream for the front's host is the front.
pub async fn shoal_for(origin: &CountingFront, data_dir: Option<&Path>, extra: &str) -> ShoalDaemon {
    let mut b = ShoalDaemon::builder().default_registry(&origin.host()).registry(&origin.host(), &origin.url());
    if let Some(d) = data_dir {
        b = b.data_dir(d);
    }
    if !extra.is_empty() {
        b = b.config_toml(extra);
    }
    b.start().await.expect("start shoal daemon")
}

/// A hosts dir sending pulls of the front's registry to `mirror` first.
pub fn hosts_dir(origin: &CountingFront, mirror: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write_hosts_toml(dir.path(), &origin.host(), &origin.url(), mirror).expect("write hosts.toml");
    dir
}

/// Pull `reference` with a fresh containerd and return it (for content checks).
pub async fn pull_fresh(reference: &str, hosts: &Path, user: Option<&str>) -> Containerd {
    let c = Containerd::start().await.expect("start containerd");
    if let Err(e) = c.pull(reference, hosts, user).await {
        panic!("ctr pull {reference} failed: {e}\ncontainerd log:\n{}", c.log_tail(4000));
    }
    c
}

/// Assert containerd holds every blob of `image` (config and layers).
pub async fn assert_has_image(c: &Containerd, image: &PushedImage) {
    let have = c.content_digests().await.expect("ctr content ls");
    for d in image.blob_digests() {
        assert!(have.contains(&d), "containerd lacks {d}; it has {have:?}");
    }
    assert!(have.contains(&image.manifest_digest), "containerd lacks the manifest {}", image.manifest_digest);
}

/// Where a daemon keeps its data, for restarts.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("temp dir");
    let p = t.path().join("data");
    (t, p)
}
