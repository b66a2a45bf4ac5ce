//! A full disk is survived: with the store on a small tmpfs, a blob bigger
//! than the disk fails at once with 507 and an OCI body naming the store
//! and the shortfall (no path), holds nothing, and the daemon keeps
//! pulling other blobs, right after and after a restart, with no manual
//! step. `/readyz` says when the store cannot write, and recovers.
//!
//! Needs root (it mounts a tmpfs); the mount is undone on drop, even when
//! the test fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use shoal_storage::StoreConfig;
use shoal_testkit::random_bytes;
use support::{Daemon, Origin, get_all};

const MIB: u64 = 1 << 20;
const REPO: &str = "disk/app";
/// The tmpfs holding the store.
const DISK: u64 = 24 * MIB;
/// What the store keeps free on it.
const MIN_FREE: u64 = 2 * MIB;

/// A tmpfs mounted on a temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon task still holding a file must not leave the
        // mount behind.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// A daemon in this process over the store at `root`, keeping
/// [`MIN_FREE`] free.
async fn start_daemon(root: &Path, origin: &Origin) -> Daemon {
    let mut store = StoreConfig::new(root);
    store.min_free = MIN_FREE;
    let daemon = Daemon::start_with_store(store, &origin.front).await;
    // The daemon answers /readyz 503 "starting" until its setup is done;
    // these tests begin from a ready one (and assert it).
    for _ in 0..500 {
        if daemon.readyz().await.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    daemon
}

/// Pulls `digest` and checks its bytes.
async fn pulls(d: &Daemon, digest: &str, data: &[u8]) {
    let (code, _, body) = get_all(&d.blob_url(REPO, digest), None).await.unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body[..body.len().min(300)]));
    assert!(body == data, "the bytes of {digest} are wrong");
}

/// Asserts a 507 naming the store and the shortfall, without a path.
async fn refused_for_space(d: &Daemon, digest: &str, mount: &Path) {
    let (code, _, body) = get_all(&d.blob_url(REPO, digest), None).await.unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(code, 507, "{text}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = v["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("piece store") && message.contains("needs"), "{message}");
    assert!(!text.contains(&*mount.to_string_lossy()) && !text.contains("/tmp"), "a path in {text}");
}

/// `.partial` files under the store.
fn partials(root: &Path) -> Vec<PathBuf> {
    let dir = root.join("blobs/sha256");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "partial"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_bigger_than_the_disk_fails_clearly_and_the_daemon_goes_on() {
    let disk = Tmpfs::mount(DISK);
    let root = disk.path().join("store");
    let o = Origin::start().await;
    let before = random_bytes(3 * MIB as usize, 1);
    let before_d = o.blob(REPO, before.clone()).await;
    let big = random_bytes((DISK + 8 * MIB) as usize, 2);
    let big_d = o.blob(REPO, big).await;
    let small = random_bytes(2 * MIB as usize, 3);
    let small_d = o.blob(REPO, small.clone()).await;
    let later = random_bytes(2 * MIB as usize, 4);
    let later_d = o.blob(REPO, later.clone()).await;

    let daemon = start_daemon(&root, &o).await;
    pulls(&daemon, &before_d, &before).await;

    refused_for_space(&daemon, &big_d, disk.path()).await;
    assert!(partials(&root).is_empty(), "the failed download holds nothing: {:?}", partials(&root));
    // Right after: what was stored is served, and a new blob pulls.
    pulls(&daemon, &before_d, &before).await;
    pulls(&daemon, &small_d, &small).await;
    assert_eq!(daemon.readyz().await.0, 200);

    // A restart over the same store: no manual step, pulls go on.
    daemon.stop().await;
    let daemon = start_daemon(&root, &o).await;
    assert_eq!(daemon.readyz().await.0, 200);
    pulls(&daemon, &small_d, &small).await;
    pulls(&daemon, &later_d, &later).await;
    refused_for_space(&daemon, &big_d, disk.path()).await;
    pulls(&daemon, &before_d, &before).await;
    assert!(partials(&root).is_empty(), "{:?}", partials(&root));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_says_when_the_store_cannot_write_and_recovers() {
    let disk = Tmpfs::mount(DISK);
    let root = disk.path().join("store");
    let o = Origin::start().await;
    let small = random_bytes(2 * MIB as usize, 5);
    let small_d = o.blob(REPO, small.clone()).await;
    let daemon = start_daemon(&root, &o).await;
    assert_eq!(daemon.readyz().await, (200, "ready\n".to_owned()));

    // Another process fills the disk.
    let ballast = disk.path().join("ballast");
    let free = free_bytes(disk.path());
    std::fs::write(&ballast, vec![0u8; (free - MIB) as usize]).unwrap();
    let (code, body) = daemon.readyz().await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("piece store") && body.contains("min_free"), "says what is wrong and what to do: {body}");
    assert!(!body.contains(&*disk.path().to_string_lossy()), "no path: {body}");
    assert!(daemon.readyz().await.0 == 503);
    refused_for_space(&daemon, &small_d, disk.path()).await;

    std::fs::remove_file(&ballast).unwrap();
    assert_eq!(daemon.readyz().await, (200, "ready\n".to_owned()));
    pulls(&daemon, &small_d, &small).await;
    daemon.stop().await;
}

/// Free bytes of the filesystem at `path`, as `df` sees them.
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(path).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().nth(1).unwrap().trim().parse().unwrap()
}
