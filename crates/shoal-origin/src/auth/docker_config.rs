//! Credentials from a docker `config.json`, the format of Kubernetes
//! `kubernetes.io/dockerconfigjson` pull secrets (`{"auths": {…}}`) and of
//! the older `.dockercfg` (the same map without the `auths` wrapper).
//!
//! Keys name registries in many spellings (`docker.io`,
//! `https://index.docker.io/v1/`, `registry-1.docker.io`, `host:port`,
//! `https://host:port`); they are normalised to the name containerd sends
//! in `?ns=`. Entries give `auth` (base64 `user:pass`), or
//! `username`/`password`, or `identitytoken` (an OAuth2 refresh token).
//! Credential helpers (`credsStore`, `credHelpers`) are not run.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;

use super::Credentials;
use crate::error::OriginError;

/// Registry credentials read from a docker config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    entries: BTreeMap<String, Credentials>,
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl DockerConfig {
    /// Read and parse the file at `path`; errors name the file.
    pub fn load(path: &Path) -> Result<DockerConfig, OriginError> {
        let what = format!("docker config {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| OriginError::Config {
            what: what.clone(),
            detail: format!("cannot read it ({e}); fix docker_config"),
        })?;
        DockerConfig::parse(&text).map_err(|detail| OriginError::Config { what, detail })
    }

    /// Parse the JSON text of a docker config.
    pub fn parse(json: &str) -> Result<DockerConfig, String> {
        let root: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not JSON ({e}); expected {{\"auths\": {{...}}}}"))?;
        let obj = root.as_object().ok_or("not a JSON object; expected {\"auths\": {...}}")?;
        let map = match obj.get("auths") {
            Some(a) => a.as_object().ok_or("`auths` is not an object")?.clone(),
            // Legacy .dockercfg: registries at the top level.
            None => obj
                .iter()
                .filter(|(_, v)| v.get("auth").is_some() || v.get("username").is_some())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        if obj.contains_key("credsStore") || obj.contains_key("credHelpers") {
            tracing::warn!("docker config names credential helpers; shoal does not run them");
        }
        let mut entries = BTreeMap::new();
        for (key, value) in map {
            let entry: Entry =
                serde_json::from_value(value).map_err(|e| format!("entry {key:?} is malformed ({e})"))?;
            if let Some(c) = credentials(&key, entry)? {
                entries.insert(normalize_key(&key), c);
            }
        }
        Ok(DockerConfig { entries })
    }

    /// The credentials for a registry name as sent in `?ns=`.
    pub fn credentials_for(&self, registry: &str) -> Option<&Credentials> {
        self.entries.get(&normalize_key(registry))
    }

    /// How many registries have credentials.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no registry has credentials.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn credentials(key: &str, e: Entry) -> Result<Option<Credentials>, String> {
    let (mut user, mut pass) = (e.username, e.password);
    if let Some(auth) = e.auth.filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| format!("entry {key:?}: `auth` is not base64 of user:password"))?;
        let (u, p) =
            decoded.split_once(':').ok_or_else(|| format!("entry {key:?}: `auth` decodes to no user:password pair"))?;
        user = Some(u.to_owned());
        pass = Some(p.to_owned());
    }
    if let Some(token) = e.identitytoken.filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::IdentityToken { username: user.unwrap_or_default(), token }));
    }
    Ok(match (user, pass) {
        (Some(u), Some(p)) if !u.is_empty() => Some(Credentials::basic(u, p)),
        _ => None,
    })
}

/// A docker-config key or `?ns=` value, reduced to `host[:port]`, lowercase,
/// with Docker Hub's aliases mapped to `docker.io`.
pub(crate) fn normalize_key(key: &str) -> String {
    let k = key.trim();
    let k = k.split_once("://").map(|(_, rest)| rest).unwrap_or(k);
    let host = k.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".to_owned(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_spellings() {
        for k in [
            "docker.io",
            "https://index.docker.io/v1/",
            "registry-1.docker.io",
            "index.docker.io",
            "HTTPS://Registry-1.Docker.IO/v2/",
        ] {
            assert_eq!(normalize_key(k), "docker.io", "{k}");
        }
        assert_eq!(normalize_key("https://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize_key("ghcr.io/"), "ghcr.io");
    }

    #[test]
    fn pull_secret_format() {
        let c = DockerConfig::parse(
            r#"{
              "auths": {
                "https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcjp0"},
                "ghcr.io": {"username": "bob", "password": "pw"},
                "https://127.0.0.1:5000": {"auth": "", "username": "u", "password": "p"},
                "acr.example": {"username": "00000000-0000-0000-0000-000000000000", "identitytoken": "rt"},
                "empty.example": {}
              },
              "credsStore": "desktop"
            }"#,
        )
        .unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c.credentials_for("docker.io"), Some(&Credentials::basic("alice", "s3cr:t")));
        assert_eq!(c.credentials_for("ghcr.io"), Some(&Credentials::basic("bob", "pw")));
        assert_eq!(c.credentials_for("127.0.0.1:5000"), Some(&Credentials::basic("u", "p")));
        assert!(matches!(
            c.credentials_for("acr.example"),
            Some(Credentials::IdentityToken { token, .. }) if token == "rt"
        ));
        assert_eq!(c.credentials_for("empty.example"), None);
        assert_eq!(c.credentials_for("quay.io"), None);
    }

    #[test]
    fn legacy_dockercfg_format() {
        let c = DockerConfig::parse(r#"{"quay.io": {"auth": "dTpw", "email": "x@y"}}"#).unwrap();
        assert_eq!(c.credentials_for("quay.io"), Some(&Credentials::basic("u", "p")));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = DockerConfig::parse("[]").unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
        let e = DockerConfig::parse(r#"{"auths": {"r": {"auth": "!!!"}}}"#).unwrap_err();
        assert!(e.contains("\"r\"") && e.contains("base64"), "{e}");
        let e = DockerConfig::parse(r#"{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}"#).unwrap_err();
        assert!(e.contains("no user:password"), "{e}");
        assert!(DockerConfig::parse("{").is_err());
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let e = DockerConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("cannot read"), "{e}");
        std::fs::write(&path, "{oops").unwrap();
        let e = DockerConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("not JSON"), "{e}");
        std::fs::write(&path, r#"{"auths":{"r.io":{"auth":"dTpw"}}}"#).unwrap();
        assert_eq!(DockerConfig::load(&path).unwrap().len(), 1);
    }
}
