//! shoal's own container image: `scripts/build-image` turns the binary
//! under test into an OCI layout (umoci), skopeo pushes it to a loopback
//! docker-registry, containerd pulls it through a shoal daemon, and runc
//! (`ctr run`) runs `shoal --version` from it, in a root file system that
//! holds nothing but what the script put there.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use serde_json::Value;
use shoal_e2e::{Origin, hosts_dir, pull_fresh, shoal_for};
use shoal_testkit::command::run;
use shoal_testkit::{require_tool, shoal_bin};
use tokio::process::Command;

/// The image's tag: crates/shoal's version (this crate inherits the same
/// workspace version).
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Building the layout (no cargo build: the binary is given).
const BUILD_DEADLINE: Duration = Duration::from_secs(120);
/// One skopeo push or inspect, one `ctr run`.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn tool(name: &str) -> PathBuf {
    require_tool(name)
        .unwrap_or_else(|e| panic!("{e}\n{name} is required by this test (never skipped): run scripts/test"))
}

/// Kills and deletes a `ctr run` container when dropped, so a failed or
/// hung run leaves no task (and no shim) behind once containerd goes.
struct ContainerGuard {
    ctr: PathBuf,
    socket: PathBuf,
    id: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let ctr = |args: &[&str]| {
            // Best effort: after a clean `--rm` run these find nothing.
            let _ = StdCommand::new(&self.ctr)
                .arg("--address")
                .arg(&self.socket)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        };
        ctr(&["tasks", "kill", "--signal", "SIGKILL", &self.id]);
        ctr(&["tasks", "delete", "--force", &self.id]);
        ctr(&["containers", "delete", &self.id]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_image_built_by_the_script_runs_shoal_after_a_pull_through_shoal() {
    let bin = shoal_bin().expect("build the binary first: cargo build -p shoal (or set SHOAL_BIN)");
    tool("umoci");
    tool("runc");
    let work = tempfile::Builder::new().prefix("shoal-image-test-").tempdir().unwrap();
    let layout = work.path().join("oci");

    // Build with the script, from the binary under test.
    let mut build = Command::new(repo().join("scripts/build-image"));
    build.current_dir(repo()).arg("--binary").arg(&bin).arg("--out").arg(&layout);
    let out = run(build, BUILD_DEADLINE).await.unwrap_or_else(|e| panic!("scripts/build-image failed: {e}"));
    let push_hint = format!("skopeo copy oci:{}:{VERSION} docker://REGISTRY/shoal:{VERSION}", layout.display());
    assert!(out.stdout.contains(&push_hint), "the script must print how to push (`{push_hint}`):\n{}", out.stdout);

    // Push it with skopeo, as the script says, to a loopback registry.
    let origin = Origin::start().await;
    let mut push = Command::new(tool("skopeo"));
    push.args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:{VERSION}", layout.display()))
        .arg(format!("docker://{}/shoal:{VERSION}", origin.registry.host()));
    run(push, STEP_DEADLINE).await.unwrap_or_else(|e| panic!("skopeo push failed: {e}"));

    // The configuration pods rely on: the binary as entrypoint, a non-root
    // user (the DaemonSet overrides it with root), the OCI labels.
    let mut inspect = Command::new(tool("skopeo"));
    inspect
        .args(["inspect", "--config", "--tls-verify=false"])
        .arg(format!("docker://{}/shoal:{VERSION}", origin.registry.host()));
    let config: Value = serde_json::from_str(&run(inspect, STEP_DEADLINE).await.expect("skopeo inspect").stdout)
        .expect("the image config is JSON");
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/local/bin/shoal"]), "{config:#}");
    assert_eq!(c["User"], "65532:65532", "{config:#}");
    let labels = &c["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "shoal");
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    for l in ["source", "revision", "created"] {
        let v = labels[format!("org.opencontainers.image.{l}")].as_str().unwrap_or_default();
        assert!(!v.is_empty(), "label org.opencontainers.image.{l} is missing: {config:#}");
    }

    // containerd pulls it through a shoal daemon, origin as fallback.
    let shoal = shoal_for(&origin.front, None, "").await;
    let hosts = hosts_dir(&origin.front, Some(&shoal.mirror_url()));
    let reference = format!("{}/shoal:{VERSION}", origin.front.host());
    let containerd = pull_fresh(&reference, hosts.path(), None).await;
    let served = shoal_e2e::served_bytes(&shoal.metrics_url()).await;
    assert_eq!(config["rootfs"]["diff_ids"].as_array().map(Vec::len), Some(1), "one layer: {config:#}");
    assert!(served > 1_000_000.0, "containerd did not pull through shoal: it served {served} bytes");

    // runc runs the binary from the image: its libraries, loader and user
    // are the image's own.
    let ctr = tool("ctr");
    let id = "shoal-image-test";
    let _guard = ContainerGuard { ctr: ctr.clone(), socket: containerd.socket().to_path_buf(), id: id.to_string() };
    let mut run_cmd = Command::new(&ctr);
    run_cmd.arg("--address").arg(containerd.socket()).args([
        "run",
        "--rm",
        "--snapshotter",
        "native",
        &reference,
        id,
        "/usr/local/bin/shoal",
        "--version",
    ]);
    let out = run(run_cmd, STEP_DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("ctr run failed: {e}\ncontainerd log:\n{}", containerd.log_tail(4000)));
    assert_eq!(out.stdout.trim(), format!("shoal {VERSION}"), "stderr: {}", out.stderr);
}
