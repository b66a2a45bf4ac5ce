//! Plain HTTP(S) files (not registry blobs), for `shoal get`.
//!
//! An [`OriginClient`] made with [`OriginClient::for_file`] fetches one URL
//! wherever the blob operations would build `/v2/<repo>/blobs/<digest>`:
//! the same download, retry and resume machinery then works for any file.
//! It sends the caller's headers (credentials such as `Authorization`) on
//! every request and no registry authentication of its own; reqwest drops
//! `Authorization` and `Cookie` when a redirect leaves the host.
//!
//! [`Validators`] (ETag, Last-Modified, size) say which version of the
//! file a download is of. Once a client knows them ([`OriginClient::expect`]),
//! every later response must carry the same ones, or it fails with
//! [`OriginError::Changed`]: a resumed or ranged read never mixes two
//! versions of a file.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use url::Url;

use super::{OriginClient, Request};
use crate::blob::parse_content_range;
use crate::config::RegistryConfig;
use crate::error::{OriginError, redact};
use crate::manifest::header_length;

/// The one URL a file client fetches, and what it sends with it.
#[derive(Clone)]
pub(crate) struct FileTarget {
    pub(crate) url: Url,
    /// The caller's headers, marked sensitive (never printed).
    pub(crate) headers: HeaderMap,
    /// The version every response must be of, once known.
    pub(crate) expect: Option<Validators>,
}

/// Which version of a file a response is of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    /// The `ETag` header, verbatim.
    pub etag: Option<String>,
    /// The `Last-Modified` header, verbatim.
    pub last_modified: Option<String>,
    /// The whole file's size in bytes.
    pub size: u64,
}

impl Validators {
    /// Whether the origin named the version at all (an ETag or a
    /// Last-Modified date); the size alone cannot tell two versions apart.
    pub fn names_a_version(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    fn from_headers(headers: &HeaderMap, size: u64) -> Validators {
        let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
        Validators { etag: text(header::ETAG), last_modified: text(header::LAST_MODIFIED), size }
    }

    /// What differs between the version a download started with (`self`)
    /// and what a later response says, if anything.
    fn differs(&self, now: &Validators) -> Option<String> {
        if self.etag != now.etag {
            return Some(format!("ETag was {:?}, now {:?}", self.etag, now.etag));
        }
        if self.last_modified != now.last_modified {
            return Some(format!("Last-Modified was {:?}, now {:?}", self.last_modified, now.last_modified));
        }
        (self.size != now.size).then(|| format!("size was {} bytes, now {}", self.size, now.size))
    }
}

impl OriginClient {
    /// A client that fetches `url` with `headers` (sent to the origin only;
    /// never logged), named `registry` in errors and swarm task ids.
    /// Only `http` and `https` URLs are accepted.
    pub fn for_file(
        registry: &str,
        url: Url,
        headers: HeaderMap,
        config: &RegistryConfig,
    ) -> Result<OriginClient, OriginError> {
        let mut base = url.clone();
        base.set_path("/");
        base.set_query(None);
        base.set_fragment(None);
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let mut client = OriginClient::new(registry, base, config, None)?;
        let mut headers = headers;
        for v in headers.values_mut() {
            v.set_sensitive(true);
        }
        client.file = Some(FileTarget { url, headers, expect: None });
        Ok(client)
    }

    /// This client, requiring every response to be of the version `v`.
    pub fn expect(mut self, v: Validators) -> OriginClient {
        if let Some(f) = self.file.as_mut() {
            f.expect = Some(v);
        }
        self
    }

    /// Ask for the file's first byte (a `GET` with `Range: bytes=0-0`,
    /// which pre-signed URLs accept where a `HEAD` is refused) with the
    /// caller's headers, and return its version and size. A 401/403/404
    /// and every other refusal come back as errors; so does an answer
    /// with no size.
    pub async fn probe_file(&self) -> Result<Validators, OriginError> {
        let Some(f) = &self.file else {
            return Err(OriginError::BadPath("probe_file on a registry client".into()));
        };
        let mut headers = f.headers.clone();
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=0-0"));
        let caller = crate::Caller::Anonymous;
        let req = Request { method: Method::GET, url: f.url.clone(), headers, scope: None, caller: &caller };
        let resp = self.retry.run(&redact(&f.url), || async { self.send(&req).await }).await?;
        let url = redact(resp.url());
        let size = if resp.status() == StatusCode::PARTIAL_CONTENT {
            let raw = resp.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or_default();
            match parse_content_range(raw) {
                Some((_, _, Some(total))) => total,
                _ => {
                    return Err(OriginError::BadHeader { url, header: "content-range".into(), value: raw.to_owned() });
                }
            }
        } else {
            header_length(resp.headers(), &url)?.ok_or(OriginError::BadHeader {
                url,
                header: "content-length".into(),
                value: String::new(),
            })?
        };
        Ok(Validators::from_headers(resp.headers(), size))
    }

    /// The file's URL and headers for a request, when this is a file client.
    pub(crate) fn file_request<'a>(&self, method: Method, caller: &'a crate::Caller) -> Option<Request<'a>> {
        let f = self.file.as_ref()?;
        Some(Request { method, url: f.url.clone(), headers: f.headers.clone(), scope: None, caller })
    }

    /// A file response must be of the version the download started with.
    pub(crate) fn check_version(&self, resp: &reqwest::Response, total: u64) -> Result<(), OriginError> {
        let Some(expect) = self.file.as_ref().and_then(|f| f.expect.as_ref()) else { return Ok(()) };
        let now = Validators::from_headers(resp.headers(), total);
        match expect.differs(&now) {
            None => Ok(()),
            Some(detail) => Err(OriginError::Changed { url: redact(resp.url()), detail }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_any_validator_is_named() {
        let v = Validators { etag: Some("\"a\"".into()), last_modified: None, size: 10 };
        assert_eq!(v.differs(&v.clone()), None);
        let etag = Validators { etag: Some("\"b\"".into()), ..v.clone() };
        assert!(v.differs(&etag).unwrap().contains("ETag"));
        let size = Validators { size: 11, ..v.clone() };
        assert!(v.differs(&size).unwrap().contains("size"));
        assert!(!Validators { etag: None, last_modified: None, size: 1 }.names_a_version());
    }
}
