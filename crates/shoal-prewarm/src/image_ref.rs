//! Image references as users type them (`nginx:1.27`,
//! `ghcr.io/org/app@sha256:…`), split into registry, repository and
//! reference with Docker's defaults (`docker.io`, `library/`, `latest`).

use shoal_core::{Reference, RepoName};

use crate::PrewarmError;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry as containerd sends it in `?ns=` (`docker.io`).
    pub registry: String,
    /// Repository (`library/nginx`).
    pub repo: RepoName,
    /// Tag or digest.
    pub reference: Reference,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if matches!(self.reference, Reference::Digest(_)) { "@" } else { ":" };
        write!(f, "{}/{}{sep}{}", self.registry, self.repo, self.reference)
    }
}

/// Parse `image` the way Docker and containerd do.
pub fn parse(image: &str) -> Result<ImageRef, PrewarmError> {
    let bad = |reason: String| PrewarmError::BadReference { image: image.to_owned(), reason };
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    let (first, remainder) = match rest.split_once('/') {
        Some((f, r)) if f.contains('.') || f.contains(':') || f == "localhost" => (Some(f), r),
        _ => (None, rest),
    };
    let registry = first.unwrap_or("docker.io").to_owned();
    // A tag is after the last ':' that follows the last '/'.
    let (path, tag) = match remainder.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, Some(t)),
        _ => (remainder, None),
    };
    if path.is_empty() {
        return Err(bad("it has no repository".into()));
    }
    let path = if registry == "docker.io" && !path.contains('/') { format!("library/{path}") } else { path.to_owned() };
    let repo: RepoName = path.parse().map_err(|e| bad(format!("{e}")))?;
    let reference: Reference = match (digest, tag) {
        (Some(d), _) => d.parse().map_err(|e| bad(format!("{e}")))?,
        (None, Some(t)) => t.parse().map_err(|e| bad(format!("{e}")))?,
        (None, None) => Reference::Tag("latest".into()),
    };
    Ok(ImageRef { registry, repo, reference })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_defaults() {
        assert_eq!(p("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(p("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(p("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(p("docker.io/library/nginx:1.27"), "docker.io/library/nginx:1.27");
    }

    #[test]
    fn registries_ports_and_digests() {
        assert_eq!(p("ghcr.io/org/app:v1"), "ghcr.io/org/app:v1");
        assert_eq!(p("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(p("localhost/app:x"), "localhost/app:x");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(p(&format!("ghcr.io/org/app@{d}")), format!("ghcr.io/org/app@{d}"));
    }

    #[test]
    fn bad_references_name_the_image() {
        let e = parse("Ghcr.io/Org/App:v1").unwrap_err();
        assert!(e.to_string().contains("Ghcr.io/Org/App:v1"), "{e}");
        assert!(parse("app@sha256:12").is_err());
        assert!(parse("app:-bad").is_err());
    }
}
