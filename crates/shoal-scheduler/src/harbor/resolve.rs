//! Resolving the image Harbor names, at once, with the token Harbor sent:
//! the manifest URL is fetched from the registry directly (the scheduler
//! has no mirror), an index is followed to the configured platforms'
//! manifests, and every manifest's bytes are checked against its digest.
//! The answer pins each platform's image manifest by digest, so the nodes
//! warm exactly what Harbor asked for even if the tag moves meanwhile.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use shoal_core::{Digest, RepoName};
use shoal_prewarm::Platform;
use shoal_prewarm::manifest::{self, ACCEPT as MANIFEST_TYPES};

/// The most bytes read of one manifest (real ones are a few KiB).
const MAX_MANIFEST: usize = 4 << 20;

/// Where a manifest URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestUrl {
    /// `https://harbor.example` (scheme, host, port).
    pub base: String,
    /// The registry as the nodes name it (`?ns=`): the URL's `host[:port]`.
    pub registry: String,
    /// The repository (`library/app`).
    pub repo: RepoName,
    /// Tag or digest.
    pub reference: String,
}

impl ManifestUrl {
    /// The URL of `/v2/<repo>/<kind>/<digest>` at the same registry.
    pub fn at(&self, kind: &str, digest: &Digest) -> String {
        format!("{}/v2/{}/{kind}/{digest}", self.base, self.repo)
    }
}

/// One platform's image, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The image manifest's digest.
    pub manifest: Digest,
    /// Its config and layers, with sizes.
    pub blobs: Vec<(Digest, u64)>,
}

/// Why the image could not be resolved (shown to Harbor).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The URL is not a registry manifest URL.
    #[error("{0}")]
    BadUrl(String),
    /// The registry did not answer.
    #[error("cannot reach the registry {registry}: {source}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// The HTTP client's error (it names the URL, which holds no secret).
        #[source]
        source: reqwest::Error,
    },
    /// The registry refused the token.
    #[error(
        "the registry {registry} refused the token Harbor sent for {repo} (HTTP {status}: {detail}); \
         the token may have expired or may not grant pull on that repository"
    )]
    Refused {
        /// The registry.
        registry: String,
        /// The repository.
        repo: String,
        /// 401 or 403.
        status: u16,
        /// The registry's message.
        detail: String,
    },
    /// No such manifest.
    #[error("{url} was not found at the registry ({detail})")]
    NotFound {
        /// The manifest URL.
        url: String,
        /// The registry's message.
        detail: String,
    },
    /// Another failure status.
    #[error("the registry answered {url} with HTTP {status} ({detail})")]
    Status {
        /// The manifest URL.
        url: String,
        /// The status.
        status: u16,
        /// The registry's message.
        detail: String,
    },
    /// The manifest is not usable.
    #[error("{url}: {reason}")]
    BadManifest {
        /// The manifest URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The index lacks a wanted platform.
    #[error("{url} has no {want} manifest (it has: {have}); set --harbor-platforms to the nodes' platforms")]
    MissingPlatform {
        /// The index URL.
        url: String,
        /// The platform.
        want: String,
        /// The platforms it lists.
        have: String,
    },
}

/// Splits `https://host[:port]/v2/<repo>/manifests/<reference>`.
pub fn parse_manifest_url(url: &str) -> Result<ManifestUrl, ResolveError> {
    let bad = |why: &str| ResolveError::BadUrl(format!("args.url {url:?} {why}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("has no scheme (http:// or https://)"))?;
    if scheme != "http" && scheme != "https" {
        return Err(bad("must be http:// or https://"));
    }
    let (host, path) = rest.split_once('/').ok_or_else(|| bad("has no path"))?;
    if host.is_empty() || host.contains('@') || host.contains(|c: char| c.is_whitespace()) {
        return Err(bad("has no usable host"));
    }
    // The nodes name the registry as Docker does: a first path component
    // with a dot, a port or `localhost` is a registry, anything else is a
    // Docker Hub repository. A host that Docker would not take for a
    // registry cannot be named to the nodes.
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(bad(
            "names a host without a dot or port, which shoal (like Docker) cannot tell from a Docker Hub repository: give Harbor an external URL with a domain name or port",
        ));
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    let inner =
        path.strip_prefix("v2/").ok_or_else(|| bad("is not a registry API URL (/v2/<repo>/manifests/<reference>)"))?;
    let (repo, reference) = inner
        .rsplit_once("/manifests/")
        .ok_or_else(|| bad("is not a manifest URL (/v2/<repo>/manifests/<reference>)"))?;
    let repo: RepoName = repo.parse().map_err(|e| bad(&format!("names an invalid repository: {e}")))?;
    reference.parse::<shoal_core::Reference>().map_err(|e| bad(&format!("names an invalid tag or digest: {e}")))?;
    Ok(ManifestUrl {
        base: format!("{scheme}://{host}"),
        registry: host.to_owned(),
        repo,
        reference: reference.to_owned(),
    })
}

/// The HTTP client for registries: bounded waits, no redirects (a
/// manifest is served directly, and the token must go nowhere else), and
/// `roots` trusted besides the built-in web roots.
pub fn http_client(timeout: Duration, roots: Vec<reqwest::Certificate>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    for root in roots {
        b = b.add_root_certificate(root);
    }
    b.build().expect("a plain HTTP client builds")
}

/// Resolves `url` for `platforms` with `authorization` (Harbor's header).
pub async fn resolve(
    client: &reqwest::Client,
    url: &ManifestUrl,
    authorization: Option<&str>,
    platforms: &[Platform],
) -> Result<Vec<Pinned>, ResolveError> {
    let auth = match authorization {
        Some(a) => {
            let mut v = HeaderValue::from_str(a)
                .map_err(|_| ResolveError::BadUrl("args.headers.Authorization is not a valid header value".into()))?;
            v.set_sensitive(true);
            Some(v)
        }
        None => None,
    };
    let top_url = format!("{}/v2/{}/manifests/{}", url.base, url.repo, url.reference);
    let expect = url.reference.parse::<Digest>().ok();
    let (top, top_digest) = fetch(client, url, &top_url, auth.as_ref(), expect.as_ref()).await?;
    if !manifest::is_index(&top) {
        let blobs = manifest::blobs(&top).map_err(|reason| ResolveError::BadManifest { url: top_url, reason })?;
        return Ok(vec![Pinned { manifest: top_digest, blobs }]);
    }
    let entries = top["manifests"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<Pinned> = Vec::new();
    for want in platforms {
        let Some(entry) = entries.iter().find(|e| want.matches(&e["platform"])) else {
            let have: Vec<String> = entries
                .iter()
                .filter_map(|e| {
                    Some(format!("{}/{}", e["platform"]["os"].as_str()?, e["platform"]["architecture"].as_str()?))
                })
                .collect();
            return Err(ResolveError::MissingPlatform { url: top_url, want: want.to_string(), have: have.join(", ") });
        };
        let digest: Digest = entry["digest"].as_str().and_then(|d| d.parse().ok()).ok_or_else(|| {
            ResolveError::BadManifest { url: top_url.clone(), reason: "an index entry has no valid digest".into() }
        })?;
        if out.iter().any(|p| p.manifest == digest) {
            continue;
        }
        let entry_url = url.at("manifests", &digest);
        let (m, _) = fetch(client, url, &entry_url, auth.as_ref(), Some(&digest)).await?;
        let blobs = manifest::blobs(&m).map_err(|reason| ResolveError::BadManifest { url: entry_url, reason })?;
        out.push(Pinned { manifest: digest, blobs });
    }
    Ok(out)
}

/// GETs one manifest and checks its bytes against `expect` (when fetched
/// by digest); returns it parsed, with the digest of its bytes.
async fn fetch(
    client: &reqwest::Client,
    url: &ManifestUrl,
    target: &str,
    auth: Option<&HeaderValue>,
    expect: Option<&Digest>,
) -> Result<(serde_json::Value, Digest), ResolveError> {
    let unreachable = |source| ResolveError::Unreachable { registry: url.registry.clone(), source };
    let mut req = client.get(target).header(ACCEPT, MANIFEST_TYPES);
    if let Some(a) = auth {
        req = req.header(AUTHORIZATION, a.clone());
    }
    let resp = req.send().await.map_err(unreachable)?;
    let status = resp.status().as_u16();
    if resp.content_length().is_some_and(|n| n > MAX_MANIFEST as u64) {
        return Err(ResolveError::BadManifest {
            url: target.to_owned(),
            reason: format!("larger than {MAX_MANIFEST} bytes"),
        });
    }
    let body = resp.bytes().await.map_err(unreachable)?;
    if !(200..300).contains(&status) {
        let detail = error_detail(&body);
        return Err(match status {
            401 | 403 => {
                ResolveError::Refused { registry: url.registry.clone(), repo: url.repo.to_string(), status, detail }
            }
            404 => ResolveError::NotFound { url: target.to_owned(), detail },
            _ => ResolveError::Status { url: target.to_owned(), status, detail },
        });
    }
    if body.len() > MAX_MANIFEST {
        return Err(ResolveError::BadManifest {
            url: target.to_owned(),
            reason: format!("larger than {MAX_MANIFEST} bytes"),
        });
    }
    let digest = match expect {
        Some(d) => {
            let mut h = d.hasher();
            h.update(&body);
            let got = h.finish();
            if &got != d {
                return Err(ResolveError::BadManifest {
                    url: target.to_owned(),
                    reason: format!("its bytes hash to {got}, not to the digest it was asked by"),
                });
            }
            got
        }
        None => Digest::sha256_of(&body),
    };
    let parsed = serde_json::from_slice(&body)
        .map_err(|e| ResolveError::BadManifest { url: target.to_owned(), reason: format!("not JSON: {e}") })?;
    Ok((parsed, digest))
}

/// The `message` of an OCI error body, else the start of the body.
fn error_detail(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned())
}

#[cfg(test)]
mod registry_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_urls_split_into_registry_repo_and_reference() {
        let u = parse_manifest_url("https://harbor.example.com/v2/library/app/manifests/v1.2").unwrap();
        assert_eq!(
            (u.base.as_str(), u.registry.as_str(), u.repo.to_string(), u.reference.as_str()),
            ("https://harbor.example.com", "harbor.example.com", "library/app".to_owned(), "v1.2")
        );
        let u = parse_manifest_url("http://127.0.0.1:5000/v2/p/a/manifests/latest").unwrap();
        assert_eq!(u.registry, "127.0.0.1:5000");
        let d = Digest::sha256_of(b"m");
        assert_eq!(u.at("blobs", &d), format!("http://127.0.0.1:5000/v2/p/a/blobs/{d}"));
    }

    #[test]
    fn unusable_urls_say_why() {
        for (url, why) in [
            ("harbor.example.com/v2/a/manifests/v1", "no scheme"),
            ("ftp://h.example/v2/a/manifests/v1", "http:// or https://"),
            ("https://harbor/v2/a/manifests/v1", "without a dot or port"),
            ("https://h.example/api/a/manifests/v1", "not a registry API URL"),
            ("https://h.example/v2/a/blobs/v1", "not a manifest URL"),
            ("https://h.example/v2/A/manifests/v1", "invalid repository"),
            ("https://h.example/v2/a/manifests/-x", "invalid tag or digest"),
        ] {
            let e = parse_manifest_url(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
    }
}
