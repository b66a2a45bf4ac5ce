//! `Registry`: Debian's `docker-registry` (Docker Distribution 2.8) as a real
//! process on 127.0.0.1 with filesystem storage in a temp dir, optionally with
//! htpasswd auth, token auth (a [`TokenServer`]), or as a pull-through cache
//! (`proxy.remoteurl`). Killed and its storage removed on drop.
//!
//! Quirks worth knowing: the config is YAML, and JSON is valid YAML, so the
//! config is written as JSON. htpasswd entries must be bcrypt; a low cost (4)
//! keeps every authenticated request fast, since the registry re-checks the
//! password on each request. A proxy (pull-through) registry refuses pushes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::client::RegistryClient;
use crate::error::{IoContext, Result};
use crate::process::ChildGuard;
use crate::token::TokenServer;
use crate::tools::{free_port, lost_port_race, require_tool, wait_http_status};

/// How long a registry gets to answer `GET /v2/` after starting.
pub const REGISTRY_READY_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
struct TokenAuth {
    realm: String,
    service: String,
    issuer: String,
    cert: PathBuf,
}

/// Builder for [`Registry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryBuilder {
    htpasswd: Option<Vec<(String, String)>>,
    token: Option<TokenAuth>,
    proxy: Option<String>,
    proxy_creds: Option<(String, String)>,
}

impl RegistryBuilder {
    /// Requires HTTP Basic auth with these users (bcrypt htpasswd file).
    pub fn htpasswd(mut self, users: &[(&str, &str)]) -> Self {
        self.htpasswd = Some(users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect());
        self
    }

    /// Requires bearer tokens issued by `server` (`auth.token`).
    pub fn token_auth(mut self, server: &TokenServer) -> Self {
        self.token = Some(TokenAuth {
            realm: server.realm(),
            service: server.service().to_string(),
            issuer: server.issuer().to_string(),
            cert: server.cert_path().to_path_buf(),
        });
        self
    }

    /// Makes this registry a pull-through cache of `remote_url`.
    pub fn proxy(mut self, remote_url: &str) -> Self {
        self.proxy = Some(remote_url.to_string());
        self
    }

    /// Credentials the pull-through cache uses at its remote.
    pub fn proxy_creds(mut self, user: &str, pass: &str) -> Self {
        self.proxy_creds = Some((user.to_string(), pass.to_string()));
        self
    }

    fn config(&self, dir: &Path, port: u16) -> Result<serde_json::Value> {
        let mut cfg = json!({
            "version": 0.1,
            "log": { "level": "info", "formatter": "text", "accesslog": { "disabled": false } },
            "storage": {
                "filesystem": { "rootdirectory": dir.join("storage") },
                "delete": { "enabled": true },
                "maintenance": { "uploadpurging": { "enabled": false } },
                "cache": { "blobdescriptor": "inmemory" },
            },
            "http": {
                "addr": format!("127.0.0.1:{port}"),
                "secret": "shoal-testkit-not-a-secret",
                "headers": { "X-Content-Type-Options": ["nosniff"] },
            },
            "health": { "storagedriver": { "enabled": false } },
        });
        if let Some(users) = &self.htpasswd {
            let mut file = String::new();
            for (u, p) in users {
                file.push_str(&format!("{u}:{}\n", bcrypt::hash(p, 4)?));
            }
            let path = dir.join("htpasswd");
            std::fs::write(&path, file).ctx(|| format!("writing {}", path.display()))?;
            cfg["auth"] = json!({ "htpasswd": { "realm": "shoal-test", "path": path } });
        }
        if let Some(t) = &self.token {
            cfg["auth"] = json!({ "token": {
                "realm": t.realm, "service": t.service, "issuer": t.issuer,
                "rootcertbundle": t.cert,
            }});
        }
        if let Some(remote) = &self.proxy {
            cfg["proxy"] = json!({ "remoteurl": remote });
            if let Some((u, p)) = &self.proxy_creds {
                cfg["proxy"]["username"] = json!(u);
                cfg["proxy"]["password"] = json!(p);
            }
        }
        Ok(cfg)
    }

    /// Starts the registry and waits (20 s deadline) until `GET /v2/`
    /// answers 200 or 401. Retries with a new port if the port was taken.
    pub async fn start(self) -> Result<Registry> {
        let bin = require_tool("docker-registry")?;
        let dir = tempfile::Builder::new()
            .prefix("shoal-registry-")
            .tempdir()
            .ctx(|| "creating the registry temp dir".to_string())?;
        let mut last_err = None;
        for _attempt in 0..3 {
            let port = free_port();
            let cfg = self.config(dir.path(), port)?;
            let cfg_path = dir.path().join("config.yml");
            std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).expect("json"))
                .ctx(|| format!("writing {}", cfg_path.display()))?;
            let mut cmd = Command::new(&bin);
            cmd.arg("serve").arg(&cfg_path);
            let mut child = ChildGuard::spawn("docker-registry", cmd, dir.path())?;
            let url = format!("http://127.0.0.1:{port}");
            let ready = wait_http_status(
                &format!("{url}/v2/"),
                REGISTRY_READY_DEADLINE,
                |s| s == 200 || s == 401,
                Some(&mut child),
            )
            .await;
            match ready {
                Ok(_) => {
                    return Ok(Registry { child, port, dir });
                }
                Err(e) if lost_port_race(&e) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("loop ran"))
    }
}

/// A running docker-registry. Dropped => killed and its temp dir removed.
#[derive(Debug)]
pub struct Registry {
    // Field order matters: the process dies before its directory goes.
    child: ChildGuard,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// A builder for a registry with options.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// Starts a plain registry (no auth, not a proxy).
    pub async fn start() -> Result<Registry> {
        Self::builder().start().await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT` (the host part of image references).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry process ID.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The temp dir holding config, storage and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last bytes of the registry's log (it logs every request).
    pub fn log_tail(&self, max_bytes: usize) -> String {
        self.child.log_tail(max_bytes)
    }

    /// A [`RegistryClient`] for this registry.
    pub fn client(&self, creds: Option<(&str, &str)>) -> Result<RegistryClient> {
        RegistryClient::new(&self.url(), creds)
    }
}
