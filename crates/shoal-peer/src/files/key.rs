//! What a `shoal get` download is keyed by, and which URLs may be fetched.
//!
//! A file's swarm task is `(registry, digest)` like a registry blob's
//! ([`shoal_core::TaskId`]), with a registry name no registry can have (the
//! `.invalid` top-level domain never resolves) derived from the URL:
//! - with a digest: `<h>.file.shoal.invalid` and the digest; the blob is
//!   verified against the digest like any registry blob;
//! - without: `<h>.url.shoal.invalid` and a key made of the URL and the
//!   origin's validators (ETag, Last-Modified, size). There is no digest
//!   to check the whole file against: each piece is trusted only from the
//!   node that read it from the origin (the task's authority, see
//!   `crate::swarm::trust`), which is the node whose hashes the swarm
//!   already checks every piece against.
//!
//! `<h>` is a hash of the whole URL (query included), so bytes fetched from
//! one URL are only ever served, through the swarm or from the store, to
//! requests naming that same URL (whose own credentials the origin
//! accepted: see `super::serve`). Another URL claiming the same digest gets
//! a task of its own; stored bytes go out under it only after that URL
//! proved it serves them (`crate::access::proof`).

use reqwest::Url;
use shoal_core::Digest;
use shoal_origin::Validators;

/// Suffix of the registry name of a task keyed by URL and validators.
const URL_KEYED: &str = ".url.shoal.invalid";
/// Suffix of the registry name of a task keyed by a digest.
const DIGEST_KEYED: &str = ".file.shoal.invalid";

/// Whether a task of `registry` is a file keyed by its URL and validators:
/// its pieces are checked against the authority's piece map only, as no
/// digest of the whole file is known.
pub fn trusts_piece_map(registry: &str) -> bool {
    registry.ends_with(URL_KEYED)
}

/// Whether a task of `registry` is a `shoal get` file (either key).
pub fn is_file(registry: &str) -> bool {
    registry.ends_with(URL_KEYED) || registry.ends_with(DIGEST_KEYED)
}

/// The swarm task registry and the store key of a download of `url`.
pub fn task_key(url: &Url, digest: Option<&Digest>, v: &Validators) -> (String, Digest) {
    let h = Digest::sha256_of(url.as_str().as_bytes());
    let h = &h.hex()[..32];
    match digest {
        Some(d) => (format!("{h}{DIGEST_KEYED}"), d.clone()),
        None => {
            let key = format!(
                "shoal-get-v1\n{url}\n{}\n{}\n{}",
                v.etag.as_deref().unwrap_or(""),
                v.last_modified.as_deref().unwrap_or(""),
                v.size
            );
            (format!("{h}{URL_KEYED}"), Digest::sha256_of(key.as_bytes()))
        }
    }
}

/// Why a URL is not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    /// Not a URL at all.
    #[error("{0:?} is not a URL")]
    Invalid(String),
    /// Another scheme than http(s) (file:, ftp:, …).
    #[error("only http:// and https:// URLs are fetched, not {0}:")]
    Scheme(String),
    /// The host is not in `get.allow_hosts`.
    #[error("host {0} is not in this daemon's get.allow_hosts; add it to the daemon's config to fetch from it")]
    Host(String),
    /// User info in the URL would be a credential written into logs.
    #[error("the URL holds a user name or password; pass credentials with --header 'Authorization: …' instead")]
    UserInfo,
}

/// Parse `raw` and check it against the allow-list (`allow_hosts` empty:
/// any host; otherwise exact host names, or `*.example.com` for its
/// subdomains).
pub fn check_url(raw: &str, allow_hosts: &[String]) -> Result<Url, UrlRefused> {
    let url = Url::parse(raw).map_err(|_| UrlRefused::Invalid(raw.chars().take(200).collect()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlRefused::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefused::UserInfo);
    }
    let host = url.host_str().ok_or_else(|| UrlRefused::Invalid(raw.chars().take(200).collect()))?.to_ascii_lowercase();
    let allowed = allow_hosts.is_empty()
        || allow_hosts.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            match a.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => a == host,
            }
        });
    if !allowed {
        return Err(UrlRefused::Host(host));
    }
    Ok(url)
}

/// The digest a registry blob URL (`…/v2/<name>/blobs/<digest>`) names.
pub fn digest_in_url(url: &Url) -> Option<Digest> {
    let path = url.path();
    let (before, d) = path.rsplit_once("/blobs/")?;
    before.contains("/v2/").then_some(())?;
    d.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(etag: &str) -> Validators {
        Validators { etag: Some(etag.into()), last_modified: None, size: 5 }
    }

    #[test]
    fn only_http_and_https_on_allowed_hosts() {
        assert!(check_url("https://huggingface.co/x", &[]).is_ok());
        assert_eq!(check_url("file:///etc/passwd", &[]).unwrap_err(), UrlRefused::Scheme("file".into()));
        assert_eq!(check_url("gopher://x/", &[]).unwrap_err(), UrlRefused::Scheme("gopher".into()));
        assert_eq!(check_url("https://u:p@h.example/x", &[]).unwrap_err(), UrlRefused::UserInfo);
        let allow = vec!["files.example".to_owned(), "*.hf.co".to_owned()];
        assert!(check_url("https://files.example/a", &allow).is_ok());
        assert!(check_url("https://cdn.hf.co/a", &allow).is_ok());
        assert_eq!(check_url("http://127.0.0.1:9/a", &allow).unwrap_err(), UrlRefused::Host("127.0.0.1".into()));
        assert!(check_url("https://hf.co.evil.example/a", &allow).is_err());
    }

    #[test]
    fn keys_differ_by_url_and_version_and_say_how_they_are_trusted() {
        let a: Url = "https://h.example/a".parse().unwrap();
        let b: Url = "https://h.example/b".parse().unwrap();
        let (ra, ka) = task_key(&a, None, &v("\"1\""));
        assert!(trusts_piece_map(&ra));
        assert_ne!(ka, task_key(&a, None, &v("\"2\"")).1);
        assert_ne!(ra, task_key(&b, None, &v("\"1\"")).0);
        let d = Digest::sha256_of(b"x");
        let (rd, kd) = task_key(&a, Some(&d), &v("\"1\""));
        assert_eq!(kd, d);
        assert!(!trusts_piece_map(&rd));
        assert!(is_file(&ra) && is_file(&rd) && !is_file("docker.io"));
        assert!(shoal_core::TaskId::new(&ra, ka).is_ok() && shoal_core::TaskId::new(&rd, kd).is_ok());
    }

    #[test]
    fn registry_blob_urls_name_their_digest() {
        let d = Digest::sha256_of(b"x");
        let u: Url = format!("https://r.example/v2/org/model/blobs/{d}").parse().unwrap();
        assert_eq!(digest_in_url(&u), Some(d));
        assert_eq!(digest_in_url(&"https://r.example/files/blobs/x".parse().unwrap()), None);
    }
}
