//! `Containerd`: a real containerd 1.6 as a process with its own fresh root,
//! state and socket in a temp dir, driven with `ctr` (`images pull
//! --hosts-dir`, `content ls`), or with its CRI plugin on and
//! `config_path` set, as a Kubernetes node runs it ([`Containerd::start_cri`],
//! driven by `crate::cri`); plus `write_hosts_toml` for the `certs.d`-style
//! hosts directory that points a pull at an origin and an optional mirror.
//! Killed and cleaned on drop.
//!
//! What containerd 1.6.20 sends (`ctr images pull --hosts-dir`, observed
//! through a `CountingFront`; the crate's tests assert it):
//! - No `/v2/` ping. `HEAD /v2/<repo>/manifests/<tag>` (Accept: docker v2
//!   manifest, docker manifest list, OCI manifest, OCI index, `*/*`), then
//!   `GET …/manifests/<digest>` (Accept: that manifest's type, `*/*`), then
//!   `GET …/blobs/<digest>` for config and layers in parallel (Accept: the
//!   blob's media type, `*/*`), whole blobs without `Range`.
//! - At a mirror (`[host."http://…"]`) and also at `server` when its host
//!   differs from the image reference's host, every request carries
//!   `?ns=<registry host>` (URL-encoded, `ns=127.0.0.1%3A5000`).
//! - A body cut short: it retries at the same host with
//!   `Range: bytes=<received>-` and takes the 206. A 5xx from the mirror
//!   for a blob: it fetches that blob from the next host (`server`).
//! - Auth: a 401 challenge is answered and the request repeated (HEAD 401
//!   then HEAD 200, and again for the manifest GET); Basic credentials are
//!   then sent with the blob GETs. For a Bearer challenge with `--user` it
//!   `POST`s the OAuth2 password grant to the realm (its code falls back
//!   to a GET with Basic auth on a 400/401/404); anonymous tokens without
//!   access end in `insufficient_scope`.
//! - Quirk: containerd 1.6 rejects a hosts.toml that has no `host` table
//!   ("failed to decode hosts.toml: invalid `host` tree", logged by ctr) and
//!   then silently ignores `server`, going to the reference's host directly.
//!   `write_hosts_toml` writes an empty `[host]` table when there is no
//!   mirror, and [`Containerd::pull`] fails if ctr logs that message.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;

use crate::command::run;
use crate::error::{Error, IoContext, Result};
use crate::process::ChildGuard;
use crate::tools::require_tool;

/// How long containerd gets to answer `ctr version`.
pub const CONTAINERD_READY_DEADLINE: Duration = Duration::from_secs(20);
/// Default deadline of one `ctr images pull`.
pub const PULL_DEADLINE: Duration = Duration::from_secs(120);

/// The CRI plugin's id, the config table kubelet's node setup edits.
const CRI_PLUGIN: &str = "io.containerd.grpc.v1.cri";

/// Plugins not needed for pulling, disabled to start fast and quietly (the
/// CRI plugin stays on for [`Containerd::start_cri`]).
const DISABLED_PLUGINS: &[&str] = &[
    CRI_PLUGIN,
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
];

/// containerd's config (version 2) with everything under `d`; with
/// `cri_hosts_dir`, the CRI plugin on and reading registry hosts there.
fn config_text(d: &Path, socket: &Path, cri_hosts_dir: Option<&Path>) -> String {
    let disabled: Vec<String> = DISABLED_PLUGINS
        .iter()
        .filter(|p| cri_hosts_dir.is_none() || **p != CRI_PLUGIN)
        .map(|p| format!("\"{p}\""))
        .collect();
    let mut text = format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
        root = d.join("root").display(),
        state = d.join("state").display(),
        disabled = disabled.join(", "),
        sock = socket.display(),
        opt = d.join("opt").display(),
    );
    if let Some(hosts) = cri_hosts_dir {
        // Only the image service is used. Without a CNI network config the
        // plugin logs "failed to load cni during init" and serves images
        // anyway; its CNI dirs live here so it creates nothing under /etc
        // or /opt. The streaming server (exec/attach) binds loopback on a
        // free port. `native` unpacks where overlayfs is unavailable.
        text.push_str(&format!(
            r#"
[plugins."{CRI_PLUGIN}"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."{CRI_PLUGIN}".containerd]
    snapshotter = "native"
  [plugins."{CRI_PLUGIN}".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
  [plugins."{CRI_PLUGIN}".registry]
    config_path = "{hosts}"
"#,
            cni_bin = d.join("cni/bin").display(),
            cni_conf = d.join("cni/conf").display(),
            hosts = hosts.display(),
        ));
    }
    text
}

/// Writes `HOSTS_DIR/<registry_host>/hosts.toml` with `server =
/// "<origin_url>"` and, when given, the mirror as a `pull`/`resolve` host.
pub fn write_hosts_toml(
    hosts_dir: &Path,
    registry_host: &str,
    origin_url: &str,
    mirror_url: Option<&str>,
) -> Result<()> {
    let dir = hosts_dir.join(registry_host);
    std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let mut text = format!("server = \"{origin_url}\"\n");
    match mirror_url {
        Some(m) => text.push_str(&format!("\n[host.\"{m}\"]\n  capabilities = [\"pull\", \"resolve\"]\n")),
        // containerd 1.6 rejects a hosts.toml without a `host` table
        // ("invalid `host` tree") and then silently ignores `server`.
        None => text.push_str("\n[host]\n"),
    }
    let path = dir.join("hosts.toml");
    std::fs::write(&path, text).ctx(|| format!("writing {}", path.display()))
}

/// A running containerd with a private root.
#[derive(Debug)]
pub struct Containerd {
    // Field order matters: the process dies before its directory goes.
    child: ChildGuard,
    ctr: PathBuf,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd with a generated config (root, state, sockets and
    /// plugin dirs under a fresh temp dir) and waits for `ctr version`.
    pub async fn start() -> Result<Containerd> {
        Containerd::launch(None).await
    }

    /// Starts containerd as a Kubernetes node runs it, with its CRI plugin
    /// on and registry hosts read from `hosts_dir` (`config_path`), and
    /// checks that the plugin loaded (`ctr plugins ls`). Drive it with
    /// [`CriClient`](crate::cri::CriClient); images live in its `k8s.io`
    /// namespace.
    pub async fn start_cri(hosts_dir: &Path) -> Result<Containerd> {
        let c = Containerd::launch(Some(hosts_dir)).await?;
        c.ensure_cri_loaded().await?;
        Ok(c)
    }

    async fn launch(cri_hosts_dir: Option<&Path>) -> Result<Containerd> {
        let bin = require_tool("containerd")?;
        let ctr = require_tool("ctr")?;
        // Short prefix: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("shoal-ctrd-")
            .tempdir()
            .ctx(|| "creating the containerd temp dir".to_string())?;
        let d = dir.path();
        let socket = d.join("containerd.sock");
        let cfg_path = d.join("config.toml");
        std::fs::write(&cfg_path, config_text(d, &socket, cri_hosts_dir))
            .ctx(|| format!("writing {}", cfg_path.display()))?;
        let mut cmd = StdCommand::new(bin);
        cmd.arg("--config").arg(&cfg_path);
        let mut child = ChildGuard::spawn("containerd", cmd, d)?;
        let start = Instant::now();
        let mut last = String::from("socket not created yet");
        loop {
            child.ensure_running()?;
            if socket.exists() {
                let mut v = Command::new(&ctr);
                v.arg("--address").arg(&socket).arg("version");
                match run(v, Duration::from_secs(5)).await {
                    Ok(_) => break,
                    Err(e) => last = e.to_string(),
                }
            }
            if start.elapsed() >= CONTAINERD_READY_DEADLINE {
                return Err(Error::NotReady {
                    what: format!("containerd at {}", socket.display()),
                    deadline: CONTAINERD_READY_DEADLINE,
                    detail: last,
                    log_tail: child.log_tail(4000),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Containerd { child, ctr, socket, dir })
    }

    /// Fails unless `ctr plugins ls` lists the CRI plugin as `ok` (a plugin
    /// whose init failed is listed as `error` or `skip` while containerd
    /// itself runs on).
    async fn ensure_cri_loaded(&self) -> Result<()> {
        let mut cmd = self.ctr();
        cmd.args(["plugins", "ls"]);
        let out = run(cmd, Duration::from_secs(10)).await?;
        let line = out.stdout.lines().find(|l| {
            let mut cols = l.split_whitespace();
            cols.next() == Some("io.containerd.grpc.v1") && cols.next() == Some("cri")
        });
        match line {
            Some(l) if l.split_whitespace().last() == Some("ok") => Ok(()),
            other => Err(Error::NotReady {
                what: format!("containerd's CRI plugin at {}", self.socket.display()),
                deadline: CONTAINERD_READY_DEADLINE,
                detail: format!("`ctr plugins ls` says: {}", other.unwrap_or("no io.containerd.grpc.v1 cri line")),
                log_tail: self.child.log_tail(4000),
            }),
        }
    }

    /// The gRPC socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The containerd process ID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The temp dir holding config, root, state and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last bytes of containerd's log.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        self.child.log_tail(max_bytes)
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new(&self.ctr);
        c.arg("--address").arg(&self.socket);
        c
    }

    /// `ctr images pull --hosts-dir HOSTS_DIR --snapshotter native [--user U]
    /// REF` with the default deadline ([`PULL_DEADLINE`]).
    pub async fn pull(&self, reference: &str, hosts_dir: &Path, user: Option<&str>) -> Result<()> {
        self.pull_with_deadline(reference, hosts_dir, user, PULL_DEADLINE).await
    }

    /// Like [`Containerd::pull`] with an explicit deadline. The scheme of
    /// each host comes from hosts.toml, so no `--plain-http` is passed.
    pub async fn pull_with_deadline(
        &self,
        reference: &str,
        hosts_dir: &Path,
        user: Option<&str>,
        deadline: Duration,
    ) -> Result<()> {
        let mut cmd = self.ctr();
        cmd.args(["images", "pull", "--snapshotter", "native", "--hosts-dir"]).arg(hosts_dir);
        if let Some(u) = user {
            cmd.arg("--user").arg(u);
        }
        cmd.arg(reference);
        let out = run(cmd, deadline).await?;
        if out.stderr.contains("failed to decode hosts.toml") {
            return Err(Error::invalid(
                "hosts.toml",
                format!(
                    "ctr ignored {} (fix the file; write it with write_hosts_toml):\n{}",
                    hosts_dir.display(),
                    out.stderr
                ),
            ));
        }
        Ok(())
    }

    /// Digests of all content in containerd's content store (`ctr content
    /// ls -q`), sorted.
    pub async fn content_digests(&self) -> Result<Vec<String>> {
        let mut cmd = self.ctr();
        cmd.args(["content", "ls", "-q"]);
        let out = run(cmd, Duration::from_secs(30)).await?;
        let mut v: Vec<String> =
            out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
        v.sort();
        Ok(v)
    }

    /// Image names known to containerd (`ctr images ls -q`), sorted.
    pub async fn images(&self) -> Result<Vec<String>> {
        let mut cmd = self.ctr();
        cmd.args(["images", "ls", "-q"]);
        let out = run(cmd, Duration::from_secs(30)).await?;
        let mut v: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_toml_shape() {
        let dir = tempfile::tempdir().unwrap();
        write_hosts_toml(dir.path(), "127.0.0.1:5000", "http://127.0.0.1:5000", Some("http://127.0.0.1:6000")).unwrap();
        let text = std::fs::read_to_string(dir.path().join("127.0.0.1:5000/hosts.toml")).unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["server"].as_str(), Some("http://127.0.0.1:5000"));
        let caps = &parsed["host"]["http://127.0.0.1:6000"]["capabilities"];
        assert_eq!(caps.as_array().unwrap().len(), 2);

        write_hosts_toml(dir.path(), "h:1", "http://h:1", None).unwrap();
        let text = std::fs::read_to_string(dir.path().join("h:1/hosts.toml")).unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["server"].as_str(), Some("http://h:1"));
        assert!(parsed["host"].as_table().unwrap().is_empty());
    }

    #[test]
    fn cri_config_enables_the_plugin_with_config_path() {
        let d = Path::new("/tmp/ctrd");
        let plain: toml::Value = toml::from_str(&config_text(d, &d.join("s.sock"), None)).unwrap();
        let disabled = |v: &toml::Value| -> Vec<String> {
            v["disabled_plugins"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect()
        };
        assert!(disabled(&plain).contains(&CRI_PLUGIN.to_string()));
        assert!(plain.get("plugins").unwrap().get(CRI_PLUGIN).is_none());

        let cri: toml::Value =
            toml::from_str(&config_text(d, &d.join("s.sock"), Some(Path::new("/tmp/hosts")))).unwrap();
        assert!(!disabled(&cri).contains(&CRI_PLUGIN.to_string()));
        let plugin = &cri["plugins"][CRI_PLUGIN];
        assert_eq!(plugin["registry"]["config_path"].as_str(), Some("/tmp/hosts"));
        assert_eq!(plugin["containerd"]["snapshotter"].as_str(), Some("native"));
        assert_eq!(plugin["cni"]["conf_dir"].as_str(), Some("/tmp/ctrd/cni/conf"));
        assert_eq!(plugin["stream_server_address"].as_str(), Some("127.0.0.1"));
    }
}
