//! `shoal containerd configure` writes hosts.toml files that a real
//! containerd pulls through: first through shoal, and with shoal stopped,
//! from the origin directly. Rerunning it leaves the files alone, and a
//! containerd config without the CRI `config_path` makes it fail with the
//! lines to add.

use std::path::Path;
use std::process::Output;

use shoal_e2e::{Origin, assert_has_image, pull_fresh, shoal_for};

/// Runs the `shoal` binary with these arguments.
fn shoal(args: &[&str]) -> Output {
    let bin = shoal_testkit::shoal_bin().expect("the shoal binary (cargo build -p shoal)");
    std::process::Command::new(bin).args(args).output().expect("run shoal")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `shoal containerd configure` for one registry into `certs`, without the
/// containerd config check.
fn configure(certs: &Path, registry: &str, mirror: &str) -> Output {
    let certs = certs.to_str().unwrap();
    shoal(&[
        "containerd",
        "configure",
        "--certs-dir",
        certs,
        "--registry",
        registry,
        "--mirror",
        mirror,
        "--skip-containerd-check",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containerd_pulls_through_the_configured_mirror_and_falls_back_to_the_origin_without_it() {
    let origin = Origin::start().await;
    let image = origin.push_image("e2e/cfg:v1", &[2 << 20, 3 << 20], None).await;
    let mut daemon = shoal_for(&origin.front, None, "").await;
    let certs = tempfile::tempdir().unwrap();
    let host = origin.front.host();
    let registry = format!("{host}={}", origin.front.url());
    let mirror = daemon.mirror_url();

    let out = configure(certs.path(), &registry, &mirror);
    assert!(out.status.success(), "configure failed: {}", text(&out.stderr));
    let file = certs.path().join(&host).join("hosts.toml");
    assert_eq!(text(&out.stdout), format!("{}: written\n", file.display()));
    let written = std::fs::read_to_string(&file).unwrap();
    let expected = format!(
        "# Written by `shoal containerd configure`; running it again rewrites this file.\n\
         # containerd tries the shoal mirror first and the origin (server) when shoal is down.\n\
         server = \"{}\"\n\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        origin.front.url()
    );
    assert_eq!(written, expected);

    // Idempotent: nothing rewritten, no backup.
    let again = configure(certs.path(), &registry, &mirror);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), format!("{}: unchanged\n", file.display()));
    assert_eq!(std::fs::read_dir(file.parent().unwrap()).unwrap().count(), 1, "only hosts.toml");

    // Through shoal: each blob once from the origin, served by the mirror.
    let reference = format!("{host}/e2e/cfg:v1");
    let first = pull_fresh(&reference, certs.path(), None).await;
    assert_has_image(&first, &image).await;
    for blob in image.blob_digests() {
        assert_eq!(origin.front.blob_gets(&blob), 1, "{blob}: one GET at the origin, made by shoal");
    }
    let served = shoal_e2e::served_bytes(&daemon.metrics_url()).await;
    assert!(served >= image.blob_bytes() as f64, "shoal served {served} bytes, the image has {}", image.blob_bytes());

    // shoal down: a fresh containerd gets everything from the origin itself.
    daemon.terminate().await.expect("stop shoal");
    let second = pull_fresh(&reference, certs.path(), None).await;
    assert_has_image(&second, &image).await;
    for blob in image.blob_digests() {
        assert_eq!(origin.front.blob_gets(&blob), 2, "{blob}: containerd fell back to the origin");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_entry_sends_other_registries_through_shoal_and_falls_back_to_them_without_it() {
    let origin = Origin::start().await;
    let image = origin.push_image("e2e/dflt:v1", &[1 << 20], None).await;
    let mut daemon = shoal_for(&origin.front, None, "").await;
    let certs = tempfile::tempdir().unwrap();
    let out = shoal(&[
        "containerd",
        "configure",
        "--default",
        "--certs-dir",
        certs.path().to_str().unwrap(),
        "--mirror",
        &daemon.mirror_url(),
        "--skip-containerd-check",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let default = std::fs::read_to_string(certs.path().join("_default/hosts.toml")).unwrap();
    assert!(!default.contains("server"), "{default}");

    // No directory for the front's host: containerd takes _default, the
    // mirror first.
    let reference = format!("{}/e2e/dflt:v1", origin.front.host());
    let first = pull_fresh(&reference, certs.path(), None).await;
    assert_has_image(&first, &image).await;
    let served = shoal_e2e::served_bytes(&daemon.metrics_url()).await;
    assert!(served >= image.blob_bytes() as f64, "shoal served {served} bytes, the image has {}", image.blob_bytes());
    for blob in image.blob_digests() {
        assert_eq!(origin.front.blob_gets(&blob), 1, "{blob}: one GET at the origin, made by shoal");
    }

    // shoal down: containerd's own default host for the name (plain http
    // for a loopback registry) comes after the mirror.
    daemon.terminate().await.expect("stop shoal");
    let second = pull_fresh(&reference, certs.path(), None).await;
    assert_has_image(&second, &image).await;
    for blob in image.blob_digests() {
        assert_eq!(origin.front.blob_gets(&blob), 2, "{blob}: containerd fell back to the registry itself");
    }
}

#[test]
fn the_containerd_config_check_fails_with_the_lines_to_add_and_passes_once_they_are_there() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs.d");
    let config = dir.path().join("config.toml");
    // As Debian's containerd package ships it: no registry config_path.
    let debian = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    \
                  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n";
    std::fs::write(&config, debian).unwrap();
    let args = |extra: &[&str]| {
        let mut v = vec![
            "containerd",
            "configure",
            "--registry",
            "docker.io",
            "--default",
            "--certs-dir",
            certs.to_str().unwrap(),
            "--containerd-config",
            config.to_str().unwrap(),
        ];
        v.extend_from_slice(extra);
        shoal(&v)
    };

    let out = args(&[]);
    assert!(!out.status.success(), "must fail without config_path");
    let err = text(&out.stderr);
    let lines = format!("[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"{}\"\n", certs.display());
    assert!(err.contains(&lines), "{err}");
    // The files are written anyway (nothing reads them until containerd does).
    let docker = std::fs::read_to_string(certs.join("docker.io/hosts.toml")).unwrap();
    assert!(docker.contains("server = \"https://registry-1.docker.io\""), "{docker}");
    assert!(docker.contains("[host.\"http://127.0.0.1:65001\"]"), "{docker}");
    let default = std::fs::read_to_string(certs.join("_default/hosts.toml")).unwrap();
    assert!(!default.contains("server"), "{default}");

    // Add the printed lines: it passes, and nothing is rewritten.
    std::fs::write(&config, format!("{debian}\n{lines}")).unwrap();
    let out = args(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches(": unchanged").count(), 2, "{stdout}");

    // A different mirror replaces the files and keeps the old ones.
    let out = args(&["--mirror", "http://127.0.0.1:7777"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches(": replaced (backup: ").count(), 2, "{stdout}");
    let backups: Vec<_> = std::fs::read_dir(certs.join("docker.io"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hosts.toml.bak-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(certs.join("docker.io").join(&backups[0])).unwrap(), docker);

    // No config file at all: reported as such.
    let out = shoal(&[
        "containerd",
        "configure",
        "--registry",
        "docker.io",
        "--certs-dir",
        certs.to_str().unwrap(),
        "--containerd-config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("does not exist"), "{}", text(&out.stderr));
}
