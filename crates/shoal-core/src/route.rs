//! The registry API paths a pull-through mirror answers, parsed into a
//! [`Route`] before any handler runs.
//!
//! Repository names contain slashes, so the path is split from the right on
//! the last `/manifests/`, `/blobs/` or `/tags/list` marker. Anything that is
//! part of the push side of the API is recognised as such, so it gets a 405
//! `UNSUPPORTED` rather than a 404.

use crate::digest::{Digest, DigestError};
use crate::reference::{Reference, ReferenceError, RepoName};

/// A parsed registry API path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(RepoName, Reference),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(RepoName, Digest),
    /// `/v2/<name>/tags/list`.
    TagList(RepoName),
    /// Push side or catalog: uploads, `/_catalog`, referrers.
    Unsupported,
}

/// Why a path is not a route the mirror serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Not under `/v2/` or not a known endpoint.
    #[error("no registry API endpoint at {0:?}")]
    NotFound(String),
    /// Bad repository name.
    #[error(transparent)]
    Name(ReferenceError),
    /// Bad manifest reference (tag or digest).
    #[error(transparent)]
    Reference(ReferenceError),
    /// Bad blob digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl Route {
    /// Parse a request path (without the query string).
    pub fn parse(path: &str) -> Result<Route, RouteError> {
        let not_found = || RouteError::NotFound(path.to_owned());
        let rest = match path.strip_prefix("/v2") {
            Some("") | Some("/") => return Ok(Route::Base),
            Some(r) => r.strip_prefix('/').ok_or_else(not_found)?,
            None => return Err(not_found()),
        };
        if rest == "_catalog" {
            return Ok(Route::Unsupported);
        }
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Ok(Route::TagList(parse_name(name)?));
        }
        if let Some(idx) = rest.rfind("/blobs/uploads") {
            let tail = &rest[idx + "/blobs/uploads".len()..];
            if tail.is_empty() || tail.starts_with('/') {
                return Ok(Route::Unsupported);
            }
        }
        if let Some((name, _)) = rest.rsplit_once("/referrers/") {
            parse_name(name)?;
            return Ok(Route::Unsupported);
        }
        if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
            let name = parse_name(name)?;
            let reference = reference.parse().map_err(RouteError::Reference)?;
            return Ok(Route::Manifest(name, reference));
        }
        if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
            let name = parse_name(name)?;
            return Ok(Route::Blob(name, digest.parse()?));
        }
        Err(not_found())
    }
}

fn parse_name(name: &str) -> Result<RepoName, RouteError> {
    name.parse().map_err(RouteError::Name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn base() {
        assert_eq!(Route::parse("/v2/").unwrap(), Route::Base);
        assert_eq!(Route::parse("/v2").unwrap(), Route::Base);
    }

    #[test]
    fn manifests_and_blobs() {
        match Route::parse("/v2/library/nginx/manifests/1.27").unwrap() {
            Route::Manifest(n, Reference::Tag(t)) => {
                assert_eq!(n.as_str(), "library/nginx");
                assert_eq!(t, "1.27");
            }
            r => panic!("{r:?}"),
        }
        match Route::parse(&format!("/v2/a/b/c/blobs/{D}")).unwrap() {
            Route::Blob(n, d) => {
                assert_eq!(n.as_str(), "a/b/c");
                assert_eq!(d.to_string(), D);
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(
            Route::parse(&format!("/v2/x/manifests/{D}")).unwrap(),
            Route::Manifest(_, Reference::Digest(_))
        ));
        // A repository may itself be called "blobs" or "manifests".
        assert!(matches!(
            Route::parse("/v2/blobs/manifests/latest").unwrap(),
            Route::Manifest(n, _) if n.as_str() == "blobs"
        ));
    }

    #[test]
    fn push_side_is_unsupported() {
        assert_eq!(Route::parse("/v2/x/blobs/uploads/").unwrap(), Route::Unsupported);
        assert_eq!(Route::parse("/v2/x/blobs/uploads/abc-123").unwrap(), Route::Unsupported);
        assert_eq!(Route::parse("/v2/_catalog").unwrap(), Route::Unsupported);
        assert_eq!(Route::parse(&format!("/v2/x/referrers/{D}")).unwrap(), Route::Unsupported);
    }

    #[test]
    fn errors() {
        assert!(matches!(Route::parse("/v1/x"), Err(RouteError::NotFound(_))));
        assert!(matches!(Route::parse("/v2/x/other/y"), Err(RouteError::NotFound(_))));
        assert!(matches!(Route::parse("/v2/UPPER/manifests/x"), Err(RouteError::Name(_))));
        assert!(matches!(Route::parse("/v2/x/manifests/-bad"), Err(RouteError::Reference(_))));
        assert!(matches!(Route::parse("/v2/x/blobs/sha256:12"), Err(RouteError::Digest(_))));
        assert!(matches!(Route::parse("/v2/x/blobs/latest"), Err(RouteError::Digest(_))));
        assert_eq!(Route::parse("/v2/x/tags/list").unwrap(), Route::TagList("x".parse().unwrap()));
    }
}
