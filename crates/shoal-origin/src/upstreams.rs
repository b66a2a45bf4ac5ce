//! [`Upstreams`]: which origin a request goes to. Built once from the
//! [`UpstreamsConfig`]; maps the `?ns=` of a mirror request to a cached
//! [`OriginClient`] per registry, with the daemon's credentials for it.
//!
//! Where an unlisted registry lives is decided by pure rules
//! ([`default_url`]): Docker Hub is `https://registry-1.docker.io`, loopback
//! registries are plain `http://` (Docker treats them as insecure too), and
//! everything else is `https://<ns>`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use url::Url;

use crate::auth::Credentials;
use crate::auth::docker_config::DockerConfig;
use crate::client::OriginClient;
use crate::config::{RegistryConfig, UpstreamsConfig};
use crate::error::OriginError;

/// The origin registries the mirror pulls through.
#[derive(Debug)]
pub struct Upstreams {
    default_registry: String,
    allow_unlisted: bool,
    docker: DockerConfig,
    /// Configured registries, built eagerly.
    listed: BTreeMap<String, Arc<OriginClient>>,
    /// Unlisted registries, built on first use.
    unlisted: Mutex<HashMap<String, Arc<OriginClient>>>,
}

impl Upstreams {
    /// Check the config, read the docker config and every CA bundle, and
    /// build a client per listed registry. Errors name the file or key.
    pub fn new(cfg: UpstreamsConfig) -> Result<Upstreams, OriginError> {
        let docker = match &cfg.docker_config {
            Some(path) => DockerConfig::load(path)?,
            None => DockerConfig::default(),
        };
        let default_registry = canonical_name(&cfg.default_registry).ok_or_else(|| OriginError::Config {
            what: "default_registry".into(),
            detail: format!("{:?} is not a host[:port]", cfg.default_registry),
        })?;
        let mut listed = BTreeMap::new();
        for (name, rc) in &cfg.registries {
            let key = canonical_name(name).ok_or_else(|| OriginError::Config {
                what: format!("registries.\"{name}\""),
                detail: "the key must be a registry host[:port] as containerd sends it in ?ns= (e.g. docker.io, 127.0.0.1:5000)".into(),
            })?;
            let url = match &rc.url {
                Some(u) => u.clone(),
                None => default_url(&key)?,
            };
            let creds = credentials(&key, rc, &docker);
            listed.insert(key.clone(), Arc::new(OriginClient::new(key, url, rc, creds)?));
        }
        Ok(Upstreams {
            default_registry,
            allow_unlisted: cfg.allow_unlisted,
            docker,
            listed,
            unlisted: Mutex::new(HashMap::new()),
        })
    }

    /// The client for `ns` (the default registry when `None`). Clients are
    /// built once per registry and shared.
    pub fn resolve(&self, ns: Option<&str>) -> Result<Arc<OriginClient>, OriginError> {
        let raw = ns.unwrap_or(&self.default_registry);
        let name = canonical_name(raw).ok_or_else(|| OriginError::BadRegistryName(raw.to_owned()))?;
        if let Some(c) = self.listed.get(&name) {
            return Ok(c.clone());
        }
        if !self.allow_unlisted {
            return Err(OriginError::UnknownRegistry(name));
        }
        let mut unlisted = self.unlisted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = unlisted.get(&name) {
            return Ok(c.clone());
        }
        let rc = RegistryConfig::default();
        let creds = credentials(&name, &rc, &self.docker);
        let client = Arc::new(OriginClient::new(name.clone(), default_url(&name)?, &rc, creds)?);
        unlisted.insert(name, client.clone());
        Ok(client)
    }

    /// The registry used when a request names none.
    pub fn default_registry(&self) -> &str {
        &self.default_registry
    }
}

/// The daemon's credentials for a registry: its own config first, then the
/// docker config.
fn credentials(name: &str, rc: &RegistryConfig, docker: &DockerConfig) -> Option<Credentials> {
    match (&rc.username, &rc.password) {
        (Some(u), p) => Some(Credentials::basic(u, p.clone().unwrap_or_default())),
        _ => docker.credentials_for(name).cloned(),
    }
}

/// `ns` as a lowercase `host[:port]`, or `None` if it is anything else
/// (a path, user info, a scheme, spaces…).
pub fn canonical_name(ns: &str) -> Option<String> {
    let lower = ns.trim().to_ascii_lowercase();
    if lower.is_empty() || lower.contains(['/', '@', '?', '#', '\\', ' ']) {
        return None;
    }
    let url = Url::parse(&format!("https://{lower}/")).ok()?;
    let host = url.host_str()?;
    let rebuilt = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    // Reject what the URL parser would silently rewrite (`:443`, IDNA…).
    (rebuilt == lower).then_some(lower)
}

/// Where a registry that has no `url` configured is reached.
pub fn default_url(name: &str) -> Result<Url, OriginError> {
    if name == "docker.io" {
        return Ok(Url::parse("https://registry-1.docker.io/").expect("a valid URL"));
    }
    let bad = || OriginError::BadRegistryName(name.to_owned());
    let mut url = Url::parse(&format!("https://{name}/")).map_err(|_| bad())?;
    if is_loopback_host(url.host_str().ok_or_else(bad)?) {
        url.set_scheme("http").map_err(|_| bad())?;
    }
    Ok(url)
}

/// `localhost`, `127.0.0.0/8` or `[::1]`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(canonical_name("Docker.IO").as_deref(), Some("docker.io"));
        assert_eq!(canonical_name("127.0.0.1:5000").as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(canonical_name("[::1]:5000").as_deref(), Some("[::1]:5000"));
        assert_eq!(canonical_name("localhost").as_deref(), Some("localhost"));
        for bad in ["", "a/b", "u@host", "https://x", "host:99999", "host:", "a b", "ghcr.io:443", "x?y"] {
            assert_eq!(canonical_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn default_urls() {
        let u = |n: &str| default_url(n).unwrap().to_string();
        assert_eq!(u("docker.io"), "https://registry-1.docker.io/");
        assert_eq!(u("ghcr.io"), "https://ghcr.io/");
        assert_eq!(u("registry.example:5000"), "https://registry.example:5000/");
        assert_eq!(u("127.0.0.1:5000"), "http://127.0.0.1:5000/");
        assert_eq!(u("127.1.2.3"), "http://127.1.2.3/");
        assert_eq!(u("localhost:5000"), "http://localhost:5000/");
        assert_eq!(u("[::1]:5000"), "http://[::1]:5000/");
        assert_eq!(u("[::1]"), "http://[::1]/");
        assert_eq!(u("128.0.0.1"), "https://128.0.0.1/");
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "LOCALHOST", "127.0.0.1", "127.255.0.9", "[::1]", "::1"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["10.0.0.1", "docker.io", "[::2]", "localhost.example"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
