//! One HTTP exchange with the origin: sending with the header timeout,
//! mapping transport errors, turning non-success statuses into
//! [`OriginError`]s (with their bodies, to pass back), and reading bounded
//! bodies with stall detection. Buffered requests are retried here too.

use bytes::{Bytes, BytesMut};
use http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use url::Url;

use super::{OriginClient, Request};
use crate::error::{OriginError, redact};
use crate::retry::parse_retry_after;

/// How much of an error body is kept (to pass back to the client).
const MAX_ERROR_BODY: usize = 64 << 10;

/// A fully read response.
pub(super) struct Buffered {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    /// The final URL, after redirects.
    pub(super) url: Url,
    pub(super) body: Bytes,
}

impl OriginClient {
    /// Send `req` (with authentication) and read the body, at most `limit`
    /// bytes, retrying retryable failures per the policy.
    pub(super) async fn buffered(&self, req: &Request<'_>, limit: u64) -> Result<Buffered, OriginError> {
        self.retry
            .run(&redact(&req.url), || async {
                let resp = self.send(req).await?;
                let status = resp.status();
                let headers = resp.headers().clone();
                let url = resp.url().clone();
                let body = self.read_limited(resp, limit).await?;
                Ok(Buffered { status, headers, url, body })
            })
            .await
    }

    /// One exchange with exactly the given `Authorization` (none if `None`).
    /// Any status comes back as `Ok`.
    pub(super) async fn exchange(
        &self,
        req: &Request<'_>,
        authz: Option<&HeaderValue>,
    ) -> Result<reqwest::Response, OriginError> {
        let mut rb = self.http.request(req.method.clone(), req.url.clone()).headers(req.headers.clone());
        if let Some(a) = authz {
            rb = rb.header(AUTHORIZATION, a.clone());
        }
        self.send_timed(rb, &req.url).await
    }

    /// Send with the `timeout` covering connect, redirects and the response
    /// headers.
    pub(super) async fn send_timed(
        &self,
        rb: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<reqwest::Response, OriginError> {
        match tokio::time::timeout(self.timeout, rb.send()).await {
            Err(_) => {
                Err(OriginError::Timeout { registry: self.registry.clone(), url: redact(url), after: self.timeout })
            }
            Ok(Err(e)) => Err(self.map_reqwest(url, e)),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// A reqwest error as an [`OriginError`] (URL redacted).
    pub(crate) fn map_reqwest(&self, url: &Url, e: reqwest::Error) -> OriginError {
        let url = e.url().map(redact).unwrap_or_else(|| redact(url));
        let source = e.without_url();
        let registry = self.registry.clone();
        if source.is_timeout() {
            OriginError::Timeout { registry, url, after: self.timeout }
        } else if source.is_connect() {
            OriginError::Connect { registry, url, source }
        } else {
            OriginError::Transport { registry, url, source }
        }
    }

    /// Pass a 2xx response; turn anything else into the matching error. A
    /// 401/403 from another host (object storage after a redirect) is a
    /// plain `Status`: its challenge is not the registry's.
    pub(super) async fn check_status(&self, resp: reqwest::Response) -> Result<reqwest::Response, OriginError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let url = resp.url().clone();
        let header = |name| resp.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
        let www_authenticate = header(WWW_AUTHENTICATE);
        let retry_after = header(RETRY_AFTER).as_deref().and_then(parse_retry_after);
        let body = self.error_body(resp).await;
        let registry = self.registry.clone();
        let status = status.as_u16();
        Err(match status {
            401 | 403 if same_origin(&url, &self.base_url) => {
                OriginError::Unauthorized { registry, status, www_authenticate, body }
            }
            404 => OriginError::NotFound { registry, url: redact(&url), body },
            _ => OriginError::Status { registry, url: redact(&url), status, retry_after, body },
        })
    }

    /// Up to [`MAX_ERROR_BODY`] bytes of an error body; read problems just
    /// end it.
    pub(super) async fn error_body(&self, mut resp: reqwest::Response) -> Bytes {
        let mut buf = BytesMut::new();
        while buf.len() < MAX_ERROR_BODY {
            match tokio::time::timeout(self.read_timeout, resp.chunk()).await {
                Ok(Ok(Some(c))) => buf.extend_from_slice(&c[..c.len().min(MAX_ERROR_BODY - buf.len())]),
                _ => break,
            }
        }
        buf.freeze()
    }

    /// The whole body, failing with `TooLarge` past `limit` bytes and with
    /// `Stalled` after `read_timeout` of silence.
    pub(crate) async fn read_limited(&self, mut resp: reqwest::Response, limit: u64) -> Result<Bytes, OriginError> {
        let url = resp.url().clone();
        let too_large = || OriginError::TooLarge { url: redact(&url), limit };
        // The body's own length: 0 for HEAD, whatever Content-Length says.
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut buf = BytesMut::new();
        loop {
            let chunk = match tokio::time::timeout(self.read_timeout, resp.chunk()).await {
                Err(_) => {
                    return Err(OriginError::Stalled {
                        registry: self.registry.clone(),
                        url: redact(&url),
                        after: self.read_timeout,
                    });
                }
                Ok(Err(e)) => return Err(self.map_reqwest(&url, e)),
                Ok(Ok(None)) => return Ok(buf.freeze()),
                Ok(Ok(Some(c))) => c,
            };
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
    }
}

/// Same scheme, host and port.
pub(super) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let u = |s: &str| s.parse::<Url>().unwrap();
        assert!(same_origin(&u("https://r.io/v2/x"), &u("https://r.io:443/")));
        assert!(!same_origin(&u("https://r.io/"), &u("https://s3.r.io/")));
        assert!(!same_origin(&u("http://r.io/"), &u("https://r.io/")));
        assert!(!same_origin(&u("http://127.0.0.1:1/"), &u("http://127.0.0.1:2/")));
    }
}
