//! Origin configuration as plain data: [`RegistryConfig`] per registry and
//! [`UpstreamsConfig`] for the set. The binary loads these from TOML; this
//! crate only reads the files they point at (CA bundles, docker config),
//! when [`crate::Upstreams::new`] is called.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use shoal_core::HumanDuration;
use url::Url;

/// How to reach and authenticate to one origin registry.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// `scheme://host[:port]` of the origin; `None` derives it from the
    /// registry name (see [`UpstreamsConfig::allow_unlisted`]).
    pub url: Option<Url>,
    /// A PEM file of extra root certificates to trust.
    pub ca_bundle: Option<PathBuf>,
    /// Accept any certificate. For test setups only.
    pub insecure_skip_verify: bool,
    /// The daemon's own user name for this registry.
    pub username: Option<String>,
    /// The daemon's own password (or access token) for this registry.
    pub password: Option<String>,
    /// Let the daemon's credentials for this registry (`username`/`password`
    /// or `docker_config`) answer for every client on the node that sends
    /// none. Off by default: then a client without credentials is
    /// anonymous at the origin, and gets from shoal only what the origin
    /// gives anonymous clients. On, any process on the node can pull this
    /// registry's images through the mirror.
    pub share_credentials: bool,
    /// Connecting plus receiving the response headers may take this long.
    pub timeout: HumanDuration,
    /// The longest silence tolerated while reading a body (stall detection).
    pub read_timeout: HumanDuration,
    /// Extra attempts for retryable failures of manifest, HEAD and token
    /// requests (exponential backoff: 200 ms base, 5 s cap, jitter).
    pub retries: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: None,
            ca_bundle: None,
            insecure_skip_verify: false,
            username: None,
            password: None,
            share_credentials: false,
            timeout: HumanDuration(Duration::from_secs(30)),
            read_timeout: HumanDuration(Duration::from_secs(30)),
            retries: 3,
        }
    }
}

impl fmt::Debug for RegistryConfig {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("url", &self.url.as_ref().map(Url::as_str))
            .field("ca_bundle", &self.ca_bundle)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("share_credentials", &self.share_credentials)
            .field("timeout", &self.timeout)
            .field("read_timeout", &self.read_timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// The set of origin registries the mirror may pull through.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamsConfig {
    /// The registry used when a request carries no `?ns=` (`docker.io`).
    pub default_registry: String,
    /// Per-registry settings, keyed by the name containerd sends in `?ns=`
    /// (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub registries: BTreeMap<String, RegistryConfig>,
    /// A docker `config.json` (pull-secret format) with credentials per
    /// registry, used where a registry has no username/password of its own.
    pub docker_config: Option<PathBuf>,
    /// Whether a registry that is not listed may be reached, at
    /// `https://<ns>` (`http://` for loopback hosts, which Docker also treats
    /// as insecure), with default settings.
    pub allow_unlisted: bool,
}

impl Default for UpstreamsConfig {
    fn default() -> Self {
        UpstreamsConfig {
            default_registry: "docker.io".to_owned(),
            registries: BTreeMap::new(),
            docker_config: None,
            allow_unlisted: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = RegistryConfig::default();
        assert_eq!(c.timeout.0, Duration::from_secs(30));
        assert_eq!(c.read_timeout.0, Duration::from_secs(30));
        assert_eq!(c.retries, 3);
        let u = UpstreamsConfig::default();
        assert_eq!(u.default_registry, "docker.io");
        assert!(u.allow_unlisted);
    }

    #[test]
    fn deserializes_with_defaults_filled_in() {
        let u: UpstreamsConfig = serde_json::from_value(serde_json::json!({
            "registries": {
                "127.0.0.1:5000": {"url": "http://127.0.0.1:5000", "timeout": "5s", "retries": 0},
                "ghcr.io": {"username": "u", "password": "p"}
            },
            "allow_unlisted": false
        }))
        .unwrap();
        assert_eq!(u.default_registry, "docker.io");
        assert!(!u.allow_unlisted);
        let local = &u.registries["127.0.0.1:5000"];
        assert_eq!(local.url.as_ref().unwrap().as_str(), "http://127.0.0.1:5000/");
        assert_eq!(local.timeout.0, Duration::from_secs(5));
        assert_eq!(local.read_timeout.0, Duration::from_secs(30));
        assert_eq!(local.retries, 0);
        assert!(!format!("{:?}", u.registries["ghcr.io"]).contains("\"p\""));
        let bad = serde_json::from_value::<RegistryConfig>(serde_json::json!({"tiemout": "5s"}));
        assert!(bad.unwrap_err().to_string().contains("tiemout"));
    }
}
