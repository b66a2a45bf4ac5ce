//! `ShoalDaemon`: runs the workspace's `shoal daemon` binary as a process
//! on free loopback ports with a generated config file and data dir, waits
//! for `GET /readyz` on its metrics listener, and can kill -9, terminate and
//! restart it (same ports, data dir and config).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::process::ChildGuard;
use crate::tools::{free_port, lost_port_race, wait_http_status};

/// How long the daemon gets to answer `/readyz` with 200.
pub const SHOAL_READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long the daemon gets to exit after SIGTERM.
pub const SHOAL_TERM_DEADLINE: Duration = Duration::from_secs(20);

/// The `shoal` binary: `$SHOAL_BIN` if set, else `<target>/debug/shoal`
/// where `<target>` is `$CARGO_TARGET_DIR` or the workspace's `target/`.
pub fn shoal_bin() -> Result<PathBuf> {
    let path = match std::env::var_os("SHOAL_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let target = match std::env::var_os("CARGO_TARGET_DIR") {
                Some(t) => {
                    let t = PathBuf::from(t);
                    if t.is_absolute() { t } else { workspace.join(t) }
                }
                None => workspace.join("target"),
            };
            target.join("debug").join("shoal")
        }
    };
    if path.is_file() { Ok(path) } else { Err(Error::ShoalBinMissing { path }) }
}

/// Builder for [`ShoalDaemon`].
#[derive(Debug, Clone, Default)]
pub struct ShoalDaemonBuilder {
    bin: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    default_registry: Option<String>,
    registries: Vec<(String, String)>,
    /// Registries whose credentials answer for clients that send none.
    shared: Vec<String>,
    extra: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ShoalDaemonBuilder {
    /// Runs this binary instead of [`shoal_bin`]'s choice.
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }

    /// Uses this data dir (kept after drop); default: a temp dir owned by
    /// the daemon handle.
    pub fn data_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(path.into());
        self
    }

    /// Sets `default_registry`.
    pub fn default_registry(mut self, ns: &str) -> Self {
        self.default_registry = Some(ns.to_string());
        self
    }

    /// Adds `[registries."<ns>"] url = "<url>"`.
    pub fn registry(mut self, ns: &str, url: &str) -> Self {
        self.registries.push((ns.to_string(), url.to_string()));
        self
    }

    /// Sets `share_credentials = true` for registry `ns` (added with
    /// [`registry`](Self::registry)): the daemon's credentials answer for
    /// clients that send none.
    pub fn share_credentials(mut self, ns: &str) -> Self {
        self.shared.push(ns.to_string());
        self
    }

    /// Appends raw TOML to the config file (e.g. a `[store]` table).
    pub fn config_toml(mut self, extra: &str) -> Self {
        self.extra.push_str(extra);
        self.extra.push('\n');
        self
    }

    /// Extra command-line arguments after the generated ones.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// An environment variable for the daemon (e.g. `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The config file: top-level keys first, then `extra` (which may open
    /// tables of its own), then the registry tables, so top-level keys in
    /// `extra` are never captured by a `[registries.…]` table.
    fn config_text(&self) -> String {
        let mut s = String::new();
        if let Some(d) = &self.default_registry {
            s.push_str(&format!("default_registry = {}\n", toml_str(d)));
        }
        if !self.extra.is_empty() {
            s.push_str(&self.extra);
            s.push('\n');
        }
        for (ns, url) in &self.registries {
            s.push_str(&format!("\n[registries.{}]\nurl = {}\n", toml_str(ns), toml_str(url)));
            if self.shared.contains(ns) {
                s.push_str("share_credentials = true\n");
            }
        }
        s
    }

    /// Writes the config, starts `shoal daemon` and waits for `/readyz`.
    pub async fn start(self) -> Result<ShoalDaemon> {
        let bin = match &self.bin {
            Some(b) => b.clone(),
            None => shoal_bin()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("shoal-daemon-")
            .tempdir()
            .ctx(|| "creating the shoal daemon temp dir".to_string())?;
        let data_dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => dir.path().join("data"),
        };
        std::fs::create_dir_all(&data_dir).ctx(|| format!("creating {}", data_dir.display()))?;
        let config = dir.path().join("shoal.toml");
        std::fs::write(&config, self.config_text()).ctx(|| format!("writing {}", config.display()))?;
        let mut daemon = ShoalDaemon {
            child: None,
            bin,
            config,
            data_dir,
            listen_port: free_port(),
            metrics_port: free_port(),
            builder: self,
            dir,
        };
        // Another process may bind a port between `free_port` and the
        // daemon's bind: new ports, up to three tries.
        for attempt in 1.. {
            match daemon.spawn().await {
                Ok(()) => break,
                Err(e) if attempt < 3 && lost_port_race(&e) => {
                    daemon.listen_port = free_port();
                    daemon.metrics_port = free_port();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(daemon)
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A running `shoal daemon`; killed on drop (its temp dir removed after).
#[derive(Debug)]
pub struct ShoalDaemon {
    // Field order matters: the process dies before its directory goes.
    child: Option<ChildGuard>,
    bin: PathBuf,
    config: PathBuf,
    data_dir: PathBuf,
    listen_port: u16,
    metrics_port: u16,
    builder: ShoalDaemonBuilder,
    dir: tempfile::TempDir,
}

impl ShoalDaemon {
    /// A builder.
    pub fn builder() -> ShoalDaemonBuilder {
        ShoalDaemonBuilder::default()
    }

    async fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("daemon")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.listen_port))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.builder.args);
        // Plain log files: no ANSI colours (overridable with `.env`).
        cmd.env("NO_COLOR", "1");
        for (k, v) in &self.builder.env {
            cmd.env(k, v);
        }
        let mut child = ChildGuard::spawn("shoal-daemon", cmd, self.dir.path())?;
        wait_http_status(
            &format!("{}/readyz", self.metrics_url()),
            SHOAL_READY_DEADLINE,
            |s| s == 200,
            Some(&mut child),
        )
        .await?;
        self.child = Some(child);
        Ok(())
    }

    /// `http://127.0.0.1:PORT` of the registry mirror endpoint.
    pub fn mirror_url(&self) -> String {
        format!("http://{}", self.mirror_host())
    }

    /// `127.0.0.1:PORT` of the registry mirror endpoint.
    pub fn mirror_host(&self) -> String {
        format!("127.0.0.1:{}", self.listen_port)
    }

    /// `http://127.0.0.1:PORT` of the metrics/admin listener.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The daemon's PID, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// The last bytes of the daemon's log.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        self.child.as_ref().map(|c| c.log_tail(max_bytes)).unwrap_or_default()
    }

    /// Kills the daemon hard (SIGKILL), as a crash would.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            c.kill_now()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a graceful exit (error if it takes too long).
    pub async fn terminate(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            c.terminate(SHOAL_TERM_DEADLINE).await?;
        }
        Ok(())
    }

    /// Stops the daemon if running (SIGKILL) and starts it again with the
    /// same ports, data dir and config; waits for `/readyz`.
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill_now()?;
        }
        self.spawn().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_valid_toml_in_the_documented_shape() {
        let b = ShoalDaemon::builder()
            .default_registry("docker.io")
            .registry("127.0.0.1:5000", "http://127.0.0.1:5000")
            .config_toml("[store]\nquota = \"20GiB\"");
        let v: toml::Value = toml::from_str(&b.config_text()).unwrap();
        assert_eq!(v["default_registry"].as_str(), Some("docker.io"));
        assert_eq!(v["registries"]["127.0.0.1:5000"]["url"].as_str(), Some("http://127.0.0.1:5000"));
        assert_eq!(v["store"]["quota"].as_str(), Some("20GiB"));
    }

    #[test]
    fn missing_binary_says_how_to_build_it() {
        let err = Error::ShoalBinMissing { path: PathBuf::from("/nope/shoal") };
        assert!(err.to_string().contains("cargo build -p shoal"));
    }
}
